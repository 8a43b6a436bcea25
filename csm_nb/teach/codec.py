"""Notebook 01 (Mimi: how CSM turns sound into codes): its figures, widgets and checkers.

The notebook imports this module once (`from csm_nb.teach import codec as lesson`); the code
grid, error curve and players other notebooks use too come from `common`, re-exported here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ..audio.metrics import mel_distance, si_sdr
from ..audio.signal import prepare_audio
from ..core.config import (FRAME_MS, FRAME_RATE, MIMI_CODEBOOK_SIZE, SAMPLE_RATE,
                           SAMPLES_PER_FRAME)
from .common import (CODE_BITS, CSM_1B, Solutions, as_number, audio, draw_spectrograms,
                     levels_xaxis, new_figure, players, plot_code_grid, plot_error_vs_levels,
                     probs_entropy_bits, to_numpy, unanswered, verdict)

__all__ = [
    "audio", "check_bitrate", "check_keep_one_level", "check_num_frames", "check_rvq_codes",
    "check_rvq_encoder", "code_entropy", "level_mixer", "players", "plot_code_grid",
    "plot_codebook_usage", "plot_codec_comparison", "plot_error_vs_levels",
    "plot_level_spectrograms", "plot_rvq_2d", "plot_semantic_vs_acoustic",
    "plot_waveform_frames", "rvq_encode_reference", "rvq_toy_problem", "solution",
]

SOLUTIONS = Solutions()
solution = SOLUTIONS.show


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
    ax.set_title(f"{x.shape[0]:,} samples at {sample_rate} Hz = "
                 f"{math.ceil(x.shape[0] * frame_rate / sample_rate)} frames of "
                 f"{1000 / frame_rate:g} ms", fontsize=10, pad=14)
    return fig


def check_num_frames(answer, seconds: float = 3.0) -> bool:
    """How many Mimi frames a clip of `seconds` gives: ceil(seconds * 24000 / 1920)."""
    if unanswered(answer):
        return False
    value = as_number("num_frames", answer)
    samples = round(seconds * SAMPLE_RATE)
    right = math.ceil(samples / SAMPLES_PER_FRAME)
    if value == right:
        return verdict(True, f"{samples} samples / {SAMPLES_PER_FRAME} per frame = "
                       f"{samples / SAMPLES_PER_FRAME:g}, rounded up to {right}: Mimi "
                       "pads the last partial frame with silence.", "")
    if value == math.floor(samples / SAMPLES_PER_FRAME):
        hint = "close: a partial last frame still becomes a whole frame (round up)."
    elif value == samples / SAMPLES_PER_FRAME:
        hint = "frames come in whole numbers; what happens to the partial last one?"
    else:
        hint = (f"one frame is {SAMPLES_PER_FRAME} samples "
                f"({FRAME_MS:g} ms) at {SAMPLE_RATE} Hz.")
    return verdict(False, "", f"{value:g} frames: {hint}")


SOLUTIONS["num_frames"] = (
    "3 s x 24000 Hz = 72000 samples; 72000 / 1920 = 37.5 frames; Mimi right-pads the last\n"
    "partial frame, so F = ceil(37.5) = 38 (and decode returns 38 x 1920 = 72960 samples).")


# ------------------------------------------------------------------- residual VQ in 2-D (5)

# One colour per RVQ level in plot_rvq_2d (a fifth level reuses the first).
_LEVEL_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]


def rvq_toy_problem() -> dict:
    """A 2-D vector and two 4-entry codebooks for doing RVQ by hand."""
    return {
        "x": np.array([2.3, 0.9]),
        "codebooks": [np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]),
                      np.array([[0.5, 0.0], [0.0, 0.5], [-0.5, 0.0], [0.0, -0.5]])],
    }


def rvq_encode_reference(x, codebooks) -> list[int]:
    """Residual VQ: at each level take the nearest centroid to what is left, subtract it."""
    residual, codes = np.asarray(x, dtype=float), []
    for book in codebooks:
        book = np.asarray(book, dtype=float)
        codes.append(int(np.argmin(((book - residual) ** 2).sum(axis=1))))
        residual = residual - book[codes[-1]]
    return codes


def plot_rvq_2d(x, codebooks, codes=None) -> Figure:
    """Residual VQ on a 2-D toy: level 0 picks the centroid nearest x, level 1 the centroid
    nearest what is left (the residual), and so on. The arrows add up to the approximation.
    Without `codes`, the levels choose as RVQ does (rvq_encode_reference)."""
    x = to_numpy(x).astype(float)
    books = [to_numpy(b).astype(float) for b in codebooks]
    if codes is None:
        codes = rvq_encode_reference(x, books)
    fig, axes = new_figure(1, len(books), width=4 * len(books), height=4)
    approx = np.zeros_like(x)
    for level, (ax, book, code) in enumerate(zip(axes[0], books, codes)):
        target = x - approx                             # what this level must explain
        ax.scatter(*book.T, s=30, color=_LEVEL_COLOURS[level % len(_LEVEL_COLOURS)],
                   label=f"codebook {level}")
        for i, c in enumerate(book):
            ax.annotate(str(i), c, textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.scatter(*target, marker="x", s=80, color="k", label="residual" if level else "x")
        ax.plot(*zip(target, book[code]), "k:", lw=1)     # the error this level leaves
        ax.set_title(f"level {level}: nearest = {code}, left over "
                     f"{np.linalg.norm(target - book[code]):.2f}", fontsize=10)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.85", lw=0.8)
        ax.axvline(0, color="0.85", lw=0.8)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
        approx = approx + book[code]
    return fig


def _code_list(name: str, answer) -> list[int]:
    try:
        codes = [int(c) for c in np.asarray(answer).reshape(-1)]
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a list of integer codes like [1, 0], got "
                        f"{type(answer).__name__} {answer!r}") from None
    return codes


def check_rvq_codes(answer) -> bool:
    """The two RVQ codes of rvq_toy_problem()'s x, e.g. [i0, i1]."""
    if unanswered(answer):
        return False
    codes = _code_list("codes", answer)
    toy = rvq_toy_problem()
    right = rvq_encode_reference(toy["x"], toy["codebooks"])
    if codes == right:
        approx = sum(b[c] for b, c in zip(toy["codebooks"], right))
        return verdict(True, f"codes {right}: x = {toy['x'].tolist()} is approximated by "
                       f"{approx.tolist()}; level 1 refined what level 0 left over.", "")
    naive = [int(np.argmin(((np.asarray(b) - toy["x"]) ** 2).sum(axis=1)))
             for b in toy["codebooks"]]
    if len(codes) != len(right):
        hint = f"give one code per codebook ({len(right)} in all)."
    elif codes[0] != right[0]:
        hint = "level 0: which centroid of codebook 0 is closest to x?"
    elif codes == naive:
        hint = "level 1 must quantise the residual x - codebook0[i0], not x itself."
    else:
        hint = "level 1: compute the residual x - codebook0[i0], then its nearest centroid."
    return verdict(False, "", f"{codes}: {hint}")


