"""Conversational generation: `Segment`, `Generator`, `load_generator`.

CSM speaks one line at a time, reading the conversation so far as its prompt. Each earlier
turn is a `Segment` (speaker, text, audio) and becomes rows (reference doc sec. 4):

    text rows of "[speaker]text" (BOS ... EOS) | one row per Mimi frame | one all-zero row

then the line to speak adds only its text rows, and the model continues with audio frames.
The backbone sees at most `config.max_seq_len` rows (2048) in all: context rows + the new
line's text rows + the frames it may generate (`max_audio_length_ms / 80`). When they do not
fit, the oldest whole segments are dropped, with a warning (or an error with `strict=True`).

Speakers: ids 0..MAX_SPEAKER (9). CSM's official scripts and demo use 0 and 1; 2..9 are
accepted for multi-party experiments (the same "[n]" prefix with one digit), anything else is
almost certainly a slip (a name, a 1-based "speaker 10"). The id is only text: it does not
pick a voice; the context audio does.

Watermark: the official generator watermarks its output with silentcipher, which cannot be
installed with this project's pins (it caps torch at 2.0 and downloads weights at call time).
Nothing `csm_nb` makes is watermarked unless you pass a `watermark` hook, a callable
`(audio [T] float32, sample_rate) -> audio [T]` applied to every output.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..core.config import CSMConfig
from ..core.generate import STOP, generate_codes
from ..core.model import CSM
from ..core.sampling import check_sampling_args
from ..core.rows import audio_rows, check_unicode, text_rows

MAX_SPEAKER = 9
_DEFAULT_CHUNK = 10          # frames per streamed chunk (0.8 s): Mimi calls stay few
_CFG = CSMConfig.csm_1b()
Watermark = Callable[[torch.Tensor, int], torch.Tensor]


class ContextTrimmed(UserWarning):
    """The context did not fit the model's window; the oldest segments were dropped."""


# ------------------------------------------------------------------------ segments

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


@dataclass(frozen=True, eq=False)
class Segment:
    """One turn of a conversation: who spoke, what they said, and (optionally) how it sounded.

    audio: mono float samples [T] (a [1, T] channel axis is dropped; stereo is an error),
    at `sample_rate` Hz (default 24000 = what `Generator.generate` returns; give the file's
    rate for anything loaded from disk: it is resampled to Mimi's 24 kHz when encoded).
    A segment without audio adds only its text rows (CSM's own context turns always have
    audio: text-only context is an experiment). `label` names it in warnings and plots.
    Frozen: use dataclasses.replace(seg, text=...) for a changed copy.
    """

    speaker: int
    text: str
    audio: torch.Tensor | None = None
    sample_rate: int | None = _CFG.sample_rate
    label: str = ""

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "speaker", check_speaker(self.speaker))
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {type(self.text).__name__}")
        if not self.text.strip():
            raise ValueError(f"text={self.text!r} is empty; give the words that were (or will "
                             "be) spoken")
        check_unicode(self.text)
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
    def duration(self) -> float:
        """Seconds of audio (0.0 without audio)."""
        return 0.0 if self.audio is None else self.audio.numel() / self.sample_rate

    def __repr__(self) -> str:
        audio = "no audio" if self.audio is None else (
            f"{self.duration:.2f} s at {self.sample_rate} Hz")
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        label = f", label={self.label!r}" if self.label else ""
        return f"Segment(speaker={self.speaker}, text={text!r}, {audio}{label})"


def max_frames(max_audio_length_ms, frame_ms: float = _CFG.frame_ms) -> int:
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


def _name(index: int, seg: Segment) -> str:
    return f"#{index} ({seg.label or f'speaker {seg.speaker}: {seg.text[:24]!r}'})"


# ------------------------------------------------------------------------ the budget

