"""The depth loop as ONE step with its position as a tensor: what `backend="compile"` compiles.

`decode_frame` (frame_loop.py) is the readable loop: positions are Python ints, the decoder
cache is sliced, and the 31 calls unroll. Compiled whole, that is 31 copies of the decoder in
one graph: minutes to compile, growing with the number of codebooks. Here the same math is one
function of a position tensor `i` ([1] int64, made once per frame step, never read back):

    input row  ->  projection  ->  decoder, its cache written at slot i (index_copy_) and
    attention over all K slots masked to slots <= i  ->  logits @ audio_head[i - 1]  ->
    code i, sampled with noise row i  ->  the embedding of code i: the next input row

Every call has the same shapes, so one small graph serves every position: compile time is
that of one decoder step, whatever K is. Position 0 (the backbone state) takes a step of its
own; its logits and code are not used (codebook 0 comes from the backbone's head), which costs
one decoder row more per frame than the eager loop (which puts positions 0 and 1 in together).

Shapes: B batch, K codebooks, V bins, D backbone width, d decoder width.
"""

from __future__ import annotations

import torch

from .model import CSM, causal_mask
from .sampling import gumbel, pick


def depth_step(model: CSM, inputs: torch.Tensor, i: torch.Tensor, temperature: float,
               topk: int, g: torch.Tensor | None):
    """The decoder row `inputs` [B, 1, D] at position `i` ([1] int64) -> (code i [B], the
    embedding of code i [B, 1, D], which is the next step's input).

    g: the frame's Gumbel noise [K, B, V] (row i is used), or None when greedy. At i = 0 the
    code is meaningless (it would be codebook 0's, which the backbone's head gives).
    """
    cfg = model.config
    h = model.projection(inputs)                                             # [B, 1, d]
    out = model.decoder(h, i, causal_mask(i, cfg.num_codebooks))[:, -1]      # [B, d]
    head = model.audio_head.index_select(0, (i - 1).clamp_min(0))[0]        # [d, V]
    noise = None if g is None else g.index_select(0, i)[0]                   # [B, V]
    code = pick(out @ head, temperature, topk, noise)                        # [B]
    nxt = model.audio_embeddings(code + i * cfg.audio_vocab_size)           # [B, D]
    return code, nxt.unsqueeze(1)


def depth_loop(model: CSM, last_h: torch.Tensor, temperature: float, topk: int,
               noise: torch.Tensor, positions: list[torch.Tensor], step=depth_step):
    """`decode_frame` one position at a time: backbone state [B, D] -> codes [B, K].

    noise: [K, B, V] Exp(1) draws; positions: `position_tensors(K, device)`, made once (no
    host-to-device copy per step); step: `depth_step` or its compiled form.
    """
    greedy = topk == 1 or temperature == 0
    g = None if greedy else gumbel(noise)                                     # [K, B, V]
    code = pick(model.codebook0_logits(last_h), temperature, topk, None if greedy else g[0])
    codes = [code]
    step(model, last_h.unsqueeze(1), positions[0], temperature, topk, g)    # slot 0: the state
    inputs = model.embed_audio(0, code).unsqueeze(1)                         # [B, 1, D]
    for i in positions[1:]:
        code, inputs = step(model, inputs, i, temperature, topk, g)
        codes.append(code)
    return torch.stack(codes, dim=1)                                          # [B, K]


def position_tensors(num_codebooks: int, device) -> list[torch.Tensor]:
    """[0], [1], ..., [K - 1] as separate int64 tensors on `device` (one per depth step)."""
    return [torch.tensor([i], dtype=torch.int64, device=device) for i in range(num_codebooks)]


_COMPILED: dict = {}


def compiled_depth_step(device: torch.device):
    """`depth_step` compiled once per process and device type (fullgraph: no graph break,
    no host sync). On a CPU the wrapper around the kernels is C++ too (`cpp_wrapper`): a
    step is small, so the Python that calls its kernels would otherwise take most of it."""
    kind = torch.device(device).type
    if kind not in _COMPILED:
        options = {"cpp_wrapper": True} if kind == "cpu" else {}
        _COMPILED[kind] = torch.compile(depth_step, fullgraph=True, dynamic=False,
                                        options=options)
    return _COMPILED[kind]
