"""Notebook 03 (Conversation: segments, speakers and context): figures, widgets, checkers.

The notebook imports this module once (`from csm_nb.teach import conversation as lesson`);
the players and spectrograms other notebooks use too come from `common`, re-exported here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..core.config import FRAME_MS, FRAME_RATE, SAMPLE_RATE, SAMPLES_PER_FRAME
from ..speech.segment import Segment
from .common import (CSM_1B, Solutions, as_number, audio, new_figure, players, plot_spectrograms,
                     to_numpy, unanswered, verdict)

__all__ = [
    "audio", "check_context_room", "check_pack_prompt", "check_segment_rows",
    "check_speaker_prefix", "conversation_builder", "players", "plot_context_budget",
    "plot_conversation_timeline", "plot_frame_levels", "plot_spectrograms",
    "plot_stream_timing", "solution", "speaker_colour",
]

SOLUTIONS = Solutions()
solution = SOLUTIONS.show


# ----------------------------------------------------------- segments and speakers (sections 2-5)

def check_speaker_prefix(answer, speaker: int = 1, text: str = "Nice to meet you.") -> bool:
    """The exact string CSM tokenizes for `speaker` saying `text`: "[1]Nice to meet you."."""
    if unanswered(answer):
        return False
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
    return verdict(False, "", f"{answer!r}: {hint}")


SOLUTIONS["speaker_prefix"] = (
    "f'[{speaker}]{text}' -> '[1]Nice to meet you.' The tokenizer then adds BOS and EOS:\n"
    "<|begin_of_text|>[1]Nice to meet you.<|end_of_text|>. The id does not pick a voice:\n"
    "it is only text; the voice comes from the context audio.")


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
    fig, axes = new_figure(width=10, height=1.0 + 0.9 * max(len(speakers), 1))
    ax, start = axes[0, 0], 0.0
    for seg in turns:
        x = to_numpy(seg.audio).reshape(-1)
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


# ------------------------------------------------------------------- the context budget (6)

def check_segment_rows(answer, seconds: float = 3.0, text_tokens: int = 12) -> bool:
    """Rows one context segment costs: its text rows (incl. BOS/EOS), one per frame, +1."""
    if unanswered(answer):
        return False
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
    return verdict(False, "", f"{value:g} rows: {hint}")


SOLUTIONS["segment_rows"] = (
    "text: 12 rows (BOS, the tokens of '[0]...', EOS); audio: 3.0 s x 12.5 frames/s = 37.5,\n"
    "Mimi pads the last partial frame, so 38 rows; then 1 all-zero end-of-audio row:\n"
    "12 + 38 + 1 = 51 rows.")


def check_context_room(answer, max_audio_length_ms: float = 10_000, text_rows: int = 20,
                       max_seq_len: int = CSM_1B.max_seq_len) -> bool:
    """Rows left for context when the new line has `text_rows` rows and may last
    `max_audio_length_ms` (2048 - 20 - 125 = 1903 for the defaults)."""
    if unanswered(answer):
        return False
    value = as_number("rows", answer)
    frames = int(max_audio_length_ms / FRAME_MS)
    right = max_seq_len - text_rows - frames
    if value == right:
        return verdict(True, f"{max_seq_len} - {text_rows} text rows - {frames} frames "
                       f"({max_audio_length_ms:g} ms / {FRAME_MS:g} ms) = {right} rows, "
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
    return verdict(False, "", f"{value:g} rows: {hint}")


SOLUTIONS["context_room"] = (
    "10 s of new audio = 10000 / 80 = 125 frames, each a row; the line's text takes 20 rows;\n"
    "2048 - 20 - 125 = 1903 rows remain for context (the official code requires one row\n"
    "fewer). At 12.5 rows per second that is ~152 s of context audio, less the text rows.")


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


# -------------------------------------------------------------- streaming and runaway lines (7-8)

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


# ---------------------------------------------------------------- build your own conversation (9)

def conversation_builder(gen, prompts=(), turns=(), max_audio_length_ms: float = 10_000,
                         seed: int | None = 0, speakers=(0, 1), **generate_kwargs):
    """Build a conversation turn by turn: pick a speaker, type a line, press Generate.

    Every turn is generated with the prompts and all earlier turns as context; below the
    controls are each turn's player, the whole conversation's player and its timeline.
    Headless path: `turns` [(speaker, text), ...] are generated at once, and
    `builder.add_turn(speaker, text)` does what the button does, so nothing waits for a
    click. Turn i uses seed + i. The box has `.turns` (the generated Segments) and
    `.context` (prompts + turns).
    """
    import ipywidgets as W
    from IPython.display import display

    speaker = W.Dropdown(options=[(f"speaker {s}", s) for s in speakers], value=speakers[0],
                         description="speaker")
    line = W.Text(placeholder="type a line, then Generate", layout=W.Layout(width="50%"))
    button = W.Button(description="Generate", button_style="primary")
    undo = W.Button(description="Remove last")
    out = W.Output()
    box = W.VBox([W.HBox([speaker, line, button, undo]), out])
    box.prompts, box.turns = list(prompts), []
    box.context = box.prompts

    def render(note: str = "") -> None:
        box.context = box.prompts + box.turns
        out.clear_output(wait=True)
        with out:
            if note:
                print(note)
            clips = {f"{i}. [{s.speaker}] {s.text}": s.audio
                     for i, s in enumerate(box.turns) if s.audio is not None}
            if clips:
                display(players(clips))
                display(audio(torch.cat(list(clips.values()))))
                display(plot_conversation_timeline(box.turns))
            else:
                print(f"{len(box.prompts)} prompt(s) in the context; no turns yet.")

    def add_turn(who: int, text: str) -> Segment:
        index = len(box.turns)
        wav = gen.generate(text, who, box.prompts + box.turns,
                           max_audio_length_ms=max_audio_length_ms,
                           seed=None if seed is None else seed + index, **generate_kwargs)
        seg = Segment(who, text, wav if wav.numel() else None, gen.sample_rate,
                      label=f"turn {index}")
        box.turns.append(seg)
        render()
        return seg

    def on_click(_):
        if not line.value.strip():
            render("Type a line first.")
            return
        button.disabled = True
        try:
            add_turn(speaker.value, line.value)
            line.value = ""
            speaker.value = speakers[(speakers.index(speaker.value) + 1) % len(speakers)]
        except (ValueError, TypeError) as err:      # bad input: say so, keep the widget alive
            render(f"Could not generate: {err}")
        finally:
            button.disabled = False

    def remove_last(_):
        if box.turns:
            box.turns.pop()
        render()

    button.on_click(on_click)
    undo.on_click(remove_last)
    box.add_turn = add_turn
    for who, text in turns:                          # headless path: generate right now
        add_turn(who, text)
    if not turns:
        render()
    return box


def check_pack_prompt(fn, gen) -> bool:
    """Your `pack(gen, text, speaker, context) -> (tokens, mask)` against gen.prompt_rows."""
    if unanswered(fn):
        return False
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
                print("Not answered yet: your pack(...) returns None; build the rows and "
                      "return (tokens, mask).")
                return False
            tokens, mask = got
        except Exception as err:
            return verdict(False, "", f"pack raised or returned something odd "
                           f"({type(err).__name__}: {err}); return (tokens, mask).")
        where = f"with {len(context)} context segment(s)"
        if not isinstance(tokens, torch.Tensor) or tokens.shape != want.shape:
            return verdict(False, "", f"{where}: tokens should have shape "
                           f"{tuple(want.shape)}, got {tuple(getattr(tokens, 'shape', ()))}. "
                           "Each segment: text rows, audio rows (with the end row); then the "
                           "new line's text rows.")
        if not torch.equal(tokens, want) or not torch.equal(mask, want_mask):
            row = int((tokens != want).any(dim=1).nonzero()[0]) if not torch.equal(
                tokens, want) else int((mask != want_mask).any(dim=1).nonzero()[0])
            return verdict(False, "", f"{where}: right shape, but row {row} differs. Order: "
                           "segment text, segment audio, ..., new line's text.")
    return verdict(True, "your packing matches the generator's rows exactly.", "")


SOLUTIONS["pack_prompt"] = (
    "def pack(gen, text, speaker, context):\n"
    "    parts = []\n"
    "    for seg in context:\n"
    "        parts.append(csm_nb.text_rows(gen.tokenizer, seg.text, seg.speaker))\n"
    "        parts.append(csm_nb.audio_rows(gen.encode(seg)))   # frames + the all-zero row\n"
    "    parts.append(csm_nb.text_rows(gen.tokenizer, text, speaker))\n"
    "    return torch.cat([t for t, _ in parts]), torch.cat([m for _, m in parts])")
