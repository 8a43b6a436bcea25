"""Audio signals in and out: files (WAV written atomically), and preparing audio for Mimi
(float, mono or batched, resampled to 24 kHz, with limits that turn hangs into errors).

`write_wav` never leaves a half-written file behind: it writes a temporary file in the same
folder and renames it over the target only once every byte is on disk (`os.replace` is
atomic on one filesystem). An error or Ctrl-C mid-way deletes the temporary file and leaves
any earlier file at the target untouched.
"""

from __future__ import annotations

import math
import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch

from ..core.config import SAMPLE_RATE

# Input limits that turn hangs into errors. torchaudio's resampler builds a filter of about
# (target / g) x (rate / g) taps, g = gcd(rate, target): 3 x 4 for 32 kHz, 80 x 147 for
# 44.1 kHz, but 24000 x 24001 (2.3 GB, minutes) for a typo like 24001 Hz.
_MIN_SAMPLE_RATE = 1_000          # below this, "24" (kHz) would become 1000x longer audio
_MAX_RESAMPLE_TAPS = 2 ** 22      # 16 MB of float32 filter; common rates need < 20 000

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


# ------------------------------------------------------------------ any file, any rate

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
