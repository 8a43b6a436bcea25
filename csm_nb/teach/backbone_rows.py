"""Notebook 02, sections 1-3: the 33-column frame row, and the embedding sum it feeds.

A part of the `backbone` lesson (which re-exports it): naming and drawing rows, where an
audio row reads the shared embedding table, and the two "your turn" checkers (build a
segment's rows, embed rows by hand).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ..core.config import MIMI_CODEBOOK_SIZE
from ..core.rows import audio_rows, text_rows
from .common import CSM_1B, Solutions, new_figure, to_numpy, unanswered, verdict, wrong

SOLUTIONS = Solutions()

# One colour per kind of row, for the row labels of plot_rows.
_ROW_COLOURS = {"text": "tab:orange", "audio": "tab:blue", "end": "tab:red", "pad": "0.85"}


def row_kinds(tokens, mask) -> list[str]:
    """Name each [S, C] row: "text" (only the last column active), "audio" (codebook
    columns active), "end" (audio row of all zeros: the end-of-audio row or the stop frame),
    "pad" (nothing active)."""
    t, m = to_numpy(tokens), to_numpy(mask).astype(bool)
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
    t, m = to_numpy(tokens), to_numpy(mask).astype(bool)
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
    t, m = to_numpy(tokens), to_numpy(mask).astype(bool)
    S, C = t.shape
    K = C - 1
    kinds = row_kinds(t, m)
    codes = np.where(m[:, :K], t[:, :K], np.nan).astype(float)   # masked -> nan (grey)
    fig, axes = new_figure(1, 2, width=11, height=1.2 + 0.22 * S,
                           gridspec_kw={"width_ratios": [K, 6]}, sharey=True)
    ax, tax = axes[0]
    cmap = colormaps["viridis"].with_extremes(bad="0.88")
    image = ax.imshow(codes, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0,
                      vmax=MIMI_CODEBOOK_SIZE - 1)
    ax.set_xticks(range(0, K, 4))
    ax.set_xlabel(f"codebook column (0..{K - 1}); grey = masked out")
    ax.set_ylabel("row (= position)")
    ax.set_yticks(range(S), [f"{i} {k}" for i, k in enumerate(kinds)], fontsize=7)
    for i, kind in enumerate(kinds):
        ax.get_yticklabels()[i].set_color(_ROW_COLOURS[kind])
    fig.colorbar(image, ax=ax, label="code id", shrink=0.6, location="left")
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
    ids = to_numpy(row)[:-1].astype(np.int64)               # the K codebook columns
    K, V = ids.size, audio_vocab_size
    fig, axes = new_figure(width=10, height=2.2)
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


# ----------------------------------------------------------------- your turn: rows and embeddings

def _first_bad_row(got, want) -> int:
    return int((got != want).reshape(got.shape[0], -1).any(dim=1).nonzero()[0])


def check_build_rows(fn, tokenizer, num_codebooks: int = CSM_1B.num_codebooks) -> bool:
    """Your `segment_rows(tokenizer, text, speaker, codes [K, F]) -> (tokens, mask)` for one
    context segment (text rows, audio rows, the end row), against text_rows + audio_rows."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"segment_rows: expected a function, got {type(fn).__name__}")
    K, C = num_codebooks, num_codebooks + 1
    g = torch.Generator().manual_seed(0)
    cases = [("Hi there.", 0, torch.randint(0, MIMI_CODEBOOK_SIZE, (K, 3), generator=g)),
             ("Yes!", 1, torch.randint(0, MIMI_CODEBOOK_SIZE, (K, 1), generator=g))]
    for text, speaker, codes in cases:
        t_rows, t_mask = text_rows(tokenizer, text, speaker, K)
        a_rows, a_mask = audio_rows(codes, K)
        want, want_mask = torch.cat([t_rows, a_rows]), torch.cat([t_mask, a_mask])
        where = f"for speaker {speaker} saying {text!r} with {codes.shape[1]} frame(s)"
        try:   # the student's code may fail or return junk: report it, never crash the cell
            got = fn(tokenizer, text, speaker, codes.clone())
            if got is None:
                unanswered(None, fix="your function returns None; return (tokens, mask)")
                return None
            tokens, mask = got
        except Exception as err:
            return wrong("build_rows", f"{where} your function raised or returned something "
                           f"odd ({type(err).__name__}: {err}); return (tokens, mask).")
        if not isinstance(tokens, torch.Tensor) or not isinstance(mask, torch.Tensor):
            return wrong("build_rows", "return two torch tensors: (tokens, mask).")
        if tokens.shape != want.shape or mask.shape != want.shape:
            n_text = t_rows.shape[0]
            if tokens.dim() == 2 and tokens.shape[1] != C:
                hint = f"every row has {C} columns: {K} codebooks, then the text column."
            elif tokens.shape[0] == want.shape[0] - 1:
                hint = "one row short: the audio ends with one all-zero end-of-audio row."
            elif tokens.shape[0] == want.shape[0] - 2:
                hint = ("two rows short: the text starts with BOS and ends with EOS "
                        "(tokenizer.encode adds both), or is the end row missing?")
            else:
                hint = (f"expected {n_text} text rows (BOS, the tokens of "
                        f"'[{speaker}]{text}' with no space after ']', EOS) + "
                        f"{codes.shape[1]} frame rows + 1 end row.")
            return wrong("build_rows", f"{where}: shape {tuple(tokens.shape)}, expected "
                           f"{tuple(want.shape)}. {hint}")
        if tokens.dtype != torch.int64 or mask.dtype != torch.bool:
            return wrong("build_rows", f"tokens must be int64 and mask bool; got "
                           f"{tokens.dtype} and {mask.dtype}.")
        if not torch.equal(tokens, want):
            row = _first_bad_row(tokens, want)
            if row < t_rows.shape[0]:
                hint = (f"row {row} is a text row: zeros, with the token id in column {K}; "
                        f"tokenize '[{speaker}]{text}' in one call (no space after ']').")
            elif row < want.shape[0] - 1:
                hint = (f"row {row} is audio frame {row - t_rows.shape[0]}: its {K} codes "
                        f"are codes[:, f] (one column of the [K, F] grid), text column 0.")
            else:
                hint = "the last row is the end-of-audio row: all zeros."
            return wrong("build_rows", f"{where}: {hint}")
        if not torch.equal(mask, want_mask):
            row = _first_bad_row(mask, want_mask)
            kind = "text" if row < t_rows.shape[0] else "audio"
            hint = (f"only column {K} is active in a text row" if kind == "text" else
                    f"columns 0..{K - 1} are active in an audio row (the end row too), "
                    f"column {K} is not")
            return wrong("build_rows", f"{where}: the ids are right, the mask of row {row} "
                           f"is not: {hint}.")
    return verdict(True, "your rows equal text_rows + audio_rows exactly, end row included.",
                   "")


