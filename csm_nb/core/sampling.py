"""Temperature + top-k sampling by the exponential race: no host sync, no multinomial.

A categorical draw from probabilities p is argmax_i p_i / E_i with E_i ~ Exp(1) i.i.d.
(E_i / p_i is exponential with rate p_i; the smallest wins with probability p_i). Taking
logs, that is argmax_i (logit_i - log E_i): the Gumbel-max trick, with no softmax at all.
The noise E can be drawn ahead of time for a whole frame with one call on a
`torch.Generator`, which makes sampling reproducible, free of `.item()`, and traceable by
torch.compile.
"""

from __future__ import annotations

import math

import torch

from .llama import fp32


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


def filtered_logits(logits: torch.Tensor, temperature: float, topk: int) -> torch.Tensor:
    """logits / temperature, with everything below the k-th largest set to -inf: [..., V].

    Entries tied with the k-th largest survive (as in the official code), so more than k
    can remain. temperature 0 is greedy (k = 1).
    """
    logits = fp32(logits)
    if temperature == 0:
        topk, temperature = 1, 1.0
    if temperature != 1.0:
        logits = logits / temperature
    kth = torch.topk(logits, topk, dim=-1).values[..., -1:]               # [..., 1]
    return logits.masked_fill(logits < kth, float("-inf"))


def filtered_probs(logits: torch.Tensor, temperature: float, topk: int) -> torch.Tensor:
    """The distribution sampled from: softmax of the filtered logits, zero outside top-k."""
    return torch.softmax(filtered_logits(logits, temperature, topk), dim=-1)


def gumbel(noise: torch.Tensor) -> torch.Tensor:
    """-log(E) for Exp(1) draws E. argmax(p / E) = argmax(log p - log E) = argmax(logits -
    log E): the race can be run on logits, with no softmax. The clamp keeps an exact 0 draw
    from becoming +inf (and inf - inf = NaN on a filtered entry)."""
    return -noise.clamp_min(torch.finfo(noise.dtype).tiny).log()


def pick(logits: torch.Tensor, temperature: float, topk: int, gumbel_noise: torch.Tensor):
    """One sampled id per row, given Gumbel noise of the same shape: [B, V] -> [B]."""
    if topk == 1 or temperature == 0:                                     # greedy
        return torch.argmax(logits, dim=-1)
    return torch.argmax(filtered_logits(logits, temperature, topk) + gumbel_noise, dim=-1)


def sample_topk(logits: torch.Tensor, temperature: float, topk: int,
                noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one id per row: logits [B, V] -> [B] int64.

    noise: Exp(1) draws of the same shape (see `draw_noise`); drawn here from `generator`
    (or the global RNG) when not given.
    """
    if noise is None:
        noise = torch.empty(logits.shape, device=logits.device).exponential_(
            generator=generator)
    return pick(logits, temperature, topk, gumbel(noise))


def draw_noise(shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Exp(1) noise for a whole frame at once, e.g. [K, B, V]: one kernel instead of K."""
    if generator is not None:
        device = generator.device
    return torch.empty(shape, dtype=torch.float32, device=device).exponential_(
        generator=generator)
