"""Mimi, the audio codec CSM speaks in: waveform <-> 32 x F codes at 12.5 Hz.

`load_codec()` returns a `Codec` around moshi's `MimiModel` with all 32 codebooks on:

    real  the official weights: kyutai/moshiko-pytorch-bf16 /
          tokenizer-e351c8d8-checkpoint125.safetensors from the Hugging Face hub, or a local
          folder / .safetensors file (argument `source=` or $CSM_NB_MIMI). Never unpickled.
    tiny  a small random Mimi of the same structure (same ratios, 12.5 Hz, 1920 samples per
          frame, 32 codebooks of 2048 bins), seeded; its codes vary, its audio is noise.
    auto  real if it can be had, else tiny with csm_nb.loading.modes.banner().

Below the Codec: `CodecStream` (streaming), input checks (`prepare_audio`, `check_codes`),
and the quality measures a student can read (`mel_distance`, `si_sdr`). moshi is imported
lazily, inside functions, so `import csm_nb` stays light.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
from pathlib import Path

import numpy as np
import torch

from .. import env
from ..loading import modes
from ..core.config import (MIMI_CODEBOOK_SIZE, MIMI_CODEBOOKS, SAMPLE_RATE,
                           SAMPLES_PER_FRAME)

NUM_CODEBOOKS, CODEBOOK_SIZE = MIMI_CODEBOOKS, MIMI_CODEBOOK_SIZE
CODE_BITS: int = int(math.log2(CODEBOOK_SIZE))    # 11 bits per code

# tiny mode: moshi's own config, narrowed. Ratios [8, 6, 5, 4], frame rate 12.5, 32 x 2048
# codebooks are kept from moshi's dict so the codes fit CSM; only widths and depths shrink.
_TINY_WIDTH = 32          # SEANet latent = transformer d_model (the real one: 512)
_TINY_FILTERS = 4         # SEANet first-layer channels (real: 64)
_TINY_CODE_DIM = 16       # codebook vector size (real: 256)
_TINY_HEADS, _TINY_LAYERS, _TINY_FFN = 2, 1, 64
_CALIBRATION_SECONDS = 2  # seeded noise used to scale the random codebooks (see _fill_codebooks)
_CALIBRATION_LEVEL = 0.1  # its standard deviation: about that of speech at a normal level
# Input limits that turn hangs into errors. torchaudio's resampler builds a filter of about
# (target / g) x (rate / g) taps, g = gcd(rate, target): 3 x 4 for 32 kHz, 80 x 147 for
# 44.1 kHz, but 24000 x 24001 (2.3 GB, minutes) for a typo like 24001 Hz.
_MIN_SAMPLE_RATE = 1_000          # below this, "24" (kHz) would become 1000x longer audio
_MAX_RESAMPLE_TAPS = 2 ** 22      # 16 MB of float32 filter; common rates need < 20 000
_INT_CODE_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class MimiUnavailable(RuntimeError):
    """Real Mimi weights could not be found; the message says how to get them."""


def tiny_mimi_config() -> dict:
    """moshi's `_mimi_config` with small widths; same structure and frame layout."""
    from moshi.models import loaders
    cfg = copy.deepcopy(loaders._mimi_config)
    cfg["seanet"].update(dimension=_TINY_WIDTH, n_filters=_TINY_FILTERS)
    cfg["quantizer"].update(dimension=_TINY_CODE_DIM, n_q=NUM_CODEBOOKS,
                            input_dimension=_TINY_WIDTH, output_dimension=_TINY_WIDTH)
    cfg["transformer"].update(d_model=_TINY_WIDTH, num_heads=_TINY_HEADS,
                              num_layers=_TINY_LAYERS, dim_feedforward=_TINY_FFN,
                              input_dimension=_TINY_WIDTH, output_dimensions=[_TINY_WIDTH])
    return cfg


