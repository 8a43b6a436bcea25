"""The official demo's six voice prompts, and labelled stand-ins for offline/tiny use.

A prompt is a context segment: a recording plus its exact transcript. Put one per speaker at
the start of the context and CSM continues in those voices (docs/csm-reference.md sec. 8). The files
are `prompts/<name>.wav` in the gated `sesame/csm-1b` repo, loaded in real mode, mixed to
mono and resampled to 24 kHz, as the official code does.

Transcripts: read_speech_a..d are exactly as in docs/csm-reference.md (the Space's `app.py`).
The doc abbreviates the two conversational ones ("starts ... ends ..."); the full strings
stored here are `SPEAKER_PROMPTS` of SesameAILabs/csm `run_csm.py` as found in several
third-party copies, which agree with each other and with the doc's start and end.

In tiny mode (or `auto` without hub access) a stand-in takes the prompt's place, labelled
"(stand-in ...)": the espeak-ng clip shipped as package data (csm_nb/data/speech.wav) with
ITS OWN transcript (a prompt's text must match its audio), or a synthetic hum if asked. Tiny models make noise from either; the rows are real.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import data
from ..core.config import SAMPLE_RATE
from .segment import Segment
from ..loading.modes import CSM_REPO, banner, resolve_mode



@dataclass(frozen=True)
class PromptInfo:
    name: str
    corpus: str          # where Sesame took the recording from
    transcript: str

    @property
    def filename(self) -> str:
        return f"prompts/{self.name}.wav"


PROMPTS: dict[str, PromptInfo] = {p.name: p for p in [
    PromptInfo("conversational_a", "EdAcc", (
        "like revising for an exam I'd have to try and like keep up the momentum because I'd "
        "start really early I'd be like okay I'm gonna start revising now and then like "
        "you're revising for ages and then I just like start losing steam I didn't do that "
        "for the exam we had recently to be fair that was a more of a last minute scenario "
        "but like yeah I'm trying to like yeah I noticed this yesterday that like Mondays I "
        "sort of start the day with this not like a panic but like a")),
    PromptInfo("conversational_b", "EdAcc", (
        "like a super Mario level. Like it's very like high detail. And like, once you get "
        "into the park, it just like, everything looks like a computer game and they have all "
        "these, like, you know, if, if there's like a, you know, like in a Mario game, they "
        "will have like a question block. And if you like, you know, punch it, a coin will "
        "come out. So like everyone, when they come into the park, they get like this little "
        "bracelet and then you can go punching question blocks around.")),
    PromptInfo("read_speech_a", "LibriTTS-R", (
        "And Lake turned round upon me, a little abruptly, his odd yellowish eyes, a little "
        "like those of the sea eagle, and the ghost of his smile that flickered on his "
        "singularly pale face, with a stern and insidious look, confronted me.")),
    PromptInfo("read_speech_b", "LibriTTS-R", (
        "He was such a big boy that he wore high boots and carried a jack knife. He gazed and "
        "gazed at the cap, and could not keep from fingering the blue tassel.")),
    PromptInfo("read_speech_c", "LibriTTS-R", (
        "All passed so quickly, there was so much going on around him, the Tree quite forgot "
        "to look to himself.")),
    PromptInfo("read_speech_d", "LibriTTS-R", (
        "Suddenly I was back in the old days Before you felt we ought to drift apart. It was "
        "some trick-the way your eyebrows raise.")),
]}

# The shipped clip (csm_nb/data/README.md says how it was made) and what it says.
STANDIN_FILE = data.FOLDER / "speech.wav"
STANDIN_TRANSCRIPT = ("Hello! Mimi turns my voice into codes, twelve and a half times a "
                      "second.")
_HUM_SECONDS = 3.0
_HUM_PITCH_HZ = (110.0, 220.0)     # a low and a high hum, picked per prompt name
_HUM_HARMONICS = 8


def prompt_names() -> list[str]:
    return list(PROMPTS)


def prompt_info(name: str) -> PromptInfo:
    if not isinstance(name, str):
        raise TypeError(f"name must be a prompt name (str), got {type(name).__name__}")
    if name not in PROMPTS:
        close = difflib.get_close_matches(name, PROMPTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"no demo prompt named {name!r}; the six are: "
                         f"{', '.join(PROMPTS)}.{hint}")
    return PROMPTS[name]


def load_prompt(name: str, speaker: int = 0, mode: str | None = None,
                standin: str | os.PathLike | None = None) -> Segment:
    """The demo prompt `name` as a Segment for `speaker`, at 24 kHz.

    mode: real = from sesame/csm-1b (gated: needs a token, or the file in the HF cache);
    tiny = a stand-in; auto = real if reachable, else the stand-in with a banner.
    standin: a 16-bit WAV to stand in (its transcript must then be STANDIN_TRANSCRIPT's
    sentence; default: the shipped clip, else a synthetic hum).
    """
    info = prompt_info(name)
    mode = resolve_mode(mode)
    if mode != "tiny":
        try:
            return _real_prompt(info, speaker)
        except OSError as err:
            if mode == "real":
                raise
            banner(f"the demo prompt {name}", str(err))
    return standin_prompt(name, speaker, standin)


def _real_prompt(info: PromptInfo, speaker: int) -> Segment:
    from ..audio.signal import load_audio
    from ..loading.hub import hub_file

    wav, rate = load_audio(hub_file(CSM_REPO, info.filename))      # [C, T]
    audio = _to_24k(torch.from_numpy(wav).mean(dim=0), rate)      # mono, as the official .squeeze
    return Segment(speaker, info.transcript, audio, SAMPLE_RATE, label=info.name)


def _to_24k(audio: torch.Tensor, rate: int) -> torch.Tensor:
    if rate == SAMPLE_RATE:
        return audio
    import torchaudio.functional as AF
    return AF.resample(audio, rate, SAMPLE_RATE)


def standin_prompt(name: str, speaker: int = 0,
                   path: str | os.PathLike | None = None) -> Segment:
    """A clearly labelled offline stand-in for the demo prompt `name`."""
    info = prompt_info(name)
    path = Path(path) if path is not None else STANDIN_FILE
    if path.is_file():
        from ..audio.signal import read_wav
        wav, rate = read_wav(path)
        audio = _to_24k(wav if wav.dim() == 1 else wav.mean(dim=0), rate)
        label = f"{info.name} (stand-in: espeak-ng clip {path.name})"
        return Segment(speaker, STANDIN_TRANSCRIPT, audio, SAMPLE_RATE, label=label)
    return Segment(speaker, "Mmmmm.", synthetic_hum(name), SAMPLE_RATE,
                   label=f"{info.name} (stand-in: synthetic hum)")


def synthetic_hum(name: str, seconds: float = _HUM_SECONDS) -> torch.Tensor:
    """A hummed vowel with a gliding pitch: a deterministic, offline voice-like signal."""
    rate = SAMPLE_RATE
    t = np.arange(round(seconds * rate)) / rate
    base = _HUM_PITCH_HZ[sum(map(ord, name)) % len(_HUM_PITCH_HZ)]
    pitch = base * (1 + 0.1 * np.sin(2 * np.pi * t / seconds))      # slow intonation
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, _HUM_HARMONICS + 1))
    envelope = np.sin(np.pi * t / seconds) ** 0.5                     # fade in and out
    audio = 0.3 * envelope * wave / np.abs(wave).max()
    return torch.from_numpy(audio.astype(np.float32))
