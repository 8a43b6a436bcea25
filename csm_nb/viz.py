"""Figures for the notebooks. Every function returns a matplotlib `Figure`.

Figures are built with `matplotlib.figure.Figure` (no pyplot state): they render headless
(Agg), never pop up windows, never display twice, and a notebook shows one by ending a cell
with it. Time axes are in seconds, code axes in codebook index (0 = the semantic level).

Sections: shared helpers; 01 codec (waveform frames, code grid, codebook usage, spectrograms
per number of levels, error vs levels, semantic vs acoustic, RVQ in 2-D). Later notebooks
append their own sections below.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .config import CSMConfig

_CFG = CSMConfig.csm_1b()
SAMPLE_RATE = _CFG.sample_rate          # 24000
FRAME_RATE = _CFG.frame_rate            # 12.5 Hz
CODEBOOK_SIZE = 2048                    # Mimi's bins
_SPEC_HOP_S = 0.01                      # 10 ms spectrogram hops
_SPEC_FLOOR_DB = 80.0                   # dynamic range shown under the loudest bin
_PNG_DPI = 100                          # notebook rendering: sharp enough, small outputs


# ----------------------------------------------------------------- shared helpers

def _np(x) -> np.ndarray:
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


def _figure(nrows: int = 1, ncols: int = 1, width: float = 9.0, height: float = 3.0,
            **kwargs) -> tuple[Figure, np.ndarray]:
    fig = NotebookFigure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def spectrogram_db(wav, sample_rate: int = SAMPLE_RATE, max_hz: float | None = None):
    """Magnitude STFT in dB: (S [freq, frames], freqs in Hz, times in s). 10 ms hops."""
    x = torch.as_tensor(_np(wav), dtype=torch.float32).reshape(-1)
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


def _show_spectrogram(ax, spectrogram, title: str, top_db: float | None = None):
    db, freqs, times = spectrogram                  # from spectrogram_db
    top = db.max() if top_db is None else top_db
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                      vmin=top - _SPEC_FLOOR_DB, vmax=top,
                      extent=[0, times[-1] + _SPEC_HOP_S, 0, freqs[-1] / 1000])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    return image


# ------------------------------------------------------------------- 01 codec

def plot_waveform_frames(wav, sample_rate: int = SAMPLE_RATE, frame_rate: float = FRAME_RATE,
                         seconds: float | None = 1.0) -> Figure:
    """The waveform cut into Mimi frames: each 80 ms slice becomes one column of codes."""
    x = _np(wav).reshape(-1)
    if seconds is not None:
        x = x[:round(seconds * sample_rate)]
    t = np.arange(x.shape[0]) / sample_rate
    fig, axes = _figure(width=9, height=2.6)
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


def plot_code_grid(codes, frame_rate: float = FRAME_RATE, num_semantic: int = 1,
                   codebook_size: int = CODEBOOK_SIZE, title: str | None = None) -> Figure:
    """The K x F code grid: one column per 80 ms frame, one row per codebook level."""
    c = _np(codes)                                          # [K, F]
    num_levels, num_frames = c.shape
    fig, axes = _figure(width=9, height=3.6)
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


def code_entropy(codes, codebook_size: int = CODEBOOK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Per level: (number of distinct codes used [K], entropy of their histogram in bits [K])."""
    c = _np(codes)                                          # [K, F]
    distinct = np.array([np.unique(row).size for row in c])
    entropy = np.zeros(c.shape[0])
    for k, row in enumerate(c):
        p = np.bincount(row, minlength=codebook_size) / row.size
        p = p[p > 0]
        entropy[k] = float(-(p * np.log2(p)).sum())
    return distinct, entropy


def plot_codebook_usage(codes, codebook_size: int = CODEBOOK_SIZE) -> Figure:
    """How many of the 2048 entries each level uses, and the entropy of its codes."""
    distinct, entropy = code_entropy(codes, codebook_size)
    levels = np.arange(len(distinct))
    num_frames = _np(codes).shape[1]
    fig, axes = _figure(1, 2, width=10, height=3.2)
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


