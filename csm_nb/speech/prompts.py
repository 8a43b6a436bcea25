"""Voice prompts: the official demo's six, and the toy voices that stand in for them offline.

A prompt is a context segment: a recording plus its exact transcript. Put one per speaker at
the start of the context and CSM continues in those voices (docs/csm-reference.md sec. 8). The
official files are `prompts/<name>.wav` in the gated `sesame/csm-1b` repo (or a local folder
laid out like it, $CSM_NB_WEIGHTS), loaded in real mode, mixed to mono and resampled to 24 kHz,
as the official code does.

Transcripts: read_speech_a..d are exactly as in docs/csm-reference.md (the Space's `app.py`).
The doc abbreviates the two conversational ones ("starts ... ends ..."); the full strings
stored here are `SPEAKER_PROMPTS` of SesameAILabs/csm `run_csm.py` as found in several
third-party copies, which agree with each other and with the doc's start and end.

Offline (toy and tiny modes, or `auto` without the weights) each official prompt is played by
a toy voice, one of the espeak-ng voices the toy CSM was trained on (csm_nb/data/toy/), with
ITS OWN transcript (a prompt's text must match its audio) and a label saying so:
conversational_a -> toy voice A, conversational_b -> B, read_speech_a..d -> C..F. The toy
voices can also be asked for by name (toy_A .. toy_F, and toy_H, which training never heard).
"""

from __future__ import annotations

import csv
import difflib
import functools
import os
from dataclasses import dataclass

import torch

from .. import data, env
from ..core.config import SAMPLE_RATE
from ..loading.modes import CSM_REPO, banner, resolve_mode
from .segment import Segment


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


# ---- the toy voices --------------------------------------------------------------------------

TOY_VOICES_FILE = "toy/voices.tsv"               # under csm_nb/data
STANDS_IN_FOR = {"conversational_a": "A", "conversational_b": "B", "read_speech_a": "C",
                 "read_speech_b": "D", "read_speech_c": "E", "read_speech_d": "F"}


@dataclass(frozen=True)
class ToyVoice:
    voice: str           # "A"
    description: str     # "low American man"
    espeak_args: str     # how espeak-ng rendered it
    held_out: bool       # never heard in training (given only as context)
    prompt: str          # its clip, under csm_nb/data/toy
    transcript: str

    @property
    def name(self) -> str:
        return f"toy_{self.voice}"

    @property
    def info(self) -> PromptInfo:
        return PromptInfo(self.name, f"toy voice {self.voice}: {self.description}, espeak-ng "
                          f"{self.espeak_args}", self.transcript)


@functools.cache
def toy_voices() -> dict[str, ToyVoice]:
    """"toy_A" -> ToyVoice, from the voices.tsv shipped with the toy model."""
    with open(data.path(TOY_VOICES_FILE), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    voices = [ToyVoice(r["voice"], r["description"], r["espeak_args"], r["held_out"] == "1",
                       r["prompt"], r["transcript"]) for r in rows]
    return {v.name: v for v in voices}


def prompt_names(mode: str | None = None) -> list[str]:
    """The prompts to offer: the official six, or in toy mode the toy voices."""
    return list(toy_voices()) if mode == "toy" else list(PROMPTS)


def prompt_info(name: str) -> PromptInfo:
    if not isinstance(name, str):
        raise TypeError(f"name must be a prompt name (str), got {type(name).__name__}")
    if name in PROMPTS:
        return PROMPTS[name]
    if name in toy_voices():
        return toy_voices()[name].info
    known = list(PROMPTS) + list(toy_voices())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"no prompt named {name!r}; the six official ones are: "
                     f"{', '.join(PROMPTS)}; the toy voices: {', '.join(toy_voices())}.{hint}")


def load_prompt(name: str, speaker: int = 0, mode: str | None = None) -> Segment:
    """The prompt `name` as a Segment for `speaker`, at 24 kHz.

    An official name: real = from $CSM_NB_WEIGHTS's prompts/ folder or sesame/csm-1b (gated:
    needs a token, or the file in the HF cache); toy, tiny = the toy voice standing in for it;
    auto = real if reachable, else the toy voice with a banner. A toy voice name (toy_A ..):
    that voice, in any mode.
    """
    info = prompt_info(name)
    if name in toy_voices():
        return toy_prompt(name, speaker)
    mode = resolve_mode(mode)
    if mode in ("real", "auto"):
        try:
            return _real_prompt(info, speaker)
        except OSError as err:
            if mode == "real":
                raise
            banner(f"the demo prompt {name}", str(err))
    return toy_prompt(f"toy_{STANDS_IN_FOR[name]}", speaker, stands_in_for=name)


def default_toy_voice(speaker: int) -> str:
    """The toy voice a speaker gets when no prompt is given in toy mode: A for speaker 0, B for
    1, and so on through the training voices. The toy CSM only ever learned a line after a
    voice's turn; with no context at all it drops words (measured: a ten-word line came out
    1.3-1.9 s long without a prompt, 2.1-2.7 s after voice A's)."""
    trained = [name for name, v in toy_voices().items() if not v.held_out]
    return trained[speaker % len(trained)]


def toy_prompt(name: str, speaker: int = 0, stands_in_for: str | None = None) -> Segment:
    """The toy voice `name`'s clip and transcript, labelled (and what it stands in for)."""
    from ..audio.signal import read_wav
    voice = toy_voices()[name]
    wav, rate = read_wav(data.path(f"toy/{voice.prompt}"))
    label = f"{name} ({voice.description})"
    if stands_in_for:
        label = f"{stands_in_for} (stand-in: toy voice {voice.voice}, {voice.description})"
    return Segment(speaker, voice.transcript, _to_24k(wav, rate), SAMPLE_RATE, label=label)


def _real_prompt(info: PromptInfo, speaker: int) -> Segment:
    from ..audio.signal import load_audio
    from ..loading.hub import hub_file

    folder = env.text(env.WEIGHTS)              # a local copy of the repo comes first
    local = os.path.join(folder, info.filename) if folder else None
    path = local if local and os.path.isfile(local) else hub_file(CSM_REPO, info.filename)
    wav, rate = load_audio(path)                                     # [C, T]
    audio = _to_24k(torch.from_numpy(wav).mean(dim=0), rate)      # mono, as the official .squeeze
    return Segment(speaker, info.transcript, audio, SAMPLE_RATE, label=info.name)


def _to_24k(audio: torch.Tensor, rate: int) -> torch.Tensor:
    if rate == SAMPLE_RATE:
        return audio
    import torchaudio.functional as AF
    return AF.resample(audio, rate, SAMPLE_RATE)
