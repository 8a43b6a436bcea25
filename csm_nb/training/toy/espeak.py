"""Speech rendered with Debian's eSpeak NG, processed the same way for every shipped clip.

    apt-get install espeak-ng          # 1.51 made the shipped files; only corpus makers need it

espeak-ng writes 22.05 kHz 16-bit WAV. Every clip is resampled to 24 kHz (CSM's and Mimi's
rate), trimmed of leading and trailing silence, peak-normalised and written as 16-bit mono PCM
with the standard library's `wave`, so a rerun with the same espeak-ng writes the same bytes.

eSpeak NG is GPL-3.0-or-later; we only run the program and ship none of its code or data.
The audio it renders is this project's own (csm_nb/data/README.md).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from math import gcd
from pathlib import Path

import numpy as np

from ...core.config import SAMPLE_RATE

PEAK_DBFS = -3.0                # peak level after normalisation
SILENCE_DB = -40.0              # below this (relative to the peak) counts as silence
MARGIN_S = 0.03                 # silence kept before and after the speech
INSTALL = "apt-get install espeak-ng (Debian/Ubuntu; brew install espeak-ng on macOS)"


def require_espeak() -> None:
    """Raise a clear error when espeak-ng is not on PATH (it is never needed to use csm_nb)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError(f"espeak-ng is not installed; only re-rendering the toy corpus "
                           f"needs it: {INSTALL}")


def espeak_version() -> str:
    return subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True,
                          text=True).stdout.strip()


def speak(text: str, args: list[str]) -> tuple[np.ndarray, int]:
    """espeak-ng's WAV on stdout -> (float64 samples in [-1, 1], rate)."""
    raw = subprocess.run(["espeak-ng", *args, "--stdout", text], check=True,
                         capture_output=True).stdout
    with wave.open(io.BytesIO(raw)) as f:
        rate, n = f.getframerate(), f.getnframes()
        # espeak-ng streams to stdout before it knows the length: trust the bytes, not n
        pcm = np.frombuffer(f.readframes(n if n > 0 else 1 << 30), dtype="<i2")
    return pcm.astype(np.float64) / 2 ** 15, rate


def to_24k_trimmed(x: np.ndarray, rate: int) -> np.ndarray:
    """Resampled to SAMPLE_RATE, silence trimmed to MARGIN_S each side, peak at PEAK_DBFS."""
    from scipy.signal import resample_poly
    g = gcd(SAMPLE_RATE, rate)
    y = resample_poly(x, SAMPLE_RATE // g, rate // g)         # 22050 -> 24000 = x 160/147
    loud = np.flatnonzero(np.abs(y) > np.abs(y).max() * 10 ** (SILENCE_DB / 20))
    margin = round(MARGIN_S * SAMPLE_RATE)
    y = y[max(loud[0] - margin, 0): loud[-1] + margin + 1]
    return y * (10 ** (PEAK_DBFS / 20) / np.abs(y).max())


def render(text: str, args: list[str]) -> np.ndarray:
    """One sentence in one voice, processed: float64 [T] at SAMPLE_RATE."""
    return to_24k_trimmed(*speak(text, args))


def write_pcm16(path: Path, y: np.ndarray) -> None:
    """16-bit mono PCM, converted as csm_nb writes every WAV (to_pcm16), without write_wav's
    temporary file and fsync: a corpus is tens of thousands of small files, rerun at will."""
    from ...audio.signal import to_pcm16
    pcm = to_pcm16(y)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.tobytes())
