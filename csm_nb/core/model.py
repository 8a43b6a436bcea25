"""CSM: a Llama backbone over 33-column frame rows and a depth decoder inside each frame.

One frame of speech = 32 Mimi codes. The backbone reads the conversation so far (one row
per text token or audio frame) and predicts codebook 0; the small depth decoder then fills
codebooks 1..31 one after another, conditioned on the backbone's hidden state. Parameter
names are the official checkpoint's, so `load_state_dict(official)` works unchanged.

Shapes: B batch, S rows, K codebooks, C = K + 1 columns, D backbone width, d decoder width,
V audio bins per codebook (2051).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import CSMConfig
from .llama import Transformer
from .rows import check_rows


def causal_mask(slots: torch.Tensor, num_slots: int, pad: torch.Tensor | None = None):
    """Which cache slots each new row may attend to: [1 or B, S, L] bool.

    A row sees every slot up to its own. With left padding (`pad` [B] = pad rows per batch
    row), the pad slots are hidden too, except from themselves, so no row is all-masked.
    """
    keys = torch.arange(num_slots, device=slots.device)
    mask = keys[None, None, :] <= slots[None, :, None]                    # [1, S, L]
    if pad is not None:
        visible = keys[None, None, :] >= pad[:, None, None]                # [B, 1, L]
        itself = keys[None, None, :] == slots[None, :, None]               # [1, S, L]
        mask = (mask & visible) | itself                                   # [B, S, L]
    return mask


class CSM(nn.Module):
    def __init__(self, config: CSMConfig):
        super().__init__()
        if not isinstance(config, CSMConfig):
            raise TypeError(f"config must be a csm_nb.CSMConfig, got {type(config).__name__}; "
                            "use CSMConfig.csm_1b() or CSMConfig.tiny()")
        self.config = c = config
        D, d, V, K = c.backbone.embed_dim, c.decoder.embed_dim, c.audio_vocab_size, c.num_codebooks
        self.backbone = Transformer(c.backbone)
        self.decoder = Transformer(c.decoder)
        self.text_embeddings = nn.Embedding(c.text_vocab_size, D)
        # One table for all codebooks: codebook k uses rows k*V .. k*V + V-1.
        self.audio_embeddings = nn.Embedding(V * K, D)
        self.projection = nn.Linear(D, d, bias=False)         # backbone width -> decoder width
        self.codebook0_head = nn.Linear(D, V, bias=False)
        # Codebook i (1..K-1) logits = h @ audio_head[i-1]; stored [in, out], not Linear's.
        self.audio_head = nn.Parameter(torch.empty(K - 1, d, V))
        self.register_buffer("codebook_offsets", torch.arange(K) * V, persistent=False)
        # Frame steps built on the current KV caches (csm_nb.core.frame_loop): emptied with
        # them, since a captured CUDA graph holds the caches' addresses.
        self.frame_steps: dict = {}
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02, generator: torch.Generator | None = None):
        """Random init (tests and tiny mode): N(0, std) weights, unit norms, seeded."""
        for name, p in self.named_parameters():
            if p.is_meta:
                continue
            with torch.no_grad():
                if name.endswith(".scale"):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, std, generator=generator)

    # ---- embeddings -------------------------------------------------------------------

    def embed_rows(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sum the embeddings of the active columns of each row: [B, S, C] -> [B, S, D].

        Masked-out ids are still looked up (they are 0, a valid id) and multiplied by 0,
        which keeps the computation branch-free.
        """
        K = self.config.num_codebooks
        audio = self.audio_embeddings(tokens[..., :K] + self.codebook_offsets)   # [B, S, K, D]
        text = self.text_embeddings(tokens[..., K:])                            # [B, S, 1, D]
        columns = torch.cat([audio, text], dim=-2)                               # [B, S, C, D]
        return (columns * mask.unsqueeze(-1).to(columns.dtype)).sum(dim=-2)      # [B, S, D]

    def embed_audio(self, codebook: int, codes: torch.Tensor) -> torch.Tensor:
        """Embedding of codes of one codebook: [B] -> [B, D]."""
        return self.audio_embeddings(codes + codebook * self.config.audio_vocab_size)

    # ---- caches -------------------------------------------------------------------------

    def setup_caches(self, batch_size: int):
        """Allocate static KV caches: the backbone's over all positions, the decoder's over
        one frame's K positions (it restarts at position 0 every frame)."""
        self.frame_steps = {}
        self.backbone.setup_cache(batch_size, self.config.max_seq_len)
        self.decoder.setup_cache(batch_size, self.config.num_codebooks)

    def caches_ready(self, batch_size: int) -> bool:
        shape = self.backbone.cache_shape
        p = self.codebook0_head.weight
        if shape is None or shape[0] != batch_size:
            return False
        cache = self.backbone.layers[0].attn.kv_cache
        return cache.k.dtype == p.dtype and cache.k.device == p.device

    def remove_caches(self):
        self.frame_steps = {}
        self.backbone.remove_cache()
        self.decoder.remove_cache()

    def init_buffers(self):
        """Recompute the non-persistent buffers (RoPE tables, index ranges): needed after
        building on the meta device and loading weights with `assign=True`."""
        self.backbone.reset_rope()
        self.decoder.reset_rope()
        device, K = self.codebook0_head.weight.device, self.config.num_codebooks
        self.codebook_offsets = torch.arange(K, device=device) * self.config.audio_vocab_size

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but a strict load first checks names and shapes and says what is
        wrong in one message (e.g. a transformers-format checkpoint or the wrong size)."""
        if strict:
            check_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---- the two halves of a frame --------------------------------------------------------

    def backbone_step(self, tokens, mask, slots, pad=None) -> torch.Tensor:
        """Run the backbone on new rows; return the hidden state of the last one: [B, D].

        tokens, mask: [B, S, C]; slots: [S] cache positions of these rows; pad: [B] or None.
        """
        h = self.embed_rows(tokens, mask)                                         # [B, S, D]
        attn_mask = causal_mask(slots, self.config.max_seq_len, pad)
        positions = None if pad is None else (slots[None, :] - pad[:, None]).clamp(min=0)
        return self.backbone(h, slots, attn_mask, positions)[:, -1]              # [B, D]

    def codebook0_logits(self, last_h: torch.Tensor) -> torch.Tensor:
        return self.codebook0_head(last_h)                                        # [B, V]

    def decoder_step(self, inputs: torch.Tensor, start: int, codebook: int) -> torch.Tensor:
        """Depth decoder on new positions start.. of the current frame; logits of `codebook`.

        inputs: [B, S, D] backbone-width embeddings (projected here). Positions are Python
        ints (the loop over codebooks is unrolled), so the cache is sliced, not masked.
        """
        h = self.projection(inputs)                                               # [B, S, d]
        out = self.decoder(h, slice(start, start + inputs.shape[1]))[:, -1]       # [B, d]
        return out @ self.audio_head[codebook - 1]                                # [B, V]

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Uncached backbone over whole sequences: [B, S, C] -> hidden states [B, S, D].

        For teaching, checking the cache and training: every row attends to all earlier rows,
        recomputed from scratch; the KV caches (if any) are neither read nor written.
        """
        check_rows(self.config, tokens, mask, "CSM.forward")
        h = self.embed_rows(tokens, mask)
        return self.backbone(h, slice(0, tokens.shape[1]), use_cache=False)

    def decoder_forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Uncached depth decoder over a frame's inputs [B, S, D] -> logits [B, S - 1, V] of
        codebooks 1..S-1 (input 0 is the backbone state, input i the embedding of code i-1)."""
        S = inputs.shape[1]
        h = self.decoder(self.projection(inputs), slice(0, S), use_cache=False)
        return torch.einsum("bsd,sdv->bsv", h[:, 1:], self.audio_head[: S - 1])

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_state_dict(model: CSM, state_dict) -> None:
    """Raise one ValueError listing every missing, unexpected or mis-shaped key."""
    if not hasattr(state_dict, "keys"):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got "
                        f"{type(state_dict).__name__}")
    not_tensors = [k for k in state_dict if not isinstance(state_dict[k], torch.Tensor)]
    if not_tensors:
        raise TypeError(f"state_dict values must be torch tensors; {not_tensors[0]!r} is a "
                        f"{type(state_dict[not_tensors[0]]).__name__} ({len(not_tensors)} such "
                        "values); convert with torch.as_tensor or load with safetensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    wrong = [f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)}"
             for k, v in expected.items()
             if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if not (missing or extra or wrong):
        return
    parts = []
    for title, items in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
        if items:
            more = f" ... (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{len(items)} {title}: {', '.join(items[:5])}{more}")
    hint = ("the state dict must use the official checkpoint's names (model.safetensors of "
            "sesame/csm-1b) and match the config's sizes")
    if any(k.startswith(("backbone_model.", "depth_decoder.", "codec_model.")) for k in extra):
        hint = ("this looks like a transformers-format checkpoint (transformers-*.safetensors); "
                "load the repo's model.safetensors, which has the original names")
    elif any(k.endswith("_causal_mask") for k in extra) and not (missing or wrong):
        hint = ("the *_causal_mask entries are buffers the official setup_caches() saves; "
                "drop them (csm_nb.loading.weights.from_pretrained does) or pass strict=False")
    raise ValueError(f"state_dict does not fit CSM({model.config.__class__.__name__}): "
                     f"{'; '.join(parts)}. Fix: {hint}.")
