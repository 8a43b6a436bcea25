"""Notebook 03, part 1: segments become rows. The speaker prefix, the packed prompt (a figure
and the `pack` exercise), and the context budget: what fits in the backbone's window.

Gathered with the other parts by `conversation`, the module the notebook imports.
"""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..core.config import FRAME_MS, FRAME_RATE, SAMPLE_RATE, SAMPLES_PER_FRAME
from ..core.rows import text_rows
from ..speech.segment import Segment
from .common import CSM_1B, Solutions, as_number, new_figure, stuck, unanswered, verdict
from .conversation_voices import speaker_colour

SOLUTIONS = Solutions()


# ------------------------------------------------------------------- the speaker prefix (quiz)

def check_speaker_prefix(answer, speaker: int = 1, text: str = "Nice to meet you.") -> bool:
    """The exact string CSM tokenizes for `speaker` saying `text`: "[1]Nice to meet you."."""
    if unanswered(answer):
        return None
    if not isinstance(answer, str):
        raise TypeError(f"prefix: expected a str, got {type(answer).__name__} {answer!r}")
    right = f"[{speaker}]{text}"
    if answer == right:
        return verdict(True, f"{right!r}: the speaker id is just text in front of the words, "
                       "tokenized in one call (and wrapped in BOS ... EOS).", "")
    if answer.replace(" ", "") == right.replace(" ", ""):
        hint = "mind the spaces: no space after the closing bracket (a space changes the tokens)."
    elif str(speaker) not in answer:
        hint = f"the speaker id {speaker} belongs in square brackets at the start."
    elif text not in answer:
        hint = f"keep the words exactly as given: {text!r}."
    else:
        hint = "square brackets around the id, then the words: '[id]words'."
    return verdict(False, "", f"{answer!r}: {hint}" + stuck("speaker_prefix"))


SOLUTIONS["speaker_prefix"] = (
    "f'[{speaker}]{text}' -> '[1]Nice to meet you.' The tokenizer then adds BOS and EOS:\n"
    "<|begin_of_text|>[1]Nice to meet you.<|end_of_text|>. The id does not pick a voice:\n"
    "it is only text; the voice comes from the context audio.")

SOLUTIONS.hints["speaker_prefix"] = (
    "The id goes in square brackets right in front of the words, with nothing in between.")
SOLUTIONS.answers["speaker_prefix"] = (
    "prefix = \"[1]Nice to meet you.\"\nlesson.check_speaker_prefix(prefix)\n")


# ------------------------------------------------------------------- the packed prompt (4)

def row_kinds(tokens: torch.Tensor, mask: torch.Tensor, text_column: int) -> list[str]:
    """"text", "audio" or "end" (the all-zero end-of-audio row) for every row."""
    return ["text" if m[text_column] else ("end" if not t[:text_column].any() else "audio")
            for t, m in zip(tokens, mask)]


def plot_prompt_layout(gen, text: str, speaker: int, context=(),
                       max_audio_length_ms: float | None = None) -> Figure:
    """The prompt as the backbone reads it, one column per row: each context segment's text
    rows (dark), audio rows (light) and end row (black), in its speaker's colour, then the new
    line's text rows and, hatched, the frames it may generate; the dashed line is the window."""
    K = gen.config.num_codebooks
    parts = [(seg, *gen.segment_rows(seg)) for seg in context]
    new_tokens, new_mask = text_rows(gen.tokenizer, text, speaker, K)
    parts.append((Segment(speaker, text, label="new line"), new_tokens, new_mask))
    frames = 0 if max_audio_length_ms is None else gen.max_frames(max_audio_length_ms)
    total = sum(t.shape[0] for _, t, _ in parts) + frames
    fig, axes = new_figure(width=11, height=2.3)
    ax, start = axes[0, 0], 0
    shade = {"text": 1.0, "audio": 0.4, "end": None}
    for seg, tokens, mask in parts:
        colour = speaker_colour(seg.speaker)
        for row, kind in enumerate(row_kinds(tokens, mask, K)):
            ax.bar(start + row, 1, width=1, align="edge", linewidth=0,
                   color="k" if kind == "end" else colour, alpha=shade[kind] or 1.0)
        name = seg.label or f"[{seg.speaker}] {seg.text}"
        ax.text(start + tokens.shape[0] / 2, 1.04, name if len(name) <= 18 else name[:16] + "...",
                ha="center", va="bottom", fontsize=7, rotation=20)
        start += tokens.shape[0]
    if frames:
        ax.bar(start, 1, width=frames, align="edge", color="none", edgecolor="tab:green",
               hatch="//", linewidth=1)
    window = gen.config.max_seq_len
    if window <= 1.3 * total:
        ax.axvline(window, color="k", ls="--", lw=1)
    ax.set_xlim(0, max(total, 1) * 1.02)
    ax.set_ylim(0, 1.6)
    ax.set_yticks([])
    ax.set_xlabel(f"row (the backbone sees at most {window})")
    handles = [Patch(color="0.3"), Patch(color="0.3", alpha=0.4), Patch(color="k"),
               Patch(facecolor="none", edgecolor="tab:green", hatch="//")]
    ax.legend(handles, ["text rows", "audio rows (one per 80 ms frame)", "end-of-audio row",
                        "frames it may generate"], fontsize=8, loc="upper right", ncols=4,
              frameon=False)
    return fig