def build_random_mimi(config: dict | None = None, seed: int = 0, device="cpu"):
    """A random MimiModel (moshi's full size when `config` is None) with usable codebooks.

    Fresh moshi codebooks are all zero, so every code would be 0 (= CSM's end-of-audio frame):
    the trap `_fill_codebooks` avoids. Deterministic for a given seed, config and device.
    """
    from moshi.models import loaders
    # Built and filled on the CPU, then moved: the same weights on every device, and only
    # the CPU generator is touched (forked, so the caller's global RNG stays as it was).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mimi = loaders.get_mimi(None, config, device="cpu", num_codebooks=NUM_CODEBOOKS)
    _fill_codebooks(mimi, torch.Generator().manual_seed(seed))
    return mimi.to(device)


@torch.no_grad()
def _fill_codebooks(mimi, gen: torch.Generator) -> None:
    """Give each RVQ level random centroids scaled to the residual it will see.

    We encode seeded noise, then walk the levels as RVQ does: level k's centroids are
    Gaussian with the spread of the residual left by levels < k. So codes vary, and with
    more levels the quantised latent really converges (the RVQ lesson holds in tiny mode).
    By level 31 the residual is ~1e-5 of level 0's: float32 rounding (streaming and one-shot
    round differently) would then flip near-tied deep codes, so tiny mode runs in float64.
    """
    t = _CALIBRATION_SECONDS * mimi.sample_rate
    noise = _CALIBRATION_LEVEL * torch.randn(1, 1, t, generator=gen)     # [1, 1, T]
    with _eager():
        latent = mimi._encode_to_unquantized_latent(noise)        # [1, D, F]
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        residual = rvq.input_proj(latent) if rvq.input_proj is not None else latent
        for layer in rvq.vq.layers:
            book = layer._codebook
            spread = residual.std().item()
            centroids = torch.randn(book.embedding_sum.shape, generator=gen) * spread
            book.embedding_sum.copy_(centroids)     # cluster_usage is 1, so centroid = sum
            book.cluster_usage.fill_(1.0)
            book._initialized.fill_(1.0)
            book._embedding = None                  # drop moshi's lazily cached centroids
            residual = residual - layer.decode(layer.encode(residual))
    # Random output projections shrink the quantised latent to ~0.03, which the random
    # decoder's biases drown out; rescale it to unit spread so the decoder hears the codes.
    quantized = mimi.quantizer.decode(mimi.quantizer.encode(latent))      # [1, D, F]
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        if rvq.output_proj is not None:
            rvq.output_proj.weight.div_(quantized.std())


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


# --------------------------------------------------------------------------- loading

def _hub_hint() -> str:
    from moshi.models import loaders
    return (f"download it once where the hub is reachable (`huggingface-cli download "
            f"{loaders.DEFAULT_REPO} {loaders.MIMI_NAME}`), then point ${modes.MIMI_ENV} at the "
            "file or its folder; or use mode='tiny' for a random stand-in")


def find_mimi_weights(source: str | os.PathLike | None = None) -> Path:
    """Path of Mimi's .safetensors: `source`, else $CSM_NB_MIMI, else the hub (cached)."""
    from moshi.models import loaders
    origin = "source"
    if source is None and env.text(modes.MIMI_ENV):
        source, origin = env.text(modes.MIMI_ENV), f"${modes.MIMI_ENV}"
    if source is not None:
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / loaders.MIMI_NAME
            if not path.is_file():
                raise MimiUnavailable(f"{origin}={str(source)!r} is a folder without "
                                      f"{loaders.MIMI_NAME}; put the file there (the layout of "
                                      f"{loaders.DEFAULT_REPO}) or pass the file itself")
        if not path.is_file():
            raise MimiUnavailable(f"{origin}={str(source)!r} does not exist; pass a "
                                  f"folder holding {loaders.MIMI_NAME} or a .safetensors file")
        if path.suffix != ".safetensors":
            raise ValueError(f"{origin}={str(source)!r} is not a .safetensors file; csm_nb never "
                             "unpickles weights (a pickle can run code); convert it with "
                             "safetensors.torch.save_file")
        return path
    return _download(loaders.DEFAULT_REPO, loaders.MIMI_NAME)