SOLUTIONS["build_rows"] = (
    "def segment_rows(tokenizer, text, speaker, codes):\n"
    "    K, F = codes.shape\n"
    "    ids = tokenizer.encode(f'[{speaker}]{text}').ids          # BOS ... EOS\n"
    "    S = len(ids) + F + 1                                       # + the end row\n"
    "    tokens = torch.zeros(S, K + 1, dtype=torch.int64)\n"
    "    mask = torch.zeros(S, K + 1, dtype=torch.bool)\n"
    "    tokens[:len(ids), K] = torch.tensor(ids)\n"
    "    mask[:len(ids), K] = True\n"
    "    tokens[len(ids):len(ids) + F, :K] = codes.T                # frame f -> one row\n"
    "    mask[len(ids):, :K] = True                                 # the end row too\n"
    "    return tokens, mask")


def _relative_error(got, want) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-12))


def check_embed_rows(fn, model, tokens, mask) -> bool:
    """Your `embed(model, tokens [S, C], mask [S, C]) -> [S, D]`, against model.embed_rows."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"embed: expected a function, got {type(fn).__name__}")
    device = model.codebook0_head.weight.device
    tokens, mask = tokens.to(device), mask.to(device)
    with torch.no_grad():
        want = model.embed_rows(tokens[None], mask[None])[0]                   # [S, D]
        try:   # the student's code may fail or return junk: report it, never crash the cell
            got = fn(model, tokens.clone(), mask.clone())
        except Exception as err:
            return wrong("embed_rows", f"your function raised {type(err).__name__}: {err}")
        if got is None:
            unanswered(None, fix="your function returns None; return the [S, D] sums")
            return None
        got = torch.as_tensor(got).to(device)
        if got.shape != want.shape:
            return wrong("embed_rows", f"expected shape {tuple(want.shape)} (one "
                           f"{want.shape[-1]}-wide vector per row), got {tuple(got.shape)}.")
        # Sums of 32 embeddings in another order differ by rounding: far less in fp32.
        tol = 1e-5 if want.dtype == torch.float32 else 2e-2
        err = _relative_error(got, want)
        if err <= tol:
            return verdict(True, f"your sums equal model.embed_rows (relative error "
                           f"{err:.1e}).", "")
        K, V = model.config.num_codebooks, model.config.audio_vocab_size
        audio = model.audio_embeddings.weight
        text = model.text_embeddings.weight[tokens[:, K]]                      # [S, D]
        no_offset = audio[tokens[:, :K]]                                       # [S, K, D]
        with_offset = audio[tokens[:, :K] + torch.arange(K, device=device) * V]
        keep = mask[..., None].to(want.dtype)
        suspects = {
            "codebook k's ids index rows k * V + code of the shared table: add the offsets":
                (torch.cat([no_offset, text[:, None]], 1) * keep).sum(1),
            "masked-out columns must not count: multiply by the mask before summing":
                torch.cat([with_offset, text[:, None]], 1).sum(1),
        }
        for hint, guess in suspects.items():
            if _relative_error(got, guess) <= tol:
                return wrong("embed_rows", hint + ".")
    return wrong("embed_rows", f"relative error {err:.2f}: look up every column (codebook k "
                   f"at code + k x {V} in audio_embeddings, column {K} in text_embeddings), "
                   "multiply by the mask, sum over the columns.")


SOLUTIONS["embed_rows"] = (
    "def embed(model, tokens, mask):\n"
    "    K, V = model.config.num_codebooks, model.config.audio_vocab_size\n"
    "    offsets = torch.arange(K, device=tokens.device) * V          # 0, 2051, 4102, ...\n"
    "    audio = model.audio_embeddings.weight[tokens[:, :K] + offsets]   # [S, K, D]\n"
    "    text = model.text_embeddings.weight[tokens[:, K]]                # [S, D]\n"
    "    columns = torch.cat([audio, text[:, None]], dim=1)               # [S, K+1, D]\n"
    "    return (columns * mask[..., None]).sum(dim=1)                    # [S, D]")


SOLUTIONS.hints["build_rows"] = (
    "Three blocks of rows, stacked: len(ids) text rows (the token in the last column, only "
    "that column active), F frame rows (codes.T puts frame f in row f, the K codebook "
    "columns active), and one row of zeros with the codebook columns active.")
SOLUTIONS.answers["build_rows"] = (
    SOLUTIONS["build_rows"] + "\n\n\nlesson.check_build_rows(segment_rows, tokenizer)")
SOLUTIONS.hints["embed_rows"] = (
    "Index audio_embeddings.weight with codes + k * V (one offset per codebook column), "
    "text_embeddings.weight with the last column, put the K + 1 vectors of each row side by "
    "side, zero the masked ones (multiply by mask[..., None]) and sum over the columns.")
SOLUTIONS.answers["embed_rows"] = (
    SOLUTIONS["embed_rows"] + "\n\n\nlesson.check_embed_rows(embed, model, tokens, mask)")
