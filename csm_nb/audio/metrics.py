"""How close two sounds are: log-mel distance and SI-SDR, the measures the notebooks plot."""

from __future__ import annotations

import functools

import torch

from ..core.config import SAMPLE_RATE
from .signal import prepare_audio


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
