"""Notebook 04's measuring harnesses: time a frame, count its ops, take it apart.

A part of the `fast` lesson (which re-exports it). `FrameBench` holds one prompt and CSM's
sampling settings and answers "how long is a frame?" and "what does a frame dispatch?" in one
call each; `frame_parts` splits one frame into the backbone, the depth decoder and sampling,
so each can be counted and timed alone; `frame_bytes` says where a frame's weight reads go.
Everything here measures; nothing asserts a speed.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import torch

from ..core.config import CSMConfig
from ..core.generate import generate_codes
from ..core.model import CSM
from ..core.profiling import OpCounter, best_seconds
from ..core.rows import audio_rows
from ..core.sampling import draw_noise, gumbel, pick

_WARMUP_FRAMES = 2          # a warm-up run before timing (and the CUDA-graph capture)


@dataclass
class FrameCounts:
    """What one frame dispatches, on average over a run (the prefill subtracted)."""

    total: float                 # ATen ops
    kernels: float               # ops that launch a kernel on a GPU (all but views)
    syncs: float                 # host syncs
    counts: dict                 # {op name: calls per frame}


class FrameBench:
    """Generate, time and count frames of one prompt with fixed sampling settings.

        bench = FrameBench(gen, tokens, mask, frames=5)
        ms, first_ms = bench.ms_per_frame()              # eager, batch 1
        bench.ms_per_frame(backend="graph", batch=4)
        bench.counts_per_frame().kernels
    """

    def __init__(self, gen, tokens: torch.Tensor, mask: torch.Tensor, frames: int,
                 temperature: float = 0.9, topk: int = 50):
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
            raise ValueError(f"frames={frames!r} must be an int >= 2: the time of a frame is "
                             "the gap between two consecutive frames")
        self.gen, self.model, self.frames = gen, gen.model, frames
        self.tokens, self.mask = tokens, mask
        self.temperature, self.topk = temperature, topk
        self.device = gen.device

    def run(self, frames: int | None = None, backend: str = "eager", batch: int = 1,
            rows=None, seed: int = 0, on_frame=None) -> torch.Tensor:
        """generate_codes on `batch` copies of the prompt (or of `rows` = (tokens, mask)):
        codes [K, F] (or [B, K, F])."""
        t, m = rows if rows is not None else (self.tokens, self.mask)
        if batch > 1:
            t, m = t.expand(batch, -1, -1), m.expand(batch, -1, -1)              # [B, S, C]
        return generate_codes(self.model, t, m, max_frames=frames or self.frames,
                              temperature=self.temperature, topk=self.topk, backend=backend,
                              on_frame=on_frame,
                              generator=torch.Generator(self.device).manual_seed(seed))

    def ms_per_frame(self, frames: int | None = None, **kwargs) -> tuple[float, float]:
        """(shortest ms between consecutive frames, ms until the first frame = prefill + one
        frame), from one run after a warm-up. The prefill is only in the first frame, and on
        a busy machine noise only ever adds time: the shortest gap is the cost of a frame.
        With backend="compile" the warm-up also compiles (once per process)."""
        if kwargs.get("backend") == "compile":
            # On a CPU-only machine Inductor's C++ build logs that it found no CUDA runtime:
            # true, expected, and only noise in a notebook's output.
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        self.run(_WARMUP_FRAMES, **kwargs)
        stamps = []
        on_gpu = self.device.type == "cuda"

        def stamp(info):
            if on_gpu:
                torch.cuda.synchronize()             # the frame is computed, not just queued
            stamps.append(time.perf_counter())

        start = time.perf_counter()
        self.run(frames, on_frame=stamp, **kwargs)
        gaps = [b - a for a, b in zip(stamps, stamps[1:])] or [float("nan")]   # stopped at once
        return min(gaps) * 1000, (stamps[0] - start) * 1000

    def counts_per_frame(self, frames: int | None = None, **kwargs) -> FrameCounts:
        """Ops, kernel ops and host syncs per frame: a run of one frame subtracted from a run
        of `frames`, so the prompt's prefill drops out."""
        frames = frames or self.frames
        with OpCounter() as one:
            self.run(1, **kwargs)
        with OpCounter() as many:
            self.run(frames, **kwargs)
        extra = frames - 1
        return FrameCounts(total=(many.total - one.total) / extra,
                           kernels=(many.kernels - one.kernels) / extra,
                           syncs=(many.syncs - one.syncs) / extra,
                           counts={k: n / extra for k, n in (many.counts - one.counts).items()})

    def prompt_of(self, rows: int, seed: int = 0):
        """A prompt of `rows` rows: random context frames and their end row, then the line.
        -> (tokens, mask)."""
        K = self.model.config.num_codebooks
        frames = rows - self.tokens.shape[0] - 1
        if frames < 1:
            raise ValueError(f"rows={rows} leaves no room for context: the line alone takes "
                             f"{self.tokens.shape[0]} rows")
        context = torch.randint(1, self.gen.codec.codebook_size, (K, frames),
                                generator=torch.Generator().manual_seed(seed))
        ctx_tokens, ctx_mask = audio_rows(context, K)
        return torch.cat([ctx_tokens, self.tokens]), torch.cat([ctx_mask, self.mask])

    def first_chunk_seconds(self, text: str, chunk_frames: int, speaker: int = 0) -> float:
        """Seconds until `gen.generate_stream` yields its first chunk of `chunk_frames` frames;
        then the stream is closed, which stops the generation too."""
        frame_ms = self.model.config.frame_ms
        start = time.perf_counter()
        stream = self.gen.generate_stream(text, speaker,
                                          max_audio_length_ms=2 * chunk_frames * frame_ms,
                                          seed=0, chunk_frames=chunk_frames, progress=False)
        next(stream, None)                                 # the first chunk
        seconds = time.perf_counter() - start
        stream.close()
        return seconds


