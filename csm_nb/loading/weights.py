"""Where weights come from: a hub repo, a local folder, or tiny random weights.

Nothing here runs at import. Checkpoints are read only from safetensors (never unpickled),
tensor by tensor, into a model built on the meta device, so a 6 GB checkpoint is never
held twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace

import torch

from .. import env
from ..core.config import CSMConfig, LlamaConfig
from ..core.model import CSM, check_state_dict
from .hub import hub_file
from .modes import (CSM_REPO, OFFLINE_MODE, WEIGHTS_ENV, banner, real_weights_reason,
                    resolve_device, resolve_dtype, resolve_mode)

WEIGHTS_FILE = "model.safetensors"
# Saved by the official setup_caches() as persistent buffers; not weights.
_CACHE_MASK_KEYS = ("backbone_causal_mask", "decoder_causal_mask")


def _locate(source: str, filename: str, token) -> str:
    if os.path.isdir(source):
        path = os.path.join(source, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"the folder {source} has no {filename}; it must be laid out like the "
                f"{CSM_REPO} repo ({WEIGHTS_FILE}, config.json, tokenizer.json)")
        return path
    if os.path.exists(source) or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise FileNotFoundError(f"source={source!r} is neither an existing folder nor a hub "
                                f"repo id like {CSM_REPO!r}")
    return hub_file(source, filename, token=token)


def config_from_json(cfg: dict) -> CSMConfig:
    """CSMConfig from the repo's config.json (transformers' CsmConfig fields)."""
    base = CSMConfig.csm_1b()
    if "hidden_size" not in cfg:          # Sesame's own ModelArgs or unknown: official sizes
        return base

    def llama(c: dict, default: LlamaConfig) -> LlamaConfig:
        return replace(default,
                       num_layers=c.get("num_hidden_layers", default.num_layers),
                       num_heads=c.get("num_attention_heads", default.num_heads),
                       num_kv_heads=c.get("num_key_value_heads", default.num_kv_heads),
                       embed_dim=c.get("hidden_size", default.embed_dim),
                       intermediate_dim=c.get("intermediate_size", default.intermediate_dim),
                       norm_eps=c.get("rms_norm_eps", default.norm_eps),
                       rope_base=c.get("rope_theta", default.rope_base))

    return replace(base,
                   backbone=llama(cfg, base.backbone),
                   decoder=llama(cfg.get("depth_decoder_config", {}), base.decoder),
                   text_vocab_size=cfg.get("text_vocab_size", base.text_vocab_size),
                   audio_vocab_size=cfg.get("vocab_size", base.audio_vocab_size),
                   num_codebooks=cfg.get("num_codebooks", base.num_codebooks))


def load_safetensors_into(model: CSM, path: str, device, dtype) -> CSM:
    """Fill a meta-device model from a safetensors file, one tensor at a time."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            names = [k for k in f.keys() if k not in _CACHE_MASK_KEYS]
            # Names and shapes first (meta tensors cost nothing): one clear error for a
            # checkpoint of the wrong size or format, before gigabytes are read.
            check_state_dict(model, {k: torch.empty(f.get_slice(k).get_shape(), device="meta")
                                     for k in names})
            state = {k: f.get_tensor(k).to(device=device, dtype=dtype) for k in names}
    except SafetensorError as err:
        raise OSError(f"{path} is not a readable safetensors file ({err}); it may be truncated "
                      "or corrupted: delete it and download it again") from err
    model.load_state_dict(state, strict=True, assign=True)
    model.init_buffers()
    return model.to(device=device, dtype=dtype)


def from_pretrained(source: str | None = None, device=None, dtype=None, token=None) -> CSM:
    """Load CSM-1B from a hub repo id or a local folder laid out like sesame/csm-1b."""
    source = source or env.text(WEIGHTS_ENV) or CSM_REPO
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a repo id or folder path, got {type(source).__name__}")
    source = os.fspath(source)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    weights = _locate(source, WEIGHTS_FILE, token)
    try:
        config_path = _locate(source, "config.json", token)
        with open(config_path) as f:
            fields = json.load(f)
    except (FileNotFoundError, OSError):
        fields = {}                       # the weights alone are enough; sizes are checked
    except ValueError as err:             # JSONDecodeError, or bytes that are not UTF-8
        raise ValueError(f"{config_path} is not valid JSON ({err}); fix it, or delete it to "
                         "use the official CSM-1B sizes") from err
    if not isinstance(fields, dict):
        raise ValueError(f"{config_path} holds a JSON {type(fields).__name__}, not an object "
                         "of config fields; fix it, or delete it to use the official sizes")
    try:
        config = config_from_json(fields)
    except (TypeError, AttributeError, ValueError) as err:   # a field of the wrong kind
        raise ValueError(f"{config_path} does not describe a CSM ({err}); fix it, or delete it "
                         "to use the official CSM-1B sizes") from err
    with torch.device("meta"):
        model = CSM(config)
    return load_safetensors_into(model, weights, device, dtype).eval()


