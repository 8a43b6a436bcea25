"""Notebook 04 (Fast generation: where a frame's time goes): the lesson the notebook imports.

`from csm_nb.teach import fast as lesson` once, then `lesson.<name>`. This module holds the
figures and the worked calculations (the bandwidth floor, the official loop's host syncs, time
to first audio); two parts hold the rest, re-exported here:

    fast_measure    the measuring harnesses: FrameBench (time and count frames), a frame
                    taken apart, where its bytes go, CSM-1B on the meta device; and a
                    schematic timeline of CPU launches against GPU work (section 4)
    fast_exercises  the coding exercises (a static-cache write, a stop test with no host
                    sync) and the closing quiz
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from matplotlib.figure import Figure

from ..core.config import FRAME_MS, MIMI_CODEBOOKS, CSMConfig
from ..core.profiling import SYNC_OPS, VIEW_OPS
from .common import CSM_1B, Solutions, as_number, new_figure, unanswered, verdict, wrong
# Parts are imported by name, never as `from . import part`: that form runs teach/__init__,
# which imports this lesson (an import cycle, which tests/test_layout.py forbids).
from .fast_exercises import QUIZ, check_cache_write, check_quiz, check_stop_flags, show_quiz
from .fast_exercises import SOLUTIONS as _EXERCISES
from .fast_measure import (FrameBench, FrameCounts, count_frame_kernels, count_parts,
                           frame_bytes, frame_parts, kv_cache_bytes, launch_schedule, meta_csm,
                           plot_launch_timeline)

__all__ = [
    "QUIZ", "FrameBench", "FrameCounts", "check_cache_write", "check_first_audio_ms", "check_floor_ms",
    "check_host_syncs", "check_quiz", "check_stop_flags", "count_frame_kernels", "count_parts",
    "csm_with_codebooks", "csm_with_layers", "first_audio_ms", "frame_bytes", "frame_parts",
    "hint", "kv_cache_bytes", "launch_schedule",
    "llama_params", "meta_csm", "official_host_syncs", "params_per_frame",
    "plot_batch_throughput", "plot_bytes_per_frame", "plot_chunk_latency",
    "plot_context_scaling", "plot_frame_parts", "plot_launch_timeline", "plot_ms_per_frame",
    "plot_op_counts",
    "show_quiz", "solution",
]

_OWN = Solutions()               # this module's exercises; SOLUTIONS (at the end) adds the parts'

_L4_GB_S = 300.0                # NVIDIA L4 (a common cloud GPU, Colab's paid tier): GB/s
_HALF_BYTES = 2                 # bytes per parameter in fp16 / bf16
_STOP_SYNCS = 1                 # official stop test: `if torch.all(sample == 0)` once per frame

# Ops in the figures: those that launch a kernel, views (no kernel), host syncs.
_KERNEL_COLOUR, _VIEW_COLOUR, _SYNC_COLOUR = "tab:blue", "0.7", "tab:red"


# ---------------------------------------------------------------- where the time goes (section 1)

def _bar_labels(ax, bars, texts):
    for bar, text in zip(bars, texts):
        ax.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)


def plot_op_counts(counts, top: int = 15, title: str | None = None) -> Figure:
    """The most frequent ATen ops of a run ({name: count}, e.g. `OpCounter.counts`): ops that
    launch a kernel in blue, views (no kernel) in grey, host syncs in red."""
    items = sorted(dict(counts).items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    names = [name.removeprefix("aten::") for name, _ in items]
    colours = [_SYNC_COLOUR if n in SYNC_OPS else _VIEW_COLOUR if n in VIEW_OPS
               else _KERNEL_COLOUR for n, _ in items]
    fig, axes = new_figure(width=8, height=0.28 * len(items) + 1.0)
    ax = axes[0, 0]
    bars = ax.barh(names, [n for _, n in items], color=colours)
    _bar_labels(ax, bars, [f"{n:,.0f}" for _, n in items])
    ax.set_xlabel("calls")
    ax.set_title(title or f"top {len(items)} ATen ops (blue: kernel, grey: view, red: sync)",
                 fontsize=10)
    ax.margins(x=0.15)
    return fig


def plot_frame_parts(kernels: dict, ms: dict | None = None,
                     frame_ms: float | None = None) -> Figure:
    """One frame taken apart: kernel-launching ops per part (left) and, when measured, ms
    per part (right), beside the whole frame's measured time."""
    names = list(kernels)
    panels = [([kernels[n] for n in names], "kernel-launching ops per frame", "{:,.0f}")]
    if ms is not None:
        panels.append(([ms[n] for n in names], "ms per frame (measured here)", "{:.1f}"))
    fig, axes = new_figure(1, len(panels), width=5 * len(panels), height=0.5 * len(names) + 1.4)
    for ax, (values, label, fmt) in zip(axes[0], panels):
        bars = ax.barh(names[::-1], values[::-1], color=_KERNEL_COLOUR)
        _bar_labels(ax, bars, [fmt.format(v) for v in values[::-1]])
        ax.set_xlabel(label)
        ax.margins(x=0.2)
    if ms is not None and frame_ms is not None:
        axes[0, -1].axvline(frame_ms, color="0.3", ls="--", lw=1,
                            label=f"whole frame: {frame_ms:.1f} ms")
        axes[0, -1].legend(fontsize=8, loc="lower right")
    return fig


