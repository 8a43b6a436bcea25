"""Conversational generation: `Generator` (CSM + tokenizer + codec) and `load_generator`.

A line to speak is its text rows after the context segments' rows (speech/segment.py), within
the backbone's window (speech/budget.py); the model continues with audio frames, which the
codec decodes, at once or chunk by chunk (speech/streaming.py).

Watermark: the official generator watermarks its output with silentcipher, which cannot be
installed with this project's pins (it caps torch at 2.0 and downloads weights at call time).
Nothing `csm_nb` makes is watermarked unless you pass a `watermark` hook, a callable
`(audio [T] float32, sample_rate) -> audio [T]` applied to every output.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
import weakref
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..core.config import CSMConfig
from ..core.generate import STOP, generate_codes, out_of_memory_error
from ..core.model import CSM
from ..core.rows import text_rows
from ..core.sampling import check_sampling_args
from .budget import ContextBudget
from .segment import Segment, check_context, describe, max_frames, segment_rows
from .streaming import DEFAULT_CHUNK, ChunkDecoder, RunawayGuard, _Worker, codec_codes

Watermark = Callable[[torch.Tensor, int], torch.Tensor]


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
                f"{self.model.num_parameters:,} CSM parameters, codec={type(self.codec).__name__} "
                f"({self.codec.mode}),"
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
        """The segment's audio as Mimi codes [K, F] (cached per segment; a segment given by
        its codes has them already)."""
        if segment.codes is not None:
            return segment.codes
        if segment.audio is None:
            raise ValueError(f"{segment!r} has no audio to encode")
        if segment not in self._codes:
            self._codes[segment] = self.codec.encode(segment.audio, segment.sample_rate).cpu()
        return self._codes[segment]

    def segment_rows(self, segment: Segment) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of one context segment: text rows, audio rows, all-zero EOS row. [S, K+1]."""
        return segment_rows(self.tokenizer, segment, self.config.num_codebooks, self.encode)

    def max_frames(self, max_audio_length_ms) -> int:
        """Frames the new line may take: int(ms / 80), as the official generator rounds."""
        return max_frames(max_audio_length_ms, self.config.frame_ms)

    def _plan(self, text, speaker, context, max_audio_length_ms):
        """Check the arguments; -> (context, rows per segment, the new line's rows, budget)."""
        target = Segment(speaker, text)                          # checks text and speaker
        context = check_context(context)
        max_frames = self.max_frames(max_audio_length_ms)
        rows = [self.segment_rows(seg) for seg in context]
        new = text_rows(self.tokenizer, target.text, target.speaker, self.config.num_codebooks)
        budget = ContextBudget(
            segment_rows=tuple(t.shape[0] for t, _ in rows),
            segment_frames=tuple(self.encode(s).shape[1] if s.has_sound else 0
                                 for s in context),
            text_rows=new[0].shape[0], max_frames=max_frames,
            max_seq_len=self.config.max_seq_len,
            labels=tuple(describe(i, s) for i, s in enumerate(context)))
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
        rows = rows[budget.segments_to_drop(text, strict):]
        tokens = torch.cat([t for t, _ in rows] + [new[0]])
        mask = torch.cat([m for _, m in rows] + [new[1]])
        return tokens, mask, budget.max_frames

    # -- generation ---------------------------------------------------------------------

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
                 topk: int = 50, seed: int | None = None, progress: bool | Callable = True,
                 strict: bool = False, runaway_guard: RunawayGuard | None = None
                 ) -> torch.Tensor:
        """Speak `text` as `speaker`, continuing `context`: -> 1-D float32 [F * 1920] at 24 kHz.

        seed: an int makes the call reproducible (a torch.Generator on the model's device).
        progress: True = a progress bar, False = none, or a function called with (frames done,
        frames allowed) after each frame.
        strict: raise instead of dropping the oldest context segments when they do not fit.
        runaway_guard: stop early on a silent or frozen tail (see RunawayGuard); off by default.
        """
        job = self._job(text, speaker, context, max_audio_length_ms, temperature, topk, seed,
                        strict, runaway_guard)
        with _Progress(job["max_frames"], progress) as bar:
            if runaway_guard is None:                 # codes first, then one Mimi call
                with self._out_of_memory_advice(job):
                    with self._lock:
                        codes = generate_codes(self.model, *job["args"],
                                               on_frame=lambda info: bar.update(1))   # [K, F]
                    audio = self.codec.decode(codec_codes(codes, self.codec))
            else:                                     # the guard listens: decode as we go
                chunks = [torch.zeros(0)]
                self._decode_while_generating(job, DEFAULT_CHUNK, chunks.append,
                                              lambda: bar.update(1))
                audio = torch.cat([c.cpu() for c in chunks])
        return self._finish(audio)

    def generate_stream(self, text: str, speaker: int, context: Sequence[Segment] = (),
                        max_audio_length_ms: float = 10_000, temperature: float = 0.9,
                        topk: int = 50, seed: int | None = None, progress: bool | Callable = True,
                        strict: bool = False, runaway_guard: RunawayGuard | None = None,
                        chunk_frames: int = DEFAULT_CHUNK) -> Iterator[torch.Tensor]:
        """Yield 1-D float32 chunks of `chunk_frames` frames (chunk_frames x 1920 samples) as
        they are generated; the last may be shorter. Concatenated, they equal `generate` with
        the same arguments and seed (within 1e-4; a watermark hook is applied per chunk).
        Arguments are checked now; generation starts at the first `next()`. The first chunk
        comes after prefill + chunk_frames frames: smaller chunks, sooner audio, more Mimi
        calls (each has a fixed cost of ~760 ops, docs/csm-reference.md sec. 10).
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
                with _Progress(job["max_frames"], progress) as bar:
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
            raise TypeError(f"runaway_guard must be a csm_nb.RunawayGuard or None, got "
                            f"{type(guard).__name__}")
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
        decoder = ChunkDecoder(self.codec, chunk_frames, job["guard"])

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
        """The device's "out of memory", in this call's terms (see out_of_memory_error)."""
        try:
            yield
        except torch.OutOfMemoryError as err:
            rows, frames = job["args"][0].shape[0], job["max_frames"]
            raise out_of_memory_error(
                err, self.device, f"while generating: a prompt of {rows} rows (context + text) "
                f"and up to {frames} frames (max_audio_length_ms="
                f"{frames * self.config.frame_ms:g}), model in "
                f"{self.model.codebook0_head.weight.dtype}",
                "max_audio_length_ms, shorten the context (fewer or shorter segments)") from err

    def decode_frames(self, frames, chunk_frames: int = DEFAULT_CHUNK,
                      guard: RunawayGuard | None = None) -> Iterator[torch.Tensor]:
        """Decode any sequence of frames [K] as a stream would: chunks until the end frame or
        the guard (for trying the guard on codes of your own)."""
        decoder = ChunkDecoder(self.codec, chunk_frames, guard)
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
        return list(self.conversation(turns, prompts, seed, **kwargs))

    def conversation(self, turns: Sequence[tuple[int, str]], prompts: Sequence[Segment] = (),
                     seed: int | None = None, **kwargs) -> Iterator[Segment]:
        """`generate_conversation` one turn at a time: yields each new Segment as soon as it
        is spoken (the demo app shows turns as they come). Every turn is checked now, before
        any generation."""
        context = list(check_context(prompts))
        turns = list(turns)
        for i, turn in enumerate(turns):    # every turn checked before minutes of generating
            if not (isinstance(turn, (tuple, list)) and len(turn) == 2):
                raise TypeError(f"turns[{i}]={turn!r} must be a (speaker, text) pair")
            try:
                Segment(*turn)
            except (ValueError, TypeError) as err:
                raise type(err)(f"turns[{i}]: {err}") from None
        return self._speak_turns(turns, context, seed, kwargs)

    def _speak_turns(self, turns, context, seed, kwargs) -> Iterator[Segment]:
        for i, (speaker, text) in enumerate(turns):
            audio = self.generate(text, speaker, context,
                                  seed=None if seed is None else seed + i, **kwargs)
            if audio.numel() == 0:        # stopped at once: keep the turn, audio-less
                warnings.warn(f"turn {i} ({text[:30]!r}) produced no audio (the model ended "
                              "the line at once); it stays in the context as text only")
                seg = Segment(speaker, text, label=f"turn {i}")
            else:
                seg = Segment(speaker, text, audio, self.sample_rate, label=f"turn {i}")
            context.append(seg)
            yield seg


class _Progress:
    """progress=True: a tqdm bar; False: nothing; a function: called (frames done, frames
    allowed) after each frame (the demo app feeds its own progress display this way)."""

    def __init__(self, total: int, progress: bool | Callable[[int, int], None]):
        self.total, self.done, self.report, self.bar = total, 0, None, None
        if not (isinstance(progress, bool) or callable(progress)):
            raise TypeError(f"progress must be True, False or a function (done, total), got "
                            f"{type(progress).__name__}")
        if callable(progress):
            self.report = progress
        else:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="frame", desc="generating", disable=not progress)

    def update(self, frames: int = 1) -> None:
        self.done += frames
        if self.report is not None:
            self.report(self.done, self.total)
        else:
            self.bar.update(frames)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def load_generator(mode: str | None = None, device=None, dtype=None,
                   watermark: Watermark | None = None) -> Generator:
    """CSM, tokenizer and codec from ONE mode decision. mode: "real" | "toy" | "tiny" | "auto"
    (None: $CSM_NB_MODE, else auto). `auto` resolves once (real if the weights load, else toy with
    the banner) and all three parts follow it. device/dtype: the model's (Mimi stays fp32)."""
    from ..audio.mimi_weights import load_codec
    from ..loading.weights import load_model
    from ..loading.modes import resolve_mode
    from ..loading.tokenizer import load_tokenizer

    mode = resolve_mode(mode)                                      # $CSM_NB_MODE read once
    model, mode = load_model(mode, device=device, dtype=dtype)     # "real", "toy" or "tiny" now
    tokenizer = load_tokenizer(mode=mode)
    codec = load_codec(mode=mode, device=model.codebook0_head.weight.device)
    return Generator(model, tokenizer, codec, mode=mode, watermark=watermark)