def plot_level_spectrograms(reconstructions: dict, sample_rate: int = SAMPLE_RATE,
                            original=None, ncols: int = 3) -> Figure:
    """Spectrograms of decodes from the first n levels, {n: wav}, e.g. n = 1, 2, 4, ... 32."""
    panels = ([("original", original)] if original is not None else []) + [
        (f"first {n} level{'s' if n > 1 else ''}", wav)
        for n, wav in sorted(reconstructions.items())]
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _figure(nrows, ncols, width=4 * ncols, height=2.6 * nrows,
                        sharex=True, sharey=True)
    specs = [spectrogram_db(wav, sample_rate) for _, wav in panels]
    top = max(spec[0].max() for spec in specs)      # one colour scale for all panels
    for ax, (title, _), spec in zip(axes.flat, panels, specs):
        image = _show_spectrogram(ax, spec, title, top_db=top)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, label="dB", shrink=0.8)
    return fig


def plot_error_vs_levels(levels, mel_db, si_sdr_db=None, frame_rate: float = FRAME_RATE,
                         codebook_size: int = CODEBOOK_SIZE) -> Figure:
    """Reconstruction error against the number of levels decoded (and the bitrate it costs)."""
    levels = np.asarray(levels)
    fig, axes = _figure(1, 1 if si_sdr_db is None else 2, width=10, height=3.2)
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
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(n) for n in levels])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("levels decoded (codebook 0 .. n-1)")
        top = ax.secondary_xaxis("top", functions=(lambda n: n * kbps, lambda k: k / kbps))
        top.set_xticks(levels * kbps, [f"{n * kbps:.2g}" for n in levels])
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xlabel("bitrate (kbps)")
        ax.grid(alpha=0.3)
    return fig


def plot_semantic_vs_acoustic(semantic_only, acoustic_only, full,
                              sample_rate: int = SAMPLE_RATE) -> Figure:
    """Decodes from codebook 0 alone, from codebooks 1..31 alone, and from all of them."""
    panels = [("codebook 0 only (semantic)", semantic_only),
              ("codebooks 1-31 only (acoustic)", acoustic_only),
              ("all codebooks", full)]
    fig, axes = _figure(1, 3, width=13, height=3.2, sharey=True)
    specs = [spectrogram_db(wav, sample_rate) for _, wav in panels]
    top = max(spec[0].max() for spec in specs)
    for ax, (title, _), spec in zip(axes[0], panels, specs):
        image = _show_spectrogram(ax, spec, title, top_db=top)
    fig.colorbar(image, ax=axes, label="dB", shrink=0.8)
    return fig


def plot_rvq_2d(x, codebooks, codes=None) -> Figure:
    """Residual VQ on a 2-D toy: level 0 picks the centroid nearest x, level 1 the centroid
    nearest what is left (the residual), and so on. The arrows add up to the approximation."""
    x = _np(x).astype(float)
    books = [_np(b).astype(float) for b in codebooks]
    if codes is None:                                   # plain RVQ: nearest, then subtract
        codes, residual = [], x.copy()
        for book in books:
            codes.append(int(np.argmin(((book - residual) ** 2).sum(axis=1))))
            residual = residual - book[codes[-1]]
    fig, axes = _figure(1, len(books), width=4 * len(books), height=4)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    approx = np.zeros_like(x)
    for level, (ax, book, code) in enumerate(zip(axes[0], books, codes)):
        target = x - approx                             # what this level must explain
        ax.scatter(*book.T, s=30, color=colours[level % 4], label=f"codebook {level}")
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


# ------------------------------------------------------------------- 03 conversation

_SPEAKER_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                    "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


def speaker_colour(speaker: int) -> str:
    return _SPEAKER_COLOURS[speaker % len(_SPEAKER_COLOURS)]


