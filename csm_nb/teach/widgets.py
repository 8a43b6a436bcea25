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

from ..audio.metrics import mel_distance, si_sdr
from ..audio.signal import prepare_audio
from ..core.config import SAMPLE_RATE
from . import viz



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

    from ..speech.segment import Segment

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


# ------------------------------------------------------------------- 02 backbone

_TEMPERATURE_RANGE = (0.05, 2.0, 0.05)          # slider min, max, step
_TOPK_CHOICES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def sampling_explorer(logits, temperature: float = 0.9, topk: int = 50, show: int = 40,
                      draws: int = 12, seed: int = 0):
    """Sliders for temperature and top-k over one real distribution (`logits` [V]).

    Shows the distribution before and after filtering, how many codes can still be drawn,
    and `draws` samples from csm_nb.core.sampling with a fixed seed (same sliders, same draws).
    Headless path: the first state renders at once; `box.render(temperature, topk)` does
    what moving the sliders does and returns the draws.
    """
    import ipywidgets as W
    from IPython.display import display

    from ..core.sampling import check_sampling_args, filtered_probs, sample_topk

    x = torch.as_tensor(viz._np(logits)).float().reshape(1, -1)           # [1, V]
    V = x.shape[-1]
    check_sampling_args(temperature, topk, V)
    low, high, step = _TEMPERATURE_RANGE
    t_slider = W.FloatSlider(value=min(max(temperature, low), high), min=low, max=high,
                             step=step, description="temperature", continuous_update=False)
    choices = sorted({c for c in _TOPK_CHOICES if c <= V} | {topk, V})
    k_slider = W.SelectionSlider(options=choices, value=topk, description="top-k",
                                 continuous_update=False)
    out = W.Output()
    box = W.VBox([W.HBox([t_slider, k_slider]), out])

    def render(temperature: float, topk: int) -> list[int]:
        check_sampling_args(temperature, topk, V)
        generator = torch.Generator().manual_seed(seed)
        ids = sample_topk(x.expand(draws, V), temperature, topk, generator=generator)
        kept = int((filtered_probs(x, temperature, topk) > 0).sum())
        out.clear_output(wait=True)
        with out:
            print(f"temperature {temperature:g}, top-k {topk}: {kept} of {V} codes can be "
                  f"drawn; {draws} draws (seed {seed}): {ids.tolist()}")
            display(viz.plot_sampling(x[0], temperature, topk, show))
        box.last_draws = ids.tolist()
        return box.last_draws

    def on_change(_):
        render(t_slider.value, k_slider.value)

    t_slider.observe(on_change, names="value")
    k_slider.observe(on_change, names="value")
    box.render, box.sliders = render, (t_slider, k_slider)
    render(temperature, topk)                  # headless path: the first state, right now
    return box


class GenerationProgress:
    """An `on_frame` callback for `csm_nb.generate_codes`: a progress bar, plus a record.

    Per frame it keeps the codes and, when the run traces logits (`trace_logits=True`), the
    entropy of every codebook's distribution, the probability of each code drawn, and
    codebook 0's probability of code 0 (the first code of the all-zero stop frame). All of
    it stays on the model's device (no host syncs while generating). Display it before
    generating (`display(progress)`) to watch the bar move; without a display it only records.

        progress = GenerationProgress(max_frames)
        codes = csm_nb.generate_codes(model, tokens, mask, max_frames, on_frame=progress,
                                      trace_logits=True)
    """

    def __init__(self, max_frames: int, description: str = "generating", row: int = 0):
        import ipywidgets as W

        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"max_frames={max_frames!r} must be an int >= 1 (the same "
                             "max_frames you pass to generate_codes)")
        self.row = row                            # which batch row the record follows
        self.bar = W.IntProgress(value=0, min=0, max=max_frames, description=description)
        self.label = W.Label(f"0 / {max_frames} frames")
        self.widget = W.HBox([self.bar, self.label])
        self.codes, self._entropy, self._chosen, self._stop = [], [], [], []

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __call__(self, info) -> None:
        codes = info.codes[self.row]                                          # [K]
        self.codes.append(codes)
        if info.logits is not None:
            logits = info.logits[self.row]                                    # [K, V]
            logp = torch.log_softmax(logits, dim=-1)
            self._entropy.append(viz.entropy_bits(logits))
            self._chosen.append(logp.gather(-1, codes[:, None])[:, 0].exp())
            self._stop.append(logp[0, 0].exp())
        self.bar.value = info.index + 1
        self.label.value = f"{info.index + 1} / {self.bar.max} frames"
        # returns None: only csm_nb.STOP would end generation

    @property
    def frames(self) -> torch.Tensor:
        """Every frame seen, the stop frame included: [K, F] on the CPU."""
        return torch.stack(self.codes, dim=1).cpu()

    @property
    def stop_frame(self) -> int | None:
        """Index of the all-zero frame if the model emitted one (generate_codes drops it)."""
        zero = (self.frames == 0).all(dim=0).nonzero()
        return int(zero[0]) if len(zero) else None

    def trace(self) -> dict:
        """{'entropy' [F, K], 'chosen_prob' [F, K], 'stop_prob' [F]} as CPU tensors."""
        if not self._entropy:
            raise ValueError("no logits were traced: pass trace_logits=True to "
                             "generate_codes along with on_frame=progress")
        return {"entropy": torch.stack(self._entropy).cpu(),
                "chosen_prob": torch.stack(self._chosen).cpu(),
                "stop_prob": torch.stack(self._stop).cpu()}

    def figure(self, frame_rate: float = viz.FRAME_RATE):
        return viz.plot_generation_trace(**self.trace(), frame_rate=frame_rate)
