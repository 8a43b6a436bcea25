"""The official CSM layout and frame loop, rebuilt on torchtune 0.6.1 as a reference.

Written from the algorithm in docs/csm-reference.md (sec. 5): two torchtune
`llama3_2` decoders with their token embedding and output replaced by identity, the five
CSM tensors around them, a 2048x2048 / 32x32 lower-triangular mask indexed by position,
decoder caches reset every frame, and the stop test `all(codes == 0)` read on the host.
Used by the parity tests and by benchmarks/ as "the reference"; the rest of csm_nb never
imports it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchtune.models.llama3_2 import llama3_2

from ..core.config import CSMConfig, LlamaConfig


def _llama(cfg: LlamaConfig) -> nn.Module:
    model = llama3_2(vocab_size=8, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                     num_kv_heads=cfg.num_kv_heads, embed_dim=cfg.embed_dim,
                     max_seq_len=cfg.max_seq_len, intermediate_dim=cfg.intermediate_dim,
                     attn_dropout=0.0, norm_eps=cfg.norm_eps, rope_base=int(cfg.rope_base),
                     scale_factor=int(cfg.rope_scale_factor))
    model.tok_embeddings = nn.Identity()
    model.output = nn.Identity()
    return model


class OfficialCSM(nn.Module):
    def __init__(self, cfg: CSMConfig):
        super().__init__()
        self.cfg = cfg
        D, d = cfg.backbone.embed_dim, cfg.decoder.embed_dim
        V, K = cfg.audio_vocab_size, cfg.num_codebooks
        self.backbone = _llama(cfg.backbone)
        self.decoder = _llama(cfg.decoder)
        self.text_embeddings = nn.Embedding(cfg.text_vocab_size, D)
        self.audio_embeddings = nn.Embedding(V * K, D)
        self.projection = nn.Linear(D, d, bias=False)
        self.codebook0_head = nn.Linear(D, V, bias=False)
        self.audio_head = nn.Parameter(torch.zeros(K - 1, d, V))

    def setup_caches(self, batch_size: int):
        param = next(self.parameters())
        K, L = self.cfg.num_codebooks, self.cfg.max_seq_len
        with torch.device(param.device):          # as the official code does
            self.backbone.setup_caches(batch_size, param.dtype)
            self.decoder.setup_caches(batch_size, param.dtype, decoder_max_seq_len=K)
            self.backbone_causal_mask = torch.tril(torch.ones(L, L, dtype=torch.bool))
            self.decoder_causal_mask = torch.tril(torch.ones(K, K, dtype=torch.bool))

    def embed_tokens(self, tokens):
        K, V = self.cfg.num_codebooks, self.cfg.audio_vocab_size
        text = self.text_embeddings(tokens[:, :, -1]).unsqueeze(-2)
        audio_ids = tokens[:, :, :-1] + V * torch.arange(K, device=tokens.device)
        audio = self.audio_embeddings(audio_ids.view(-1)).reshape(
            tokens.shape[0], tokens.shape[1], K, -1)
        return torch.cat([audio, text], dim=-2)

    def generate_frame(self, tokens, tokens_mask, input_pos, topk, temperature, logits_out=None):
        """One frame, greedy when topk == 1: returns codes [B, K]."""
        dtype = next(self.parameters()).dtype
        mask = self.backbone_causal_mask[input_pos]                     # [B, S, 2048]
        h = (self.embed_tokens(tokens) * tokens_mask.unsqueeze(-1)).sum(dim=2)
        h = self.backbone(h, input_pos=input_pos, mask=mask).to(dtype)
        last_h = h[:, -1, :]
        c0_logits = self.codebook0_head(last_h)
        sample = _sample(c0_logits, topk, temperature)
        if logits_out is not None:
            logits_out.append(c0_logits)
        curr_h = torch.cat([last_h.unsqueeze(1), self._embed_audio(0, sample)], dim=1)
        codes = sample.clone()
        curr_pos = torch.arange(0, curr_h.size(1), device=curr_h.device).unsqueeze(0).repeat(
            curr_h.size(0), 1)
        self.decoder.reset_caches()
        for i in range(1, self.cfg.num_codebooks):
            dmask = self.decoder_causal_mask[curr_pos]
            dh = self.decoder(self.projection(curr_h), input_pos=curr_pos, mask=dmask).to(dtype)
            ci_logits = torch.mm(dh[:, -1, :], self.audio_head[i - 1])
            if logits_out is not None:
                logits_out.append(ci_logits)
            ci = _sample(ci_logits, topk, temperature)
            curr_h = self._embed_audio(i, ci)
            codes = torch.cat([codes, ci], dim=1)
            curr_pos = curr_pos[:, -1:] + 1
        return codes

    def _embed_audio(self, codebook, codes):
        return self.audio_embeddings(codes + codebook * self.cfg.audio_vocab_size)

    @torch.inference_mode()
    def generate(self, tokens, mask, max_frames, topk=1, temperature=1.0, logits_out=None):
        """The official Generator's loop for one prompt [S, C] -> codes [K, F]."""
        if not self.backbone.caches_are_setup():
            self.setup_caches(1)
        self.backbone.reset_caches()
        tokens, mask = tokens.unsqueeze(0), mask.unsqueeze(0)
        pos = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
        zero = torch.zeros(1, 1, dtype=torch.long, device=tokens.device)
        frames = []
        for _ in range(max_frames):
            frame = self.generate_frame(tokens, mask, pos, topk, temperature, logits_out)
            if torch.all(frame == 0):
                break
            frames.append(frame)
            tokens = torch.cat([frame, zero], dim=1).unsqueeze(1)
            mask = torch.cat([torch.ones_like(frame), zero], dim=1).bool().unsqueeze(1)
            pos = pos[:, -1:] + 1
        return torch.stack(frames).permute(1, 2, 0)[0]


def _sample(logits, topk, temperature):
    """The official sample_topk, with a host RNG; greedy when topk == 1."""
    logits = logits / temperature
    kth = torch.topk(logits, topk).values[..., -1, None]
    logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(torch.log_softmax(logits, dim=-1), dim=-1)
    q = torch.empty_like(probs).exponential_(1)
    return torch.argmax(probs / q, dim=-1, keepdim=True).to(torch.int64)
