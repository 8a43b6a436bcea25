"""Notebook 03, part 3: streaming. When audio is ready while a line streams, the stream
decoder the student writes (checked against `Generator.generate_stream`), and the runaway
guard's view of a line's loudness.

Gathered with the other parts by `conversation`, the module the notebook imports.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core.config import FRAME_RATE, SAMPLE_RATE
from ..core.generate import generate_codes
from ..speech.streaming import codec_codes
from .common import Solutions, new_figure, stuck, unanswered, verdict

SOLUTIONS = Solutions()
_SAME_AUDIO = 1e-4          # generate_stream's own promise: chunks equal within 1e-4
_JUNK_FRAMES = 2            # frames after the end frame that a decoder must never play


def plot_stream_timing(arrivals, sample_rate: int = SAMPLE_RATE) -> Figure:
    """Audio ready vs wall-clock time while streaming: [(seconds since start, samples)].

    Playback can start at the first chunk (time to first audio) and never stalls while the
    ready curve stays above the playback line.
    """
    times = np.array([0.0] + [t for t, _ in arrivals])
    ready = np.cumsum([0] + [n for _, n in arrivals]) / sample_rate
    fig, axes = new_figure(width=8, height=3.2)
    ax = axes[0, 0]
    ax.step(times, ready, where="post", color="tab:blue", label="audio ready")
    if len(arrivals):
        first = arrivals[0][0]
        ax.plot([first, first + ready[-1]], [0, ready[-1]], "--", color="tab:green",
                label="playback from the first chunk")
        ax.axvline(first, color="tab:red", lw=1, label=f"first audio after {first:.2f} s")
    ax.set_xlabel("wall-clock time (s)")
    ax.set_ylabel("audio (s)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_frame_levels(levels_db, silence_db: float | None = None, stop: int | None = None,
                      frame_rate: float = FRAME_RATE) -> Figure:
    """Loudness of each 80 ms frame (dB re full scale), with a guard's threshold and stop."""
    levels = np.maximum(np.asarray(levels_db, dtype=float), -120.0)   # digital 0 -> floor
    t = np.arange(levels.size) / frame_rate
    fig, axes = new_figure(width=9, height=2.8)
    ax = axes[0, 0]
    ax.plot(t, levels, ".-", color="tab:blue", lw=0.8, label="frame loudness")
    if silence_db is not None:
        ax.axhline(silence_db, color="0.4", ls="--", lw=1, label=f"silence below {silence_db:g} dB")
    if stop is not None:
        ax.axvline(stop / frame_rate, color="tab:red", lw=1.5,
                   label=f"guard stops after frame {stop - 1}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("RMS (dB re full scale)")
    ax.legend(fontsize=8, loc="lower left")
    return fig



# ------------------------------------------------------------------- your stream decoder (8)

def check_stream_decoder(fn, gen, text: str, speaker: int = 0, context=(),
                         max_audio_length_ms: float = 4_000, chunk_frames: int = 4,
                         seed: int = 0, temperature: float = 0.9, topk: int = 50) -> bool:
    """Your `stream_decode(codec, frames, chunk_frames)` against `gen.generate_stream`.

    The checker generates one line, hands your decoder its frames one at a time as the frame
    loop would (then the all-zero end frame, then junk that must never be played), and
    compares your chunks with the stream's, chunk by chunk."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"stream_decode: expected a function, got {type(fn).__name__}")
    tokens, mask, max_frames = gen.prompt_rows(text, speaker, context, max_audio_length_ms)
    rng = torch.Generator(gen.device).manual_seed(seed)
    codes = codec_codes(generate_codes(gen.model, tokens, mask, max_frames, temperature, topk,
                                       rng), gen.codec).cpu()                     # [K, F]
    want = list(gen.generate_stream(text, speaker, context, max_audio_length_ms, temperature,
                                    topk, seed, progress=False, chunk_frames=chunk_frames))
    end = torch.zeros_like(codes[:, 0])
    frames = [codes[:, f] for f in range(codes.shape[1])] + [end] + [codes[:, 0]] * _JUNK_FRAMES
    try:   # the student's code may fail or return junk: report it, never crash the cell
        out = fn(gen.codec, iter(frames), chunk_frames)
        if out is None:
            unanswered(None, fix="your stream_decode(...) returns None: fill in its body (it "
                                 "yields chunks)")
            return None
        got = [torch.as_tensor(c).detach().cpu().reshape(-1) for c in out]
    except Exception as err:
        hint = ("codes for the codec are [K, f]: torch.stack(frames, dim=1)."
                if "shape" in str(err) or "size" in str(err) else "")
        return verdict(False, "", f"stream_decode raised {type(err).__name__}: {err}. {hint}"
                       + stuck("stream_decoder"))
    sizes, want_sizes = [c.numel() for c in got], [c.numel() for c in want]
    spf = gen.config.samples_per_frame
    line = f"{codes.shape[1]} frames in chunks of {chunk_frames}"
    if sizes != want_sizes:
        if sum(sizes) > sum(want_sizes):
            why = "you played frames after the all-zero end frame: stop there."
        elif sum(sizes) < sum(want_sizes):
            why = ("the last frames (fewer than chunk_frames) were never decoded: decode what "
                   "is left when the loop ends.")
        elif all(n == spf for n in sizes):
            why = "you decode every frame alone: collect chunk_frames frames, then decode them."
        else:
            why = "chunks should hold chunk_frames frames each (the last may be shorter)."
        return verdict(False, "", f"{line}: your chunks have {[n // spf for n in sizes]} frames,"
                       f" the stream's {[n // spf for n in want_sizes]}. {why}"
                       + stuck("stream_decoder"))
    for i, (a, b) in enumerate(zip(got, want)):
        if not torch.allclose(a, b, atol=_SAME_AUDIO, rtol=0):
            return verdict(False, "", f"{line}: chunk {i} has the right length but different "
                           "audio. One codec.stream() for the whole line (Mimi's decoder "
                           "carries its state from chunk to chunk), codes as [K, f]."
                           + stuck("stream_decoder"))
    return verdict(True, f"{line}: your {len(got)} chunks equal generate_stream's, sample for "
                   "sample, and nothing after the end frame was played.", "")


SOLUTIONS["stream_decoder"] = (
    "def stream_decode(codec, frames, chunk_frames):\n"
    "    stream = codec.stream()         # ONE session for the line: Mimi keeps state between chunks\n"
    "    pending = []                    # frames [K] not decoded yet\n"
    "    for frame in frames:\n"
    "        if not frame.any():         # the all-zero frame: the line is over\n"
    "            break\n"
    "        pending.append(frame)\n"
    "        if len(pending) == chunk_frames:\n"
    "            yield stream.decode(torch.stack(pending, dim=1))   # codes [K, f] -> audio\n"
    "            pending = []\n"
    "    if pending:                     # the last, shorter chunk\n"
    "        yield stream.decode(torch.stack(pending, dim=1))")
SOLUTIONS.answers["stream_decoder"] = SOLUTIONS["stream_decoder"] + (
    "\n\n\nlesson.check_stream_decoder(stream_decode, gen, STREAM_LINE, 0, [prompt_a], "
    "LINE_MS, chunk_frames=4)\n")
SOLUTIONS.hints["stream_decoder"] = (
    "Keep a list of pending frames. For each frame: if it is all zeros (not frame.any()), stop;\n"
    "else append it, and once you hold chunk_frames of them, yield stream.decode(codes) with\n"
    "codes = torch.stack(pending, dim=1), shape [K, f], and start a new list. After the loop,\n"
    "decode whatever is still pending. Open the stream once, before the loop.")