SOLUTIONS["rvq_codes"] = (
    "x = (2.3, 0.9). Level 0: distances to (0,0), (2,0), (0,2), (2,2) -> nearest is (2,0),\n"
    "code 1. Residual = (0.3, 0.9). Level 1: nearest of (0.5,0), (0,0.5), (-0.5,0), (0,-0.5)\n"
    "is (0,0.5), code 1. Codes [1, 1]; approximation (2.0, 0.5), error (0.3, 0.4).")


_ENCODER_TRIALS = 5                    # random problems, of 2, 3, ... dimensions
_ENCODER_BOOK_SIZE = 8                 # centroids per codebook
_ENCODER_LEVELS = 3


def check_rvq_encoder(fn) -> bool:
    """Your `rvq_encode(x, codebooks) -> list of codes`, tried on random problems."""
    if unanswered(fn):
        return False
    if not callable(fn):
        raise TypeError(f"rvq_encode: expected a function, got {type(fn).__name__}")
    rng = np.random.default_rng(0)
    levels = _ENCODER_LEVELS
    for trial in range(_ENCODER_TRIALS):
        dim = 2 + trial
        # each level's centroids half the scale of the last: what is left shrinks level by level
        books = [rng.normal(size=(_ENCODER_BOOK_SIZE, dim)) * 0.5 ** level
                 for level in range(levels)]
        x = rng.normal(size=dim)
        right = rvq_encode_reference(x, books)
        try:   # the student's code may fail or return junk: report it, never crash the cell
            result = fn(x, books)
            if result is None:
                return verdict(False, "", "your function returned None; return the list of "
                               "codes, one per codebook.")
            got = _code_list("rvq_encode(...)", result)
        except Exception as err:
            return verdict(False, "", f"your function raised {type(err).__name__}: {err}")
        if got != right:
            return verdict(False, "", f"on a {dim}-D problem with {levels} levels you gave "
                           f"{got}, RVQ gives {right}. Subtract each chosen centroid "
                           "before the next level.")
    return verdict(True, f"your encoder matches RVQ on {_ENCODER_TRIALS} random problems.", "")


