"""Environment variables: the one place csm_nb reads them, at call time (never at import).

A notebook cell that sets `os.environ["CSM_NB_MODE"] = "tiny"` takes effect on the next call.
Flags (on/off variables) share one truth table, case-insensitive, surrounding spaces ignored:

    on:  1  true  yes  on
    off: 0  false  no  off  (empty)
    unset: the flag's default;  anything else: ValueError naming the variable and the value.

huggingface_hub reads $HF_HUB_OFFLINE and $HF_HUB_CACHE once, when it is imported; csm_nb reads
them again for every call, so a change made after `import csm_nb` still counts.
"""

from __future__ import annotations

import os

MODE = "CSM_NB_MODE"                # default mode when a call passes mode=None
WEIGHTS = "CSM_NB_WEIGHTS"          # a local folder laid out like the sesame/csm-1b repo
MIMI = "CSM_NB_MIMI"                # a local folder or .safetensors file holding Mimi's weights
CUDA_GRAPHS = "CSM_NB_CUDA_GRAPHS"  # kill switch for the CUDA-graph frame step (default on)
MAX_LINE_MS = "CSM_NB_MAX_LINE_MS"  # cap on every generated line's length, in ms (rehearsals, CI)
STRICT_CHECKS = "CSM_NB_STRICT_CHECKS"  # exercise checkers raise instead of printing "Not yet"
HF_OFFLINE = "HF_HUB_OFFLINE"       # huggingface_hub's own: never reach the hub
HF_CACHE = "HF_HUB_CACHE"           # huggingface_hub's own: where downloads are cached

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def text(name: str) -> str | None:
    """The variable's value with surrounding spaces removed; None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def flag(name: str, default: bool) -> bool:
    """An on/off variable read with the table above; `default` when unset."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError(f"${name}={raw!r} is not an on/off value; set it to one of "
                     f"{'/'.join(TRUE)} (on) or {'/'.join(FALSE[:-1])} (off), or unset it")


def max_line_ms(requested_ms):
    """`requested_ms` (the audio one line may take), lowered to $CSM_NB_MAX_LINE_MS when that
    is set and smaller: how rehearsals and quick runs keep every line short without editing
    a notebook. A notebook cell passes its own length through it, e.g.
    `gen.generate(..., max_audio_length_ms=csm_nb.env.max_line_ms(10_000))`. Unset: unchanged.
    An int stays an int (whole milliseconds)."""
    raw = text(MAX_LINE_MS)
    if raw is None:
        return requested_ms
    try:
        cap = float(raw)
    except ValueError:
        cap = float("nan")
    if not cap > 0 or cap == float("inf"):
        raise ValueError(f"${MAX_LINE_MS}={raw!r} is not a length in milliseconds; set it to a "
                         "positive number such as 2000 (2 s per line), or unset it")
    if cap >= requested_ms:
        return requested_ms
    return int(cap) if isinstance(requested_ms, int) else cap


def hub_offline() -> bool:
    """$HF_HUB_OFFLINE: True = use only what is already on disk."""
    return flag(HF_OFFLINE, False)


def hub_cache_dir() -> str | None:
    """$HF_HUB_CACHE as it is now (None: huggingface_hub's default)."""
    return text(HF_CACHE)