def tiny_model(config: CSMConfig | None = None, device=None, dtype=None, seed: int = 0) -> CSM:
    """Small random CSM of the official structure, seeded (same weights every time)."""
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    generator = torch.Generator().manual_seed(seed)
    model = CSM(config or CSMConfig.tiny())
    model.reset_parameters(generator=generator)
    return model.to(device=device, dtype=dtype).eval()


# ---- the toy CSM shipped with the package ------------------------------------------------

TOY_MODEL = "toy/toy_csm.safetensors"       # under csm_nb/data


def save_toy_model(model: CSM, path, extra: dict | None = None, half: bool = False) -> None:
    """Weights as safetensors with the config as metadata. The text table keeps Llama-3's
    128,256 rows (so BOS/EOS keep their ids), but the toy's byte tokenizer reads only the
    258 rows of bytes, BOS and EOS: only those are stored (the full table would be most of
    the file). `extra`: more metadata (JSON-able), e.g. how it was trained. `half`: float16
    weights, half the size (what ships; toy_model loads them as float32); the 258 text rows
    (264 kB) stay float32."""
    from safetensors.torch import save_file

    from .tokenizer import BOS_ID, BYTE_IDS, EOS_ID
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    ids = torch.cat([torch.arange(BYTE_IDS), torch.tensor([BOS_ID, EOS_ID])])
    state["text_embeddings.weight"] = state["text_embeddings.weight"][ids].contiguous()
    state["text_embeddings.ids"] = ids
    if half:
        state = {k: v.half() if v.is_floating_point() and k != "text_embeddings.weight" else v
                 for k, v in state.items()}
    c = model.config
    meta = {"config": json.dumps({"backbone": asdict(c.backbone), "decoder": asdict(c.decoder),
                                  **{k: getattr(c, k) for k in _TOP_FIELDS}})}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    save_file(state, str(path), metadata=meta)


def toy_model(device=None, dtype=None, path=None) -> CSM:
    """The toy CSM saved by `save_toy_model` (default: the one shipped in csm_nb/data)."""
    from safetensors import SafetensorError, safe_open

    from .. import data
    path = path or data.path(TOY_MODEL)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            fields = json.loads(f.metadata()["config"])
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError) as err:
        raise OSError(f"{path} is not a toy CSM saved by save_toy_model ({err}); reinstall "
                      "csm_nb, or rebuild it with `make toy-model`") from err
    config = CSMConfig(backbone=LlamaConfig(**fields.pop("backbone")),
                       decoder=LlamaConfig(**fields.pop("decoder")), **fields)
    ids, rows = state.pop("text_embeddings.ids"), state.pop("text_embeddings.weight")
    table = torch.zeros(config.text_vocab_size, rows.shape[1])       # unread rows stay 0
    table[ids] = rows.float()
    state["text_embeddings.weight"] = table
    model = CSM(config)
    model.load_state_dict(state)
    return model.to(device=device, dtype=dtype).eval()


_TOP_FIELDS = ("text_vocab_size", "audio_vocab_size", "num_codebooks", "sample_rate",
               "frame_rate")


def offline_model(mode: str, device=None, dtype=None) -> CSM:
    """The model of an offline mode: the shipped toy CSM, or tiny random weights."""
    return toy_model(device, dtype) if mode == "toy" else tiny_model(device=device, dtype=dtype)


def load_model(mode: str | None = None, device=None, dtype=None, source: str | None = None):
    """(model, mode actually used): `real`, `toy`, `tiny`, or `auto` = real if the weights are
    within reach, else the offline mode (toy) with a banner saying why.

    `auto` first looks only at this machine (a local folder, the hub cache, a GPU and a token):
    without them it never tries the network. With them it tries to load, and falls back if
    the hub refuses (for example a token whose owner has not accepted the terms).
    """
    mode = resolve_mode(mode)
    if mode == "auto" and source is None:
        likely, reason = real_weights_reason()
        if not likely:
            banner("the CSM model", reason)
            return offline_model(OFFLINE_MODE, device, dtype), OFFLINE_MODE
    if mode in ("toy", "tiny"):
        return offline_model(mode, device, dtype), mode
    try:
        return from_pretrained(source, device=device, dtype=dtype), "real"
    except OSError as err:
        if mode == "real":
            raise
        banner("the CSM model", str(err))
        return offline_model(OFFLINE_MODE, device, dtype), OFFLINE_MODE