SOLUTIONS["rvq_encoder"] = (
    "def rvq_encode(x, codebooks):\n"
    "    residual, codes = np.asarray(x, float), []\n"
    "    for book in codebooks:\n"
    "        i = int(np.argmin(((book - residual) ** 2).sum(axis=1)))\n"
    "        codes.append(i)\n"
    "        residual = residual - book[i]\n"
    "    return codes")


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
    for (name, (levels, mel_db, kbps)), colour in zip(curves.items(),
                                                       ["tab:red", "tab:blue", "tab:green"]):
        levels = np.asarray(levels)
        by_level.plot(levels, mel_db, "o-", color=colour, label=name)
        by_rate.plot(levels * kbps, mel_db, "o-", color=colour, label=name)
    levels_xaxis(by_level, levels)
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


# ------------------------------------------------------------------- semantic vs acoustic (8)

def plot_semantic_vs_acoustic(semantic_only, acoustic_only, full,
                              sample_rate: int = SAMPLE_RATE) -> Figure:
    """Decodes from codebook 0 alone, from codebooks 1..31 alone, and from all of them."""
    panels = {"codebook 0 only (semantic)": semantic_only,
              "codebooks 1-31 only (acoustic)": acoustic_only,
              "all codebooks": full}
    fig, axes = new_figure(1, 3, width=13, height=3.2, sharey=True)
    draw_spectrograms(fig, axes, panels, sample_rate)
    return fig


def check_keep_one_level(answer) -> bool:
    """If you could keep one codebook to preserve *what* is said, which index?"""
    if unanswered(answer):
        return False
    value = as_number("level", answer)
    if value == 0:
        return verdict(True, "codebook 0 is the semantic level: Mimi distils a speech model "
                       "(WavLM) into it, so it follows the words; levels 1-31 add voice, "
                       "timbre and detail. CSM's backbone predicts codebook 0 first for "
                       "this reason.", "")
    hint = ("RVQ levels refine coarse to fine, and Mimi trains one level to carry the "
            "content: which one is it?")
    return verdict(False, "", f"codebook {value:g}: {hint}")


SOLUTIONS["keep_one_level"] = (
    "Codebook 0. Mimi's quantizer is split: one semantic codebook trained to match WavLM\n"
    "features (the words), and 31 acoustic codebooks for everything else (voice, room,\n"
    "detail). Decoding codebook 0 alone keeps the rhythm and content, not the voice.")


# ------------------------------------------------------------------- bitrate arithmetic (9)

def check_bitrate(answer, num_codebooks: int = CSM_1B.num_codebooks) -> bool:
    """Mimi's bitrate in bits per second with `num_codebooks` levels (4400 for 32)."""
    if unanswered(answer):
        return False
    value = as_number("bitrate", answer)
    right = FRAME_RATE * num_codebooks * CODE_BITS
    if math.isclose(value, right, rel_tol=1e-3):
        return verdict(True, f"{FRAME_RATE} frames/s x {num_codebooks} codes x {CODE_BITS} "
                       f"bits = {right:g} bit/s ({right / 1000:g} kbps).", "")
    if math.isclose(value * 1000, right, rel_tol=1e-3):
        hint = "that is the right number in kbps; the question asks bits per second."
    elif math.isclose(value, FRAME_RATE * num_codebooks * MIMI_CODEBOOK_SIZE, rel_tol=1e-3):
        hint = (f"a code is one of {MIMI_CODEBOOK_SIZE} values, which takes "
                f"log2({MIMI_CODEBOOK_SIZE}) = {CODE_BITS} bits.")
    elif math.isclose(value, FRAME_RATE * num_codebooks, rel_tol=1e-3):
        hint = "that counts codes per second; how many bits does each code take?"
    else:
        hint = "multiply frames per second, codebooks per frame and bits per code."
    return verdict(False, "", f"{value:g} bit/s: {hint}")


SOLUTIONS["bitrate"] = (
    "12.5 frames per second x 32 codes per frame x log2(2048) = 11 bits per code\n"
    "= 4400 bit/s = 4.4 kbps (1.1 kbps with 8 codebooks). 16-bit PCM at 24 kHz is 384 kbps:\n"
    "Mimi is ~87 times smaller.")
