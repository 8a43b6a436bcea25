"""Notebook 03, part 2: voices in a conversation. Speaker colours, the conversation's timeline,
which toy voice a line sounds like, and the widget that builds a conversation turn by turn.

Gathered with the other parts by `conversation`, the module the notebook imports.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core.config import SAMPLE_RATE
from ..speech.segment import Segment
from .common import audio, new_figure, players, to_numpy

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



def plot_voice_match(scores: dict, prompts: dict | None = None) -> Figure:
    """Which toy voice each line sounds like: {line label: {voice: score}} from a VoiceMeter
    (higher = more alike), one row per line, the best voice of each row boxed. prompts:
    {line label: the voice its context was in}, marked with a dot."""
    labels = list(scores)
    voices = list(next(iter(scores.values())))
    grid = np.array([[scores[label][v] for v in voices] for label in labels])
    fig, axes = new_figure(width=8, height=1.2 + 0.45 * len(labels))
    ax = axes[0, 0]
    image = ax.imshow(grid, aspect="auto", cmap="Greens")
    for row, best in enumerate(grid.argmax(axis=1)):
        ax.add_patch(_box(best, row))
        if prompts and prompts.get(labels[row]) in voices:
            ax.plot(voices.index(prompts[labels[row]]), row, "o", color="tab:red", ms=5)
    ax.set_xticks(range(len(voices)), [f"voice {v}" for v in voices])
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("which voice does each line sound like? (boxed: the closest; red dot: the "
                 "voice of its context)", fontsize=9)
    fig.colorbar(image, ax=ax, label="mean log-probability of its codes")
    return fig


def _box(col: int, row: int):
    from matplotlib.patches import Rectangle
    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="k", lw=2)


# ---------------------------------------------------------------- build your own conversation (10)

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