# ------------------------------------------------------------------- one frame, taken apart

def frame_parts(model: CSM, last_h: torch.Tensor, codes: torch.Tensor, slot: int,
                temperature: float = 0.9, topk: int = 50) -> dict:
    """One frame's calls in three parts, {name: function}, the calls generate_codes makes:

    - the backbone reads the frame `codes` [1, K] back as a row at `slot` and gives
      codebook 0's logits;
    - the depth decoder runs once for each of codebooks 1..K-1 (inputs: the backbone state
      `last_h` [1, D] and code 0 at positions 0 and 1, then code i - 1 at position i);
    - sampling draws the frame's noise once and picks K codes (top-k + Gumbel-max).
    """
    c = model.config
    K, V, dev = c.num_codebooks, c.audio_vocab_size, last_h.device
    row = torch.cat([codes, torch.zeros_like(codes[:, :1])], dim=-1)[:, None]   # [1, 1, C]
    row_mask = torch.ones_like(row, dtype=torch.bool)
    row_mask[..., c.text_column] = False                  # an audio row: no text
    slots = torch.tensor([slot], device=dev)
    inputs = [torch.stack([last_h, model.embed_audio(0, codes[:, 0])], dim=1)]  # [1, 2, D]
    inputs += [model.embed_audio(i - 1, codes[:, i - 1])[:, None] for i in range(2, K)]
    starts = [0] + list(range(2, K))
    logits = torch.zeros(K, 1, V, device=dev)

    def backbone():
        return model.codebook0_logits(model.backbone_step(row, row_mask, slots))

    def depth_decoder():
        return [model.decoder_step(x, s, i) for i, (x, s) in enumerate(zip(inputs, starts), 1)]

    def sampling():
        g = gumbel(draw_noise((K, 1, V), device=dev))       # one noise draw for the frame
        return [pick(logits[i], temperature, topk, g[i]) for i in range(K)]

    return {"backbone + codebook-0 head": backbone,
            f"depth decoder ({K - 1} steps)": depth_decoder, f"sampling ({K} codes)": sampling}


@torch.inference_mode()
def count_parts(parts: dict, repeats: int | None = None) -> tuple[dict, dict | None]:
    """({part: kernel-launching ops}, {part: fastest ms of `repeats` runs} or None)."""
    kernels, ms = {}, {} if repeats else None
    for name, part in parts.items():
        with OpCounter() as ops:
            part()
        kernels[name] = ops.kernels
        if repeats:
            ms[name] = best_seconds(part, repeats) * 1000
    return kernels, ms


def meta_csm(config: CSMConfig | None = None, dtype=torch.bfloat16) -> CSM:
    """CSM (CSM-1B by default) on PyTorch's `meta` device, with its caches: tensors have
    shapes and dtypes but no memory, and ops only compute output shapes, so the full model's
    ops can be counted in seconds on any machine."""
    with warnings.catch_warnings():
        # rms_norm warns that bf16 weights with fp32 activations miss its fused kernel: a real
        # cost on a GPU, but here the warning would only clutter the output.
        warnings.filterwarnings("ignore", message="Mismatch dtype")
        with torch.device("meta"):
            model = CSM(config or CSMConfig.csm_1b()).to(dtype)
        model.setup_caches(1)
    return model


def count_frame_kernels(model: CSM, slot: int = 100) -> dict:
    """{part: kernel-launching ops} of one frame of `model` (e.g. a `meta_csm()`)."""
    c, dtype = model.config, model.codebook0_head.weight.dtype
    device = model.codebook0_head.weight.device
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.filterwarnings("ignore", message="Mismatch dtype")
        last_h = torch.zeros(1, c.backbone.embed_dim, dtype=dtype, device=device)
        codes = torch.zeros(1, c.num_codebooks, dtype=torch.int64, device=device)
        kernels, _ = count_parts(frame_parts(model, last_h, codes, slot))
    return kernels


def frame_bytes(model: CSM, bytes_per_param: int | None = None) -> dict:
    """Where one frame's weight reads go at batch 1, {part: bytes}: the backbone and the
    codebook-0 head once, then for each of the K - 1 depth steps the whole decoder, the
    projection and one [d, V] slice of audio_head (embedding tables are read a row at a time
    and barely count). Sums to csm_nb.core.profiling.weight_bytes_per_frame."""
    size = bytes_per_param or model.codebook0_head.weight.element_size()
    steps = model.config.num_codebooks - 1

    def params(module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {"backbone (once)": params(model.backbone) * size,
            "codebook-0 head (once)": params(model.codebook0_head) * size,
            f"depth decoder ({steps}x)": steps * params(model.decoder) * size,
            f"projection ({steps}x)": steps * params(model.projection) * size,
            f"one audio_head slice ({steps}x)": steps * model.audio_head[0].numel() * size}


def kv_cache_bytes(model: CSM) -> int:
    """Bytes of the backbone's KV cache (keys and values of every layer), read whole by
    every frame's attention."""
    return sum(2 * layer.attn.kv_cache.k.numel() * layer.attn.kv_cache.k.element_size()
               for layer in model.backbone.layers)

