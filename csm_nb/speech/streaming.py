"""Streaming parts: decoding frames into audio chunks as they arrive, the runaway guard,
and the worker thread that lets a frame loop with callbacks feed a Python generator."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

DEFAULT_CHUNK = 10          # frames per streamed chunk (0.8 s): Mimi calls stay few


def codec_codes(codes: torch.Tensor, codec) -> torch.Tensor:
    """CSM's codes as the codec can decode them. CSM's bins above the codec's codes (2048..2050
    for Mimi) are not codes: official inference never feeds them, but sampling does not exclude
    them, and Mimi cannot decode them. They are clamped to the codec's last code, as VoxServe
    does. Random tiny models hit them often; trained ones rarely."""
    return codes.clamp(max=codec.codebook_size - 1)


@dataclass(frozen=True)
class RunawayGuard:
    """Stop a generation whose tail has gone silent or frozen.

    The base model sometimes never emits the all-zero end frame and trails near-silence up
    to `max_audio_length_ms` (docs/csm-reference.md sec. 5; SesameAILabs/csm#122). The guard stops
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

    def __init__(self, codec, chunk_frames: int, guard: RunawayGuard | None = None):
        self.codec, self.chunk_frames, self.guard = codec, chunk_frames, guard
        self.stream = codec.stream()
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
        codes = codec_codes(torch.stack(frames, dim=1), self.codec)            # [K, f]
        audio = self.stream.decode(codes)                                      # [f * 1920]
        if self.guard is not None:
            spf = self.codec.samples_per_frame
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
