"""Notebook 04's measuring harnesses: time a frame, count its ops, take it apart.

A part of the `fast` lesson (which re-exports it). `FrameBench` holds one prompt and CSM's
sampling settings and answers "how long is a frame?" and "what does a frame dispatch?" in one
call each; `frame_parts` splits one frame into the backbone, the depth decoder and sampling,
so each can be counted and timed alone; `frame_bytes` says where a frame's weight reads go.
Everything here measures; nothing asserts a speed. One exception, marked as such:
`plot_launch_timeline`, a schematic (computed by `launch_schedule`) of CPU launches and GPU work.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from ..core.config import CSMConfig
from ..core.generate import generate_codes
from ..core.model import CSM
from ..core.profiling import OpCounter, best_seconds
from ..core.rows import audio_rows
from ..core.sampling import draw_noise, gumbel, pick
from .common import new_figure

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


# ------------------------------------------------------- a schematic: CPU launches vs GPU work

_LAUNCH, _WAIT, _KERNEL, _IDLE = "tab:blue", "tab:red", "tab:green", "0.85"
TIMELINE_ROWS = {"eager": "(a) eager, no sync: the CPU runs ahead, the GPU's queue stays full",
                 "eager, launch-bound": "(a) eager, no sync: kernels shorter than launches, so "
                                        "the GPU waits on the CPU",
                 "sync": "(b) eager, a host sync every {n} kernels: the CPU waits, then the "
                         "GPU idles",
                 "graph": "(c) CUDA graph replay: one launch, the whole frame back to back"}


def _gaps(bars: list, end: float) -> list:
    """The idle (start, width) spans of a lane between 0 and `end`."""
    gaps, t = [], 0.0
    for start, width in bars:
        if start > t + 1e-9:
            gaps.append((t, start - t))
        t = max(t, start + width)
    return gaps + ([(t, end - t)] if end > t + 1e-9 else [])


def launch_schedule(kernels: int = 12, launch_cost: float = 1.0, kernel_cost: float = 1.5,
                    sync_every: int = 2) -> dict:
    """An illustrative timeline of one frame's `kernels` (not a measurement). Three ways to run
    them: "eager" (the CPU launches each kernel, `launch_cost` apiece, and never waits),
    "sync" (the same, but after every `sync_every` launches the CPU waits until the GPU has
    finished all it queued) and "graph" (one CUDA-graph launch, then every kernel).

    Returns {way: {"cpu": launch bars, "wait": CPU-wait bars, "gpu": kernel bars,
    "idle": GPU gaps, "end": when the last kernel ends, "gpu_busy": busy fraction of the GPU
    from 0 to "end"}}; every bar is (start, width), as Axes.broken_barh draws them."""
    if kernels < 1 or sync_every < 1 or launch_cost <= 0 or kernel_cost <= 0:
        raise ValueError("kernels and sync_every must be >= 1, the costs > 0")

    def eager(sync: bool) -> dict:
        cpu, wait, gpu, t, gpu_free = [], [], [], 0.0, 0.0
        for i in range(kernels):
            cpu.append((t, launch_cost))
            t += launch_cost                             # the kernel joins the queue here
            start = max(t, gpu_free)                     # ...and runs once the GPU is free
            gpu.append((start, kernel_cost))
            gpu_free = start + kernel_cost
            if sync and (i + 1) % sync_every == 0 and gpu_free > t:
                wait.append((t, gpu_free - t))           # the CPU blocks until the queue drains
                t = gpu_free
        return {"cpu": cpu, "wait": wait, "gpu": gpu}

    graph = {"cpu": [(0.0, launch_cost)], "wait": [],
             "gpu": [(launch_cost + i * kernel_cost, kernel_cost) for i in range(kernels)]}
    ways = {"eager": eager(False), "sync": eager(True), "graph": graph}
    for row in ways.values():
        row["end"] = row["gpu"][-1][0] + row["gpu"][-1][1]
        row["idle"] = _gaps(row["gpu"], row["end"])
        row["gpu_busy"] = kernels * kernel_cost / row["end"]
    return ways


def plot_launch_timeline(kernels: int = 12, launch_cost: float = 1.0, kernel_cost: float = 1.5,
                         sync_every: int = 2) -> Figure:
    """launch_schedule(...) drawn: three rows (eager, eager with host syncs, a CUDA graph),
    each a CPU lane (launches, waits) above a GPU lane (kernels, idle gaps). A schematic."""
    ways = launch_schedule(kernels, launch_cost, kernel_cost, sync_every)
    fig, axes = new_figure(3, 1, width=9.0, height=6.0, sharex=True)
    for ax, (way, row) in zip(axes[:, 0], ways.items()):
        lanes = ((1, row["cpu"], _LAUNCH, "CPU launches a kernel"),
                 (1, row["wait"], _WAIT, "CPU waits (host sync)"),
                 (0, row["gpu"], _KERNEL, "GPU runs a kernel"),
                 (0, row["idle"], _IDLE, "GPU idle"))
        for y, bars, colour, label in lanes:
            ax.broken_barh(bars, (y - 0.35, 0.7), facecolors=colour, edgecolor="white",
                           linewidth=1, label=label)
        ax.set_yticks([0, 1], ["GPU", "CPU"])
        ax.set_ylim(-0.6, 1.6)
        key = f"{way}, launch-bound" if way == "eager" and row["idle"][1:] else way
        ax.set_title(f"{TIMELINE_ROWS[key].format(n=sync_every)}: GPU busy "
                     f"{row['gpu_busy']:.0%}", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("time (illustrative units)")
    axes[-1, 0].set_xlim(0, max(row["end"] for row in ways.values()) * 1.01)
    handles, labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle(f"A schematic, not a measurement: {kernels} kernels, launch {launch_cost:g}, "
                 f"kernel {kernel_cost:g} (units)", fontsize=10)
    return fig