@dataclass(frozen=True)
class ContextBudget:
    """How the 2048 rows are spent: context segments, the new line's text, its frames."""

    segment_rows: tuple[int, ...]     # per context segment: text rows + frames + 1 EOS row
    segment_frames: tuple[int, ...]   # per context segment: Mimi frames of its audio
    text_rows: int                    # the line to speak: BOS + tokens of "[n]text" + EOS
    max_frames: int                   # frames allowed for the new audio: ms / 80
    max_seq_len: int                  # rows the backbone can see (config.max_seq_len)
    labels: tuple[str, ...] = field(default=())

    @property
    def context_rows(self) -> int:
        return sum(self.segment_rows)

    @property
    def total(self) -> int:
        return self.context_rows + self.text_rows + self.max_frames

    @property
    def fits(self) -> bool:
        return self.total <= self.max_seq_len

    @property
    def first_kept(self) -> int | None:
        """Index of the oldest segment kept when trimming (len = none kept); None: the new
        line alone does not fit."""
        room = self.max_seq_len - self.text_rows - self.max_frames
        for i in range(len(self.segment_rows) + 1):
            if sum(self.segment_rows[i:]) <= room:
                return i
        return None

    def __str__(self) -> str:
        verdict = "fits" if self.fits else f"over by {self.total - self.max_seq_len}"
        return (f"{len(self.segment_rows)} context segment(s): {self.context_rows} rows "
                f"{list(self.segment_rows)} + new line {self.text_rows} text rows + up to "
                f"{self.max_frames} frames = {self.total} of {self.max_seq_len} rows ({verdict})")


# ------------------------------------------------------------------------ streaming parts

@dataclass(frozen=True)
class RunawayGuard:
    """Stop a generation whose tail has gone silent or frozen.

    The base model sometimes never emits the all-zero end frame and trails near-silence up
    to `max_audio_length_ms` (reference doc sec. 5; SesameAILabs/csm#122). The guard stops
    after `silent_frames` consecutive frames whose decoded audio is quieter than `silence_db`
    (RMS, dB re full scale), or after `repeated_frames` consecutive identical frames (all
    codes equal: the users' workaround in #122), whichever comes first; None disables a rule.
    The frames that triggered it are kept (a stream has already played them), so a guarded
    line ends with at most silent_frames x 80 ms of quiet.

    Off by default: without the real weights here we could not measure how often natural
    speech pauses this long or how quiet real Mimi's silence decodes, and a false stop cuts
    a line short without a word, while a silent tail is already capped by
    max_audio_length_ms. Use it with long caps: `runaway_guard=RunawayGuard()`.
    """

    silent_frames: int | None = 25        # 2 s of near-silence
    silence_db: float = -60.0
    repeated_frames: int | None = 12      # ~1 s of frozen frames

    def __post_init__(self):
        for name in ("silent_frames", "repeated_frames"):
            n = getattr(self, name)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ValueError(f"{name}={n!r} must be an int >= 1 (frames) or None (off)")

    def should_stop(self, levels_db: Sequence[float],
                    frames: Sequence[torch.Tensor] = ()) -> bool:
        """levels_db: every frame's loudness so far; frames: every frame's codes [K]."""
        n = self.silent_frames
        if n is not None and len(levels_db) >= n and max(levels_db[-n:]) < self.silence_db:
            return True
        n = self.repeated_frames
        return n is not None and len(frames) >= n and all(
            torch.equal(frames[-1], f) for f in frames[-n:-1])


