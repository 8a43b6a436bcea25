"""Notebook 01 (Mimi: how CSM turns sound into codes): its figures, widgets and checkers.

`from csm_nb.teach import codec as lesson` once, then `lesson.<name>`. This module holds the
codecs' description, frames, bitrate and hearing the levels (sections 1-4, 6-7), and gathers
the two parts too big to share a readable file with them:

    codec_rvq    residual VQ by hand, write the encoder and the decoder (section 5)
    codec_mimi   the picture of Mimi, semantic and acoustic codebooks, the quiz (sections 8-10)

plus the code grid, error curve and players from `common`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ..audio.metrics import mel_distance, si_sdr
from ..audio.signal import prepare_audio
from ..core.config import (FRAME_MS, FRAME_RATE, MIMI_CODEBOOK_SIZE, MIMI_CODEBOOKS,
                           SAMPLE_RATE, SAMPLES_PER_FRAME)
from .codec_mimi import SOLUTIONS as MIMI_SOLUTIONS
from .codec_mimi import check_quiz, plot_mimi, plot_semantic_vs_acoustic, show_quiz
from .codec_rvq import SOLUTIONS as RVQ_SOLUTIONS
from .codec_rvq import (check_rvq_codes, check_rvq_decoder, check_rvq_encoder,
                        plot_frame_vectors, plot_rvq_2d, rvq_decode_reference,
                        rvq_encode_reference, rvq_toy_problem, stuck)
from .common import (CODE_BITS, Solutions, as_number, audio, draw_spectrograms, levels_xaxis,
                     new_figure, players, plot_code_grid, plot_error_vs_levels,
                     probs_entropy_bits, to_numpy, unanswered, verdict)

__all__ = [
    "audio", "check_bitrate", "check_num_frames", "check_quiz", "show_quiz", "check_rvq_codes",
    "check_rvq_decoder", "check_rvq_encoder", "code_entropy", "codec_summary",
    "describe_codecs", "hint", "level_mixer", "players", "plot_code_grid",
    "plot_codebook_usage", "plot_codec_comparison", "plot_error_vs_levels",
    "plot_frame_vectors", "plot_level_spectrograms", "plot_mimi", "plot_rvq_2d",
    "plot_semantic_vs_acoustic", "plot_waveform_frames", "rvq_decode_reference",
    "rvq_encode_reference", "rvq_toy_problem", "solution",
]

_OWN = Solutions()        # this module's own exercises (num_frames, bitrate); all: SOLUTIONS


# ------------------------------------------------------------------- the codecs (section 1)

def codec_summary(codec) -> str:
    """What a loaded codec is, in one line: its weights, its grid, what it is for."""
    grid = (f"{codec.num_codebooks} levels x {codec.codebook_size} codes at "
            f"{codec.frame_rate:g} frames/s")
    if codec.mode == "real":
        return f"Mimi, the official weights ({codec.origin}); {grid}: what CSM-1B speaks through"
    if codec.mode == "tiny":
        return (f"Mimi's real structure with RANDOM weights; {grid}, streaming: its codes have "
                "the right shape, its sound is noise")
    if codec.mode == "toy":
        return (f"the toy codec; {grid}: RVQ over log-mel frames + Griffin-Lim, fitted on this "
                "project's espeak-ng speech: what the toy CSM speaks through")
    raise ValueError(f"codec.mode={codec.mode!r}: expected a codec from load_codec "
                     "(real, tiny or toy)")


# Where notebooks/01_codec.ipynb uses which codec, by section number (its headings must agree:
# tests/test_codec_lesson.py): `hear` plays and measures speech from frames to codebook usage,
# one section sets the two codecs side by side, and the last ones use `mimi` alone.
HEAR_SECTIONS, COMPARE_SECTION, MIMI_SECTIONS = (3, 7), 6, (8, 9)


def describe_codecs(mimi, toy, hear) -> None:
    """Print what each codec of the notebook is, and which sections use which codec."""
    print(f"mimi : {codec_summary(mimi)}")
    print(f"toy  : {codec_summary(toy)}")
    name, other = ("mimi", "toy") if hear is mimi else ("toy", "mimi")
    (first, last), (mimi_first, mimi_last) = HEAR_SECTIONS, MIMI_SECTIONS
    rvq = "your RVQ runs on the toy codec in every mode; " if hear is mimi else ""
    print(f"hear : {name}: sections {first}-{last} play and measure speech through {name} "
          f"({rvq}section {COMPARE_SECTION} also compares it with {other}); sections "
          f"{mimi_first}-{mimi_last} (Mimi inside, streaming) use mimi")


# ------------------------------------------------------------------- frames (sections 3-4)

def plot_waveform_frames(wav, sample_rate: int = SAMPLE_RATE, frame_rate: float = FRAME_RATE,
                         seconds: float | None = 1.0) -> Figure:
    """The waveform cut into Mimi frames: each 80 ms slice becomes one column of codes."""
    x = to_numpy(wav).reshape(-1)
    if seconds is not None:
        x = x[:round(seconds * sample_rate)]
    t = np.arange(x.shape[0]) / sample_rate
    fig, axes = new_figure(width=9, height=2.6)
    ax = axes[0, 0]
    ax.plot(t, x, lw=0.6, color="tab:blue")
    frame_s = 1 / frame_rate
    for k, start in enumerate(np.arange(0, t[-1] if len(t) else 0, frame_s)):
        ax.axvline(start, color="0.6", lw=0.8, ls="--")
        ax.text(start + frame_s / 2, 1.02, f"frame {k}", transform=ax.get_xaxis_transform(),
                ha="center", fontsize=7, color="0.35")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_title(f"the first {x.shape[0]:,} samples at {sample_rate} Hz, cut into "
                 f"{1000 / frame_rate:g} ms frames", fontsize=10, pad=14)
    return fig


def check_num_frames(answer, seconds: float = 3.0) -> bool:
    """How many Mimi frames a clip of `seconds` gives: ceil(seconds * 24000 / 1920)."""
    if unanswered(answer):
        return None
    value = as_number("num_frames", answer)
    samples = round(seconds * SAMPLE_RATE)
    right = math.ceil(samples / SAMPLES_PER_FRAME)
    if value == right:
        return verdict(True, f"{samples} samples / {SAMPLES_PER_FRAME} per frame = "
                       f"{samples / SAMPLES_PER_FRAME:g}, rounded up to {right}: Mimi "
                       "pads the last partial frame with silence.", "")
    if value == math.floor(samples / SAMPLES_PER_FRAME):
        why = "close: a partial last frame still becomes a whole frame (round up)."
    elif value == samples / SAMPLES_PER_FRAME:
        why = "frames come in whole numbers; what happens to the partial last one?"
    else:
        why = (f"one frame is {SAMPLES_PER_FRAME} samples "
                f"({FRAME_MS:g} ms) at {SAMPLE_RATE} Hz.")
    return verdict(False, "", f"{value:g} frames: {why}" + stuck("num_frames"))


_OWN["num_frames"] = (
    "3 s x 24000 Hz = 72000 samples; 72000 / 1920 = 37.5 frames; Mimi right-pads the last\n"
    "partial frame, so F = ceil(37.5) = 38 (and decode returns 38 x 1920 = 72960 samples).")
_OWN.hints["num_frames"] = (
    "Count samples first (seconds x 24000), then divide by the samples in one frame. A frame\n"
    "count is a whole number: what must happen to a partial frame at the end?")
_OWN.answers["num_frames"] = (
    "my_num_frames = math.ceil(3.0 * 24000 / 1920)   # samples / samples per frame, rounded up\n"
    "lesson.check_num_frames(my_num_frames, seconds=3.0)")


# ------------------------------------------------------------------- bitrate (section 4)

def check_bitrate(answer, num_codebooks: int = MIMI_CODEBOOKS) -> bool:
    """Mimi's bitrate in bits per second with `num_codebooks` levels (4400 for 32)."""
    if unanswered(answer):
        return None
    value = as_number("bitrate", answer)
    right = FRAME_RATE * num_codebooks * CODE_BITS
    if math.isclose(value, right, rel_tol=1e-3):
        return verdict(True, f"{FRAME_RATE} frames/s x {num_codebooks} codes x {CODE_BITS} "
                       f"bits = {right:g} bit/s ({right / 1000:g} kbps).", "")
    if math.isclose(value * 1000, right, rel_tol=1e-3):
        why = "that is the right number in kbps; the question asks bits per second."
    elif math.isclose(value, FRAME_RATE * num_codebooks * MIMI_CODEBOOK_SIZE, rel_tol=1e-3):
        why = (f"a code is one of {MIMI_CODEBOOK_SIZE} values: how many bits does it take to "
                f"write one of {MIMI_CODEBOOK_SIZE} numbers? (log2, not the count itself)")
    elif math.isclose(value, FRAME_RATE * num_codebooks, rel_tol=1e-3):
        why = "that counts codes per second; how many bits does each code take?"
    elif math.isclose(value, FRAME_RATE * CODE_BITS, rel_tol=1e-3):
        why = f"that is one codebook; a frame holds {num_codebooks} codes."
    else:
        why = "multiply frames per second, codes per frame and bits per code."
    return verdict(False, "", f"{value:g} bit/s: {why}" + stuck("bitrate"))