def plot_conversation_timeline(segments, sample_rate: int = SAMPLE_RATE,
                               title: str | None = None) -> Figure:
    """Turns one after another on a time axis, one lane per speaker, waveform inside.

    segments: csm_nb Segments (or anything with .speaker, .text, .audio, .label); turns
    without audio are skipped. Played back to back, this is the conversation you hear.
    """
    turns = [s for s in segments if s.audio is not None]
    speakers = sorted({s.speaker for s in turns})
    lane = {spk: i for i, spk in enumerate(speakers)}
    fig, axes = _figure(width=10, height=1.0 + 0.9 * max(len(speakers), 1))
    ax, start = axes[0, 0], 0.0
    for seg in turns:
        x = _np(seg.audio).reshape(-1)
        rate = getattr(seg, "sample_rate", None) or sample_rate
        t = start + np.arange(x.size) / rate
        y = lane[seg.speaker]
        peak = max(np.abs(x).max(), 1e-9)
        colour = speaker_colour(seg.speaker)
        ax.axvspan(start, t[-1], ymin=(y + 0.05) / len(speakers),
                   ymax=(y + 0.95) / len(speakers), color=colour, alpha=0.12, lw=0)
        ax.plot(t, y + 0.4 * x / peak, color=colour, lw=0.5)
        name = seg.label or seg.text
        ax.text(start, y + 0.46, name if len(name) <= 28 else name[:26] + "...",
                fontsize=7, va="top", color="0.2")
        start = t[-1] + 1 / rate
    ax.set_yticks(range(len(speakers)), [f"speaker {s}" for s in speakers])
    ax.set_ylim(-0.5, len(speakers) - 0.5)
    ax.set_xlim(0, max(start, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_title(title or f"{len(turns)} turns, {start:.2f} s", fontsize=10)
    return fig


def plot_spectrograms(clips: dict, sample_rate: int = SAMPLE_RATE) -> Figure:
    """Spectrograms side by side on one colour scale, {title: wav}, e.g. with/without context."""
    fig, axes = _figure(1, len(clips), width=4.5 * len(clips), height=3.0, sharey=True)
    specs = {name: spectrogram_db(wav, sample_rate) for name, wav in clips.items()}
    top = max(spec[0].max() for spec in specs.values())
    for ax, (name, spec) in zip(axes[0], specs.items()):
        image = _show_spectrogram(ax, spec, name, top_db=top)
    fig.colorbar(image, ax=axes, label="dB", shrink=0.8)
    return fig


def plot_context_budget(budgets) -> Figure:
    """Where the backbone's rows go: one bar per scenario ({name: ContextBudget}, or one).

    Bars stack the context segments (text + audio + end row each), the new line's text rows
    and the frames it may generate; the dashed line is the window (2048 rows). Segments that
    would be dropped to fit are hatched.
    """
    if not isinstance(budgets, dict):
        budgets = {"": budgets}
    names = list(budgets)
    fig, axes = _figure(width=10, height=0.9 + 0.6 * len(names))
    ax = axes[0, 0]
    for row, name in enumerate(names):
        b = budgets[name]
        keep = b.first_kept if not b.fits else 0
        keep = len(b.segment_rows) if keep is None else keep
        left = 0
        for i, rows in enumerate(b.segment_rows):
            dropped = i < keep
            ax.barh(row, rows, left=left, color="0.55" if i % 2 else "0.7",
                    hatch="//" if dropped else None, edgecolor="tab:red" if dropped else "white")
            left += rows
        ax.barh(row, b.text_rows, left=left, color="tab:orange")
        ax.barh(row, b.max_frames, left=left + b.text_rows, color="tab:green", alpha=0.6)
        ax.text(b.total + 10, row, f"{b.total}", va="center", fontsize=8)
        window = b.max_seq_len
    ax.axvline(window, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"rows (the backbone sees at most {window})")
    from matplotlib.patches import Patch
    handles = [Patch(color="0.7"), Patch(color="tab:orange"),
               Patch(color="tab:green", alpha=0.6),
               Patch(facecolor="0.7", hatch="//", edgecolor="tab:red")]
    ax.legend(handles, ["context segments", "new line's text", "frames it may generate",
                        "dropped to fit"], fontsize=8, loc="lower center", ncols=4,
              bbox_to_anchor=(0.5, 1.0), frameon=False)
    return fig


def plot_stream_timing(arrivals, sample_rate: int = SAMPLE_RATE) -> Figure:
    """Audio ready vs wall-clock time while streaming: [(seconds since start, samples)].

    Playback can start at the first chunk (time to first audio) and never stalls while the
    ready curve stays above the playback line.
    """
    times = np.array([0.0] + [t for t, _ in arrivals])
    ready = np.cumsum([0] + [n for _, n in arrivals]) / sample_rate
    fig, axes = _figure(width=8, height=3.2)
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
    fig, axes = _figure(width=9, height=2.8)
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