def frame_levels_db(audio: torch.Tensor, samples_per_frame: int) -> list[float]:
    """RMS loudness of each whole frame of `audio`, in dB re full scale (-200 = digital 0)."""
    frames = audio[: audio.numel() // samples_per_frame * samples_per_frame].double()
    rms = frames.reshape(-1, samples_per_frame).pow(2).mean(dim=1).sqrt()  # [F*spf] -> [F]
    return (20 * torch.log10(rms.clamp_min(1e-10))).tolist()


class _Stopped(Exception):
    """Raised inside a worker's `put` to end its work once the reader has closed it."""


class ChunkDecoder:
    """Frames in, audio chunks out, through one streaming Mimi session (push style).

    push(codes [K]) returns the chunks finished by that frame: one every `chunk_frames`
    frames. `done` turns True at the all-zero end frame, or where the guard fires; the chunk
    is then cut right after the frame that fired, so where a guarded line ends does not depend
    on `chunk_frames` (Mimi's streaming decoder is causal). flush() decodes what is left.
    """

    def __init__(self, gen: "Generator", chunk_frames: int, guard: RunawayGuard | None = None):
        self.gen, self.chunk_frames, self.guard = gen, chunk_frames, guard
        self.stream = gen.codec.stream()
        self.pending: list[torch.Tensor] = []
        self.levels: list[float] = []                 # every frame's loudness, for the guard
        self.history: list[torch.Tensor] = []         # every frame's codes, for the guard
        self.done = False

    def push(self, codes: torch.Tensor) -> list[torch.Tensor]:
        if self.done:
            return []
        if not bool(codes.any()):                     # the end-of-audio frame: not audio
            self.done = True
            return self.flush()
        self.pending.append(codes)
        return self.flush() if len(self.pending) >= self.chunk_frames else []

    def flush(self) -> list[torch.Tensor]:
        if not self.pending:
            return []
        frames, self.pending = self.pending, []
        codes = self.gen._mimi_codes(torch.stack(frames, dim=1))              # [K, f]
        audio = self.stream.decode(codes)                                      # [f * 1920]
        if self.guard is not None:
            spf = self.gen.config.samples_per_frame
            for j, level in enumerate(frame_levels_db(audio, spf)):
                self.levels.append(level)
                self.history.append(frames[j])
                if self.guard.should_stop(self.levels, self.history):
                    self.done = True
                    return [audio[: (j + 1) * spf]]
        return [audio]


class _Worker:
    """Run `work(put)` in a thread and iterate over what it puts, as it puts it.

    `generate_codes` is a loop that calls `on_frame` after each frame, and a Python generator
    cannot yield from inside a callback. So the loop runs in a worker thread and hands its
    results over a queue. All device work (CSM and Mimi, whose CUDA graphs must not be
    captured while another thread launches kernels) stays in that one thread. Errors re-raise
    in the caller; close() makes the next `put` end the loop.
    """

    _END = object()

    def __init__(self, work: Callable[[Callable], None]):
        self._work_fn = work
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True, name="csm_nb-stream")

    def _work(self):
        def put(item):
            if self._stop.is_set():
                raise _Stopped
            self._queue.put(item)
        try:
            self._work_fn(put)
        except _Stopped:
            pass
        except BaseException as err:                       # hand it over, traceback and all
            self._queue.put(_Failure(err))
        finally:
            self._queue.put(self._END)

    def __iter__(self):
        if self._thread.ident is None:
            self._thread.start()
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()


@dataclass
class _Failure:
    error: BaseException


# ------------------------------------------------------------------------ the generator