def _download(repo: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hub_errors
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=env.hub_cache_dir(),
                                    local_files_only=env.hub_offline()))
    except hub_errors.GatedRepoError as err:
        raise MimiUnavailable(f"{repo} is gated: accept its terms on huggingface.co and log in "
                              f"(`huggingface-cli login`); or {_hub_hint()}") from err
    except hub_errors.RepositoryNotFoundError as err:
        raise MimiUnavailable(f"{repo} was not found (or is private); {_hub_hint()}") from err
    except hub_errors.LocalEntryNotFoundError as err:   # offline and not in the cache
        raise MimiUnavailable(f"{repo}/{filename} is not in the Hugging Face cache and the hub "
                              f"is unreachable (offline or HF_HUB_OFFLINE=1); {_hub_hint()}"
                              ) from err
    except hub_errors.EntryNotFoundError as err:
        raise MimiUnavailable(f"{repo} has no file {filename}; {_hub_hint()}") from err
    except (hub_errors.HfHubHTTPError, OSError) as err:
        raise MimiUnavailable(f"downloading {repo}/{filename} failed ({err}); {_hub_hint()}"
                              ) from err


def load_real_mimi(path: Path, device="cpu"):
    """moshi's full-size MimiModel with the weights in `path` (safetensors only)."""
    from moshi.models import loaders
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    mimi = loaders.get_mimi(None, device=device, num_codebooks=NUM_CODEBOOKS)
    try:
        state = load_file(str(path), device=str(device))
    except SafetensorError as err:       # so `auto` can fall back, saying why
        raise MimiUnavailable(f"{path} is not a readable safetensors file ({err}); it may be "
                              "truncated or corrupted: delete it and download it again"
                              ) from err
    try:
        mimi.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} is not a Mimi checkpoint of moshi's layout ({err}); expected "
                         f"{loaders.MIMI_NAME} from {loaders.DEFAULT_REPO}") from err
    mimi.set_num_codebooks(NUM_CODEBOOKS)
    return mimi


def load_codec(mode: str | None = None, device=None, dtype=None,
               source: str | os.PathLike | None = None, seed: int = 0) -> "Codec":
    """Mimi with 32 codebooks. mode: "real" | "tiny" | "auto" (None: $CSM_NB_MODE, else auto).

    device: None = csm_nb's default (CUDA, MPS, CPU); dtype: None = float32 for real Mimi (it
    stays fp32 in CSM), float64 for tiny (see _fill_codebooks); source: a folder or
    .safetensors file for real mode; seed: tiny mode's weights.
    """
    mode = modes.resolve_mode(mode)
    device = modes.resolve_device(device)
    real_dtype, tiny_dtype = (_codec_dtype(dtype, device, tiny) for tiny in (False, True))
    if mode == "tiny" and source is not None:
        raise ValueError(f"source={str(source)!r} is only read in real or auto mode; drop it, "
                         "or pass mode='real'")
    if mode in ("real", "auto"):
        try:
            path = find_mimi_weights(source)
            return Codec(load_real_mimi(path, device).to(real_dtype), "real", origin=str(path))
        except MimiUnavailable as err:
            if mode == "real":
                raise
            modes.banner("Mimi (the codec)", str(err))
    mimi = build_random_mimi(tiny_mimi_config(), seed=seed, device=device).to(tiny_dtype)
    return Codec(mimi, "tiny", origin=f"random, seed {seed}")


def _codec_dtype(dtype, device: torch.device, tiny: bool) -> torch.dtype:
    if dtype is None:      # MPS has no float64: tiny there accepts rare deep-level code flips
        return torch.float64 if tiny and device.type != "mps" else torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), dtype)
    allowed = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
    if dtype not in allowed:
        raise ValueError(f"dtype={dtype!r} is not a float dtype for Mimi; use torch.float32 "
                         "(or None for the default)")
    return dtype


