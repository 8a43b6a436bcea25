"""What several notebooks share: figure helpers, audio players, and the checkers' machinery.

Figures are built with `matplotlib.figure.Figure` (no pyplot state): they render headless
(Agg), never pop up windows, never display twice, and a notebook shows one by ending a cell
with it. Time axes are in seconds, code axes in codebook index (0 = the semantic level).

Widgets follow one headless rule: every function renders its first state at once and
returns; nothing waits for a click. Under nbmake (or any non-interactive run) the cell simply
finishes with that state; in a live notebook the sliders re-render on change. They import
ipywidgets and IPython where they build the widget, so figures and checkers never need them.

Checkers (`check_xxx(answer)` in each lesson) print a friendly verdict and return True or
False. A wrong answer never raises; a placeholder (`None` or `...`) just says "not answered
yet", so notebooks run top to bottom with the blanks unfilled. Only an answer of the wrong
kind (a string where a number is asked, ...) raises TypeError. Each lesson keeps its worked
answers in a `Solutions`: `hint(name)` prints a hint, `solution(name)` the worked answer, and
`answer_cell(name)` is the code of a right answer cell.

Solutions are checked, not just written: a notebook's answer cells carry the metadata
`{"exercise": "<lesson>.<name>"}`, `fill_answers` replaces each with its lesson's answer cell,
and with $CSM_NB_STRICT_CHECKS on, a checker that does not accept its answer raises. `make test`
runs every notebook that way (`python -m csm_nb.apps.runner --solutions`), so every checker is
proven to accept a right answer.
"""

from __future__ import annotations

import html
import io
import math
from numbers import Real

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .. import env
from ..core.config import FRAME_RATE, MIMI_CODEBOOK_SIZE, SAMPLE_RATE, CSMConfig

CSM_1B = CSMConfig.csm_1b()                       # the official sizes the exercises ask about
CODE_BITS = int(math.log2(MIMI_CODEBOOK_SIZE))    # 11 bits per Mimi code

_SPEC_HOP_S = 0.01                      # 10 ms spectrogram hops
_SPEC_FLOOR_DB = 80.0                   # dynamic range shown under the loudest bin
_PNG_DPI = 100                          # notebook rendering: sharp enough, small outputs


# ------------------------------------------------------------------- figures