# ----------------------------------------------------------------- the floor: bytes per frame (2)

def llama_params(cfg) -> int:
    """Parameters of one csm_nb Llama (a `LlamaConfig`): per layer q/k/v/o projections, the
    SwiGLU MLP and two norms, plus the final norm."""
    D, hidden, kv = cfg.embed_dim, cfg.intermediate_dim, cfg.num_kv_heads * cfg.head_dim
    attention = D * D + 2 * D * kv + D * D          # q, k, v, output_proj
    mlp = 3 * D * hidden                            # w1, w2, w3
    return cfg.num_layers * (attention + mlp + 2 * D) + D


def params_per_frame(config: CSMConfig | None = None) -> int:
    """Parameters one frame reads at batch 1 (4.553 G for CSM-1B): the backbone and the
    codebook-0 head once, then for each of the K-1 depth steps the whole decoder, the
    projection and one [d, V] slice of audio_head. Embedding tables are read a row at a time
    and barely count."""
    c = config or CSM_1B
    once, per_step = _frame_params(c)
    return once + (c.num_codebooks - 1) * per_step


def _frame_params(c: CSMConfig) -> tuple[int, int]:
    """(read once per frame: backbone + codebook-0 head, read per depth step)."""
    D, d, V = c.backbone.embed_dim, c.decoder.embed_dim, c.audio_vocab_size
    return llama_params(c.backbone) + D * V, llama_params(c.decoder) + D * d + d * V


def csm_with_codebooks(num_codebooks: int, config: CSMConfig | None = None) -> CSMConfig:
    """CSM-1B (or `config`) with the same layers, predicting `num_codebooks` of Mimi's levels
    per frame instead of 32 (codebook 0, then num_codebooks - 1 depth steps)."""
    return replace(config or CSM_1B, num_codebooks=num_codebooks)


