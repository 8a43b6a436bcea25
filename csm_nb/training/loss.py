"""The CSM training loss: codebook 0 from the backbone + codebooks 1..K-1 from the depth
decoder, with the frame-subset trick.

CSM learns from conversations laid out exactly as at inference (docs/csm-reference.md sec. 4): each
turn is its text rows, its audio frame rows and an all-zero end-of-audio row. Every audio row
is a target, predicted from the row before it:

    codebook 0     backbone hidden state of row t  -> codebook0_head -> code 0 of row t+1
    codebooks 1..  depth decoder over [h_t, emb(code 0), ..., emb(code K-2)] -> codes 1..K-1

loss = cross-entropy of codebook 0 + mean cross-entropy of codebooks 1..K-1 (as transformers'
CsmForConditionalGeneration). The backbone runs once per batch; the depth decoder runs once
per frame, which is costly for CSM-1B, so its authors train it on a random 1/16 of the frames
(`decoder_fraction=1/16`) while codebook 0 learns from all of them.

Shapes: B batch, S rows, C = K + 1 columns, K codebooks, N target frames, D backbone width,
V audio bins.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..core.model import CSM
from ..core.rows import check_rows


class CSMLoss(NamedTuple):
    total: torch.Tensor          # codebook0 + decoder: what is minimised
    codebook0: torch.Tensor      # cross-entropy of codebook 0 (backbone), nats per frame
    decoder: torch.Tensor        # mean cross-entropy of codebooks 1..K-1 (depth decoder)
    codebook0_accuracy: float    # fraction of target frames whose code 0 is the argmax
    frames: int                  # target frames in the batch


def csm_loss(model: CSM, tokens: torch.Tensor, mask: torch.Tensor,
             decoder_fraction: float = 1.0, generator: torch.Generator | None = None,
             last_turn_only: bool = False) -> CSMLoss:
    """The CSM training loss of a batch of conversations, tokens/mask [B, S, K+1].

    last_turn_only: learn only the frames of each conversation's last turn (those after its
    last text row). The first turn's frames have no earlier voice to follow, so they teach an
    average voice; without them every target has a context voice to copy.
    """
    cfg = model.config
    K, V = cfg.num_codebooks, cfg.audio_vocab_size
    check_rows(cfg, tokens, mask, "csm_loss")
    if tokens.shape[1] < 2:
        raise ValueError(f"tokens has {tokens.shape[1]} row; a training sequence needs at least "
                         "2 (a row to predict from and a row to predict)")
    if not 0 < decoder_fraction <= 1:
        raise ValueError(f"decoder_fraction={decoder_fraction} must be in (0, 1]; CSM's "
                         "authors use 1/16")
    h = model(tokens[:, :-1], mask[:, :-1])                            # [B, S-1, D]
    is_frame = mask[:, 1:, :K].all(-1)                                 # [B, S-1] next row audio
    if last_turn_only:
        text = mask[:, :, K]                                           # [B, S] text rows
        S = mask.shape[1]
        last_text = (text * torch.arange(S, device=mask.device)).amax(dim=1)        # [B]
        after = torch.arange(1, S, device=mask.device)[None, :] > last_text[:, None]  # [B, S-1]
        is_frame = is_frame & after
    h, codes = h[is_frame], tokens[:, 1:, :K][is_frame]                # [N, D], [N, K]
    N = codes.shape[0]
    if N == 0:
        raise ValueError("the batch has no audio frame to learn from: every sequence needs "
                         "a turn with codes (build rows with conversation_rows)")
    logits0 = model.codebook0_head(h).float()                          # [N, V]
    loss0 = F.cross_entropy(logits0, codes[:, 0])
    accuracy = float((logits0.argmax(-1) == codes[:, 0]).float().mean())
    if decoder_fraction < 1:     # the 1/16 trick: the decoder sees a random subset of frames
        n = max(1, round(N * decoder_fraction))
        pick = torch.randperm(N, generator=generator)[:n].to(codes.device)
        h, codes = h[pick], codes[pick]
    offsets = model.codebook_offsets[: K - 1]
    inputs = torch.cat([h[:, None], model.audio_embeddings(codes[:, :-1] + offsets)], 1)  # [n,K,D]
    logits = model.decoder_forward(inputs).float()                     # [n, K-1, V]
    loss_dec = F.cross_entropy(logits.reshape(-1, V), codes[:, 1:].reshape(-1))
    return CSMLoss(loss0 + loss_dec, loss0, loss_dec, accuracy, N)
