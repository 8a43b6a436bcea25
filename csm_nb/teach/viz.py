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

from ..core.config import FRAME_RATE, MIMI_CODEBOOK_SIZE, SAMPLE_RATE

CODEBOOK_SIZE = MIMI_CODEBOOK_SIZE
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


# ------------------------------------------------------------------- 02 backbone

_ROW_COLOURS = {"text": "tab:orange", "audio": "tab:blue", "end": "tab:red", "pad": "0.85"}


def row_kinds(tokens, mask) -> list[str]:
    """Name each [S, C] row: "text" (only the last column active), "audio" (codebook
    columns active), "end" (audio row of all zeros: the end-of-audio row or the stop frame),
    "pad" (nothing active)."""
    t, m = _np(tokens), _np(mask).astype(bool)
    kinds = []
    for ids, active in zip(t, m):
        if active[-1]:
            kinds.append("text")
        elif active[:-1].any():
            kinds.append("end" if not ids[:-1].any() else "audio")
        else:
            kinds.append("pad")
    return kinds


def _token_piece(tokenizer, token_id: int) -> str:
    piece = tokenizer.decode([token_id], skip_special_tokens=False) if tokenizer else ""
    return repr(piece)[1:-1].replace(" ", "\u2423")    # spaces and newlines made visible


def format_rows(tokens, mask, tokenizer=None, codebooks_shown: int = 4) -> str:
    """The rows as a text table: kind, active columns, the first codebook ids, the text id.

    A masked-out id prints as '.', so what the model adds up (sec. "embedding sum") is
    exactly the numbers shown.
    """
    t, m = _np(tokens), _np(mask).astype(bool)
    K = t.shape[1] - 1                                       # codebook columns
    kinds = row_kinds(t, m)
    shown = list(range(min(codebooks_shown, K)))
    head = (f"{'row':>4}  {'kind':5}  {'active':10}  "
            + " ".join(f"{'c' + str(k):>5}" for k in shown) + f"  ...  {'c' + str(K - 1):>5}"
            + f"  {'text (col ' + str(K) + ')':>16}")
    lines = [head, "-" * len(head)]
    for i, (ids, active, kind) in enumerate(zip(t, m, kinds)):
        cols = np.flatnonzero(active)
        span = "none" if cols.size == 0 else (f"{cols[0]}..{cols[-1]}" if cols.size > 1
                                              else str(cols[0]))
        cell = [f"{ids[k]:>5}" if active[k] else f"{'.':>5}" for k in shown + [K - 1]]
        text = f"{ids[K]} {_token_piece(tokenizer, int(ids[K]))}" if active[K] else "."
        lines.append(f"{i:>4}  {kind:5}  {span:10}  " + " ".join(cell[:-1])
                     + f"  ...  {cell[-1]}  {text:>16}")
    return "\n".join(lines)


def plot_rows(tokens, mask, tokenizer=None, title: str | None = None) -> Figure:
    """Heatmap of frame rows [S, C]: codebook ids coloured where active, masked cells grey,
    the text column marked with its token. One row = one backbone position."""
    t, m = _np(tokens), _np(mask).astype(bool)
    S, C = t.shape
    K = C - 1
    kinds = row_kinds(t, m)
    codes = np.where(m[:, :K], t[:, :K], np.nan).astype(float)   # masked -> nan (grey)
    fig, axes = _figure(1, 2, width=11, height=1.2 + 0.22 * S,
                        gridspec_kw={"width_ratios": [K, 6]}, sharey=True)
    ax, tax = axes[0]
    from matplotlib import colormaps
    cmap = colormaps["viridis"].with_extremes(bad="0.88")
    image = ax.imshow(codes, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0,
                      vmax=CODEBOOK_SIZE - 1)
    ax.set_xticks(range(0, K, 4))
    ax.set_xlabel(f"codebook column (0..{K - 1}); grey = masked out")
    ax.set_ylabel("row (= position)")
    ax.set_yticks(range(S), [f"{i} {k}" for i, k in enumerate(kinds)], fontsize=7)
    for i, kind in enumerate(kinds):
        ax.get_yticklabels()[i].set_color(_ROW_COLOURS[kind])
    fig.colorbar(image, ax=ax, label="code id", shrink=0.6, location="left")
    from matplotlib.colors import ListedColormap
    tax.imshow(m[:, K:].astype(float), aspect="auto", vmin=0, vmax=1,
               cmap=ListedColormap(["0.88", "#fdd49e"]))            # masked grey, active orange
    for i in np.flatnonzero(m[:, K]):
        piece = _token_piece(tokenizer, int(t[i, K])) if tokenizer else ""
        tax.text(0, i, f"{t[i, K]} {piece}", ha="center", va="center", fontsize=7)
    tax.set_xticks([0], [f"text column {K}"])
    fig.suptitle(title or f"{S} rows x {C} columns: "
                 + ", ".join(f"{kinds.count(k)} {k}" for k in _ROW_COLOURS if k in kinds),
                 fontsize=10)
    return fig


