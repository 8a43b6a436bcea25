"""The Llama-3.2 transformer CSM uses twice: as the backbone and as the depth decoder.

No token embedding and no output layer (CSM feeds embeddings and reads the final-normed
hidden state). Module and parameter names follow torchtune's, so the official checkpoint's
keys (`layers.{i}.attn.q_proj.weight`, `layers.{i}.sa_norm.scale`, ...) load unchanged.

Shapes: B batch, S new positions, L cache slots (= max positions), D width,
H query heads, G kv heads, hd head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import LlamaConfig


class RMSNorm(nn.Module):
    """x / rms(x) * scale, computed in fp32 (as torchtune does) and cast back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.scale.float()).to(x.dtype)


def llama3_inv_freq(cfg: LlamaConfig) -> torch.Tensor:
    """RoPE frequencies with Llama 3's long-context scaling ([hd/2], fp32).

    High frequencies (short wavelengths) are kept, low ones divided by the scale factor,
    and the band between is blended, so positions near each other rotate as in plain RoPE.
    """
    hd = cfg.head_dim
    freqs = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64)[: hd // 2] / hd)
    low_freq_wavelen = cfg.rope_old_context_len / cfg.rope_low_freq_factor     # 8192
    high_freq_wavelen = cfg.rope_old_context_len / cfg.rope_high_freq_factor   # 2048
    wavelen = 2 * math.pi / freqs
    smooth = (cfg.rope_old_context_len / wavelen - cfg.rope_low_freq_factor) / (
        cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
    blended = (1 - smooth) * freqs / cfg.rope_scale_factor + smooth * freqs
    scaled = torch.where(wavelen < high_freq_wavelen, freqs,
                         torch.where(wavelen > low_freq_wavelen,
                                     freqs / cfg.rope_scale_factor, blended))
    return scaled.float()


def rope_tables(cfg: LlamaConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position * frequency: two [max_seq_len, hd/2] fp32 tables."""
    positions = torch.arange(cfg.max_seq_len, dtype=torch.float32, device=device)
    angles = torch.outer(positions, llama3_inv_freq(cfg).to(device))
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2j], x[2j+1]), the layout the official weights expect.

    x: [B, S, H, hd]; cos, sin: [B or 1, S, hd/2].
    """
    pairs = x.float().unflatten(-1, (-1, 2))              # [B, S, H, hd/2, 2]
    x0, x1 = pairs[..., 0], pairs[..., 1]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)          # [B, S, 1, hd/2]
    rotated = torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)
    return rotated.flatten(-2).to(x.dtype)                 # [B, S, H, hd]


class KVCache(nn.Module):
    """A static cache: fixed [B, G, L, hd] buffers written in place at the input positions.

    Static shapes are what lets the decode step be compiled and captured as a CUDA graph.
    """

    def __init__(self, batch_size: int, num_kv_heads: int, num_slots: int, head_dim: int,
                 dtype: torch.dtype, device=None):
        super().__init__()
        shape = (batch_size, num_kv_heads, num_slots, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device),
                             persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device),
                             persistent=False)

    def update(self, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """slots: [S] int64; k, v: [B, G, S, hd]. Returns the whole caches [B, G, L, hd]."""
        self.k.index_copy_(2, slots, k)
        self.v.index_copy_(2, slots, v)
        return self.k, self.v


class Attention(nn.Module):
    """Grouped-query attention: query head h reads kv head h // (H / G)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = (
            cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)
        kv_dim = cfg.num_kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim, bias=False)
        self.k_proj = nn.Linear(cfg.embed_dim, kv_dim, bias=False)
        self.v_proj = nn.Linear(cfg.embed_dim, kv_dim, bias=False)
        self.output_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x, cos, sin, mask, slots, use_cache: bool = True):
        """x: [B, S, D]; mask: [B or 1, 1, S, L] bool (True = may attend); slots: [S]."""
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, S, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, S, self.num_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))   # heads first: [B, H|G, S, hd]
        if use_cache and self.kv_cache is not None:
            k, v = self.kv_cache.update(slots, k, v)         # [B, G, L, hd]
        # repeat_interleave semantics: kv head g serves query heads g*n .. g*n+n-1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             enable_gqa=self.num_heads != self.num_kv_heads)
        return self.output_proj(out.transpose(1, 2).reshape(B, S, -1))


class MLP(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.embed_dim, cfg.intermediate_dim, bias=False)  # gate
        self.w2 = nn.Linear(cfg.intermediate_dim, cfg.embed_dim, bias=False)  # down
        self.w3 = nn.Linear(cfg.embed_dim, cfg.intermediate_dim, bias=False)  # up

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Layer(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.sa_norm = RMSNorm(cfg.embed_dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.embed_dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, slots, use_cache):
        h = x + self.attn(self.sa_norm(x), cos, sin, mask, slots, use_cache)
        return h + self.mlp(self.mlp_norm(h))


class Transformer(nn.Module):
    """Embeddings in, final-normed hidden states out: [B, S, D] -> [B, S, D]."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.embed_dim, cfg.norm_eps)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def reset_rope(self):
        """Recompute the RoPE tables (after building on the meta device and loading)."""
        cos, sin = rope_tables(self.cfg, device=self.norm.scale.device)
        self.rope_cos = cos.to(self.norm.scale.dtype)
        self.rope_sin = sin.to(self.norm.scale.dtype)

    def setup_cache(self, batch_size: int, num_slots: int, dtype=None, device=None):
        dtype = dtype or self.norm.scale.dtype
        device = device or self.norm.scale.device
        for layer in self.layers:
            layer.attn.kv_cache = KVCache(batch_size, self.cfg.num_kv_heads, num_slots,
                                          self.cfg.head_dim, dtype, device)

    def remove_cache(self):
        for layer in self.layers:
            layer.attn.kv_cache = None

    @property
    def cache_shape(self):
        cache = self.layers[0].attn.kv_cache
        return None if cache is None else tuple(cache.k.shape)

    def forward(self, h: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                positions: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor:
        """h: [B, S, D]; slots: [S] cache slots written (and RoPE positions unless
        `positions` [B, S] is given, as with left-padded batches); mask: [B or 1, S, L],
        L = cache slots, or S when `use_cache` is False (the whole sequence at once)."""
        pos = slots.unsqueeze(0) if positions is None else positions   # [B or 1, S]
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]                # [B or 1, S, hd/2]
        mask = mask.unsqueeze(1)                                         # [B|1, 1, S, L]
        for layer in self.layers:
            h = layer(h, cos, sin, mask, slots, use_cache)
        return self.norm(h)
