"""Where Mimi's weights come from: the official checkpoint, or a tiny random Mimi.

`load_codec(mode)` returns a `Codec` (audio/mimi.py):

    real  the official weights: kyutai/moshiko-pytorch-bf16 /
          tokenizer-e351c8d8-checkpoint125.safetensors from the Hugging Face hub, or a local
          folder / .safetensors file (argument `source=` or $CSM_NB_MIMI). Never unpickled.
    tiny  a small random Mimi of the same structure (same ratios, 12.5 Hz, 1920 samples per
          frame, 32 codebooks of 2048 bins), seeded; its codes vary, its audio is noise.
    toy   the toy codec shipped with the package (RVQ over log-mel, audio/toy_codec.py), which
          the toy CSM speaks in: 8 levels of 128 codes at Mimi's 12.5 Hz
    auto  real if it can be had, else toy, with csm_nb.loading.modes.banner().
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from .. import env
from ..loading import modes
from ..loading.hub import hub_file
from .mimi import NUM_CODEBOOKS, Codec, MimiUnavailable, _eager
from .toy_codec import ToyCodec

# tiny mode: moshi's own config, narrowed. Ratios [8, 6, 5, 4], frame rate 12.5, 32 x 2048
# codebooks are kept from moshi's dict so the codes fit CSM; only widths and depths shrink.
_TINY_WIDTH = 32          # SEANet latent = transformer d_model (the real one: 512)
_TINY_FILTERS = 4         # SEANet first-layer channels (real: 64)
_TINY_CODE_DIM = 16       # codebook vector size (real: 256)
_TINY_HEADS, _TINY_LAYERS, _TINY_FFN = 2, 1, 64
_CALIBRATION_SECONDS = 2  # seeded noise used to scale the random codebooks (see _fill_codebooks)
_CALIBRATION_LEVEL = 0.1  # its standard deviation: about that of speech at a normal level


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


# --------------------------------------------------------------------------- loading

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
    try:
        return Path(hub_file(repo, filename, local_env=env.MIMI))
    except OSError as err:          # hub_file says what happened; add the way round it
        raise MimiUnavailable(f"{err}; or use mode='tiny' for a random stand-in") from err


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
    """The codec of a mode: Mimi with 32 codebooks (real, tiny), the toy codec (toy); "auto"
    (None: $CSM_NB_MODE, else auto) = real Mimi if it can be had, else toy.

    device: None = csm_nb's default (CUDA, MPS, CPU); dtype: None = float32 for real Mimi (it
    stays fp32 in CSM), float64 for tiny (see _fill_codebooks); source: a folder or
    .safetensors file for real mode; seed: tiny mode's weights.
    """
    mode = modes.resolve_mode(mode)
    device = modes.resolve_device(device)
    real_dtype, tiny_dtype = (_codec_dtype(dtype, device, tiny) for tiny in (False, True))
    if mode in ("toy", "tiny") and source is not None:
        raise ValueError(f"source={str(source)!r} is only read in real or auto mode; drop it, "
                         "or pass mode='real'")
    if mode in ("real", "auto"):
        try:
            path = find_mimi_weights(source)
            return Codec(load_real_mimi(path, device).to(real_dtype), "real", origin=str(path))
        except MimiUnavailable as err:
            if mode == "real":
                raise
            modes.banner("the codec", str(err))
            mode = modes.OFFLINE_MODE
    if mode == "toy":
        return toy_codec()
    mimi = build_random_mimi(tiny_mimi_config(), seed=seed, device=device).to(tiny_dtype)
    return Codec(mimi, "tiny", origin=f"random, seed {seed}")


TOY_CODEC = "toy/toy_codec.safetensors"          # under csm_nb/data


def toy_codec() -> ToyCodec:
    """The toy codec shipped with the package (fitted on the toy corpus; CPU, float32)."""
    from .. import data
    return ToyCodec.load(data.path(TOY_CODEC))


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
