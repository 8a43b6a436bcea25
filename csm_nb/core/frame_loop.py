"""One frame of speech as one step function, run three ways: eagerly, compiled, or replayed
as a CUDA graph.

A frame is the depth loop (codebook 0 from the backbone state, then the depth decoder's 31
steps for codebooks 1..31) followed by the backbone step that reads the new frame back, ready
for the next one. `FrameStep.step` does exactly that, reading and writing only static
buffers; the backends differ in how that one function is run:

- "eager":   call it; tracing (`logits_out`) is only possible here.
- "compile": the depth loop runs one compiled decoder step per position (depth_step.py: the
             same math with the position as a tensor, so ONE small graph serves all K
             positions and compiles in seconds; possible because nothing in it syncs with
             the host); the backbone step runs as is.
- "graph":   the whole step is captured once as a CUDA graph and replayed: no Python and no
             kernel launches from the CPU per frame. On a CPU the step runs eagerly (that is
             how its buffer logic is tested).

At batch 1 a frame is ~9 GB of weight reads but ~2,000 small kernels: on a GPU the time goes to
launching them, not to the math; compile fuses kernels, graphs remove the launches.

Shapes: B batch, K codebooks, C = K + 1 columns, V bins, D backbone width.
"""

from __future__ import annotations

import torch

from .. import env
from .depth_step import compiled_depth_step, depth_loop, position_tensors
from .llama import fp32
from .model import CSM
from .sampling import gumbel, pick

BACKENDS = ("eager", "compile", "graph")


def default_backend(device: torch.device) -> str:
    """"graph" on CUDA unless $CSM_NB_CUDA_GRAPHS is off (read at each call), else "eager"."""
    return "graph" if device.type == "cuda" and env.flag(env.CUDA_GRAPHS, True) else "eager"


def decode_frame(model: CSM, last_h: torch.Tensor, temperature: float, topk: int,
                 noise: torch.Tensor, logits_out: list | None = None) -> torch.Tensor:
    """Codebook 0 from the backbone state, then the depth decoder: [B, D] -> codes [B, K].

    noise: [K, B, V] Exp(1) draws (one slice per codebook). The decoder cache restarts at
    position 0 each frame: position 0 = the backbone state, position i = the embedding of
    code i-1. Positions are Python ints, so this loop unrolls into one static graph (the
    compile backend runs depth_step.depth_loop instead: the same math, one position at a time).
    """
    K = model.config.num_codebooks
    greedy = topk == 1 or temperature == 0
    g = None if greedy else gumbel(noise)                                    # [K, B, V]
    logits = model.codebook0_logits(last_h)                                  # [B, V]
    code = pick(logits, temperature, topk, None if greedy else g[0])          # [B]
    codes = [code]
    if logits_out is not None:
        logits_out.append(fp32(logits))
    inputs = torch.stack([last_h, model.embed_audio(0, code)], dim=1)        # [B, 2, D]
    start = 0
    for i in range(1, K):
        logits = model.decoder_step(inputs, start, i)                          # [B, V]
        code = pick(logits, temperature, topk, None if greedy else g[i])
        codes.append(code)
        if logits_out is not None:
            logits_out.append(fp32(logits))
        if i + 1 < K:       # the last code's embedding would never be used
            start += inputs.shape[1]
            inputs = model.embed_audio(i, code).unsqueeze(1)                  # [B, 1, D]
    return torch.stack(codes, dim=1)                                          # [B, K]


class FrameStep:
    """One frame as in-place work on static buffers.

    Before each step: `noise` [K, B, V] gets this frame's Exp(1) draws. After it: `codes`
    [B, K] holds the frame, which has also been written into the backbone cache at `slot`;
    `last_h` [B, D] is the backbone state after it, and `slot` has advanced. So running the
    step F times generates F frames, with nothing for Python to do in between.
    """

    def __init__(self, model: CSM, batch_size: int, temperature: float, topk: int,
                 backend: str = "eager"):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
        cfg = model.config
        weight = model.codebook0_head.weight
        device, dtype = weight.device, weight.dtype
        B, K, V, C = batch_size, cfg.num_codebooks, cfg.audio_vocab_size, cfg.num_columns
        self.model, self.temperature, self.topk, self.backend = model, temperature, topk, backend
        self.last_h = torch.zeros(B, cfg.backbone.embed_dim, dtype=dtype, device=device)
        self.noise = torch.ones(K, B, V, device=device)
        self.codes = torch.zeros(B, K, dtype=torch.int64, device=device)
        self.row = torch.zeros(B, 1, C, dtype=torch.int64, device=device)
        self.row_mask = torch.ones(B, 1, C, dtype=torch.bool, device=device)
        self.row_mask[..., cfg.text_column] = False        # audio row: codebook columns only
        self.slot = torch.zeros(1, dtype=torch.int64, device=device)
        self.pad = torch.zeros(B, dtype=torch.int64, device=device)   # 0 = no left padding
        # The compile backend's step and its positions, looked up once, not every frame.
        self.depth_step = compiled_depth_step(device) if backend == "compile" else None
        self.positions = position_tensors(K, device) if backend == "compile" else None
        self.graph = None

    def start(self, last_h: torch.Tensor, slot: int, pad: torch.Tensor | None):
        """Load a prompt's state: its last backbone state, next position and padding."""
        self.last_h.copy_(last_h)
        self.slot.fill_(slot)
        self.pad.copy_(pad if pad is not None else torch.zeros_like(self.pad))

    def step(self, logits_out: list | None = None):
        """Everything a frame does, writing only into the static buffers."""
        K = self.model.config.num_codebooks
        if self.depth_step is not None and logits_out is None:        # tracing: eager only
            codes = depth_loop(self.model, self.last_h, self.temperature, self.topk,
                               self.noise, self.positions, self.depth_step)
        else:
            codes = decode_frame(self.model, self.last_h, self.temperature, self.topk,
                                 self.noise, logits_out)
        self.codes.copy_(codes)
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

    def draw_noise(self, generator: torch.Generator | None = None):
        """This frame's Exp(1) draws, in place, as -log(1 - U) from one `uniform_` call: the
        same distribution as `exponential_`, five times cheaper on a CPU (where drawing 32 x
        2051 of them was ~7% of a tiny frame). Never 0 in the race: gumbel() clamps."""
        self.noise.uniform_(generator=generator).neg_().log1p_().neg_()

    def __call__(self, generator: torch.Generator | None = None,
                 logits_out: list | None = None) -> torch.Tensor:
        """Draw this frame's noise, run the step the backend's way: -> codes [B, K]."""
        self.draw_noise(generator)
        if logits_out is not None:           # tracing appends to a list: only eagerly
            self.step(logits_out)
            return self.codes
        if self.backend == "graph" and self.graph is None and self.noise.is_cuda:
            self.capture()
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step()
        return self.codes


def frame_step_for(model: CSM, batch_size: int, temperature: float, topk: int,
                   backend: str) -> FrameStep:
    """The model's FrameStep for these settings, built (and captured) once and reused.

    They live in `model.frame_steps`, which `setup_caches` empties: a captured graph holds
    the addresses of the KV caches, so it must not outlive them.
    """
    key = (batch_size, float(temperature), int(topk), backend)
    if key not in model.frame_steps:
        model.frame_steps[key] = FrameStep(model, batch_size, temperature, topk, backend)
    return model.frame_steps[key]
