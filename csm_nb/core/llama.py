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
        # Both operands in fp32: with a bf16 scale, rms_norm falls back to its unfused path.
        out = F.rms_norm(fp32(x), self.scale.shape, fp32(self.scale), self.eps)
        return out if out.dtype == x.dtype else out.to(x.dtype)


def fp32(x: torch.Tensor) -> torch.Tensor:
    """x in fp32, without even a no-op dispatch when it already is (the frame loop runs
    these thousands of times)."""
    return x if x.dtype == torch.float32 else x.float()


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


def rope_table(cfg: LlamaConfig, device=None) -> torch.Tensor:
    """cos and sin of position * frequency: [max_seq_len, hd/2, 2] fp32 (cos, sin last)."""
    positions = torch.arange(cfg.max_seq_len, dtype=torch.float32, device=device)
    angles = torch.outer(positions, llama3_inv_freq(cfg).to(device))
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2j], x[2j+1]) by their angles, the layout the official
    weights expect: (x0 cos - x1 sin, x1 cos + x0 sin).

    x: [B, S, H, hd]; rotation: [B or 1, S, 1, hd/2] complex (cos + i sin), or the same as
    real (cos, sin) pairs [..., hd/2, 2]. Eager code passes complex numbers, because
    (x0 + i x1) * (cos + i sin) is the whole rotation in one multiply; compiled code passes
    real pairs, because Inductor cannot generate code for complex numbers.
    """
    pairs = fp32(x).unflatten(-1, (-1, 2))                                 # [B, S, H, hd/2, 2]
    if rotation.is_complex():
        out = torch.view_as_real(torch.view_as_complex(pairs) * rotation)
    else:
        x0, x1 = pairs.unbind(-1)
        cos, sin = rotation.unbind(-1)
        out = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1)
    out = out.flatten(-2)                                                  # [B, S, H, hd]
    return out if out.dtype == x.dtype else out.to(x.dtype)


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

    def update(self, slots, k: torch.Tensor, v: torch.Tensor):
        """Write k, v [B, G, S, hd] at `slots` and return what attention should read.

        slots: an int64 tensor [S] (positions known only on the device): returns the whole
        caches [B, G, L, hd], to be masked. Or a Python `slice` (positions known when the code
        is written, as in the depth loop): returns just slots 0..stop-1, so no mask is needed.
        """
        if isinstance(slots, slice):
            self.k[:, :, slots] = k
            self.v[:, :, slots] = v
            return self.k[:, :, : slots.stop], self.v[:, :, : slots.stop]
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

    def forward(self, x, rotation, mask, slots, use_cache: bool = True):
        """x: [B, S, D]; mask: [B or 1, 1, S, L] bool (True = may attend), or None for causal
        attention over slots 0..S-1 (`slots` a slice starting at 0, or S == 1)."""
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, S, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, S, self.num_kv_heads, self.head_dim)
        q, k = apply_rope(q, rotation), apply_rope(k, rotation)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))   # heads first: [B, H|G, S, hd]
        if use_cache and self.kv_cache is not None:
            k, v = self.kv_cache.update(slots, k, v)         # [B, G, L or stop, hd]
        # repeat_interleave semantics: kv head g serves query heads g*n .. g*n+n-1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             is_causal=mask is None and S > 1,
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

    def forward(self, x, rotation, mask, slots, use_cache):
        h = x + self.attn(self.sa_norm(x), rotation, mask, slots, use_cache)
        return h + self.mlp(self.mlp_norm(h))


class Transformer(nn.Module):
    """Embeddings in, final-normed hidden states out: [B, S, D] -> [B, S, D]."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.embed_dim, cfg.norm_eps)
        # Cast with the model, like the official table, so bf16 runs round cos/sin the same.
        self.register_buffer("rope", rope_table(cfg), persistent=False)

    def reset_rope(self):
        """Recompute the RoPE table (after building on the meta device and loading)."""
        self.rope = rope_table(self.cfg, device=self.norm.scale.device).to(self.norm.scale.dtype)

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

    def rotation(self, positions) -> torch.Tensor:
        """RoPE rotations for positions (a slice, [S] or [B, S]): [B|1, S, 1, hd/2], complex
        in eager mode, (cos, sin) pairs when compiling (see `apply_rope`)."""
        table = fp32(self.rope[positions])                     # [..., S, hd/2, 2]
        if table.dim() == 3:
            table = table.unsqueeze(0)
        table = table.unsqueeze(2)                             # [B|1, S, 1, hd/2, 2]
        return table if torch.compiler.is_compiling() else torch.view_as_complex(table)

    def forward(self, h: torch.Tensor, slots, mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor:
        """h: [B, S, D]. slots: where the rows go in the cache, which are also their RoPE
        positions unless `positions` [B, S] is given (left-padded batches):
        - a Python slice(start, stop): attention is causal over slots 0..stop-1, no mask
          (the depth decoder, and whole sequences without a cache); start must be 0 if S > 1;
        - an int64 tensor [S] with `mask` [B or 1, S, L] saying which slots each row sees
          (the backbone, whose positions live on the device).
        """
        if isinstance(slots, slice) and h.shape[1] > 1 and slots.start and use_cache:
            raise ValueError("several new rows after slot 0 need a tensor of slots and a mask")
        rotation = self.rotation(slots if positions is None else positions)
        if mask is not None:
            mask = mask.unsqueeze(1)                                     # [B|1, 1, S, L]
        for layer in self.layers:
            h = layer(h, rotation, mask, slots, use_cache)
        return self.norm(h)
