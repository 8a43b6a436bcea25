"""A conversation turn, `Segment`, and the rows it becomes.

CSM speaks one line at a time, reading the conversation so far as its prompt. Each earlier
turn is a `Segment` (speaker, text, and its sound: audio, or audio already turned into codes)
and becomes rows (see csm_nb.core.rows.turn_rows):

    text rows of "[speaker]text" (BOS ... EOS) | one row per Mimi frame | one all-zero row

Speakers: ids 0..MAX_SPEAKER (9). CSM's official scripts and demo use 0 and 1; 2..9 are
accepted for multi-party experiments (the same "[n]" prefix with one digit), anything else is
almost certainly a slip (a name, a 1-based "speaker 10"). The id is only text: it does not
pick a voice; the context audio does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.config import FRAME_MS, SAMPLE_RATE
from ..core.rows import check_unicode, turn_rows

MAX_SPEAKER = 9


def check_speaker(speaker, name: str = "speaker") -> int:
    if isinstance(speaker, bool) or not isinstance(speaker, (int, np.integer)):
        raise TypeError(f"{name}={speaker!r} must be an int id 0..{MAX_SPEAKER} (0 and 1 are "
                        "CSM's usual two speakers)")
    if not 0 <= speaker <= MAX_SPEAKER:
        raise ValueError(f"{name}={speaker} is outside 0..{MAX_SPEAKER}; CSM's demos use 0 and "
                         "1 (the id only becomes the text prefix \"[n]\"; the voice comes from "
                         "the context audio)")
    return int(speaker)


def _check_audio(audio) -> torch.Tensor:
    if isinstance(audio, np.ndarray):
        if audio.dtype.kind != "f" or audio.dtype.byteorder == ">":
            raise TypeError(f"audio has dtype {audio.dtype}; pass native float samples in "
                            "[-1, 1], e.g. audio.astype(np.float32) (int16 PCM: audio / 32768)")
        audio = torch.from_numpy(np.ascontiguousarray(audio) if audio.ndim else audio.copy())
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"audio must be a torch.Tensor or numpy array [T], got "
                        f"{type(audio).__name__}")
    if not audio.is_floating_point():
        raise TypeError(f"audio has dtype {audio.dtype}; pass float samples in [-1, 1] "
                        "(int16 PCM: audio / 32768)")
    if audio.is_meta:
        raise ValueError("audio is a meta tensor (a shape without samples); pass real audio")
    if audio.dim() == 2 and 1 in audio.shape:         # [1, T] or [T, 1]: mono with a channel axis
        audio = audio.reshape(-1)
    if audio.dim() != 1:
        raise ValueError(
            f"audio has shape {tuple(audio.shape)}; a segment holds one speaker's mono audio "
            "[T]. A stereo take is not mixed for you (in a call recording each channel is often "
            "a different person): pick a channel (audio[0]) or mix it yourself (audio.mean(0))")
    if audio.numel() == 0:
        raise ValueError("audio is empty (0 samples); pass audio=None for a text-only segment")
    audio = audio.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(audio).all()):
        first = int((~torch.isfinite(audio)).nonzero()[0, 0])
        raise ValueError(f"audio holds NaN/inf samples (first at index {first}); clean it, "
                         "e.g. torch.nan_to_num(audio)")
    return audio.clone().contiguous()                 # the segment owns its copy


def _check_codes(codes) -> torch.Tensor:
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or 0 in codes.shape:
        raise ValueError(f"codes must be a tensor [K, F] of codec ids (codebooks first, as "
                         f"Codec.encode returns), got {getattr(codes, 'shape', type(codes))}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise TypeError(f"codes must be integer ids, got dtype {codes.dtype}; pass codes.long()")
    if bool((codes < 0).any()):
        raise ValueError(f"codes must be >= 0, got min {int(codes.min())}")
    return codes.detach().to("cpu", torch.int64).clone()


@dataclass(frozen=True, eq=False)
class Segment:
    """One turn of a conversation: who spoke, what they said, and (optionally) how it sounded.

    audio: mono float samples [T] (a [1, T] channel axis is dropped; stereo is an error),
    at `sample_rate` Hz (default 24000 = what `Generator.generate` returns; give the file's
    rate for anything loaded from disk: it is resampled to Mimi's 24 kHz when encoded).
    codes: the sound already as codec codes [K, F] (integer ids), instead of audio: how
    training data and stored conversations come, with no codec call needed.
    A segment without either adds only its text rows (CSM's own context turns always have
    audio: text-only context is an experiment). `label` names it in warnings and plots.
    Frozen: use dataclasses.replace(seg, text=...) for a changed copy.
    """

    speaker: int
    text: str
    audio: torch.Tensor | None = None
    sample_rate: int | None = SAMPLE_RATE
    label: str = ""
    codes: torch.Tensor | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "speaker", check_speaker(self.speaker))
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {type(self.text).__name__}")
        if not self.text.strip():
            raise ValueError(f"text={self.text!r} is empty; give the words that were (or will "
                             "be) spoken")
        check_unicode(self.text)
        if self.codes is not None:
            if self.audio is not None:
                raise ValueError("give a segment's sound once: audio or codes, not both")
            set_(self, "codes", _check_codes(self.codes))
        if self.audio is None:
            return
        set_(self, "audio", _check_audio(self.audio))
        rate = self.sample_rate
        if rate is None:
            raise ValueError("this segment has audio but sample_rate=None; pass the rate it "
                             "was recorded at (e.g. sample_rate=44100): audio at the wrong rate "
                             "sounds sped up or slowed down to CSM")
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or (
                not rate > 0 or (isinstance(rate, (float, np.floating)) and not math.isfinite(rate))
                or rate != int(rate)):
            raise ValueError(f"sample_rate={rate!r} must be a positive whole number of Hz")
        set_(self, "sample_rate", int(rate))

    @property
    def has_sound(self) -> bool:
        """Audio or codes: whether the segment adds frame rows after its text."""
        return self.audio is not None or self.codes is not None

    @property
    def duration(self) -> float:
        """Seconds of sound (0.0 without any): samples / rate, or frames x 80 ms."""
        if self.codes is not None:
            return self.codes.shape[1] * FRAME_MS / 1000
        return 0.0 if self.audio is None else self.audio.numel() / self.sample_rate

    def __repr__(self) -> str:
        audio = "no audio" if not self.has_sound else (
            f"{self.codes.shape[1]} frames of codes" if self.codes is not None else
            f"{self.duration:.2f} s at {self.sample_rate} Hz")
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        label = f", label={self.label!r}" if self.label else ""
        return f"Segment(speaker={self.speaker}, text={text!r}, {audio}{label})"


def max_frames(max_audio_length_ms, frame_ms: float = FRAME_MS) -> int:
    """Frames allowed for `max_audio_length_ms` of audio: int(ms / 80), the official rounding."""
    ms = max_audio_length_ms
    if isinstance(ms, bool) or not isinstance(ms, (int, float, np.number)):
        raise TypeError(f"max_audio_length_ms must be a number, got {type(ms).__name__}")
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError(f"max_audio_length_ms={ms} must be a positive number of "
                         "milliseconds, e.g. 10_000")
    frames = int(ms / frame_ms)
    if frames < 1:
        raise ValueError(f"max_audio_length_ms={ms} is shorter than one frame "
                         f"({frame_ms:g} ms); ask for at least that")
    return frames


def describe(index: int, seg: Segment) -> str:
    """How warnings and the budget name a context segment: "#2 (turn 1)"."""
    return f"#{index} ({seg.label or f'speaker {seg.speaker}: {seg.text[:24]!r}'})"


def check_context(context) -> list[Segment]:
    """The context as a list of Segments, or a TypeError saying how to build one."""
    if context is None:
        return []
    if isinstance(context, Segment):
        raise TypeError("context must be a list of Segments; wrap the one segment: [segment]")
    if not isinstance(context, (list, tuple)):
        raise TypeError(f"context must be a list of Segments, got {type(context).__name__}")
    for i, seg in enumerate(context):
        if not isinstance(seg, Segment):
            raise TypeError(f"context[{i}] is a {type(seg).__name__}, not a Segment; build it "
                            "with csm_nb.Segment(speaker, text, audio, sample_rate)")
    return list(context)


def segment_rows(tokenizer, segment: Segment, num_codebooks: int, encode=None):
    """Rows of one segment (csm_nb.core.rows.turn_rows): its codes, or `encode(segment)` for
    its audio (the Generator passes its cached codec), or text rows only."""
    codes = segment.codes
    if codes is None and segment.audio is not None:
        if encode is None:
            raise ValueError(f"{segment!r} has audio but no codes; pass encode= (a codec's "
                             "encoder) or build the segment with codes=")
        codes = encode(segment)
    return turn_rows(tokenizer, segment.text, segment.speaker, codes, num_codebooks)


def conversation_rows(tokenizer, segments, num_codebooks: int, encode=None):
    """Segments in order -> (tokens [S, K+1], mask [S, K+1]): a context, or a training example
    whose last segment is the line to learn."""
    segments = check_context(segments)
    if not segments:
        raise ValueError("segments is empty; give at least one Segment")
    rows = [segment_rows(tokenizer, s, num_codebooks, encode) for s in segments]
    return torch.cat([t for t, _ in rows]), torch.cat([m for _, m in rows])