def plot_embedding_lookup(row, audio_vocab_size: int) -> Figure:
    """Which rows of the one shared audio table an audio row reads: code + k * V for
    codebook k. The 32 codebooks own 32 consecutive bands of V rows each."""
    ids = _np(row)[:-1].astype(np.int64)                     # the K codebook columns
    K, V = ids.size, audio_vocab_size
    fig, axes = _figure(width=10, height=2.2)
    ax = axes[0, 0]
    for k in range(K):
        ax.axvspan(k * V, (k + 1) * V, color="0.93" if k % 2 else "0.85", lw=0)
    lookups = ids + np.arange(K) * V
    ax.vlines(lookups, 0, 1, color="tab:blue", lw=1.2)
    for k, align in ((0, "left"), (K // 2, "center"), (K - 1, "right")):
        ax.annotate(f"codebook {k}: code {ids[k]} + {k} x {V}\n= row {lookups[k]}",
                    (lookups[k], 1), xytext=(0, 4), textcoords="offset points", ha=align,
                    fontsize=7)
    ax.set_xlim(0, K * V)
    ax.set_ylim(0, 1.6)
    ax.set_yticks([])
    ax.set_xlabel(f"row of audio_embeddings ({K} codebooks x {V} = {K * V} rows; "
                  "bands = codebooks)")
    return fig


def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) in bits over the last axis (stays on the device)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1) / math.log(2)