def check_floor_ms(answer, bandwidth_gb_s: float = _L4_GB_S, bytes_per_param: int = _HALF_BYTES,
                   config: CSMConfig | None = None) -> bool:
    """The bandwidth floor in ms per frame: bytes a frame must read / bytes per second.
    Defaults: CSM-1B in bf16 on an L4 (300 GB/s) -> 30.4 ms (30.6 ms with the KV cache); the
    notebook asks for `csm_with_codebooks(16)` -> 18.1 ms (18.3 ms with the KV cache)."""
    if unanswered(answer):
        return None
    value = as_number("floor_ms", answer)
    c = config or CSM_1B
    params = params_per_frame(c)

    def ms(n_params):
        return n_params * bytes_per_param / (bandwidth_gb_s * 1e9) * 1000

    def near(x, tol=0.02):
        return math.isclose(value, x, rel_tol=tol)

    right = ms(params)
    once, per_step = _frame_params(c)
    all_levels = ms(once + (MIMI_CODEBOOKS - 1) * per_step)   # the same layers, 32 codebooks
    if near(right):
        fewer = ""
        if c.num_codebooks != MIMI_CODEBOOKS:
            fewer = (f" With all {MIMI_CODEBOOKS} codebooks it would be {all_levels:.1f} ms: "
                     f"{c.num_codebooks} codebooks save {1 - right / all_levels:.0%}, not "
                     f"{1 - c.num_codebooks / MIMI_CODEBOOKS:.0%}, because the backbone and the "
                     "codebook-0 head are read once whatever the number of codebooks.")
        return verdict(True, f"{params / 1e9:.3f} G params x {bytes_per_param} bytes = "
                       f"{params * bytes_per_param / 1e9:.2f} GB per frame / {bandwidth_gb_s:g} "
                       f"GB/s = {right:.1f} ms: RTF {right / c.frame_ms:.2f} at best, whatever "
                       f"the code does.{fewer}", "")
    decoder_once = once + per_step                        # the depth decoder read only once
    scaled = (all_levels * c.num_codebooks / MIMI_CODEBOOKS,
              all_levels * (c.num_codebooks - 1) / (MIMI_CODEBOOKS - 1))
    if c.num_codebooks != MIMI_CODEBOOKS and near(all_levels):
        hint = (f"that is the floor with CSM-1B's {MIMI_CODEBOOKS} codebooks; this CSM has "
                f"{c.num_codebooks}, so its depth decoder runs {c.num_codebooks - 1} times "
                "per frame.")
    elif c.num_codebooks != MIMI_CODEBOOKS and any(near(x, 0.05) for x in scaled):
        hint = ("fewer codebooks shrink only the depth steps: the backbone and the codebook-0 "
                "head are read once per frame whatever the number of codebooks.")
    elif near(right / 1000):
        hint = "that is in seconds; the question asks milliseconds."
    elif near(right / bytes_per_param):
        hint = f"that counts parameters, not bytes: each takes {bytes_per_param} bytes."
    elif near(right * 2):
        hint = "bf16 / fp16 weights take 2 bytes each, not 4."
    elif near(right * 8):
        hint = "bandwidth is in bytes per second, not bits."
    elif near(ms(decoder_once), 0.05):
        hint = (f"the depth decoder runs once per codebook 1..{c.num_codebooks - 1}, and "
                "reads all its weights every time.")
    else:
        hint = ("add the parameters a frame touches (backbone + codebook-0 head, then "
                f"{c.num_codebooks - 1} x (decoder + projection + one audio_head slice)), "
                "multiply by bytes per parameter, divide by the bandwidth.")
    return wrong("floor_ms", f"{value:g} ms: {hint}")


_OWN["floor_ms"] = (
    "16 codebooks: codebook 0 from the backbone, then 15 depth steps. Per frame: backbone\n"
    "973.1 M + codebook0_head 4.2 M + 15 x (decoder 111.2 M + projection 2.1 M + one\n"
    "audio_head slice 2.1 M) = 2.708 G parameters, x 2 bytes (bf16) = 5.42 GB.\n"
    "5.42 GB / 300 GB/s = 18.1 ms per 80 ms frame (18.3 ms with the 67 MB KV cache): RTF 0.23\n"
    "is the best an L4 can do at batch 1. CSM-1B's 32 codebooks on the same L4: 30.4 ms, so\n"
    "half the codebooks save about 40 %, not 50 %: the backbone is read once whatever K.")


def plot_bytes_per_frame(parts: dict) -> Figure:
    """Where a frame's weight reads go: GB per part ({name: bytes}) and its share."""
    names = list(parts)[::-1]
    gb = np.array([parts[n] for n in names], dtype=float) / 1e9
    fig, axes = new_figure(width=8, height=0.45 * len(names) + 1.2)
    ax = axes[0, 0]
    bars = ax.barh(names, gb, color="tab:purple")
    _bar_labels(ax, bars, [f"{g:.2f} GB ({100 * g / gb.sum():.1f} %)" for g in gb])
    ax.set_xlabel("GB of weights read per frame")
    ax.set_title(f"{gb.sum():.2f} GB per {FRAME_MS:g} ms frame", fontsize=10)
    ax.margins(x=0.35)
    return fig


