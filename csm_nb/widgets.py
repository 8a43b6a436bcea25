"""Inline players and small ipywidgets for the notebooks (built-in widgets only: Colab has them).

Headless rule: every function renders its first state at once and returns; nothing waits for
a click. Under nbmake (or any non-interactive run) the cell simply finishes with that state;
in a live notebook the sliders re-render on change.

Sections: 01 codec (audio players, the RVQ level mixer). Later notebooks append below.
"""

from __future__ import annotations

import html

import numpy as np
import torch

from . import codec as codec_lib
from . import viz

SAMPLE_RATE = codec_lib.SAMPLE_RATE


def _samples(wav) -> np.ndarray:
    """Any 1-D / [1, T] audio (tensor on any device, array) -> float32 numpy [T]."""
    x = viz._np(wav).astype(np.float32)
    if x.ndim == 2 and x.shape[0] <= 2:
        x = x.mean(axis=0)
    return x.reshape(-1)


# ------------------------------------------------------------------- 01 codec

def audio(wav, sample_rate: int = SAMPLE_RATE, normalize: bool = False):
    """An inline player. normalize=False plays at true loudness, so quiet stays quiet and
    players side by side compare fairly (IPython's default rescales every clip to full scale).
    """
    from IPython.display import Audio
    x = _samples(wav)
    if not normalize and x.size and np.abs(x).max() > 1:
        print(f"note: audio peaks at {np.abs(x).max():.2f}; clipped to [-1, 1] for playback")
        x = np.clip(x, -1, 1)
    if x.size == 0:
        x = np.zeros(1, dtype=np.float32)       # IPython cannot encode an empty clip
    return Audio(x, rate=int(sample_rate), normalize=normalize)


def players(clips: dict, sample_rate: int = SAMPLE_RATE, notes: dict | None = None,
            normalize: bool = False):
    """A table of labelled players {label: wav}, one per row, with an optional note each.

    Plain HTML (no widget state), so it also shows in static renderings of the notebook.
    """
    from IPython.display import HTML
    notes = notes or {}
    rows = []
    for label, wav in clips.items():
        player = audio(wav, sample_rate, normalize)._repr_html_()
        note = html.escape(str(notes.get(label, "")))
        rows.append(f"<tr><td style='text-align:left'><b>{html.escape(str(label))}</b></td>"
                    f"<td>{player}</td><td style='text-align:left'>{note}</td></tr>")
    return HTML("<table>" + "".join(rows) + "</table>")


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
        reference = codec_lib.prepare_audio(original, original_rate or codec.sample_rate,
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
            text += (f"; mel distance {codec_lib.mel_distance(reference, wav):.2f} dB, "
                     f"SI-SDR {codec_lib.si_sdr(reference, wav):.1f} dB")
        out.clear_output(wait=True)
        with out:
            print(text)
            display(audio(wav, codec.sample_rate))
            display(viz.plot_level_spectrograms({n: wav}, codec.sample_rate,
                                                original=reference, ncols=2))

    slider.observe(lambda change: render(change["new"]), names="value")
    render(slider.value)                      # headless path: the first state, right now
    box = W.VBox([slider, out])
    box.cache = cache                         # for tests and the curious
    return box


# ------------------------------------------------------------------- 03 conversation

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

    from .generator import Segment

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
                display(viz.plot_conversation_timeline(box.turns))
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
