"""Temperature + top-k sampling by the exponential race: no host sync, no multinomial.

A categorical draw from probabilities p is argmax_i p_i / E_i with E_i ~ Exp(1) i.i.d.
(E_i / p_i is exponential with rate p_i; the smallest wins with probability p_i). The noise
E can be drawn ahead of time for a whole frame with one call on a `torch.Generator`, which
makes sampling reproducible, free of `.item()`, and traceable by torch.compile.
"""

from __future__ import annotations

import math

import torch


def check_sampling_args(temperature, topk, vocab_size: int) -> None:
    """Validate on the host, once per call, so the frame loop needs no checks."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature={temperature!r} must be a finite number >= 0 "
                         "(0 means greedy; 0.9 is CSM's default)")
    if isinstance(topk, bool) or not isinstance(topk, int):
        raise TypeError(f"topk must be an int, got {type(topk).__name__}")
    if not 1 <= topk <= vocab_size:
        raise ValueError(f"topk={topk} must be between 1 (greedy) and the number of audio "
                         f"bins {vocab_size} (50 is CSM's default)")


def filtered_probs(logits: torch.Tensor, temperature: float, topk: int) -> torch.Tensor:
    """Softmax of logits / temperature over the top-k entries, zero elsewhere: [..., V].

    Entries tied with the k-th largest survive (as in the official code), so more than k
    can remain. temperature 0 is greedy: all mass on the maximum.
    """
    logits = logits.float()
    if temperature == 0:
        topk, temperature = 1, 1.0
    logits = logits / temperature
    kth = torch.topk(logits, topk, dim=-1).values[..., -1:]               # [..., 1]
    logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)


def sample_topk(logits: torch.Tensor, temperature: float, topk: int,
                noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one id per row: logits [B, V] -> [B] int64.

    noise: Exp(1) draws of the same shape (see `draw_noise`); drawn here from `generator`
    (or the global RNG) when not given.
    """
    probs = filtered_probs(logits, temperature, topk)
    if noise is None:
        noise = torch.empty_like(probs).exponential_(generator=generator)
    # clamp: an exact 0 draw would turn a zero-probability entry into 0/0 = NaN
    return torch.argmax(probs / noise.clamp_min(torch.finfo(noise.dtype).tiny), dim=-1)


def draw_noise(shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Exp(1) noise for a whole frame at once, e.g. [K, B, V]: one kernel instead of K."""
    if generator is not None:
        device = generator.device
    return torch.empty(shape, dtype=torch.float32, device=device).exponential_(
        generator=generator)