def to_numpy(x) -> np.ndarray:
    """Tensor (any device, any dtype) or array -> numpy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        return x.numpy()
    return np.asarray(x)


class NotebookFigure(Figure):
    """A plain matplotlib Figure that also knows how to show itself in Jupyter.

    A bare `Figure` (no pyplot) only displays where matplotlib's inline backend has been
    activated, i.e. after someone imported pyplot. `_repr_png_` makes a cell ending with the
    figure show it everywhere (Jupyter, Colab, VS Code), exactly once.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=_PNG_DPI, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 9.0, height: float = 3.0,
               **kwargs) -> tuple[Figure, np.ndarray]:
    """A NotebookFigure with a [nrows, ncols] grid of axes (always 2-D)."""
    fig = NotebookFigure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def probs_entropy_bits(p: np.ndarray) -> float:
    """Entropy in bits of a probability vector (zero entries contribute nothing)."""
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def levels_xaxis(ax, levels) -> None:
    """A log2 x axis ticked at exactly the numbers of levels decoded (1, 2, 4, ...)."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(n) for n in levels])
    ax.xaxis.set_minor_locator(NullLocator())


def spectrogram_db(wav, sample_rate: int = SAMPLE_RATE, max_hz: float | None = None):
    """Magnitude STFT in dB: (S [freq, frames], freqs in Hz, times in s). 10 ms hops."""
    x = torch.as_tensor(to_numpy(wav), dtype=torch.float32).reshape(-1)
    hop = round(_SPEC_HOP_S * sample_rate)
    n_fft = 4 * hop
    if x.numel() < n_fft:                          # too short for one window: pad
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    db = 20 * torch.log10(spec.abs().clamp(min=1e-8))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    if max_hz is not None:
        keep = freqs <= max_hz
        db, freqs = db[keep], freqs[keep]
    times = np.arange(db.shape[1]) * hop / sample_rate
    return db.numpy(), freqs, times


def show_spectrogram(ax, spectrogram, title: str, top_db: float | None = None):
    """Draw one spectrogram_db result into `ax`; returns the image (for a colour bar)."""
    db, freqs, times = spectrogram
    top = db.max() if top_db is None else top_db
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                      vmin=top - _SPEC_FLOOR_DB, vmax=top,
                      extent=[0, times[-1] + _SPEC_HOP_S, 0, freqs[-1] / 1000])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    return image


def draw_spectrograms(fig: Figure, axes: np.ndarray, clips: dict,
                      sample_rate: int = SAMPLE_RATE) -> None:
    """Spectrograms of {title: wav}, one per axis, on one colour scale (so loudness compares
    across panels) with one dB colour bar; axes left over are hidden."""
    specs = [spectrogram_db(wav, sample_rate) for wav in clips.values()]
    top = max(spec[0].max() for spec in specs)
    for ax, title, spec in zip(axes.flat, clips, specs):
        image = show_spectrogram(ax, spec, title, top_db=top)
    for ax in list(axes.flat)[len(clips):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, label="dB", shrink=0.8)


def plot_spectrograms(clips: dict, sample_rate: int = SAMPLE_RATE) -> Figure:
    """Spectrograms side by side on one colour scale, {title: wav}, e.g. with/without context."""
    fig, axes = new_figure(1, len(clips), width=4.5 * len(clips), height=3.0, sharey=True)
    draw_spectrograms(fig, axes, clips, sample_rate)
    return fig


def plot_code_grid(codes, frame_rate: float = FRAME_RATE, num_semantic: int = 1,
                   codebook_size: int = MIMI_CODEBOOK_SIZE, title: str | None = None) -> Figure:
    """The K x F code grid: one column per 80 ms frame, one row per codebook level."""
    c = to_numpy(codes)                               # [K, F]
    num_levels, num_frames = c.shape
    fig, axes = new_figure(width=9, height=3.6)
    ax = axes[0, 0]
    image = ax.imshow(c, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0,
                      vmax=codebook_size - 1,
                      extent=[0, num_frames / frame_rate, num_levels - 0.5, -0.5])
    ax.axhline(num_semantic - 0.5, color="white", lw=1.5)  # semantic | acoustic boundary
    ax.set_xlabel("time (s)")
    ax.set_ylabel("codebook index")
    ax.set_title(title or f"{num_levels} codebooks x {num_frames} frames; row 0 = semantic, "
                 "below the white line = acoustic", fontsize=10)
    fig.colorbar(image, ax=ax, label=f"code id (0..{codebook_size - 1})")
    return fig


def plot_error_vs_levels(levels, mel_db, si_sdr_db=None, frame_rate: float = FRAME_RATE,
                         codebook_size: int = MIMI_CODEBOOK_SIZE) -> Figure:
    """Reconstruction error against the number of levels decoded (and the bitrate it costs)."""
    levels = np.asarray(levels)
    fig, axes = new_figure(1, 1 if si_sdr_db is None else 2, width=10, height=3.2)
    ax = axes[0, 0]
    ax.plot(levels, mel_db, "o-", color="tab:red")
    ax.set_ylabel("mel distance (dB, lower = closer)")
    ax.set_title("spectral error vs levels", fontsize=10)
    if si_sdr_db is not None:
        axes[0, 1].plot(levels, si_sdr_db, "o-", color="tab:green")
        axes[0, 1].set_ylabel("SI-SDR (dB, higher = closer)")
        axes[0, 1].set_title("waveform fidelity vs levels", fontsize=10)
    kbps = frame_rate * math.log2(codebook_size) / 1000          # bitrate of one level
    for ax in axes[0]:
        levels_xaxis(ax, levels)
        ax.set_xlabel("levels decoded (codebook 0 .. n-1)")
        top = ax.secondary_xaxis("top", functions=(lambda n: n * kbps, lambda k: k / kbps))
        top.set_xticks(levels * kbps, [f"{n * kbps:.2g}" for n in levels])
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xlabel("bitrate (kbps)")
        ax.grid(alpha=0.3)
    return fig


# ------------------------------------------------------------------- players
# Plain HTML players (no widget state) also show in static renderings of a notebook.

def mono_samples(wav) -> np.ndarray:
    """Any 1-D / [1, T] / [2, T] audio (tensor on any device, array) -> float32 numpy [T]."""
    x = to_numpy(wav).astype(np.float32)
    if x.ndim == 2 and x.shape[0] <= 2:
        x = x.mean(axis=0)
    return x.reshape(-1)


def audio(wav, sample_rate: int = SAMPLE_RATE, normalize: bool = False):
    """An inline player. normalize=False plays at true loudness, so quiet stays quiet and
    players side by side compare fairly (IPython's default rescales every clip to full scale).
    """
    from IPython.display import Audio
    x = mono_samples(wav)
    if not normalize and x.size and np.abs(x).max() > 1:
        print(f"note: audio peaks at {np.abs(x).max():.2f}; clipped to [-1, 1] for playback")
        x = np.clip(x, -1, 1)
    if x.size == 0:
        x = np.zeros(1, dtype=np.float32)       # IPython cannot encode an empty clip
    return Audio(x, rate=int(sample_rate), normalize=normalize)


def players(clips: dict, sample_rate: int = SAMPLE_RATE, notes: dict | None = None,
            normalize: bool = False):
    """A table of labelled players {label: wav}, one per row, with an optional note each."""
    from IPython.display import HTML
    notes = notes or {}
    rows = []
    for label, wav in clips.items():
        player = audio(wav, sample_rate, normalize)._repr_html_()
        note = html.escape(str(notes.get(label, "")))
        rows.append(f"<tr><td style='text-align:left'><b>{html.escape(str(label))}</b></td>"
                    f"<td>{player}</td><td style='text-align:left'>{note}</td></tr>")
    return HTML("<table>" + "".join(rows) + "</table>")


# ------------------------------------------------------------------- checkers

class AnswerRejected(AssertionError):
    """A checker did not accept its answer while $CSM_NB_STRICT_CHECKS was on."""


def _strict() -> bool:
    return env.flag(env.STRICT_CHECKS, False)


def verdict(ok: bool, good: str, bad: str) -> bool:
    """Print the verdict of a checker and return `ok` (raise if not, under strict checks)."""
    print(("Correct! " + good) if ok else ("Not yet. " + bad))
    if not ok and _strict():
        raise AnswerRejected(f"the checker rejected the answer: {bad}")
    return ok


def stuck(name: str) -> str:
    """What every "Not yet" ends with: the hint first, the worked answer only after."""
    return f" Stuck? lesson.hint({name!r}) gives a nudge; lesson.solution({name!r}) the answer."


def wrong(name: str, bad: str) -> bool:
    """verdict(False, ...) for exercise `name`, ending with the pointer to its hint."""
    return verdict(False, "", bad + stuck(name))


def unanswered(answer, fix: str = "replace the None (or ...) with your answer and run the "
               "cell") -> bool:
    """True (after saying so, with `fix`) while the answer is still the placeholder None or
    `...`. A checker then returns None: no verdict yet, so Jupyter prints nothing under the
    message (True = right and False = wrong are for answers)."""
    if answer is None or answer is Ellipsis:
        print(f"Not answered yet: {fix}.")
        if _strict():
            raise AnswerRejected("an answer cell was left unanswered")
        return True
    return False


def as_number(name: str, answer) -> float:
    """A numeric answer (int, float, numpy scalar, 1-element array or tensor) as a float."""
    if isinstance(answer, bool) or not isinstance(answer, (Real, np.number)):
        if isinstance(answer, np.ndarray) and answer.size == 1:
            return float(answer)
        try:                                  # a 0-d / 1-element torch tensor
            return float(answer.item())
        except (AttributeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected a number, got {type(answer).__name__} "
                            f"{answer!r}") from None
    return float(answer)


class Solutions(dict):
    """One lesson's worked answers, {exercise name: text}, with optional hints and answer
    cells. A lesson built from parts merges theirs: `Solutions(part_a.SOLUTIONS, ...)`."""

    def __init__(self, *parts: dict):
        super().__init__()
        self.hints: dict[str, str] = {}
        self.answers: dict[str, str] = {}      # exercise -> code of a right answer cell
        for part in parts:
            if self.keys() & part.keys():
                raise ValueError(f"exercise named twice: {sorted(self.keys() & part.keys())}")
            self.update(part)
            self.hints.update(getattr(part, "hints", {}))
            self.answers.update(getattr(part, "answers", {}))

    def _known(self, name: str, table: dict) -> str:
        if name not in table:
            raise ValueError(f"no exercise named {name!r}; known: {', '.join(sorted(table))}")
        return table[name]

    def show(self, name: str) -> None:
        """Print the worked solution of an exercise, e.g. solution("bitrate")."""
        print(self._known(name, self))

    def hint(self, name: str) -> None:
        """Print a hint (a nudge, not the answer), e.g. hint("rvq_encoder")."""
        print(self._known(name, self.hints))

    def answer_cell(self, name: str) -> str:
        """The code of a right answer cell for `name` (what fill_answers puts in)."""
        return self._known(name, self.answers)


def fill_answers(notebook: dict, lessons: dict) -> int:
    """Replace every answer cell of `notebook` (nbformat JSON as a dict) with its right answer.

    lessons: {lesson name: its Solutions}. An answer cell has metadata
    {"exercise": "<lesson>.<name>"}; returns how many were filled."""
    filled = 0
    for cell in notebook["cells"]:
        key = cell.get("metadata", {}).get("exercise")
        if key is None:
            continue
        lesson, _, name = key.partition(".")
        if lesson not in lessons:
            raise ValueError(f"answer cell {key!r}: no lesson named {lesson!r}")
        cell["source"] = lessons[lesson].answer_cell(name)
        filled += 1
    return filled