_OWN["bitrate"] = (
    "12.5 frames per second x 32 codes per frame x log2(2048) = 11 bits per code\n"
    "= 4400 bit/s = 4.4 kbps (1.1 kbps with 8 codebooks). 16-bit PCM at 24 kHz is 384 kbps:\n"
    "Mimi is ~87 times smaller.")
_OWN.hints["bitrate"] = (
    "Three factors: frames per second, codes per frame (one per codebook), bits per code. One\n"
    "code is one of 2048 values; 2 ** 11 = 2048.")
_OWN.answers["bitrate"] = (
    "my_bitrate = 12.5 * 32 * 11   # frames/s x codes per frame x bits per code\n"
    "lesson.check_bitrate(my_bitrate)")


# ------------------------------------------------------------------- hearing the levels (6)

def plot_level_spectrograms(reconstructions: dict, sample_rate: int = SAMPLE_RATE,
                            original=None, ncols: int = 3) -> Figure:
    """Spectrograms of decodes from the first n levels, {n: wav}, e.g. n = 1, 2, 4, ... 32."""
    panels = ({"original": original} if original is not None else {}) | {
        f"first {n} level{'s' if n > 1 else ''}": wav
        for n, wav in sorted(reconstructions.items())}
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(nrows, ncols, width=4 * ncols, height=2.6 * nrows,
                           sharex=True, sharey=True)
    draw_spectrograms(fig, axes, panels, sample_rate)
    return fig


