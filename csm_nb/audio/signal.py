"""WAV files in and out, written atomically.

`write_wav` never leaves a half-written file behind: it writes a temporary file in the same
folder and renames it over the target only once every byte is on disk (`os.replace` is
atomic on one filesystem). An error or Ctrl-C mid-way deletes the temporary file and leaves
any earlier file at the target untouched.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch

_PCM16_MAX = 2 ** 15 - 1          # largest int16 sample
_PCM16_BYTES = 2


def to_pcm16(audio) -> np.ndarray:
    """Float audio in [-1, 1] (tensor or array, 1-D) -> int16 samples, clipped, rounded."""
    x = audio.detach().cpu().double().numpy() if isinstance(audio, torch.Tensor) else (
        np.asarray(audio, dtype=np.float64))
    if x.ndim != 1:
        raise ValueError(f"audio has shape {x.shape}; write_wav takes mono 1-D audio [T]")
    if not np.isfinite(x).all():
        raise ValueError("audio holds NaN or inf samples; clean it (np.nan_to_num) first")
    return np.round(np.clip(x, -1.0, 1.0) * _PCM16_MAX).astype("<i2")


def write_wav(path: str | os.PathLike, audio, sample_rate: int) -> Path:
    """Write mono 16-bit PCM WAV atomically; returns the path written."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate={sample_rate!r} must be a positive int (Hz)")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path={str(path)!r} is a folder; give a file name like out.wav")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"the folder {str(folder)!r} of path={str(path)!r} does not "
                                "exist; create it first")
    samples = to_pcm16(audio)                     # convert before touching the disk
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(_PCM16_BYTES)
            w.setframerate(sample_rate)
            w.writeframes(samples.tobytes())
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:                         # includes KeyboardInterrupt
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Read a 16-bit PCM WAV -> (float32 [T] for mono or [C, T], sample rate)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != _PCM16_BYTES:
                raise ValueError(f"{path} has {8 * w.getsampwidth()}-bit samples; read_wav "
                                 "reads 16-bit PCM (use csm_nb.audio.mimi.load_audio for other "
                                 "formats)")
            channels, rate = w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as err:     # not a WAV, or cut short: neither is an OSError
        raise ValueError(f"{path} is not a readable PCM WAV file ({err}); use "
                         "csm_nb.audio.mimi.load_audio for other formats") from err
    if len(raw) % (_PCM16_BYTES * channels):  # the file ends inside a frame
        raise ValueError(f"{path} is truncated (it ends in the middle of a sample frame); "
                         "write or download it again")
    data = np.frombuffer(raw, dtype="<i2")
    audio = torch.from_numpy(data.astype(np.float32) / (_PCM16_MAX + 1))
    audio = audio.reshape(-1, channels).T                     # [T*C] -> [C, T]
    return (audio[0] if channels == 1 else audio).contiguous(), rate
