"""Removing per-frame overhead: a compiled depth loop and a CUDA-graphed frame step.

At batch 1 a frame is ~9 GB of weight reads but ~2,000 small kernels: on a GPU the time
goes to launching them, not to the math. Two tools remove that:

- `compiled_decode_frame`: the whole 31-step depth loop, sampling included, as one
  `torch.compile(fullgraph=True)` graph (possible because nothing in it syncs with the host).
- `FrameStep`: one frame (depth loop + the backbone step that feeds the frame back) as a
  function of static buffers, captured once as a CUDA graph and replayed every frame. Kill
  switch `CSM_NB_CUDA_GRAPHS=0`, read at call time. On the CPU there is nothing to capture and
  the same buffer logic runs eagerly (that is how it is tested).

Shapes: B batch, K codebooks, C = K + 1 columns, V bins, D backbone width.
"""

from __future__ import annotations

import torch

from .. import env
from .generate import decode_frame
from .model import CSM

GRAPHS_ENV = env.CUDA_GRAPHS


def cuda_graphs_enabled(device: torch.device) -> bool:
    """CUDA graphs on CUDA devices unless $CSM_NB_CUDA_GRAPHS is off (read per call)."""
    return device.type == "cuda" and env.flag(GRAPHS_ENV, True)


_COMPILED = {}


def compiled_decode_frame():
    """`decode_frame` compiled as one graph (compiled once per process, reused)."""
    if "decode_frame" not in _COMPILED:
        _COMPILED["decode_frame"] = torch.compile(decode_frame, fullgraph=True, dynamic=False)
    return _COMPILED["decode_frame"]


class FrameStep:
    """One frame as in-place work on static buffers, replayable as a CUDA graph.

    Inputs (written before each step): `last_h` [B, D] the backbone state of the previous
    row, `noise` [K, B, V] this frame's Exp(1) draws. Outputs: `codes` [B, K]. The step also
    feeds the frame back: it writes the row into the backbone cache at `slot` and leaves the
    new backbone state in `last_h`, then advances `slot`: so replaying it F times generates F
    frames with no Python in between.
    """

    def __init__(self, model: CSM, batch_size: int, temperature: float, topk: int,
                 frame_fn=decode_frame):
        cfg = model.config
        device = model.codebook0_head.weight.device
        dtype = model.codebook0_head.weight.dtype
        B, K, V, C = batch_size, cfg.num_codebooks, cfg.audio_vocab_size, cfg.num_columns
        self.model, self.temperature, self.topk, self.frame_fn = model, temperature, topk, frame_fn
        self.key = (B, temperature, topk, dtype, device)
        self.last_h = torch.zeros(B, cfg.backbone.embed_dim, dtype=dtype, device=device)
        self.noise = torch.ones(K, B, V, device=device)
        self.codes = torch.zeros(B, K, dtype=torch.int64, device=device)
        self.row = torch.zeros(B, 1, C, dtype=torch.int64, device=device)
        self.row_mask = torch.ones(B, 1, C, dtype=torch.bool, device=device)
        self.row_mask[..., cfg.text_column] = False        # audio row: codebook columns only
        self.slot = torch.zeros(1, dtype=torch.int64, device=device)
        self.pad = torch.zeros(B, dtype=torch.int64, device=device)   # 0 = no left padding
        self.graph = None

    def start(self, last_h: torch.Tensor, slot: int, pad: torch.Tensor | None):
        """Load a prompt's state: its last backbone state, next position and padding."""
        self.last_h.copy_(last_h)
        self.slot.fill_(slot)
        self.pad.copy_(pad if pad is not None else torch.zeros_like(self.pad))

    def step(self):
        """Everything a frame does, writing only into the static buffers."""
        K = self.model.config.num_codebooks
        self.codes.copy_(self.frame_fn(self.model, self.last_h, self.temperature, self.topk,
                                       self.noise))
        self.row[:, 0, :K].copy_(self.codes)
        self.last_h.copy_(self.model.backbone_step(self.row, self.row_mask, self.slot, self.pad))
        self.slot.add_(1)

    def capture(self, warmup: int = 2):
        """Record `step` as a CUDA graph. Warm-up runs change the state, so it is restored."""
        saved_h, saved_slot = self.last_h.clone(), self.slot.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):          # lets cuBLAS/allocator settle outside the graph
                self.step()
        torch.cuda.current_stream().wait_stream(stream)
        self.last_h.copy_(saved_h)
        self.slot.copy_(saved_slot)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):        # OOM or Ctrl-C mid-capture: graph stays None,
            self.step()                      # so the next call captures again
        self.graph = graph

    def __call__(self):
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step()
        return self.codes


def frame_step_for(model: CSM, batch_size: int, temperature: float, topk: int,
                   use_graph: bool) -> FrameStep:
    """The model's FrameStep for these settings, built (and captured) once and reused.

    A captured graph holds the addresses of the model's KV caches, so it is dropped
    whenever the caches are reallocated (another batch size, dtype or device).
    """
    steps = model.__dict__.setdefault("_frame_steps", {})
    cache_id = id(model.backbone.layers[0].attn.kv_cache)
    key = (batch_size, float(temperature), int(topk), use_graph, cache_id)
    if key not in steps:
        for old in [k for k in steps if k[-1] != cache_id]:
            del steps[old]
        steps[key] = FrameStep(model, batch_size, temperature, topk)
    return steps[key]