def _entropy_of_probs(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _sorted_probs(probs: np.ndarray, show: int):
    order = np.argsort(-probs, kind="stable")[:show]
    return order, probs[order]


def plot_distribution(logits, show: int = 30, title: str | None = None,
                      num_codes: int = CODEBOOK_SIZE) -> Figure:
    """One codebook's distribution: the `show` likeliest codes, and how many codes it takes
    to cover most of the probability. Bins from `num_codes` up (2048..2050) are not Mimi
    codes and are drawn in red."""
    x = torch.as_tensor(_np(logits)).float().reshape(-1)
    probs = torch.softmax(x, dim=0).numpy()
    V = probs.size
    order, top = _sorted_probs(probs, show)
    fig, axes = _figure(1, 2, width=11, height=3.0, gridspec_kw={"width_ratios": [2, 1]})
    ax, cax = axes[0]
    ax.bar(range(len(top)), top,
           color=["tab:red" if c >= num_codes else "tab:blue" for c in order])
    ax.set_xticks(range(len(top)), [str(c) for c in order], rotation=90, fontsize=7)
    ax.set_xlabel(f"code id (the {len(top)} likeliest of {V})")
    ax.set_ylabel("probability")
    ax.axhline(1 / V, color="0.5", ls=":", lw=1, label=f"uniform 1/{V}")
    ax.legend(fontsize=8)
    cumulative = np.cumsum(np.sort(probs)[::-1])
    cax.plot(np.arange(1, V + 1), cumulative, color="tab:green")
    for level in (0.5, 0.9):
        n = int(np.searchsorted(cumulative, level) + 1)
        cax.axhline(level, color="0.8", lw=0.8)
        cax.annotate(f"{level:.0%} in {n} codes", (n, level), fontsize=8,
                     xytext=(4, -10), textcoords="offset points")
    cax.set_xscale("log")
    cax.set_xlabel("number of likeliest codes")
    cax.set_ylabel("probability covered")
    H = float(entropy_bits(torch.as_tensor(x)))
    fig.suptitle(title or f"entropy {H:.2f} bits (max log2({V}) = {math.log2(V):.2f}); "
                 f"likeliest code {order[0]} with p = {top[0]:.3f}", fontsize=10)
    return fig


def plot_codebook_entropy(logits, title: str | None = None) -> Figure:
    """Uncertainty per codebook: entropy (bits) of each codebook's distribution, [K, V] for
    one frame or [F, K, V] for several (line = mean over frames, band = min..max)."""
    x = torch.as_tensor(_np(logits)).float()
    x = x[None] if x.dim() == 2 else x                       # [F, K, V]
    H = entropy_bits(x).numpy()                              # [F, K]
    F, K, V = x.shape
    levels = np.arange(K)
    fig, axes = _figure(width=9, height=3.0)
    ax = axes[0, 0]
    ax.fill_between(levels, H.min(0), H.max(0), color="tab:purple", alpha=0.2,
                    label=f"min..max over {F} frame(s)")
    ax.plot(levels, H.mean(0), "o-", color="tab:purple", ms=3, label="mean")
    ax.axhline(math.log2(V), color="0.5", ls="--", lw=1, label=f"uniform: log2({V})")
    ax.axvline(0.5, color="0.3", lw=0.8)
    ax.text(0.6, ax.get_ylim()[0], "depth decoder ->", fontsize=8, va="bottom")
    ax.set_xlabel("codebook (0 from the backbone, 1..31 from the depth decoder)")
    ax.set_ylabel("entropy (bits)")
    ax.set_title(title or "how unsure the model is about each codebook", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_sampling(logits, temperature: float, topk: int, show: int = 40) -> Figure:
    """The distribution before (softmax of the raw logits) and after temperature and top-k
    (what is actually sampled from), over the `show` likeliest codes."""
    from ..core.sampling import filtered_probs

    x = torch.as_tensor(_np(logits)).float().reshape(1, -1)
    before = torch.softmax(x, dim=-1)[0].numpy()
    after = filtered_probs(x, temperature, topk)[0].numpy()
    order, _ = _sorted_probs(before, show)
    fig, axes = _figure(width=10, height=3.0)
    ax = axes[0, 0]
    ranks = np.arange(len(order))
    ax.bar(ranks - 0.2, before[order], width=0.4, color="0.6", label="before: softmax(logits)")
    ax.bar(ranks + 0.2, after[order], width=0.4, color="tab:orange",
           label=f"after: temperature {temperature:g}, top-k {topk}")
    ax.set_xticks(ranks, [str(c) for c in order], rotation=90, fontsize=7)
    ax.set_xlabel(f"code id (the {len(order)} likeliest before filtering)")
    ax.set_ylabel("probability")
    kept = int((after > 0).sum())
    h0, h1 = (_entropy_of_probs(p) for p in (before, after))
    ax.set_title(f"{kept} code(s) can be drawn; entropy {h0:.2f} -> {h1:.2f} bits", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_step_cost(context_rows, cached, uncached, unit: str = "MFLOP", cached_ms=None,
                   uncached_ms=None) -> Figure:
    """Cost of producing the next row's hidden state as the context grows: with the KV
    cache (one new row) vs recomputing every row from scratch. Work in `unit` (left) and,
    if given, measured milliseconds (right)."""
    panels = [(cached, uncached, f"work per step ({unit})")]
    if cached_ms is not None and uncached_ms is not None:
        panels.append((cached_ms, uncached_ms, "time per step (ms, measured)"))
    fig, axes = _figure(1, len(panels), width=5 * len(panels), height=3.0)
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


def plot_generation_trace(entropy, chosen_prob=None, stop_prob=None,
                          frame_rate: float = FRAME_RATE) -> Figure:
    """A traced generation: entropy [F, K] of every codebook at every frame (top), and for
    codebook 0 the probability of the code drawn and of code 0 (the stop frame starts with
    it) (bottom)."""
    H = _np(entropy)                                          # [F, K]
    F, K = H.shape
    fig, axes = _figure(2, 1, width=9, height=5.0, sharex=True,
                        gridspec_kw={"height_ratios": [2, 1]})
    ax, pax = axes[:, 0]
    image = ax.imshow(H.T, aspect="auto", interpolation="nearest", cmap="magma",
                      extent=[0, F / frame_rate, K - 0.5, -0.5])
    ax.set_ylabel("codebook")
    ax.set_title("entropy of each codebook's distribution while generating", fontsize=10)
    fig.colorbar(image, ax=ax, label="bits")
    t = (np.arange(F) + 0.5) / frame_rate
    if chosen_prob is not None:
        pax.plot(t, _np(chosen_prob)[:, 0], ".-", color="tab:blue", label="p(code drawn)")
    if stop_prob is not None:
        pax.plot(t, _np(stop_prob), ".-", color="tab:red", label="p(code 0)")
    pax.set_yscale("log")
    pax.set_xlabel("time (s)")
    pax.set_ylabel("codebook 0")
    pax.legend(fontsize=8, loc="lower left")
    return fig


# ------------------------------------------------------------------- 04 fast generation
# Per-frame costs: op counts, the parts of a frame, the bandwidth floor, the ways to run
# the frame loop, and how time grows with context, batch and chunk size.

_KERNEL_COLOUR, _VIEW_COLOUR, _SYNC_COLOUR = "tab:blue", "0.7", "tab:red"


def _bar_labels(ax, bars, texts):
    for bar, text in zip(bars, texts):
        ax.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)


def plot_op_counts(counts, top: int = 15, title: str | None = None) -> Figure:
    """The most frequent ATen ops of a run ({name: count}, e.g. `OpCounter.counts`): ops that
    launch a kernel in blue, views (no kernel) in grey, host syncs in red."""
    from ..core.profiling import SYNC_OPS, VIEW_OPS

    items = sorted(dict(counts).items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    names = [name.removeprefix("aten::") for name, _ in items]
    colours = [_SYNC_COLOUR if n in SYNC_OPS else _VIEW_COLOUR if n in VIEW_OPS
               else _KERNEL_COLOUR for n, _ in items]
    fig, axes = _figure(width=8, height=0.28 * len(items) + 1.0)
    ax = axes[0, 0]
    bars = ax.barh(names, [n for _, n in items], color=colours)
    _bar_labels(ax, bars, [f"{n:,.0f}" for _, n in items])
    ax.set_xlabel("calls")
    ax.set_title(title or f"top {len(items)} ATen ops (blue: kernel, grey: view, red: sync)",
                 fontsize=10)
    ax.margins(x=0.15)
    return fig


def plot_frame_parts(kernels: dict, ms: dict | None = None,
                     frame_ms: float | None = None) -> Figure:
    """One frame taken apart: kernel-launching ops per part (left) and, when measured, ms
    per part (right), beside the whole frame's measured time."""
    names = list(kernels)
    panels = [([kernels[n] for n in names], "kernel-launching ops per frame", "{:,.0f}")]
    if ms is not None:
        panels.append(([ms[n] for n in names], "ms per frame (measured here)", "{:.1f}"))
    fig, axes = _figure(1, len(panels), width=5 * len(panels), height=0.5 * len(names) + 1.4)
    for ax, (values, label, fmt) in zip(axes[0], panels):
        bars = ax.barh(names[::-1], values[::-1], color=_KERNEL_COLOUR)
        _bar_labels(ax, bars, [fmt.format(v) for v in values[::-1]])
        ax.set_xlabel(label)
        ax.margins(x=0.2)
    if ms is not None and frame_ms is not None:
        axes[0, -1].axvline(frame_ms, color="0.3", ls="--", lw=1,
                            label=f"whole frame: {frame_ms:.1f} ms")
        axes[0, -1].legend(fontsize=8, loc="lower right")
    return fig


def plot_bytes_per_frame(parts: dict) -> Figure:
    """Where a frame's weight reads go: GB per part ({name: bytes}) and its share."""
    names = list(parts)[::-1]
    gb = np.array([parts[n] for n in names], dtype=float) / 1e9
    fig, axes = _figure(width=8, height=0.45 * len(names) + 1.2)
    ax = axes[0, 0]
    bars = ax.barh(names, gb, color="tab:purple")
    _bar_labels(ax, bars, [f"{g:.2f} GB ({100 * g / gb.sum():.1f} %)" for g in gb])
    ax.set_xlabel("GB of weights read per frame")
    ax.set_title(f"{gb.sum():.2f} GB per {1000 / FRAME_RATE:g} ms frame", fontsize=10)
    ax.margins(x=0.35)
    return fig


def plot_ms_per_frame(ms: dict, frame_ms: float = 1000 / FRAME_RATE, highlight=(),
                      log: bool = False, title: str | None = None) -> Figure:
    """ms per frame of each entry ({name: ms}: GPUs' floors, or ways to run the loop), with
    the real-time factor on each bar and the real-time line (one frame of audio)."""
    names = list(ms)[::-1]
    values = np.array([ms[n] for n in names], dtype=float)
    colours = ["tab:orange" if n in highlight else "tab:green" if v < frame_ms else "tab:red"
               for n, v in zip(names, values)]
    fig, axes = _figure(width=8, height=0.42 * len(names) + 1.3)
    ax = axes[0, 0]
    bars = ax.barh(names, values, color=colours)
    _bar_labels(ax, bars, [f"{v:,.0f} ms (RTF {v / frame_ms:.3g})" if v >= 100 else
                           f"{v:.3g} ms (RTF {v / frame_ms:.3g})" for v in values])
    ax.axvline(frame_ms, color="0.3", ls="--", lw=1, label=f"real time: {frame_ms:g} ms")
    if log:
        ax.set_xscale("log")
        ax.set_xlim(right=values.max() * 30)
    else:
        ax.margins(x=0.35)
    ax.set_xlabel("ms per frame")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_context_scaling(rows, step_ms, prefill_ms=None) -> Figure:
    """Per-frame time (left) and prompt prefill time (right) against the prompt's rows."""
    panels = [(step_ms, "ms per generated frame")]
    if prefill_ms is not None:
        panels.append((prefill_ms, "prefill + first frame (ms)"))
    fig, axes = _figure(1, len(panels), width=4.5 * len(panels), height=3.0)
    for ax, (values, label) in zip(axes[0], panels):
        ax.plot(rows, values, "o-", color="tab:blue")
        ax.set_xlabel("rows in the prompt")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    return fig


def plot_batch_throughput(batch_sizes, ms_per_frame,
                          frame_ms: float = 1000 / FRAME_RATE) -> Figure:
    """Batching: ms per frame step (left) and frames per second over all streams (right),
    against perfect scaling (B x the batch-1 throughput)."""
    B = np.asarray(batch_sizes, dtype=float)
    ms = np.asarray(ms_per_frame, dtype=float)
    fps = B * 1000 / ms
    fig, axes = _figure(1, 2, width=9, height=3.0)
    left, right = axes[0]
    left.plot(B, ms, "o-", color="tab:blue")
    left.set_ylabel("ms per frame step")
    left.set_ylim(bottom=0)
    right.plot(B, fps, "o-", color="tab:green", label="measured")
    right.plot(B, B * fps[0], "--", color="0.5", label="perfect scaling")
    right.axhline(1000 / frame_ms, color="tab:red", lw=1, label="one real-time stream")
    right.set_ylabel("frames per second (all streams)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("batch size (streams)")
        ax.set_xticks(B)
        ax.grid(alpha=0.3)
    return fig


def plot_chunk_latency(chunk_frames, first_audio_s, frame_ms: float = 1000 / FRAME_RATE
                       ) -> Figure:
    """Streaming: time to the first chunk against frames per chunk, beside how much audio
    that chunk holds (playback never stalls while generation keeps ahead of it)."""
    n = np.asarray(chunk_frames)
    first = np.asarray(first_audio_s, dtype=float) * 1000
    fig, axes = _figure(width=7, height=3.0)
    ax = axes[0, 0]
    x = np.arange(n.size)
    ax.bar(x - 0.2, first, 0.4, color="tab:blue", label="time to first audio (measured)")
    ax.bar(x + 0.2, n * frame_ms, 0.4, color="tab:green", label="audio in the first chunk")
    ax.set_xticks(x, [str(v) for v in n])
    ax.set_xlabel("frames per chunk")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------- 05 train a tiny CSM

def plot_training(history, chance: float | None = None) -> Figure:
    """Loss curves of `csm_nb.training.train` (total, codebook 0, depth decoder; log scale) and
    the teacher-forced codebook-0 accuracy. chance: ln(V), the loss of a uniform guess."""
    steps = np.asarray(history.step) + 1
    fig, axes = _figure(1, 2, width=11, height=3.4)
    ax, acc = axes[0]
    for name, colour in (("total", "k"), ("codebook0", "tab:blue"), ("decoder", "tab:orange")):
        label = {"total": "total", "codebook0": "codebook 0 (backbone)",
                 "decoder": "codebooks 1.. (depth decoder)"}[name]
        ax.plot(steps, getattr(history, name), color=colour, lw=1.2, label=label)
    if chance is not None:
        ax.axhline(chance, color="0.5", ls="--", lw=1, label=f"chance, ln V = {chance:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(f"CSM loss over {len(steps)} steps ({history.seconds[-1]:.0f} s)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    acc.plot(steps, 100 * np.asarray(history.accuracy), color="tab:green", lw=1.2)
    acc.set_ylim(0, 101)
    acc.set_xlabel("step")
    acc.set_ylabel("% of frames")
    acc.set_title("codebook 0 right given the true past (teacher forcing)", fontsize=10)
    acc.grid(alpha=0.3)
    return fig


def plot_loss_targets(tokens, mask, num_codebooks: int, title: str | None = None) -> Figure:
    """A conversation as CSM's rows: which columns each row uses (text, audio codes, the
    all-zero end-of-audio row) and which rows the loss predicts, each from the row before."""
    t, m = _np(tokens), _np(mask).astype(bool)                # [S, K+1]
    K = num_codebooks
    kind = np.zeros(m.shape, dtype=int)                       # 0 unused
    kind[m[:, K], K] = 1                                      # text token
    audio = m[:, :K].all(1)
    eos = audio & (t[:, :K] == 0).all(1)
    kind[audio & ~eos, :K] = 2                                # codes of a frame
    kind[eos, :K] = 3                                         # end-of-audio row
    from matplotlib.colors import ListedColormap
    cmap = ListedColormap(["white", "tab:blue", "tab:orange", "tab:red"])
    S = t.shape[0]
    fig, axes = _figure(width=min(14, 3 + S * 0.12), height=3.0)
    ax = axes[0, 0]
    ax.imshow(kind.T, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=3,
              extent=[-0.5, S - 0.5, K + 0.5, -0.5])
    targets = np.flatnonzero(audio[1:]) + 1                   # rows predicted from row - 1
    ax.plot(targets, np.full(targets.shape, K + 0.5), "k^", ms=4, clip_on=False)
    ax.set_yticks([0, K - 1, K], ["code 0", f"code {K - 1}", "text"])
    ax.set_xlabel("row (position)")
    ax.set_title(title or "blue: text rows, orange: audio frames, red: end-of-audio row; "
                 "▲ = a loss target (predicted from the row before)", fontsize=10)
    return fig


def plot_code_match(generated, target, frame_rate: float = FRAME_RATE) -> Figure:
    """Generated codes against the training target, frame by frame: green where equal."""
    g, t = _np(generated), _np(target)                        # [K, F'], [K, F]
    K, F = t.shape[0], max(g.shape[1], t.shape[1])
    same = np.full((K, F), np.nan)
    common = min(g.shape[1], t.shape[1])
    same[:, :common] = g[:, :common] == t[:, :common]
    from matplotlib.colors import ListedColormap
    fig, axes = _figure(width=9, height=2.6)
    ax = axes[0, 0]
    ax.imshow(same, aspect="auto", interpolation="nearest", vmin=0, vmax=1,
              cmap=ListedColormap(["tab:red", "tab:green"]),
              extent=[0, F / frame_rate, K - 0.5, -0.5])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("codebook")
    c0 = float((g[0, :common] == t[0, :common]).sum()) / max(t.shape[1], 1)
    ax.set_title(f"generated vs target: green = same code; codebook 0 matches on {c0:.0%} of "
                 f"the {t.shape[1]} target frames (generated {g.shape[1]})", fontsize=10)
    return fig


def plot_codec_comparison(curves: dict) -> Figure:
    """Error curves of several codecs, {name: (levels, mel_db, kbps_per_level)}: against the
    number of levels decoded (left) and against the bitrate those levels cost (right)."""
    fig, axes = _figure(1, 2, width=11, height=3.4, sharey=True)
    by_level, by_rate = axes[0]
    for (name, (levels, mel_db, kbps)), colour in zip(curves.items(),
                                                       ["tab:red", "tab:blue", "tab:green"]):
        levels = np.asarray(levels)
        by_level.plot(levels, mel_db, "o-", color=colour, label=name)
        by_rate.plot(levels * kbps, mel_db, "o-", color=colour, label=name)
    by_level.set_xscale("log", base=2)
    by_level.set_xticks(levels, [str(n) for n in levels])
    by_level.xaxis.set_minor_locator(NullLocator())
    by_level.set_xlabel("levels decoded")
    by_level.set_ylabel("mel distance (dB, lower = closer)")
    by_rate.set_xlabel("bitrate (kbps)")
    for ax in (by_level, by_rate):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    by_level.set_title("error vs levels", fontsize=10)
    by_rate.set_title("error vs bits spent", fontsize=10)
    return fig