def check_pack_prompt(fn, gen) -> bool:
    """Your `pack(gen, text, speaker, context) -> (tokens, mask)` against gen.prompt_rows."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"pack: expected a function, got {type(fn).__name__}")
    rate = gen.sample_rate
    voice = torch.sin(torch.arange(rate // 4) * 0.05) * 0.3
    cases = [("Hello.", 0, []),
             ("Yes!", 1, [Segment(0, "Hi there.", voice, rate), Segment(1, "Hey.", voice, rate)])]
    for text, speaker, context in cases:
        want, want_mask, _ = gen.prompt_rows(text, speaker, context)
        try:   # the student's code may fail or return junk: report it, never crash the cell
            got = fn(gen, text, speaker, context)
            if got is None:
                unanswered(None, fix="your pack(...) returns None: fill in its body")
                return None
            tokens, mask = got
        except Exception as err:
            return verdict(False, "", f"pack raised or returned something odd "
                           f"({type(err).__name__}: {err}); return (tokens, mask)."
                           + stuck("pack_prompt"))
        where = f"with {len(context)} context segment(s)"
        shape = tuple(getattr(tokens, "shape", ()))
        if isinstance(tokens, torch.Tensor) and tokens.ndim == 2 and (
                tokens.shape[1] != want.shape[1]):
            return verdict(False, "", f"{where}: rows have {tokens.shape[1]} columns, the model "
                           f"reads {want.shape[1]} ({gen.config.num_codebooks} codebooks + text):"
                           " pass num_codebooks=gen.config.num_codebooks to text_rows."
                           + stuck("pack_prompt"))
        if not isinstance(tokens, torch.Tensor) or tokens.shape != want.shape:
            fewer = isinstance(tokens, torch.Tensor) and tokens.ndim == 2 and (
                tokens.shape[0] == want.shape[0] - len(context))
            why = ("exactly one row per segment is missing: audio_rows adds each segment's "
                   "end row, did you build the frame rows yourself?" if fewer and context else
                   "each segment: its text rows, then its audio rows (with the end row); then "
                   "the new line's text rows.")
            return verdict(False, "", f"{where}: tokens should have shape {tuple(want.shape)}, "
                           f"got {shape}. {why}" + stuck("pack_prompt"))
        if not torch.equal(tokens, want) or not torch.equal(mask, want_mask):
            row = int((tokens != want).any(dim=1).nonzero()[0]) if not torch.equal(
                tokens, want) else int((mask != want_mask).any(dim=1).nonzero()[0])
            return verdict(False, "", f"{where}: right shape, but row {row} differs. Order: "
                           "segment text, segment audio, ..., new line's text; each segment "
                           "with its own speaker." + stuck("pack_prompt"))
    return verdict(True, "your packing matches the generator's rows exactly.", "")


SOLUTIONS["pack_prompt"] = (
    "def pack(gen, text, speaker, context):\n"
    "    K = gen.config.num_codebooks\n"
    "    parts = []\n"
    "    for seg in context:\n"
    "        parts.append(csm_nb.text_rows(gen.tokenizer, seg.text, seg.speaker, K))\n"
    "        parts.append(csm_nb.audio_rows(gen.encode(seg)))   # frames + the all-zero end row\n"
    "    parts.append(csm_nb.text_rows(gen.tokenizer, text, speaker, K))\n"
    "    return torch.cat([t for t, _ in parts]), torch.cat([m for _, m in parts])")
SOLUTIONS.answers["pack_prompt"] = SOLUTIONS["pack_prompt"] + (
    "\n\n\nlesson.check_pack_prompt(pack, gen)\n")
SOLUTIONS.hints["pack_prompt"] = (
    "Loop over the context; for each segment append two (tokens, mask) pairs: its text rows\n"
    "(text_rows needs the model's number of codebooks, gen.config.num_codebooks) and its audio\n"
    "rows (audio_rows of gen.encode(segment) already ends with the all-zero row). Append the\n"
    "new line's text rows last, then torch.cat the tokens and the masks separately.")


# ------------------------------------------------------------------- the context budget (7)

def check_segment_rows(answer, seconds: float = 3.0, text_tokens: int = 12) -> bool:
    """Rows one context segment costs: its text rows (incl. BOS/EOS), one per frame, +1."""
    if unanswered(answer):
        return None
    value = as_number("rows", answer)
    frames = math.ceil(round(seconds * SAMPLE_RATE) / SAMPLES_PER_FRAME)
    right = text_tokens + frames + 1
    if value == right:
        return verdict(True, f"{text_tokens} text rows + {frames} audio frames (ceil of "
                       f"{seconds:g} s x {FRAME_RATE:g}) + 1 all-zero end-of-audio row "
                       f"= {right}.", "")
    if value == right - 1:
        hint = ("one short: after the audio frames comes one all-zero row that marks the end "
                "of the segment's audio (or did you round the frames down?).")
    elif value == frames + 1 or value == frames:
        hint = "the segment's text rows are in the prompt too."
    elif value > 10 * right:
        hint = f"count frames, not samples: one row per {FRAME_MS:g} ms frame."
    else:
        hint = (f"text rows + frames ({FRAME_RATE:g} per second, partial frames round up) "
                "+ the end-of-audio row.")
    return verdict(False, "", f"{value:g} rows: {hint}" + stuck("segment_rows"))


SOLUTIONS["segment_rows"] = (
    "text: 12 rows (BOS, the tokens of '[0]...', EOS); audio: 3.0 s x 12.5 frames/s = 37.5,\n"
    "Mimi pads the last partial frame, so 38 rows; then 1 all-zero end-of-audio row:\n"
    "12 + 38 + 1 = 51 rows.")


def check_context_room(answer, max_audio_length_ms: float = 16_000, text_rows: int = 30,
                       max_seq_len: int = CSM_1B.max_seq_len) -> bool:
    """Rows left for context when the new line has `text_rows` rows and may last
    `max_audio_length_ms` (2048 - 30 - 200 = 1818 for the defaults; notebook 02's context
    exercise uses other numbers, so neither answers the other)."""
    if unanswered(answer):
        return None
    value = as_number("rows", answer)
    frames = int(max_audio_length_ms / FRAME_MS)
    right = max_seq_len - text_rows - frames
    if value in (right, right - 1):             # the official code keeps one row spare
        return verdict(True, f"{max_seq_len} - {text_rows} text rows - {frames} frames "
                       f"({max_audio_length_ms:g} ms / {FRAME_MS:g} ms) = {right} rows "
                       f"({right - 1} in the official code, which keeps one row spare), "
                       f"about {right / FRAME_RATE:.0f} s of context audio if it were "
                       "all audio.", "")
    if value == max_seq_len - frames:
        hint = "the new line's own text rows take room too."
    elif value == max_seq_len - text_rows:
        hint = "the frames the model may generate need rows as well: each 80 ms is one row."
    elif value == max_seq_len - text_rows - max_audio_length_ms:
        hint = "convert milliseconds to frames first (one frame = 80 ms)."
    else:
        hint = f"start from {max_seq_len} and subtract what the new line needs."
    return verdict(False, "", f"{value:g} rows: {hint}" + stuck("context_room"))


SOLUTIONS["context_room"] = (
    "16 s of new audio = 16000 / 80 = 200 frames, each a row; the line's text takes 30 rows;\n"
    "2048 - 30 - 200 = 1818 rows remain for context (the official code requires one row\n"
    "fewer). At 12.5 rows per second that is ~145 s of context audio, less the text rows.")
SOLUTIONS.hints["segment_rows"] = (
    "Three kinds of rows: the text rows (given), one row per 80 ms frame (a partial last frame\n"
    "is padded to a whole one), and one more row after the audio.")
SOLUTIONS.hints["context_room"] = (
    "Start from the window and take away what the new line needs: its text rows and one row\n"
    "for every frame it may generate (ms / 80).")
SOLUTIONS.answers["segment_rows"] = (
    "segment_rows = 12 + math.ceil(3.0 * 12.5) + 1   # text + frames (rounded up) + end row\n"
    "lesson.check_segment_rows(segment_rows)\n")
SOLUTIONS.answers["context_room"] = (
    "context_room = 2048 - 30 - 16_000 // 80   # window - new text rows - frames it may take\n"
    "lesson.check_context_room(context_room)\n")


def plot_context_budget(budgets) -> Figure:
    """Where the backbone's rows go: one bar per scenario ({name: ContextBudget}, or one).

    Bars stack the context segments (text + audio + end row each), the new line's text rows
    and the frames it may generate; the dashed line is the window (2048 rows). Segments that
    would be dropped to fit are hatched.
    """
    if not isinstance(budgets, dict):
        budgets = {"": budgets}
    names = list(budgets)
    fig, axes = new_figure(width=10, height=0.9 + 0.6 * len(names))
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
    handles = [Patch(color="0.7"), Patch(color="tab:orange"),
               Patch(color="tab:green", alpha=0.6),
               Patch(facecolor="0.7", hatch="//", edgecolor="tab:red")]
    ax.legend(handles, ["context segments", "new line's text", "frames it may generate",
                        "dropped to fit"], fontsize=8, loc="lower center", ncols=4,
              bbox_to_anchor=(0.5, 1.0), frameon=False)
    return fig