def plot_ms_per_frame(ms: dict, frame_ms: float = FRAME_MS, highlight=(),
                      log: bool = False, title: str | None = None) -> Figure:
    """ms per frame of each entry ({name: ms}: GPUs' floors, or ways to run the loop), with
    the real-time factor on each bar and the real-time line (one frame of audio)."""
    names = list(ms)[::-1]
    values = np.array([ms[n] for n in names], dtype=float)
    colours = ["tab:orange" if n in highlight else "tab:green" if v < frame_ms else "tab:red"
               for n, v in zip(names, values)]
    fig, axes = new_figure(width=8, height=0.42 * len(names) + 1.3)
    ax = axes[0, 0]
    bars = ax.barh(names, values, color=colours)
    _bar_labels(ax, bars, [f"{v:,.0f} ms (RTF {v / frame_ms:.3g})" if v >= 100 else
                           f"{v:.3g} ms (RTF {v / frame_ms:.3g})" for v in values])
    ax.axvline(frame_ms, color="0.3", ls="--", lw=1, label=f"real time: {frame_ms:g} ms")
    if log:
        ax.set_xscale("log")
        ax.set_xlim(right=values.max() * 30)
    else:
        ax.margins(x=0.35)
    ax.set_xlabel("ms per frame")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


# ------------------------------------------------------------------- host syncs (4)

def csm_with_layers(backbone_layers: int, decoder_layers: int,
                    config: CSMConfig | None = None) -> CSMConfig:
    """CSM-1B (or `config`) with other numbers of backbone and depth-decoder layers."""
    c = config or CSM_1B
    return replace(c, backbone=replace(c.backbone, num_layers=backbone_layers),
                   decoder=replace(c.decoder, num_layers=decoder_layers))


def official_host_syncs(config: CSMConfig | None = None) -> int:
    """Blocking host syncs per frame in the official loop (145 for CSM-1B): torchtune's
    KVCache.update asserts on a device value in every attention call (the backbone's layers
    once, the decoder's layers K-1 times), the decoder cache reset reads `.item()` once per
    decoder layer (KVCache.reset: `cache_pos -= self.size`, and `size` is an `.item()`), and
    the stop test reads the frame once."""
    c = config or CSM_1B
    layer_calls = c.backbone.num_layers + (c.num_codebooks - 1) * c.decoder.num_layers
    return layer_calls + c.decoder.num_layers + _STOP_SYNCS


def check_host_syncs(answer, config: CSMConfig | None = None) -> bool:
    """How many host syncs one frame of the official loop makes (145 for CSM-1B)."""
    if unanswered(answer):
        return None
    value = as_number("host_syncs", answer)
    c = config or CSM_1B
    right = official_host_syncs(c)
    Lb, Ld, K = c.backbone.num_layers, c.decoder.num_layers, c.num_codebooks
    extra = Ld + _STOP_SYNCS                    # the reset's reads, one per decoder layer
    if value == right:
        return verdict(True, f"{Lb} backbone layers + {K - 1} depth steps x {Ld} decoder layers "
                       f"+ {Ld} reset reads + {_STOP_SYNCS} stop test = {right}: each "
                       "one drains the GPU queue before the CPU may go on.", "")
    if value == right - extra:
        hint = (f"that is the layer asserts; the decoder cache reset reads .item() once per "
                f"decoder layer ({Ld}) and the stop test reads the frame once more.")
    elif value == right - Ld + 4:
        hint = (f"the reset reads .item() once per decoder layer: {Ld} here, not CSM-1B's 4.")
    elif value == Lb + Ld + extra:
        hint = f"the depth decoder runs once per codebook 1..{K - 1}, every frame."
    elif value == Lb + K * Ld + extra:
        hint = "codebook 0 comes from the backbone: the decoder runs K - 1 times, not K."
    elif value <= 1:
        hint = "that is csm_nb's loop; the question is about the official one."
    else:
        hint = ("count one sync per attention layer call (backbone layers once, decoder layers "
                "once per depth step), then the reset reads and the stop test.")
    return wrong("host_syncs", f"{value:g} per frame: {hint}")


