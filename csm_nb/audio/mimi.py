"""Mimi, the audio codec CSM speaks in: waveform <-> 32 x F codes at 12.5 Hz.

`Codec` wraps moshi's `MimiModel` with all 32 codebooks on: `encode` (audio at any rate, mono
or batched) -> int64 codes [K, F]; `decode` (any prefix of the K levels) -> float32 audio;
`stream()` -> a `CodecStream` that decodes frame by frame as CSM speaks. Where the weights
come from (real, tiny random) is audio/mimi_weights.py; `load_codec` builds one. moshi is
imported lazily, inside functions, so `import csm_nb` stays light.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from ..core.config import MIMI_CODEBOOK_SIZE, MIMI_CODEBOOKS, SAMPLE_RATE, SAMPLES_PER_FRAME
from .signal import prepare_audio

NUM_CODEBOOKS, CODEBOOK_SIZE = MIMI_CODEBOOKS, MIMI_CODEBOOK_SIZE
CODE_BITS: int = int(math.log2(CODEBOOK_SIZE))    # 11 bits per code
_INT_CODE_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class MimiUnavailable(RuntimeError):
    """Real Mimi weights could not be found; the message says how to get them."""


def _device_of(module) -> torch.device:
    return next(module.parameters()).device


@contextlib.contextmanager
def _eager():
    """Run Mimi eagerly, whatever $NO_TORCH_COMPILE said when moshi was imported.

    moshi reads NO_TORCH_COMPILE once, at import, to decide whether `apply_rope` (on Mimi's
    path) is torch.compile'd on first use: that needs triton or a C++ toolchain, takes
    seconds, and breaks on Windows/Mac. A notebook cannot control import order, so instead
    every Mimi call runs inside moshi's `no_compile()`, which moshi checks per call: the
    same eager numbers on Colab, laptops and CI, no matter who imported moshi first.
    """
    from moshi.utils.compile import no_compile
    with no_compile(), torch.no_grad():
        yield


class Codec:
    """Waveform <-> Mimi codes. `encode` -> int64 [K, F]; `decode` -> float32 [F * 1920]."""

    def __init__(self, mimi, mode: str, origin: str = ""):
        self.mimi = mimi.eval()
        self.mode, self.origin = mode, origin
        self.sample_rate: int = int(mimi.sample_rate)           # 24000
        self.frame_rate: float = float(mimi.frame_rate)         # 12.5
        self.samples_per_frame: int = int(mimi.frame_size)      # 1920
        self.num_codebooks: int = int(mimi.total_codebooks)     # 32
        self.codebook_size: int = int(mimi.cardinality)         # 2048
        self.num_semantic: int = int(mimi.quantizer.n_q_semantic)  # 1: codebook 0
        if self.samples_per_frame != SAMPLES_PER_FRAME or self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"this Mimi has {self.samples_per_frame} samples per frame at "
                             f"{self.sample_rate} Hz; CSM needs {SAMPLES_PER_FRAME} at "
                             f"{SAMPLE_RATE} Hz (keep moshi's ratios and frame rate)")

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.mimi.parameters())
        return (f"Codec({self.mode} Mimi: {self.origin}; {params:,} parameters on "
                f"{self.device}; {self.num_codebooks} codebooks x {self.codebook_size} bins at "
                f"{self.frame_rate} Hz, {self.samples_per_frame} samples per frame)")

    @property
    def device(self) -> torch.device:
        return _device_of(self.mimi)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.mimi.parameters()).dtype

    def num_frames(self, num_samples: int) -> int:
        """F = ceil(T / 1920): Mimi right-pads the last partial frame with zeros."""
        return math.ceil(num_samples / self.samples_per_frame)

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Bits per second: frame rate x codebooks x log2(bins) (4400 for 32 levels)."""
        n = self.num_codebooks if num_codebooks is None else _check_levels(
            num_codebooks, self.num_codebooks)
        return self.frame_rate * n * math.log2(self.codebook_size)

    def encode(self, wav, sample_rate: int) -> torch.Tensor:
        """wav: 1-D [T] or [C, T] (C <= 2), float or int PCM, any rate -> int64 [K, F]."""
        x = prepare_audio(wav, sample_rate, self.sample_rate)        # [T] float32 at 24 kHz
        with _eager():
            codes = self.mimi.encode(self._to_model(x))               # [1, K, F]
        return codes[0].long()

    def decode(self, codes, num_codebooks: int | None = None) -> torch.Tensor:
        """codes int [K, F] (or [B, K, F]) -> float32 [F * 1920] (or [B, F * 1920]).

        num_codebooks=n decodes from levels 0..n-1 only: RVQ's coarse-to-fine prefix.
        """
        codes, one_clip = self._check_codes(codes, num_codebooks)     # [B, n, F]
        if codes.shape[-1] == 0:   # nothing to decode (e.g. CSM stopped at once)
            out = torch.zeros(codes.shape[0], 0, device=self.device)
        else:
            with _eager():
                out = self.mimi.decode(codes)[:, 0].float()           # [B, F * 1920]
        return out[0] if one_clip else out

    def decode_levels(self, codes, levels) -> torch.Tensor:
        """Decode from any set of levels, e.g. [0] (semantic only) or range(1, 32) (acoustic
        only). RVQ is a sum: the latent is the sum of the chosen levels' centroids, each RVQ's
        part through its output projection, exactly as moshi's decode does for a prefix."""
        codes, one_clip = self._check_codes(codes, None)              # [B, K, F]
        levels = _check_level_set(levels, codes.shape[1])
        quantizer, n_sem = self.mimi.quantizer, self.num_semantic
        parts = ((quantizer.rvq_first, 0, [k for k in levels if k < n_sem]),
                 (quantizer.rvq_rest, n_sem, [k - n_sem for k in levels if k >= n_sem]))
        latent = 0
        with _eager():
            for rvq, offset, chosen in parts:
                if chosen and codes.shape[-1]:      # 0 frames: a conv cannot take them
                    summed = sum(rvq.vq.layers[i].decode(codes[:, offset + i])  # [B, D, F]
                                 for i in chosen)
                    latent = latent + rvq.output_proj(summed)
            if codes.shape[-1] == 0:
                out = torch.zeros(codes.shape[0], 0, device=self.device)
            else:   # the rest of MimiModel.decode: upsample, transformer, SEANet decoder
                emb = self.mimi._to_encoder_framerate(latent)
                if self.mimi.decoder_transformer is not None:
                    (emb,) = self.mimi.decoder_transformer(emb)
                out = self.mimi.decoder(emb)[:, 0].float()                # [B, F * 1920]
        return out[0] if one_clip else out

    def stream(self, num_codebooks: int | None = None) -> "CodecStream":
        """A streaming session: feed 24 kHz audio or codes piece by piece."""
        return CodecStream(self, num_codebooks)

    def encode_stream(self, wav, sample_rate: int, chunk_frames: int = 1):
        """Encode `chunk_frames` frames at a time; yields int64 [K, f]; same codes as encode."""
        x = prepare_audio(wav, sample_rate, self.sample_rate)
        step = _positive("chunk_frames", chunk_frames) * self.samples_per_frame

        def chunks():
            stream = self.stream()
            for start in range(0, x.shape[0], step):
                codes = stream.encode(x[start:start + step])
                if codes.shape[-1]:
                    yield codes
            last = stream.flush()                                    # the zero-padded tail
            if last.shape[-1]:
                yield last
        return chunks()

    def decode_stream(self, codes, chunk_frames: int = 1, num_codebooks: int | None = None):
        """Decode `chunk_frames` frames at a time; yields float32 [f * 1920] pieces."""
        codes, one_clip = self._check_codes(codes, num_codebooks)
        if not one_clip:
            raise ValueError(f"codes has shape {tuple(codes.shape)}; decode_stream takes one "
                             "clip [K, F]; loop over the batch")
        step = _positive("chunk_frames", chunk_frames)

        def chunks():
            stream = self.stream()
            for start in range(0, codes.shape[-1], step):
                yield stream.decode(codes[0, :, start:start + step])
        return chunks()

    # -- helpers shared with CodecStream
    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, self.dtype)[None, None]              # [1, 1, T]

    def _check_codes(self, codes, num_codebooks) -> tuple[torch.Tensor, bool]:
        """-> (codes [B, n, F] on the device, whether the input was one clip [K, F])."""
        codes = check_codes(codes, self.num_codebooks, self.codebook_size)
        one_clip = codes.ndim == 2
        codes = codes[None] if one_clip else codes                    # [B, K, F]
        if num_codebooks is not None:
            codes = codes[:, :_check_levels(num_codebooks, codes.shape[1])]
        return codes.to(self.device), one_clip


