"""Notebook 02, sections 7-9: KV caches, the context they hold, and a traced generation.

A part of the `backbone` lesson (which re-exports it): the cost of a step with and without
the cache, how much context fits, and a progress bar that records what the model was
unsure about while it generated.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core.config import AUDIO_SPECIAL_IDS, FRAME_MS, FRAME_RATE
from ..core.profiling import OpCounter, best_seconds, count_flops
from .backbone_sampling import entropy_bits
from .common import (CSM_1B, Solutions, as_number, new_figure, to_numpy, unanswered, verdict,
                     wrong)

SOLUTIONS = Solutions()


# ------------------------------------------------------------------- KV caches (section 7)

def plot_step_cost(context_rows, cached, uncached, unit: str = "MFLOP", cached_ms=None,
                   uncached_ms=None) -> Figure:
    """Cost of producing the next row's hidden state as the context grows: with the KV
    cache (one new row) vs recomputing every row from scratch. Work in `unit` (left) and,
    if given, measured milliseconds (right)."""
    panels = [(cached, uncached, f"work per step ({unit})")]
    if cached_ms is not None and uncached_ms is not None:
        panels.append((cached_ms, uncached_ms, "time per step (ms, measured)"))
    fig, axes = new_figure(1, len(panels), width=5 * len(panels), height=3.0)
    for ax, (with_cache, without, label) in zip(axes[0], panels):
        ax.plot(context_rows, without, "o-", color="tab:red", label="no cache: all rows again")
        ax.plot(context_rows, with_cache, "o-", color="tab:green",
                label="KV cache: the new row only")
        ax.set_xlabel("rows already in the context")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8)
    return fig


def _context_lengths(max_seq_len: int) -> list[int]:
    """Rows already in the context to measure at: 16, 64, 256, ... (x4) below the window,
    then the last row the window allows."""
    last, lengths, n = max_seq_len - 1, [], 16
    while n < last:
        lengths.append(n)
        n *= 4
    return lengths + [last]


@torch.inference_mode()
def measure_cache_savings(model, lengths=None, repeats: int = 2, seed: int = 0) -> Figure:
    """The cost of producing the row after n rows, with the KV cache (the new row only) and
    without (model(...) over all n + 1 rows), for growing n: floating-point operations
    (csm_nb.core.profiling.count_flops), the fastest of `repeats` timings, and the ops
    dispatched. Prints the table; returns the figure. Rows are random audio frames: the
    cost does not depend on what they say. Leaves the backbone cache filled with them."""
    cfg = model.config
    device = model.codebook0_head.weight.device
    K, C, L = cfg.num_codebooks, cfg.num_columns, cfg.max_seq_len - 1
    lengths = lengths or _context_lengths(cfg.max_seq_len)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(1, L + 1, C, dtype=torch.int64)
    codes = cfg.audio_vocab_size - AUDIO_SPECIAL_IDS                  # the codec's codes
    tokens[..., :K] = torch.randint(0, codes, (1, L + 1, K), generator=g)
    mask = torch.zeros(1, L + 1, C, dtype=torch.bool)
    mask[..., :K] = True                                              # L + 1 audio rows
    tokens, mask = tokens.to(device), mask.to(device)
    model.setup_caches(1)
    model.backbone_step(tokens[:, :L], mask[:, :L], torch.arange(L, device=device))
    rows = []
    for n in lengths:                                     # rows 0..n-1 are in the cache
        slot = torch.tensor([n], device=device)

        def cached():
            return model.backbone_step(tokens[:, n:n + 1], mask[:, n:n + 1], slot)

        def uncached():
            return model(tokens[:, :n + 1], mask[:, :n + 1])

        rows.append((n, count_flops(cached) / 1e6, best_seconds(cached, repeats) * 1e3,
                     count_flops(uncached) / 1e6, best_seconds(uncached, repeats) * 1e3))
        print(f"{n:5} rows before: cached {rows[-1][1]:10.1f} MFLOP {rows[-1][2]:8.1f} ms | "
              f"no cache {rows[-1][3]:10.1f} MFLOP {rows[-1][4]:8.1f} ms")
    with OpCounter() as ops_cached:
        model.backbone_step(tokens[:, L:], mask[:, L:], torch.tensor([L], device=device))
    with OpCounter() as ops_full:
        model(tokens, mask)
    print(f"operations dispatched: {ops_cached.kernels} for a cached step, {ops_full.kernels} "
          "without the cache: about the same count, very different sizes")
    n, f1, t1, f2, t2 = zip(*rows)
    return plot_step_cost(n, f1, f2, "MFLOP", t1, t2)


def context_seconds(generation_seconds: float, new_text_rows: int, num_segments: int,
                    segment_text_rows: int, max_seq_len: int = CSM_1B.max_seq_len) -> float:
    """Seconds of context audio that fit beside a line that may last `generation_seconds`:
    every row not taken by the new line (its text, its frames) or by the segments' text
    and end rows is one frame of context audio."""
    frames = int(generation_seconds * 1000 / FRAME_MS)        # as the official code
    rows = max_seq_len - frames - new_text_rows - num_segments * (segment_text_rows + 1)
    return max(rows, 0) / FRAME_RATE


def check_context_seconds(answer, generation_seconds: float = 10.0, new_text_rows: int = 20,
                          num_segments: int = 2, segment_text_rows: int = 15) -> bool:
    """Seconds of context audio that fit in the backbone's rows when the new line has
    `new_text_rows` text rows and may last `generation_seconds`, and the context is
    `num_segments` segments of `segment_text_rows` text rows each (2048 rows, 12.5 frames/s)."""
    if unanswered(answer):
        return None
    value = as_number("seconds", answer)
    fr, L = FRAME_RATE, CSM_1B.max_seq_len
    frames = int(generation_seconds * 1000 / FRAME_MS)
    args = (generation_seconds, new_text_rows, num_segments, segment_text_rows)
    right = context_seconds(*args)
    close = 0.5 / fr                                           # half a frame

    def near(x):
        return abs(value - x) <= close

    if near(right) or near(right - 1 / fr):      # the official check is strict (one row fewer)
        rows = round(right * fr)
        return verdict(True, f"{L} rows - {frames} frames for the new line - {new_text_rows} "
                       f"of its text rows - {num_segments} x ({segment_text_rows} text + 1 end) "
                       f"= {rows} rows of audio frames = {rows} / {fr:g} = {right:.2f} s.", "")
    if near(right * fr) or near(right * fr - 1):
        hint = f"that is the number of rows; each second of audio takes {fr:g} rows."
    elif near(right + frames / fr):
        hint = "the frames the new line may generate take rows too (one per 80 ms)."
    elif near(right + num_segments / fr):
        hint = "each segment's audio ends with one all-zero end row."
    elif near(right + num_segments * segment_text_rows / fr):
        hint = "each context segment's own text rows come before its audio."
    elif near(right + new_text_rows / fr):
        hint = "the new line's text rows are in the prompt too."
    elif value < 0 or value > L / fr:
        hint = f"the whole window is {L} rows = {L / fr:g} s of audio at most."
    else:
        hint = (f"start from {L} rows, subtract everything that is not context audio, and "
                f"divide by {fr:g} rows per second.")
    return wrong("context_seconds", f"{value:g} s: {hint}")


SOLUTIONS.hints["context_seconds"] = (
    "Start from the 2048 rows and take away everything that is not context audio: the frames "
    "the new line may generate (10 s / 80 ms), its text rows, and each segment's text rows "
    "and end row. What is left is one row per 80 ms of context audio.")
SOLUTIONS.answers["context_seconds"] = (
    "seconds = (2048 - 10_000 // 80 - 20 - 2 * (15 + 1)) / 12.5   # rows left / rows per s\n"
    "lesson.check_context_seconds(seconds, generation_seconds=10, new_text_rows=20,\n"
    "                             num_segments=2, segment_text_rows=15)")
SOLUTIONS["context_seconds"] = (
    "The new line may last 10 s = 10000 / 80 = 125 frames, one row each, plus its 20 text\n"
    "rows. Each of the 2 context segments costs its 15 text rows and 1 end row beside its\n"
    "audio. 2048 - 125 - 20 - 2 x 16 = 1871 rows of audio frames; at 12.5 rows per second\n"
    "that is 1871 / 12.5 = 149.68 s (149.6 s with the official strict check).")


# ------------------------------------------------------------------- a traced generation (9)

def plot_generation_trace(entropy, chosen_prob=None, stop_prob=None,
                          frame_rate: float = FRAME_RATE) -> Figure:
    """A traced generation: entropy [F, K] of every codebook at every frame (top), and for
    codebook 0 the probability of the code drawn and of code 0 (the stop frame starts with
    it) (bottom)."""
    H = to_numpy(entropy)                                    # [F, K]
    F, K = H.shape
    fig, axes = new_figure(2, 1, width=9, height=5.0, sharex=True,
                           gridspec_kw={"height_ratios": [2, 1]})
    ax, pax = axes[:, 0]
    image = ax.imshow(H.T, aspect="auto", interpolation="nearest", cmap="magma",
                      extent=[0, F / frame_rate, K - 0.5, -0.5])
    ax.set_ylabel("codebook")
    ax.set_title("entropy of each codebook's distribution while generating", fontsize=10)
    fig.colorbar(image, ax=ax, label="bits")
    t = (np.arange(F) + 0.5) / frame_rate
    if chosen_prob is not None:
        pax.plot(t, to_numpy(chosen_prob)[:, 0], ".-", color="tab:blue", label="p(code drawn)")
    if stop_prob is not None:
        pax.plot(t, to_numpy(stop_prob), ".-", color="tab:red", label="p(code 0)")
    pax.set_yscale("log")
    pax.set_xlabel("time (s)")
    pax.set_ylabel("codebook 0")
    pax.legend(fontsize=8, loc="lower left")
    return fig


class GenerationProgress:
    """An `on_frame` callback for `csm_nb.generate_codes`: a progress bar, plus a record.

    Per frame it keeps the codes and, when the run traces logits (`trace_logits=True`), the
    entropy of every codebook's distribution, the probability of each code drawn, and
    codebook 0's probability of code 0 (the first code of the all-zero stop frame). All of
    it stays on the model's device (no host syncs while generating). Display it before
    generating (`display(progress)`) to watch the bar move; without a display it only records.

        progress = GenerationProgress(max_frames)
        codes = csm_nb.generate_codes(model, tokens, mask, max_frames, on_frame=progress,
                                      trace_logits=True)
    """

    def __init__(self, max_frames: int, description: str = "generating", row: int = 0):
        import ipywidgets as W

        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"max_frames={max_frames!r} must be an int >= 1 (the same "
                             "max_frames you pass to generate_codes)")
        self.row = row                            # which batch row the record follows
        self.bar = W.IntProgress(value=0, min=0, max=max_frames, description=description)
        self.label = W.Label(f"0 / {max_frames} frames")
        self.widget = W.HBox([self.bar, self.label])
        self.codes, self._entropy, self._chosen, self._stop = [], [], [], []

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __call__(self, info) -> None:
        codes = info.codes[self.row]                                          # [K]
        self.codes.append(codes)
        if info.logits is not None:
            logits = info.logits[self.row]                                    # [K, V]
            logp = torch.log_softmax(logits, dim=-1)
            self._entropy.append(entropy_bits(logits))
            self._chosen.append(logp.gather(-1, codes[:, None])[:, 0].exp())
            self._stop.append(logp[0, 0].exp())
        self.bar.value = info.index + 1
        self.label.value = f"{info.index + 1} / {self.bar.max} frames"
        # returns None: only csm_nb.STOP would end generation

    @property
    def frames(self) -> torch.Tensor:
        """Every frame seen, the stop frame included: [K, F] on the CPU."""
        return torch.stack(self.codes, dim=1).cpu()

    @property
    def stop_frame(self) -> int | None:
        """Index of the all-zero frame if the model emitted one (generate_codes drops it)."""
        zero = (self.frames == 0).all(dim=0).nonzero()
        return int(zero[0]) if len(zero) else None

    def trace(self) -> dict:
        """{'entropy' [F, K], 'chosen_prob' [F, K], 'stop_prob' [F]} as CPU tensors."""
        if not self._entropy:
            raise ValueError("no logits were traced: pass trace_logits=True to "
                             "generate_codes along with on_frame=progress")
        return {"entropy": torch.stack(self._entropy).cpu(),
                "chosen_prob": torch.stack(self._chosen).cpu(),
                "stop_prob": torch.stack(self._stop).cpu()}

    def figure(self, frame_rate: float = FRAME_RATE):
        return plot_generation_trace(**self.trace(), frame_rate=frame_rate)
