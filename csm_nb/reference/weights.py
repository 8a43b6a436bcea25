"""Seeded random weights in the official checkpoint's layout, shared by the parity tests.

Scaled so activations stay O(1) through the layers (logits spread out, so greedy picks
have clear winners and fp32 rounding cannot flip them), with non-trivial norm scales so a
norm that forgets its scale is caught.
"""

from __future__ import annotations

import math

import torch

from ..core.config import CSMConfig, LlamaConfig
from ..core.model import CSM


def parity_config(text_vocab_size: int = 128_256) -> CSMConfig:
    """Tiny, but with the official head widths (64 backbone, 128 decoder), the official
    4:1 grouped-query ratio and all 32 codebooks of 2051 bins."""
    backbone = LlamaConfig(num_layers=2, num_heads=4, num_kv_heads=1, embed_dim=256,
                           intermediate_dim=512, max_seq_len=2048)
    decoder = LlamaConfig(num_layers=2, num_heads=4, num_kv_heads=1, embed_dim=512,
                          intermediate_dim=1024, max_seq_len=2048)
    return CSMConfig(backbone=backbone, decoder=decoder, text_vocab_size=text_vocab_size)


def randomize_(state_dict: dict, seed: int = 0) -> dict:
    """Fill an official-layout state dict in place with seeded, well-scaled values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in sorted(state_dict):
            t = state_dict[name]
            if name.endswith(".scale"):
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("embeddings.weight"):
                t.copy_(torch.randn(t.shape, generator=g))
            elif name == "audio_head":
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[1]))
            else:                                   # Linear [out, in]
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[1]))
    return state_dict


def random_csm(config: CSMConfig, seed: int = 0) -> CSM:
    model = CSM(config)
    randomize_(dict(model.state_dict()), seed)
    return model.eval()