class CodecStream:
    """One streaming session over a shared Mimi: encode audio / decode codes as they come.

    moshi keeps streaming state (conv tails, transformer KV caches) inside the modules. We
    capture a fresh state once and swap it in only for the duration of each call, so
    sessions are independent, and one-shot `Codec.encode`/`decode` stay unaffected even if
    a session is abandoned halfway (as happens in notebooks).
    """

    def __init__(self, codec: Codec, num_codebooks: int | None = None):
        self.codec, self.num_codebooks = codec, num_codebooks
        mimi = codec.mimi
        self._ensure_idle()
        stack = mimi.streaming(1)                  # installs fresh states on every module
        self._state = mimi.get_streaming_state()
        stack.close()                              # detach them again (states stay valid)
        self._idle = {name: None for name in self._state}
        self._pending = torch.zeros(0)             # audio not yet a whole frame, [t < 1920]

    def _ensure_idle(self):
        if self.codec.mimi.is_streaming:
            raise RuntimeError("this Mimi is inside `mimi.streaming(...)` already; leave that "
                               "block before using Codec streams")

    @contextlib.contextmanager
    def _swapped_in(self):
        self._ensure_idle()
        self.codec.mimi.set_streaming_state(self._state)
        try:
            with _eager():
                yield
        finally:
            self.codec.mimi.set_streaming_state(self._idle)

    def encode(self, chunk) -> torch.Tensor:
        """chunk: 24 kHz audio of any length -> int64 [K, f] for the frames now complete."""
        spf = self.codec.samples_per_frame
        x = prepare_audio(chunk, self.codec.sample_rate, self.codec.sample_rate,
                          allow_empty=True)
        self._pending = torch.cat([self._pending, x])
        whole = self._pending.shape[0] // spf * spf
        if whole == 0:
            return torch.zeros(self.codec.num_codebooks, 0, dtype=torch.long,
                               device=self.codec.device)
        ready, self._pending = self._pending[:whole], self._pending[whole:]
        with self._swapped_in():
            return self.codec.mimi.encode(self.codec._to_model(ready))[0].long()

    def flush(self) -> torch.Tensor:
        """Encode what is left, zero-padded to a whole frame (as one-shot encode pads)."""
        if self._pending.shape[0] == 0:
            return self.encode(self._pending)
        pad = self.codec.samples_per_frame - self._pending.shape[0]
        return self.encode(torch.zeros(pad))

    def decode(self, codes) -> torch.Tensor:
        """codes int [K, f] -> float32 [f * 1920], continuing the previous chunks seamlessly."""
        codes, one_clip = self.codec._check_codes(codes, self.num_codebooks)
        if not one_clip:
            raise ValueError(f"codes has shape {tuple(codes.shape)}; a stream decodes one clip "
                             "[K, f] at a time")
        if codes.shape[-1] == 0:
            return torch.zeros(0, device=self.codec.device)
        with self._swapped_in():
            return self.codec.mimi.decode(codes)[0, 0].float()


# ------------------------------------------------------------------ checking codes

def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}={value} must be >= 1")
    return int(value)


def _check_levels(n, available: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"num_codebooks must be an int in 1..{available}, got "
                        f"{type(n).__name__} {n!r}")
    if not 1 <= n <= available:
        raise ValueError(f"num_codebooks={n} is outside 1..{available}: decode needs at least "
                         f"codebook 0 and there are only {available} levels")
    return int(n)


def _check_level_set(levels, available: int) -> list[int]:
    try:
        chosen = sorted({int(k) for k in levels})
    except (TypeError, ValueError) as err:
        raise TypeError(f"levels must be a list of codebook indices, got {levels!r}") from err
    if not chosen or chosen[0] < 0 or chosen[-1] >= available:
        raise ValueError(f"levels={levels!r} must be a non-empty set of indices in "
                         f"0..{available - 1}, e.g. [0] or range(1, {available})")
    return chosen


def check_codes(codes, num_codebooks: int = NUM_CODEBOOKS,
                codebook_size: int = CODEBOOK_SIZE) -> torch.Tensor:
    """Validate Mimi codes: integer [K, F] or [B, K, F], K <= 32, values in 0..2047."""
    if isinstance(codes, np.ndarray):
        if codes.dtype.kind not in "iu" or codes.dtype.byteorder == ">":
            raise TypeError(f"codes has dtype {codes.dtype}; codes are integer ids: pass "
                            "codes.astype(np.int64)")
        codes = torch.from_numpy(codes)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch tensor or numpy array of ints, got "
                        f"{type(codes).__name__}")
    if codes.dtype not in _INT_CODE_DTYPES:   # floats, bool, complex; uint16..64 can't compare
        raise TypeError(f"codes has dtype {codes.dtype}; codes are integer ids: pass "
                        "codes.long() (and check where floats came from)")
    if codes.ndim not in (2, 3) or not 1 <= codes.shape[-2] <= num_codebooks or (
            codes.ndim == 3 and codes.shape[0] == 0):
        raise ValueError(f"codes has shape {tuple(codes.shape)}; expected [K, F] (or "
                         f"[B, K, F], B >= 1) with K in 1..{num_codebooks} codebooks and F "
                         "frames; a CSM frame list [F, K] needs .T")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes hold values in {int(codes.min())}..{int(codes.max())}; Mimi "
                         f"codes are 0..{codebook_size - 1} (CSM's ids {codebook_size} and up "
                         "are special tokens, not audio): drop or clamp them")
    return codes.long()
