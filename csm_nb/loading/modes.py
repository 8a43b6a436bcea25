"""The mode switch, default device and dtype, and the banner.

    real  the official CSM-1B weights (gated on the hub, or a local folder), Mimi, Llama-3.2
    toy   a small CSM, a toy codec and a byte tokenizer trained by this project on synthetic
          (espeak-ng) speech and shipped with the package: it speaks, robotically, on any CPU
    tiny  small random models of the official structure (seeded): every shape is real, the
          audio is noise; for tests and structure lessons
    auto  real when the weights are within reach, else toy, with a banner saying why

Everything here reads the environment when it is called, never at import, so a notebook
cell that sets `os.environ["CSM_NB_MODE"] = "tiny"` takes effect on the next call.
"""

from __future__ import annotations

import os
import sys

import torch

from .. import env

MODES = ("real", "toy", "tiny", "auto")
OFFLINE_MODE = "toy"              # what `auto` falls back to when the real weights are out of reach
WHAT = {"real": "the official CSM-1B weights",
        "toy": "the toy CSM trained by this project on synthetic (espeak-ng) speech: it speaks, "
               "robotically, a few hundred words; not CSM-1B's voice or quality",
        "tiny": "small RANDOM models of CSM-1B's structure: every shape is real, the audio is "
                "noise"}
MODE_ENV, WEIGHTS_ENV, MIMI_ENV = env.MODE, env.WEIGHTS, env.MIMI


def resolve_mode(mode: str | None = None) -> str:
    """Return "real", "toy", "tiny" or "auto": the argument, else $CSM_NB_MODE, else "auto"."""
    if mode is None:
        mode = (env.text(MODE_ENV) or "auto").lower()
        source = f"${MODE_ENV}"
    else:
        source = "mode"
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ValueError(f"{source}={mode!r} is not a mode; use one of {', '.join(MODES)} "
                         "(real = official weights, toy = the small CSM shipped with csm_nb, "
                         "tiny = small random models, auto = real if reachable, else toy)")
    return mode.lower()


def default_device() -> torch.device:
    """CUDA if present, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device) -> torch.device:
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device; use e.g. 'cpu' or 'cuda'"
                         ) from err
    # Fail here, with a fix, not later inside .to() with "Torch not compiled with CUDA".
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={device!r}: PyTorch sees no CUDA GPU here (on Colab: "
                             "Runtime > Change runtime type > GPU); use device='cpu' or None")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device={device!r}: there are only {count} GPU(s), "
                             f"cuda:0..cuda:{count - 1}")
    mps = getattr(torch.backends, "mps", None)
    if resolved.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"device={device!r}: Apple's MPS is not available here; use "
                         "device='cpu' or None")
    return resolved


def default_dtype(device) -> torch.dtype:
    """bf16 on GPUs with bf16 tensor cores, fp16 on older ones (Colab's T4), fp32 on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def resolve_dtype(dtype, device) -> torch.dtype:
    if dtype is None:
        return default_dtype(device)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype={dtype!r} is not supported; use torch.float32, "
                         "torch.bfloat16 or torch.float16 (or None for the device's default)")
    return dtype


def banner(what: str, reason: str, mode: str = OFFLINE_MODE) -> str:
    """The loud message `auto` prints when it falls back to the offline mode."""
    line = "=" * 78
    text = (f"{line}\n csm_nb: {mode.upper()} MODE for {what}: {WHAT[mode]}.\n Why: {reason}\n"
            f" For CSM-1B itself: run on a GPU with access to the official weights (see the\n"
            f" README), or set ${MODE_ENV}={mode} to silence this.\n{line}")
    print(text, file=sys.stderr)
    return text


CSM_REPO = "sesame/csm-1b"


def hub_token() -> str | None:
    """The Hugging Face token this machine has ($HF_TOKEN, `huggingface-cli login`'s file, or
    Colab's secret), found without any network call; None when there is none."""
    try:
        from huggingface_hub import get_token
        return get_token()
    except Exception:      # a broken token file (or Colab refusing access) must not break a banner
        return None


def real_weights_reason() -> tuple[bool, str]:
    """Can `real` mode probably load CSM-1B here? Cheap local checks only: no network call.

    Returns (likely, why). What it cannot see without asking the hub (a token whose owner has
    not accepted the terms) shows up when loading, and `auto` then falls back with that reason.
    """
    folder = env.text(WEIGHTS_ENV)
    if folder:
        if os.path.isfile(os.path.join(folder, "model.safetensors")):
            return True, f"${WEIGHTS_ENV}={folder} holds model.safetensors"
        return False, f"${WEIGHTS_ENV}={folder} has no model.safetensors"
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(CSM_REPO, "model.safetensors",
                                        cache_dir=env.hub_cache_dir())
    except Exception:  # a broken cache must not break a banner
        cached = None
    if isinstance(cached, str):
        return True, f"{CSM_REPO} is in the Hugging Face cache"
    if env.hub_offline():
        return False, (f"offline: ${env.HF_OFFLINE} is set and {CSM_REPO} is not in the local "
                       f"cache (download it once on a connected machine, or set ${WEIGHTS_ENV} "
                       "to a folder holding it)")
    if not torch.cuda.is_available():
        return False, ("no GPU: CSM-1B would take minutes per second of audio on a CPU "
                       f"(set {MODE_ENV}=real to try anyway)")
    if hub_token() is None:
        return False, (f"no Hugging Face token: {CSM_REPO} is gated. Accept its terms at "
                       f"https://huggingface.co/{CSM_REPO}, then log in (Colab: add HF_TOKEN "
                       "in Secrets, or run huggingface_hub.notebook_login(); elsewhere "
                       "`huggingface-cli login` or $HF_TOKEN)")
    return True, (f"a GPU and a Hugging Face token are present; {CSM_REPO} will be loaded from "
                  "the hub (if its terms are not accepted yet, the offline mode takes over)")


def decide_mode(mode: str | None = None) -> tuple[str, str]:
    """(mode, why) without loading anything: `auto` becomes `real` only when the weights look
    reachable (a local folder, the hub cache, or a GPU with a hub token), else the offline mode."""
    mode = resolve_mode(mode)
    if mode != "auto":
        return mode, f"asked for {mode} (argument or ${MODE_ENV})"
    ok, reason = real_weights_reason()
    return ("real" if ok else OFFLINE_MODE), reason


def notebook_mode(mode: str | None = None) -> str:
    """Decide the mode for a whole notebook and print one line saying which and why."""
    mode, reason = decide_mode(mode)
    device = default_device()
    print(f"csm_nb mode: {mode.upper()} on {device}: {WHAT[mode]} ({reason}).")
    return mode
