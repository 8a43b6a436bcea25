"""The rehearsal's frame-loop benchmark: real-mode weights (loaded by csm_nb.from_pretrained from
the stand-in folder), every backend, dtype and batch size asked for.

Per row: ms per frame (steady state: the difference between a long and a short run, so prefill
and the first frame cancel out), real-time factor per stream (ms / 80), the first call's time
(compile or CUDA-graph capture included), peak device memory, and whether the codes equal the
eager backend's for the same noise (same torch.Generator seed). Per dtype: prefill of the
100-row prompt and time to first audio through Generator.generate_stream (prefill, one frame,
one Mimi step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

import csm_nb
from bench_frame import random_prompt

TEMPERATURE, TOPK = 0.9, 50
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Row:
    """One line of the summary table."""
    part: str
    check: str
    status: str = "ok"            # ok | FAIL | skipped
    seconds: float | None = None
    peak_gb: float | None = None
    result: str = ""
    numbers: dict = field(default_factory=dict)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def peak_reset(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def first_difference(a: torch.Tensor, b: torch.Tensor) -> str:
    """'yes', or where two code tensors [.., K, F] first differ."""
    if a.shape == b.shape and torch.equal(a, b):
        return "yes"
    if a.shape != b.shape:
        return f"NO (shapes {tuple(a.shape)} vs {tuple(b.shape)})"
    frames = (a != b).flatten(0, -2).any(0).nonzero()
    same = float((a == b).float().mean())
    return f"no: from frame {int(frames[0])} of {a.shape[-1]} ({same:.0%} of codes equal)"


def frame_rows(model, device, dtype_name: str, batches, backends, frames: int, deadline: float,
               rows_out: list, seconds_needed) -> None:
    """Append one Row per (backend, batch). frames: frames of the long run (the short run has
    2); seconds_needed(backend) -> how much time a row needs, to skip it when the budget is
    spent."""
    tokens, mask = random_prompt(model.config, 100)
    for batch in batches:
        t = tokens.expand(batch, -1, -1).to(device)
        m = mask.expand(batch, -1, -1).to(device)
        reference = None
        for backend in backends:
            row = Row("frame loop", f"{dtype_name} batch {batch} {backend}")
            rows_out.append(row)
            if time.monotonic() + seconds_needed(backend) > deadline:
                row.status, row.result = "skipped", "not run: the time budget is spent"
                continue

            def run(f, backend=backend):
                gen = torch.Generator(device).manual_seed(0)
                return csm_nb.generate_codes(model, t, m, max_frames=f, backend=backend,
                                             temperature=TEMPERATURE, topk=TOPK, generator=gen)
            try:
                peak_reset(device)
                first_s, codes = timed(device, lambda: run(frames))
                short = min(timed(device, lambda: run(2))[0] for _ in range(2))
                long = min(timed(device, lambda: run(frames))[0] for _ in range(2))
            except Exception as err:          # a backend that fails is a finding, not a crash
                row.status, row.result = "FAIL", f"{type(err).__name__}: {err}"[:300]
                continue
            ms = (long - short) / (frames - 2) * 1000
            frame_ms = model.config.frame_ms
            if backend == "eager":
                reference = codes.cpu()
            same = ("(the reference)" if backend == "eager" else "n/a (eager did not run)"
                    if reference is None else first_difference(reference, codes.cpu()))
            row.seconds, row.peak_gb = first_s, peak_gb(device)
            row.numbers = {"ms_per_frame": ms, "rtf": ms / frame_ms,
                           "x_realtime_all_streams": batch * frame_ms / ms,
                           "first_call_s": first_s, "same_codes_as_eager": same}
            row.result = (f"{ms:.1f} ms/frame, RTF {ms / frame_ms:.3f}"
                          + (f" ({batch * frame_ms / ms:.1f}x real time for {batch} streams)"
                             if batch > 1 else "")
                          + f"; first call {first_s:.1f} s; same codes as eager: {same}")
            if backend != "eager" and same.startswith("no") and dtype_name == "fp32":
                row.status = "FAIL"


def prefill_row(model, device, dtype_name: str, batch: int = 1) -> Row:
    tokens, mask = random_prompt(model.config, 100)
    t = tokens.expand(batch, -1, -1).to(device)
    m = mask.expand(batch, -1, -1).to(device)
    slots = torch.arange(t.shape[1], device=device)
    with torch.inference_mode():
        model.setup_caches(batch)
        seconds = min(timed(device, lambda: model.backbone_step(t, m, slots))[0]
                      for _ in range(3))
    return Row("frame loop", f"{dtype_name} prefill, 100 rows, batch {batch}",
               result=f"{seconds * 1000:.1f} ms", numbers={"prefill_ms": seconds * 1000})


def first_audio_row(model, device, dtype_name: str) -> Row:
    """Time to first audio as a user meets it: Generator.generate_stream with one prompt
    segment as context, chunks of one frame, after one warm-up call (prompt encoded, graph
    captured)."""
    from csm_nb.audio.mimi_weights import load_codec
    from csm_nb.loading.tokenizer import load_tokenizer
    from csm_nb.speech.prompts import load_prompt

    row = Row("frame loop", f"{dtype_name} time to first audio (stream, 1-frame chunks)")
    try:
        gen = csm_nb.Generator(model, load_tokenizer(mode="real"),
                               load_codec("real", device=device), mode="real")
        prompt = load_prompt("read_speech_c", 0, mode="real")

        def first_chunk():
            stream = gen.generate_stream("Hello, this is the rehearsal.", 1, [prompt],
                                         max_audio_length_ms=800, seed=0, progress=False,
                                         chunk_frames=1)
            start = time.perf_counter()
            chunk = next(stream)
            seconds = time.perf_counter() - start
            stream.close()
            return seconds, chunk
        first_chunk()                                   # warm-up
        seconds, chunk = first_chunk()
    except Exception as err:
        row.status, row.result = "FAIL", f"{type(err).__name__}: {err}"[:300]
        return row
    row.seconds = seconds
    row.numbers = {"ttfa_ms": seconds * 1000, "chunk_samples": int(chunk.numel())}
    row.result = f"{seconds * 1000:.0f} ms to the first {chunk.numel()} samples"
    return row


def load(folder: str, device, dtype) -> tuple[object, float]:
    start = time.perf_counter()
    model = csm_nb.from_pretrained(folder, device=device, dtype=dtype)
    return model, time.perf_counter() - start


def run_all(folder: str, device: torch.device, dtypes, batches, backends, frames: int,
            deadline: float, seconds_needed, first_audio: bool = True) -> list[Row]:
    """Every benchmark row, one dtype at a time (one model in memory at a time)."""
    rows: list[Row] = []
    for name in dtypes:
        if time.monotonic() + seconds_needed("load") > deadline:
            rows.append(Row("frame loop", f"{name}: all rows", "skipped", result="not run: the "
                            "time budget is spent"))
            continue
        try:
            model, seconds = load(folder, device, DTYPES[name])
        except Exception as err:
            rows.append(Row("frame loop", f"{name}: from_pretrained", "FAIL",
                            result=f"{type(err).__name__}: {err}"[:300]))
            continue
        rows.append(Row("frame loop", f"{name}: from_pretrained ({model.num_parameters / 1e9:.2f}"
                        " B params)", seconds=seconds, result=f"loaded in {seconds:.1f} s"))
        rows.append(prefill_row(model, device, name))
        if first_audio:
            rows.append(first_audio_row(model, device, name))
        frame_rows(model, device, name, batches, backends, frames, deadline, rows,
                   seconds_needed)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows
