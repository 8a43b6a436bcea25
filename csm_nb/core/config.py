"""Configs for CSM: one dataclass per transformer, one for the whole model.

Every size used anywhere in csm_nb comes from here: the 33 columns of a frame row
(`num_codebooks + 1`), the 2048 positions (`backbone.max_seq_len`), the 80 ms frame
(`sample_rate / frame_rate`), the 2051 audio bins (`audio_vocab_size`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Mimi's fixed facts. Every CSMConfig defaults to them; code that has no config at hand (a
# segment's default rate, a plot's time axis) reads them here rather than building one.
SAMPLE_RATE = 24_000                                # Hz: Mimi's only rate
FRAME_RATE = 12.5                                   # Mimi frames per second
SAMPLES_PER_FRAME = round(SAMPLE_RATE / FRAME_RATE)  # 1920
FRAME_MS = 1000.0 / FRAME_RATE                      # 80 ms
MIMI_CODEBOOKS = 32                                 # 1 semantic + 31 acoustic levels
MIMI_CODEBOOK_SIZE = 2048                           # codes per level (11 bits)
AUDIO_SPECIAL_IDS = 3                               # ids CSM keeps above Mimi's codes (2048..2050)


def _positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class LlamaConfig:
    """One Llama-3.2-style transformer (no token embedding, no output layer)."""

    num_layers: int
    num_heads: int
    num_kv_heads: int
    embed_dim: int
    intermediate_dim: int
    max_seq_len: int
    rope_base: float = 500_000.0
    rope_scale_factor: float = 32.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_old_context_len: int = 8192
    norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("num_layers", "num_heads", "num_kv_heads", "embed_dim",
                     "intermediate_dim", "max_seq_len"):
            _positive_int("LlamaConfig", name, getattr(self, name))
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"LlamaConfig.embed_dim={self.embed_dim} must be divisible by "
                f"num_heads={self.num_heads} (head_dim = embed_dim // num_heads)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"LlamaConfig.num_heads={self.num_heads} must be a multiple of "
                f"num_kv_heads={self.num_kv_heads} (grouped-query attention)")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig head_dim={self.head_dim} must be even for RoPE pairs")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass(frozen=True)
class CSMConfig:
    """The whole CSM: a backbone over frame rows and a depth decoder inside each frame."""

    backbone: LlamaConfig = field(default_factory=lambda: CSMConfig.csm_1b().backbone)
    decoder: LlamaConfig = field(default_factory=lambda: CSMConfig.csm_1b().decoder)
    text_vocab_size: int = 128_256
    # Mimi's 2048 codes + 3 ids official inference never feeds
    audio_vocab_size: int = MIMI_CODEBOOK_SIZE + AUDIO_SPECIAL_IDS
    num_codebooks: int = MIMI_CODEBOOKS
    sample_rate: int = SAMPLE_RATE
    frame_rate: float = FRAME_RATE

    def __post_init__(self):
        for name in ("text_vocab_size", "audio_vocab_size", "num_codebooks", "sample_rate"):
            _positive_int("CSMConfig", name, getattr(self, name))
        if self.num_codebooks < 2:
            raise ValueError("CSMConfig.num_codebooks must be >= 2 (codebook 0 + the depth "
                             f"decoder's levels), got {self.num_codebooks}")
        if self.decoder.max_seq_len < self.num_codebooks:
            raise ValueError(
                f"CSMConfig.decoder.max_seq_len={self.decoder.max_seq_len} must be >= "
                f"num_codebooks={self.num_codebooks}: the depth decoder needs one position per "
                "codebook")
        rate = self.frame_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (
                math.isfinite(rate) and rate > 0):
            raise ValueError(f"CSMConfig.frame_rate must be a positive number of frames per "
                             f"second (Mimi: 12.5), got {rate!r}")
        spf = self.sample_rate / self.frame_rate
        if not math.isclose(spf, round(spf)):
            raise ValueError(f"CSMConfig: sample_rate / frame_rate = {spf} must be whole samples")

    # Derived sizes: use these, never the literals.
    @property
    def num_columns(self) -> int:
        """Columns of a frame row: one per codebook plus the text column (33)."""
        return self.num_codebooks + 1

    @property
    def text_column(self) -> int:
        return self.num_codebooks

    @property
    def max_seq_len(self) -> int:
        """Rows the backbone can see: context + text + generated frames (2048)."""
        return self.backbone.max_seq_len

    @property
    def samples_per_frame(self) -> int:
        return round(self.sample_rate / self.frame_rate)   # 1920

    @property
    def frame_ms(self) -> float:
        return 1000.0 / self.frame_rate                    # 80.0

    @classmethod
    def csm_1b(cls) -> "CSMConfig":
        """The official sizes (SesameAILabs/csm `llama-1B` backbone, `llama-100M` decoder)."""
        backbone = LlamaConfig(num_layers=16, num_heads=32, num_kv_heads=8, embed_dim=2048,
                               intermediate_dim=8192, max_seq_len=2048)
        decoder = LlamaConfig(num_layers=4, num_heads=8, num_kv_heads=2, embed_dim=1024,
                              intermediate_dim=8192, max_seq_len=2048)
        return cls(backbone=backbone, decoder=decoder)

    @classmethod
    def tiny(cls) -> "CSMConfig":
        """Same structure, CPU-fast: 4 query heads per kv head, 32 codebooks of 2051 bins and
        the full text vocabulary (so the real tokenizer and real Mimi codes fit), small widths."""
        backbone = LlamaConfig(num_layers=2, num_heads=8, num_kv_heads=2, embed_dim=128,
                               intermediate_dim=512, max_seq_len=2048)
        decoder = LlamaConfig(num_layers=2, num_heads=4, num_kv_heads=1, embed_dim=64,
                              intermediate_dim=512, max_seq_len=64)
        return cls(backbone=backbone, decoder=decoder)