class Generator:
    """CSM + its tokenizer + Mimi: text and context in, 24 kHz speech out.

    One generation at a time: starting one stops any stream still running. Outputs are
    1-D float32 CPU tensors at `sample_rate`.
    """

    def __init__(self, model: CSM, tokenizer, codec, mode: str = "tiny",
                 watermark: Watermark | None = None):
        if not isinstance(model, CSM):
            raise TypeError(f"model must be a csm_nb.CSM, got {type(model).__name__}")
        cfg = model.config
        if codec.sample_rate != cfg.sample_rate or codec.num_codebooks != cfg.num_codebooks:
            raise ValueError(f"the codec ({codec.num_codebooks} codebooks at "
                             f"{codec.sample_rate} Hz) does not match the model "
                             f"({cfg.num_codebooks} at {cfg.sample_rate} Hz)")
        self.model, self.tokenizer, self.codec, self.mode = model, tokenizer, codec, mode
        self.watermark = watermark
        self._codes = weakref.WeakKeyDictionary()   # Segment -> its Mimi codes [K, F]
        self._lock = threading.Lock()               # one generation at a time
        self._active: _Worker | None = None

    def __repr__(self) -> str:
        return (f"Generator(mode={self.mode!r}, device={self.device}, "
                f"{self.model.num_parameters:,} CSM parameters, codec={self.codec.mode} Mimi,"
                f" watermark={'on' if self.watermark else 'off'})")

    @property
    def config(self) -> CSMConfig:
        return self.model.config

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def device(self) -> torch.device:
        return self.model.codebook0_head.weight.device

    # -- rows ---------------------------------------------------------------------------

    def encode(self, segment: Segment) -> torch.Tensor:
        """The segment's audio as Mimi codes [K, F] (cached per segment)."""
        if segment.audio is None:
            raise ValueError(f"{segment!r} has no audio to encode")
        if segment not in self._codes:
            self._codes[segment] = self.codec.encode(segment.audio, segment.sample_rate).cpu()
        return self._codes[segment]

    def segment_rows(self, segment: Segment) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of one context segment: text rows, audio rows, all-zero EOS row. [S, K+1]."""
        K = self.config.num_codebooks
        tokens, mask = text_rows(self.tokenizer, segment.text, segment.speaker, K)
        if segment.audio is None:
            return tokens, mask
        a_tokens, a_mask = audio_rows(self.encode(segment), K)
        return torch.cat([tokens, a_tokens]), torch.cat([mask, a_mask])

    def max_frames(self, max_audio_length_ms) -> int:
        """Frames the new line may take: int(ms / 80), as the official generator rounds."""
        return max_frames(max_audio_length_ms, self.config.frame_ms)

    def _plan(self, text, speaker, context, max_audio_length_ms):
        """Check the arguments; -> (context, rows per segment, the new line's rows, budget)."""
        target = Segment(speaker, text)                          # checks text and speaker
        context = _check_context(context)
        max_frames = self.max_frames(max_audio_length_ms)
        rows = [self.segment_rows(seg) for seg in context]
        new = text_rows(self.tokenizer, target.text, target.speaker, self.config.num_codebooks)
        budget = ContextBudget(
            segment_rows=tuple(t.shape[0] for t, _ in rows),
            segment_frames=tuple(0 if s.audio is None else self.encode(s).shape[1]
                                 for s in context),
            text_rows=new[0].shape[0], max_frames=max_frames,
            max_seq_len=self.config.max_seq_len,
            labels=tuple(_name(i, s) for i, s in enumerate(context)))
        return context, rows, new, budget

    def context_budget(self, text: str, speaker: int, context: Sequence[Segment] = (),
                       max_audio_length_ms: float = 10_000) -> ContextBudget:
        """Count the rows a call would need, without generating anything."""
        return self._plan(text, speaker, context, max_audio_length_ms)[3]

    def prompt_rows(self, text: str, speaker: int, context: Sequence[Segment] = (),
                    max_audio_length_ms: float = 10_000, strict: bool = False):
        """The prompt the model reads: (tokens [S, K+1], mask [S, K+1], max_frames).

        Oldest segments are dropped (ContextTrimmed warning) when the rows do not fit;
        strict=True raises instead.
        """
        context, rows, new, budget = self._plan(text, speaker, context, max_audio_length_ms)
        if not budget.fits:
            keep = budget.first_kept
            if keep is None:
                raise ValueError(
                    f"text={text[:40]!r}... is too long even without context: its "
                    f"{budget.text_rows} text rows + {budget.max_frames} frames exceed the "
                    f"{budget.max_seq_len} rows the model sees; shorten the text or lower "
                    "max_audio_length_ms (each 80 ms costs a row)")
            if strict:
                raise ValueError(f"the context does not fit (strict=True): {budget}. Lower "
                                 "max_audio_length_ms (each 80 ms costs a row) or shorten "
                                 "the context")
            dropped = ", ".join(budget.labels[:keep])
            warnings.warn(f"context trimmed to fit {budget.max_seq_len} rows: dropped the "
                          f"oldest segment(s) {dropped} ({sum(budget.segment_rows[:keep])} "
                          f"rows); {budget}", ContextTrimmed, stacklevel=2)
            rows = rows[keep:]
        tokens = torch.cat([t for t, _ in rows] + [new[0]])
        mask = torch.cat([m for _, m in rows] + [new[1]])
        return tokens, mask, budget.max_frames

    # -- generation ---------------------------------------------------------------------

    def _mimi_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """CSM's bins 2048..2050 are not Mimi codes (official inference never feeds them, but
        sampling does not exclude them, and Mimi cannot decode them): clamp to Mimi's last
        code, as VoxServe does. Random tiny models hit them often; trained ones rarely."""
        return codes.clamp(max=self.codec.codebook_size - 1)

    def _finish(self, audio: torch.Tensor) -> torch.Tensor:
        audio = audio.detach().to("cpu", torch.float32)
        if self.watermark is None:
            return audio
        marked = self.watermark(audio, self.sample_rate)
        if not isinstance(marked, torch.Tensor) or marked.shape != audio.shape:
            raise ValueError(f"the watermark hook returned {type(marked).__name__} "
                             f"{tuple(getattr(marked, 'shape', ()))}; it must return a tensor "
                             f"shaped like its input {tuple(audio.shape)}")
        return marked.to(torch.float32)

    def generate(self, text: str, speaker: int, context: Sequence[Segment] = (),
                 max_audio_length_ms: float = 10_000, temperature: float = 0.9,
                 topk: int = 50, seed: int | None = None, progress: bool = True,
                 strict: bool = False, runaway_guard: RunawayGuard | None = None
                 ) -> torch.Tensor:
        """Speak `text` as `speaker`, continuing `context`: -> 1-D float32 [F * 1920] at 24 kHz.

        seed: an int makes the call reproducible (a torch.Generator on the model's device).
        strict: raise instead of dropping the oldest context segments when they do not fit.
        runaway_guard: stop early on a silent or frozen tail (see RunawayGuard); off by default.
        """
        job = self._job(text, speaker, context, max_audio_length_ms, temperature, topk, seed,
                        strict, runaway_guard)
        with _progress_bar(job["max_frames"], progress) as bar:
            if runaway_guard is None:                 # codes first, then one Mimi call
                with self._out_of_memory_advice(job):
                    with self._lock:
                        codes = generate_codes(self.model, *job["args"],
                                               on_frame=lambda info: bar.update(1))   # [K, F]
                    audio = self.codec.decode(self._mimi_codes(codes))
            else:                                     # the guard listens: decode as we go
                chunks = [torch.zeros(0)]
                self._decode_while_generating(job, _DEFAULT_CHUNK, chunks.append,
                                              lambda: bar.update(1))
                audio = torch.cat([c.cpu() for c in chunks])
        return self._finish(audio)

    def generate_stream(self, text: str, speaker: int, context: Sequence[Segment] = (),
                        max_audio_length_ms: float = 10_000, temperature: float = 0.9,
                        topk: int = 50, seed: int | None = None, progress: bool = True,
                        strict: bool = False, runaway_guard: RunawayGuard | None = None,
                        chunk_frames: int = _DEFAULT_CHUNK) -> Iterator[torch.Tensor]:
        """Yield 1-D float32 chunks of `chunk_frames` frames (chunk_frames x 1920 samples) as
        they are generated; the last may be shorter. Concatenated, they equal `generate` with
        the same arguments and seed (within 1e-4; a watermark hook is applied per chunk).
        Arguments are checked now; generation starts at the first `next()`. The first chunk
        comes after prefill + chunk_frames frames: smaller chunks, sooner audio, more Mimi
        calls (each has a fixed cost of ~760 ops, reference doc sec. 10).
        """
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or (
                chunk_frames < 1):
            raise ValueError(f"chunk_frames={chunk_frames!r} must be an int >= 1 (frames of "
                             f"{self.config.frame_ms:g} ms per chunk)")
        job = self._job(text, speaker, context, max_audio_length_ms, temperature, topk, seed,
                        strict, runaway_guard)

        def work(put):                                # in the worker thread
            self._decode_while_generating(job, chunk_frames, lambda c: put(c.cpu()),
                                          lambda: put(None))

        def chunks():
            worker = self._active = _Worker(work)
            try:
                with _progress_bar(job["max_frames"], progress) as bar:
                    for item in worker:
                        if item is None:              # one frame generated
                            bar.update(1)
                        else:
                            yield self._finish(item)
            finally:
                worker.close()
        return chunks()

    def _job(self, text, speaker, context, max_audio_length_ms, temperature, topk, seed,
             strict, guard) -> dict:
        """Check every argument and build the prompt, before any generation starts."""
        tokens, mask, frames = self.prompt_rows(text, speaker, context, max_audio_length_ms,
                                                strict)
        check_sampling_args(temperature, topk, self.config.audio_vocab_size)
        if guard is not None and not isinstance(guard, RunawayGuard):
            raise TypeError(f"runaway_guard must be a csm_nb.speech.generator.RunawayGuard or None, "
                            f"got {type(guard).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed={seed!r} must be an int (or None for a fresh draw)")
        if seed is not None and not -2 ** 63 <= seed < 2 ** 64:     # what manual_seed takes
            raise ValueError(f"seed={seed} does not fit in 64 bits; use a smaller int, e.g. 0")
        if self._active is not None:                  # a half-read stream: stop it first
            self._active.close()
            self._active = None
        rng = None if seed is None else torch.Generator(self.device).manual_seed(int(seed))
        return {"args": (tokens, mask, frames, temperature, topk, rng), "max_frames": frames,
                "guard": guard}

    def _decode_while_generating(self, job, chunk_frames, emit, tick) -> None:
        """generate_codes with Mimi decoding each chunk as soon as its frames exist."""
        decoder = ChunkDecoder(self, chunk_frames, job["guard"])

        def on_frame(info):
            tick()
            for chunk in decoder.push(info.codes[0]):          # [B=1, K] -> [K]
                emit(chunk)
            return STOP if decoder.done else None                # STOP ends the frame loop
        with self._out_of_memory_advice(job):
            with self._lock:
                generate_codes(self.model, *job["args"], on_frame=on_frame)
            for chunk in decoder.flush():
                emit(chunk)

    @contextlib.contextmanager
    def _out_of_memory_advice(self, job):
        """Turn the device's bare "out of memory" into what to lower, with this call's numbers.

        Same type (torch.OutOfMemoryError), so `except torch.OutOfMemoryError` still works.
        The allocator's cached blocks are released, so a retry with smaller settings has room.
        """
        try:
            yield
        except torch.OutOfMemoryError as err:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
            rows, frames = job["args"][0].shape[0], job["max_frames"]
            root = err                            # the allocator's words, under any rewording
            while isinstance(root.__cause__, torch.OutOfMemoryError):
                root = root.__cause__
            device_said = (str(root).strip().splitlines() or [""])[0][:200]
            raise torch.OutOfMemoryError(
                f"out of memory on {self.device} while generating: a prompt of {rows} rows "
                f"(context + text) and up to {frames} frames "
                f"(max_audio_length_ms={frames * self.config.frame_ms:g}), model in "
                f"{self.model.codebook0_head.weight.dtype}. Lower max_audio_length_ms, shorten "
                "the context (fewer or shorter segments), load the model in half precision "
                "(load_generator(dtype=torch.bfloat16), or torch.float16 on GPUs without bf16), "
                "or free memory (delete other models and generators, then "
                f"torch.cuda.empty_cache()). The device said: {device_said}") from err

    def decode_frames(self, frames, chunk_frames: int = _DEFAULT_CHUNK,
                      guard: RunawayGuard | None = None) -> Iterator[torch.Tensor]:
        """Decode any sequence of frames [K] as a stream would: chunks until the end frame or
        the guard (for trying the guard on codes of your own)."""
        decoder = ChunkDecoder(self, chunk_frames, guard)
        for codes in frames:
            yield from decoder.push(codes)
            if decoder.done:
                return
        yield from decoder.flush()

    def generate_conversation(self, turns: Sequence[tuple[int, str]],
                              prompts: Sequence[Segment] = (), seed: int | None = None,
                              **kwargs) -> list[Segment]:
        """Speak each (speaker, text) turn in order, each with the prompts and every earlier
        generated turn as context (as the official demo does). Returns the new segments.
        seed: turn i uses seed + i. Other keyword arguments go to `generate`."""
        context, spoken = list(_check_context(prompts)), []
        turns = list(turns)
        for i, turn in enumerate(turns):    # every turn checked before minutes of generating
            if not (isinstance(turn, (tuple, list)) and len(turn) == 2):
                raise TypeError(f"turns[{i}]={turn!r} must be a (speaker, text) pair")
            try:
                Segment(*turn)
            except (ValueError, TypeError) as err:
                raise type(err)(f"turns[{i}]: {err}") from None
        for i, (speaker, text) in enumerate(turns):
            audio = self.generate(text, speaker, context,
                                  seed=None if seed is None else seed + i, **kwargs)
            if audio.numel() == 0:        # stopped at once: keep the turn, audio-less
                warnings.warn(f"turn {i} ({text[:30]!r}) produced no audio (the model ended "
                              "the line at once); it stays in the context as text only")
                seg = Segment(speaker, text, label=f"turn {i}")
            else:
                seg = Segment(speaker, text, audio, self.sample_rate, label=f"turn {i}")
            spoken.append(seg)
            context.append(seg)
        return spoken


def _check_context(context) -> list[Segment]:
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


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="frame", desc="generating", disable=not enabled)


def load_generator(mode: str | None = None, device=None, dtype=None,
                   watermark: Watermark | None = None) -> Generator:
    """CSM, tokenizer and Mimi from ONE mode decision. mode: "real" | "tiny" | "auto" (None:
    $CSM_NB_MODE, else auto). `auto` resolves once (real if the weights load, else tiny with
    the banner) and all three parts follow it. device/dtype: the model's (Mimi stays fp32)."""
    from ..audio.mimi import load_codec
    from ..loading.weights import load_model
    from ..loading.modes import resolve_mode
    from ..loading.tokenizer import load_tokenizer

    mode = resolve_mode(mode)                                      # $CSM_NB_MODE read once
    model, mode = load_model(mode, device=device, dtype=dtype)     # "real" or "tiny" now
    tokenizer = load_tokenizer(mode=mode)
    codec = load_codec(mode=mode, device=model.codebook0_head.weight.device)
    return Generator(model, tokenizer, codec, mode=mode, watermark=watermark)