# ----------------------------------------------------------------- the Codec wrapper

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


# ------------------------------------------------------------------ input checking

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


def prepare_audio(wav, sample_rate, target_rate: int = SAMPLE_RATE,
                  allow_empty: bool = False) -> torch.Tensor:
    """Any speech array -> 1-D float32 CPU tensor at `target_rate`: the checks CSM's #101 needed.

    Accepts [T] or [C, T] (C = 1 or 2, mixed to mono), float in [-1, 1] or int PCM
    (int16, int32, uint8), numpy or torch, any whole sample rate >= 1000 Hz with a workable
    ratio to `target_rate` (every common rate; see `_check_resampling`).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number)):
        raise TypeError(f"sample_rate must be a number of Hz, got "
                        f"{type(sample_rate).__name__} {sample_rate!r}")
    finite = isinstance(sample_rate, (int, np.integer)) or math.isfinite(sample_rate)
    if not (finite and sample_rate > 0) or sample_rate != int(sample_rate):
        raise ValueError(f"sample_rate={sample_rate} must be a positive whole number of Hz "
                         "(e.g. 24000, 44100)")
    _check_resampling(int(sample_rate), target_rate)
    if isinstance(wav, np.ndarray):
        if wav.dtype.kind not in "fiu":
            raise TypeError(f"wav has dtype {wav.dtype}; pass float audio in [-1, 1] or int16 "
                            "PCM")
        if wav.dtype.byteorder == ">":            # torch reads native byte order only
            raise ValueError(f"wav has big-endian dtype {wav.dtype}; convert it first: "
                             "wav.astype(wav.dtype.newbyteorder('='))")
        if wav.ndim == 0:                         # ascontiguousarray would make it [1]
            raise ValueError("wav has shape (); expected [T] or [C, T]")
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    if not isinstance(wav, torch.Tensor):
        raise TypeError(f"wav must be a numpy array or torch tensor, got {type(wav).__name__}; "
                        "wrap a list with np.asarray(..., dtype=np.float32)")
    wav = _to_float(wav.detach().cpu())
    if wav.ndim == 2:
        channels = wav.shape[0]
        if not 1 <= channels <= 2:
            hint = " (it looks like [T, C]: pass wav.T)" if wav.shape[1] <= 2 else ""
            raise ValueError(f"wav has shape {tuple(wav.shape)}: {channels} channels; expected "
                             f"[T] or [C, T] with C = 1 or 2{hint}")
        wav = wav.mean(dim=0)                         # mono mix: Mimi has one channel
    elif wav.ndim != 1:
        raise ValueError(f"wav has shape {tuple(wav.shape)}; expected [T] or [C, T]")
    if wav.shape[0] == 0 and not allow_empty:
        raise ValueError("wav is empty (0 samples); record or load some audio first")
    bad = ~torch.isfinite(wav)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"wav has {int(bad.sum())} NaN/inf samples (first at index {first}); "
                         "clean it, e.g. np.nan_to_num(wav)")
    if int(sample_rate) != target_rate and wav.shape[0]:
        import torchaudio.functional as AF
        wav = AF.resample(wav, int(sample_rate), target_rate)
    return wav.contiguous()


def _check_resampling(rate: int, target: int) -> None:
    """Refuse rates that are typos, before a resampler spends minutes and gigabytes on them."""
    if rate == target:
        return
    if rate < _MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate={rate} Hz is far below any audio rate (speech is "
                         f"recorded at 8000 Hz or more); did you mean {rate * 1000} (Hz, not kHz)?")
    g = math.gcd(rate, target)
    if (target // g) * (rate // g) > _MAX_RESAMPLE_TAPS:
        raise ValueError(
            f"sample_rate={rate} Hz has no simple ratio to {target} Hz ({target // g}/{rate // g}"
            " in lowest terms), so resampling would need a filter of "
            f"{(target // g) * (rate // g) * 4 / 1e9:.1f} GB and minutes: is it a typo? "
            "Common rates are 16000, 22050, 44100, 48000. If it is right, resample the audio "
            f"to {target} Hz yourself first (e.g. librosa.resample)")


def _to_float(wav: torch.Tensor) -> torch.Tensor:
    """int PCM -> float32 in [-1, 1); float stays float (as float32)."""
    if wav.is_floating_point():
        return wav.float()
    scale = {torch.int16: 2.0 ** 15, torch.int32: 2.0 ** 31, torch.int8: 2.0 ** 7}
    if wav.dtype == torch.uint8:                      # 8-bit WAV is unsigned, centred at 128
        return (wav.float() - 128.0) / 128.0
    if wav.dtype not in scale:
        raise TypeError(f"wav has dtype {wav.dtype}; pass float audio in [-1, 1] or int16 / "
                        "int32 PCM (an int64 tensor is ambiguous: use .to(torch.int16))")
    return wav.float() / scale[wav.dtype]


# ---------------------------------------------------------- files and quality measures

def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file -> (float32 [C, T], sample rate). WAV/FLAC/OGG/MP3 via soundfile."""
    import soundfile
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no audio file at {str(path)!r}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)   # [T, C]
    except soundfile.SoundFileError as err:                # a RuntimeError: say what to do
        raise ValueError(f"{str(path)!r} is not an audio file soundfile can read ({err}); "
                         "use WAV, FLAC, OGG or MP3") from err
    return np.ascontiguousarray(data.T), int(rate)