_OWN["host_syncs"] = (
    "Per frame: the backbone's layers once, the decoder's layers once for each of codebooks\n"
    "1..31, each attention call asserting on a device value; plus decoder.reset_caches() (one\n"
    ".item() read per decoder layer) and the stop test (1). CSM-1B: 16 + 31 x 4 + 4 + 1 = 145.\n"
    "A 28-layer backbone with an 8-layer decoder: 28 + 31 x 8 + 8 + 1 = 285. The GPU idles\n"
    "after every one of them.")


# ------------------------------------------------------------- context, streaming, batching (7-9)

def plot_context_scaling(rows, step_ms, prefill_ms=None) -> Figure:
    """Per-frame time (left) and prompt prefill time (right) against the prompt's rows."""
    panels = [(step_ms, "ms per generated frame")]
    if prefill_ms is not None:
        panels.append((prefill_ms, "prefill + first frame (ms)"))
    fig, axes = new_figure(1, len(panels), width=4.5 * len(panels), height=3.0)
    for ax, (values, label) in zip(axes[0], panels):
        ax.plot(rows, values, "o-", color="tab:blue")
        ax.set_xlabel("rows in the prompt")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    return fig


def first_audio_ms(prefill_ms: float, step_ms: float, chunk_frames: int,
                   decode_ms: float) -> float:
    """Time to first audio of a stream: the prefill, the first chunk's frames, one decode."""
    return prefill_ms + chunk_frames * step_ms + decode_ms


def check_first_audio_ms(answer, prefill_ms: float = 15.0, step_ms: float = 6.0,
                         chunk_frames: int = 4, decode_ms: float = 5.0) -> bool:
    """Time to first audio (ms) for a prefill of `prefill_ms`, `step_ms` per frame, chunks of
    `chunk_frames` frames and `decode_ms` per Mimi call (defaults: about an H100's)."""
    if unanswered(answer):
        return None
    value = as_number("first_audio_ms", answer)
    right = first_audio_ms(prefill_ms, step_ms, chunk_frames, decode_ms)

    def near(x):
        return math.isclose(value, x, rel_tol=1e-3, abs_tol=0.05)

    if near(right):
        return verdict(True, f"{prefill_ms:g} ms prefill + {chunk_frames} x {step_ms:g} ms + "
                       f"{decode_ms:g} ms decode = {right:g} ms, for "
                       f"{chunk_frames * FRAME_MS:g} ms of audio.", "")
    if near(right - prefill_ms):
        hint = "the whole prompt must be read (the prefill) before the first frame."
    elif near(right - decode_ms):
        hint = "codes are not audio yet: Mimi must decode the chunk."
    elif near(prefill_ms + step_ms + decode_ms):
        hint = f"the first chunk needs all of its {chunk_frames} frames."
    elif near(prefill_ms + chunk_frames * FRAME_MS + decode_ms):
        hint = (f"{FRAME_MS:g} ms is how much audio a frame holds, not how long it "
                "takes to compute.")
    else:
        hint = "add the prefill, the frames of one chunk, and one Mimi decode."
    return wrong("first_audio_ms", f"{value:g} ms: {hint}")


_OWN["first_audio_ms"] = (
    "15 ms prefill + 4 frames x 6 ms + 5 ms Mimi decode = 44 ms until 320 ms of audio is\n"
    "ready. Chunks of 1 frame: 15 + 6 + 5 = 26 ms, but 4x more Mimi calls per second of audio.")