def level_mixer(codec, codes, levels=(1, 2, 4, 8, 16, 32), original=None,
                original_rate: int | None = None, value: int | None = None):
    """A slider over how many RVQ levels to decode: replays the reconstruction, shows its
    spectrogram (beside the original's, if given) and how far it is from the original.

    Returns the widget (end a cell with it to show it). Decodes are cached per level.
    """
    import ipywidgets as W
    from IPython.display import display

    levels = [int(n) for n in levels]
    if any(not 1 <= n <= codec.num_codebooks for n in levels):
        raise ValueError(f"levels={levels} must lie in 1..{codec.num_codebooks}")
    reference = None
    if original is not None:
        reference = prepare_audio(original, original_rate or codec.sample_rate,
                                  codec.sample_rate)
    cache: dict[int, torch.Tensor] = {}
    slider = W.SelectionSlider(options=levels, value=value or levels[-1],
                               description="levels", continuous_update=False)
    out = W.Output()

    def render(n: int) -> None:
        if n not in cache:
            cache[n] = codec.decode(codes, num_codebooks=n).cpu()
        wav = cache[n]
        text = f"{n} level(s) = {codec.bitrate(n) / 1000:.2f} kbps"
        if reference is not None:
            text += (f"; mel distance {mel_distance(reference, wav):.2f} dB, "
                     f"SI-SDR {si_sdr(reference, wav):.1f} dB")
        out.clear_output(wait=True)
        with out:
            print(text)
            display(audio(wav, codec.sample_rate))
            display(plot_level_spectrograms({n: wav}, codec.sample_rate,
                                            original=reference, ncols=2))

    slider.observe(lambda change: render(change["new"]), names="value")
    render(slider.value)                      # headless path: the first state, right now
    box = W.VBox([slider, out])
    box.cache = cache                         # for tests and the curious
    return box