@functools.lru_cache(maxsize=8)
def _mel_transform(sample_rate: int, n_mels: int, hop: int):
    import torchaudio   # the filterbank is built once per setting, not per call
    return torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=4 * hop, hop_length=hop,
                                                n_mels=n_mels)


def log_mel(wav, sample_rate: int = SAMPLE_RATE, n_mels: int = 80,
            hop_seconds: float = 0.01) -> torch.Tensor:
    """Log-mel spectrogram in dB, [n_mels, frames] (10 ms hops): what our ears roughly see."""
    x = prepare_audio(wav, sample_rate, sample_rate)
    mel = _mel_transform(int(sample_rate), n_mels, round(hop_seconds * sample_rate))(x)
    return 10.0 * torch.log10(mel.clamp(min=1e-10))


def _pair(reference, estimate, sample_rate) -> tuple[torch.Tensor, torch.Tensor]:
    ref = prepare_audio(reference, sample_rate, sample_rate)
    est = prepare_audio(estimate, sample_rate, sample_rate)
    n = min(ref.shape[0], est.shape[0])   # decode pads to whole frames: compare the overlap
    return ref[:n], est[:n]


def mel_distance(reference, estimate, sample_rate: int = SAMPLE_RATE,
                 floor_db: float = -80.0) -> float:
    """Mean |difference| of log-mel spectrograms in dB (0 = identical; lower is better).

    Values below `floor_db` under the loudest bin are clipped, so silence does not dominate.
    """
    ref, est = _pair(reference, estimate, sample_rate)
    a, b = log_mel(ref, sample_rate), log_mel(est, sample_rate)
    top = a.max()
    a, b = a.clamp(min=top + floor_db), b.clamp(min=top + floor_db)
    return float((a - b).abs().mean())


def si_sdr(reference, estimate, sample_rate: int = SAMPLE_RATE) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better; 0 dB = as much
    error as signal). Waveform-exact, so it punishes phase changes our ears ignore."""
    ref, est = _pair(reference, estimate, sample_rate)
    ref, est = ref.double() - ref.double().mean(), est.double() - est.double().mean()
    energy = ref.dot(ref)
    if energy == 0:
        raise ValueError("reference is silent (all samples equal); SI-SDR is undefined")
    target = (est.dot(ref) / energy) * ref          # the part of est that is the reference
    noise = est - target
    return float(10 * torch.log10(target.dot(target) / noise.dot(noise).clamp(min=1e-20)))