def plot_chunk_latency(chunk_frames, first_audio_s, frame_ms: float = FRAME_MS) -> Figure:
    """Streaming: time to the first chunk against frames per chunk, beside how much audio
    that chunk holds (playback never stalls while generation keeps ahead of it)."""
    n = np.asarray(chunk_frames)
    first = np.asarray(first_audio_s, dtype=float) * 1000
    fig, axes = new_figure(width=7, height=3.0)
    ax = axes[0, 0]
    x = np.arange(n.size)
    ax.bar(x - 0.2, first, 0.4, color="tab:blue", label="time to first audio (measured)")
    ax.bar(x + 0.2, n * frame_ms, 0.4, color="tab:green", label="audio in the first chunk")
    ax.set_xticks(x, [str(v) for v in n])
    ax.set_xlabel("frames per chunk")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    return fig


def plot_batch_throughput(batch_sizes, ms_per_frame, frame_ms: float = FRAME_MS) -> Figure:
    """Batching: ms per frame step (left) and frames per second over all streams (right),
    against perfect scaling (B x the batch-1 throughput)."""
    B = np.asarray(batch_sizes, dtype=float)
    ms = np.asarray(ms_per_frame, dtype=float)
    fps = B * 1000 / ms
    fig, axes = new_figure(1, 2, width=9, height=3.0)
    left, right = axes[0]
    left.plot(B, ms, "o-", color="tab:blue")
    left.set_ylabel("ms per frame step")
    left.set_ylim(bottom=0)
    right.plot(B, fps, "o-", color="tab:green", label="measured")
    right.plot(B, B * fps[0], "--", color="0.5", label="perfect scaling")
    right.axhline(1000 / frame_ms, color="tab:red", lw=1, label="one real-time stream")
    right.set_ylabel("frames per second (all streams)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("batch size (streams)")
        ax.set_xticks(B)
        ax.grid(alpha=0.3)
    return fig


_OWN.hints["floor_ms"] = (
    "First the parameters a frame reads: the backbone and the codebook-0 head once, then the "
    "decoder, the projection and one audio_head slice once per depth step (how many depth "
    "steps does a 16-codebook frame have?). Times bytes per parameter, divided by bytes per "
    "second (GB/s means 1e9 bytes per second), gives seconds; then convert to milliseconds.")
_OWN.answers["floor_ms"] = (
    "L4_GB_S = 300                                 # NVIDIA L4's datasheet bandwidth, GB/s\n"
    "csm_16 = lesson.csm_with_codebooks(16)        # CSM-1B's layers, 16 codebooks instead of 32\n"
    "params = 973.1e6 + 4.2e6 + 15 * (111.2e6 + 2.1e6 + 2.1e6)   # once, then 15 depth steps\n"
    "floor_ms = params * 2 / (L4_GB_S * 1e9) * 1000   # bytes per frame / bytes per second, in ms\n"
    "lesson.check_floor_ms(floor_ms, bandwidth_gb_s=L4_GB_S, config=csm_16)")
_OWN.hints["host_syncs"] = (
    "One sync per attention *call*: the backbone's layers run once per frame, the decoder's "
    "layers once per depth step (how many depth steps are there?). Then add the reset reads "
    "(one per decoder layer) and the stop test.")
_OWN.answers["host_syncs"] = (
    "bigger = lesson.csm_with_layers(backbone_layers=28, decoder_layers=8)\n"
    "host_syncs = 28 + 31 * 8 + 8 + 1   # backbone calls + 31 depth steps x 8 + reset + stop\n"
    "lesson.check_host_syncs(host_syncs, config=bigger)")
_OWN.hints["first_audio_ms"] = (
    "Before the first chunk can play: the whole prompt is read once, then every frame of the "
    "first chunk is computed, then Mimi turns the chunk into sound.")
_OWN.answers["first_audio_ms"] = (
    "first_audio_ms = 15 + 4 * 6 + 5   # prefill + 4 frames + one Mimi decode\n"
    "lesson.check_first_audio_ms(first_audio_ms)")

SOLUTIONS = Solutions(_OWN, _EXERCISES)
solution, hint = SOLUTIONS.show, SOLUTIONS.hint