def plot_codec_comparison(curves: dict) -> Figure:
    """Error curves of several codecs, {name: (levels, mel_db, kbps_per_level)}: against the
    number of levels decoded (left) and against the bitrate those levels cost (right)."""
    fig, axes = new_figure(1, 2, width=11, height=3.4, sharey=True)
    by_level, by_rate = axes[0]
    ticks = set()                            # codecs may decode different numbers of levels
    for (name, (levels, mel_db, kbps)), colour in zip(curves.items(),
                                                       ["tab:red", "tab:blue", "tab:green"]):
        levels = np.asarray(levels)
        ticks.update(int(n) for n in levels)
        by_level.plot(levels, mel_db, "o-", color=colour, label=name)
        by_rate.plot(levels * kbps, mel_db, "o-", color=colour, label=name)
    levels_xaxis(by_level, sorted(ticks))
    by_level.set_xlabel("levels decoded")
    by_level.set_ylabel("mel distance (dB, lower = closer)")
    by_rate.set_xlabel("bitrate (kbps)")
    for ax in (by_level, by_rate):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    by_level.set_title("error vs levels", fontsize=10)
    by_rate.set_title("error vs bits spent", fontsize=10)
    return fig


# ------------------------------------------------------------------- codebook usage (7)

def code_entropy(codes, codebook_size: int = MIMI_CODEBOOK_SIZE
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per level: (number of distinct codes used [K], entropy of their histogram in bits [K])."""
    c = to_numpy(codes)                               # [K, F]
    distinct = np.array([np.unique(row).size for row in c])
    entropy = np.zeros(c.shape[0])
    for k, row in enumerate(c):
        entropy[k] = probs_entropy_bits(np.bincount(row, minlength=codebook_size) / row.size)
    return distinct, entropy


def plot_codebook_usage(codes, codebook_size: int = MIMI_CODEBOOK_SIZE) -> Figure:
    """How many of the 2048 entries each level uses, and the entropy of its codes."""
    distinct, entropy = code_entropy(codes, codebook_size)
    levels = np.arange(len(distinct))
    num_frames = to_numpy(codes).shape[1]
    fig, axes = new_figure(1, 2, width=10, height=3.2)
    axes[0, 0].bar(levels, distinct, color="tab:blue")
    axes[0, 0].set_ylabel("distinct codes used")
    axes[0, 0].set_title(f"codes used per level (at most {min(num_frames, codebook_size)} "
                         f"in {num_frames} frames)", fontsize=10)
    axes[0, 1].bar(levels, entropy, color="tab:orange")
    cap = min(math.log2(codebook_size), math.log2(max(num_frames, 1)))
    axes[0, 1].axhline(cap, color="0.4", ls="--", lw=1)
    axes[0, 1].set_ylabel("entropy (bits per frame)")
    axes[0, 1].set_title(f"entropy per level (dashed: the most {num_frames} frames can "
                         "show)", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("codebook index")
    return fig


# ------------------------------------------------------------------- every exercise's answers

SOLUTIONS = Solutions(_OWN, RVQ_SOLUTIONS, MIMI_SOLUTIONS)   # after _OWN is filled
solution = SOLUTIONS.show
hint = SOLUTIONS.hint
