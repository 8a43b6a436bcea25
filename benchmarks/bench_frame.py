"""What one 80 ms frame costs: csm_nb's paths against the official loop and transformers.

    python benchmarks/bench_frame.py --size tiny                  # CPU, fp32, a few minutes
    python benchmarks/bench_frame.py --size csm_1b --frames 4     # full size: ~8 GB RAM per copy
    python benchmarks/bench_frame.py --size csm_1b --device cuda --dtype bf16

Every row runs on the same random weights and the same prompt, and is measured per frame
after the prefill, sampling with CSM's defaults (temperature 0.9, top-k 50): time, real-time
factor (time / 80 ms of audio), ATen ops dispatched, ops that launch kernels, and host syncs.
A separate greedy run checks that every row makes the same codes.
Then: how the time per frame grows with the context, how throughput grows with the batch,
and the bandwidth floor (bytes of weights a frame must read / the machine's bandwidth).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import csm_nb  # noqa: E402
from csm_nb.core.profiling import OpCounter, measure_bandwidth, timed, weight_bytes_per_frame  # noqa: E402


def random_prompt(cfg, rows: int, seed: int = 0):
    """`rows` rows: a context segment (text + audio frames + EOS row) and a line to speak."""
    g = torch.Generator().manual_seed(seed)
    tok = csm_nb.tiny_tokenizer()
    text_t, text_m = csm_nb.text_rows(tok, "Hello, how are you doing today?", 1,
                                      cfg.num_codebooks)
    tail_t, tail_m = csm_nb.text_rows(tok, "Pretty good.", 0, cfg.num_codebooks)
    frames = max(1, rows - len(text_t) - len(tail_t) - 1)
    codes = torch.randint(1, 2048, (cfg.num_codebooks, frames), generator=g)
    audio_t, audio_m = csm_nb.audio_rows(codes)
    return torch.cat([text_t, audio_t, tail_t]), torch.cat([text_m, audio_m, tail_m])


TEMPERATURE, TOPK = 0.9, 50        # CSM's defaults


class Row:
    def __init__(self, name, run, count=True):
        self.name, self.run = name, run     # run(tokens, mask, frames, greedy) -> codes [K, F]
        self.count = count                  # count ATen ops (not for compiled code)


def measure(run, tokens, mask, frames, frame_ms, repeats=3, count=True):
    """Per-frame figures from the difference between an F-frame and a 1-frame run.

    Timed first, then counted: a compiled function that has once run under the op counter (a
    TorchDispatchMode) runs slower afterwards, and its ops are not ATen dispatches anyway, so
    compiled rows are not counted (count=False)."""
    def sampled(t, m, f):
        return run(t, m, f, False)

    with timed() as first:
        sampled(tokens, mask, 2)                                 # warm-up (compile, capture)
    one_run = [_time(sampled, tokens, mask, 1) for _ in range(repeats)]
    many_runs = [_time(sampled, tokens, mask, frames) for _ in range(repeats)]
    codes = run(tokens, mask, frames, True)
    per = frames - 1
    counts = {"ops": float("nan"), "kernels": float("nan"), "syncs": float("nan")}
    if count:
        with OpCounter() as one:
            sampled(tokens, mask, 1)
        with OpCounter() as many:
            sampled(tokens, mask, frames)
        counts = {"ops": (many.total - one.total) / per,
                  "kernels": (many.kernels - one.kernels) / per,
                  "syncs": (many.syncs - one.syncs) / per}
    t1, tn = min(w for w, _ in one_run), min(w for w, _ in many_runs)
    c1, cn = min(c for _, c in one_run), min(c for _, c in many_runs)
    ms = (tn - t1) / per * 1000
    return {"ms": ms, "rtf": ms / frame_ms, "first_ms": t1 * 1000,
            "cpu_ms": (cn - c1) / per * 1000, "warmup_s": first.seconds, **counts,
            "codes": codes}


def _time(run, tokens, mask, frames):
    """(wall seconds, CPU seconds of this process). On a shared machine the wall clock
    includes time spent waiting for a core; CPU time does not, so it is the steadier figure
    (on a GPU only the wall clock means anything)."""
    cpu = time.process_time()
    with timed() as t:
        run(tokens, mask, frames)
    return t.seconds, time.process_time() - cpu


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def ours(model, backend):
    def run(t, m, f, greedy):
        return csm_nb.generate_codes(model, t, m, max_frames=f, backend=backend,
                                     topk=1 if greedy else TOPK, temperature=TEMPERATURE)
    return run


def build_rows(model, args, device):
    rows = [Row("csm_nb eager", ours(model, "eager")),
            Row("csm_nb static step" + (" + CUDA graph" if device.type == "cuda" else ""),
                ours(model, "graph"))]
    if not args.skip_compile:
        rows.append(Row("csm_nb compiled (one depth step)", ours(model, "compile"), count=False))
    if not args.skip_reference:
        from csm_nb.reference.official import OfficialCSM
        with torch.device("meta"):
            ref = OfficialCSM(model.config)
        ref.load_state_dict(model.state_dict(), assign=True)     # shares the weights
        for tt in (ref.backbone, ref.decoder):                   # RoPE buffers left on meta
            for layer in tt.layers:
                layer.attn.pos_embeddings.rope_init()
        ref = ref.to(device).eval()
        rows.append(Row("reference (torchtune, official loop)",
                        lambda t, m, f, greedy: ref.generate(
                            t.to(device), m.to(device), f, topk=1 if greedy else TOPK,
                            temperature=TEMPERATURE)))
    if not args.skip_transformers:
        from csm_nb.reference.hf_csm import hf_inputs_from_rows, hf_model_from, stub_codec
        hf = hf_model_from(model).to(device)

        def run_hf(t, m, f, greedy):
            inputs, segments = hf_inputs_from_rows(t, m, hf)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            sampling = {} if greedy else {"temperature": TEMPERATURE, "top_k": TOPK,
                                          "depth_decoder_temperature": TEMPERATURE,
                                          "depth_decoder_top_k": TOPK}
            with stub_codec(hf, segments), torch.inference_mode():
                out = hf.generate(**inputs, do_sample=not greedy,
                                  depth_decoder_do_sample=not greedy, max_new_tokens=f,
                                  min_new_tokens=f, **sampling)
            return out[0].T
        rows.append(Row("transformers generate", run_hf))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("tiny", "csm_1b"), default="tiny")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None)
    p.add_argument("--frames", type=int, default=None, help="frames per timed run")
    p.add_argument("--context", default="100,500,1000,1900", help="prompt rows to sweep")
    p.add_argument("--batch", default="1,2,4,8", help="batch sizes to sweep")
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--skip-transformers", action="store_true")
    p.add_argument("--skip-sweeps", action="store_true")
    args = p.parse_args(argv)

    device = csm_nb.loading.modes.resolve_device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
             None: None}[args.dtype]
    dtype = csm_nb.loading.modes.resolve_dtype(dtype, device)
    cfg = csm_nb.CSMConfig.tiny() if args.size == "tiny" else csm_nb.CSMConfig.csm_1b()
    frames = args.frames or (12 if args.size == "tiny" else 4)
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device("meta"):
        model = csm_nb.CSM(cfg)
    model = model.to_empty(device=device).to(dtype)
    model.init_buffers()
    model.reset_parameters(generator=torch.Generator(device).manual_seed(0))
    model.eval()
    print(f"# csm_nb frame benchmark: size={args.size} ({model.num_parameters / 1e6:.1f} M "
          f"params), device={device}, dtype={str(dtype).removeprefix('torch.')}, "
          f"threads={torch.get_num_threads()}, torch {torch.__version__}; built in "
          f"{time.perf_counter() - start:.1f} s")
    tokens, mask = random_prompt(cfg, 100)
    results = []
    for row in build_rows(model, args, device):
        t0 = time.perf_counter()
        r = measure(row.run, tokens, mask, frames, cfg.frame_ms, count=row.count)
        r["name"], r["setup_s"] = row.name, time.perf_counter() - t0
        r["rss"] = peak_rss_gb()
        results.append(r)
        print(f"  measured {row.name} in {r['setup_s']:.0f} s", file=sys.stderr)
    print_table(results, frames)
    floor(model, device, cfg)
    if not args.skip_sweeps:
        sweeps(model, cfg, args, frames)


def print_table(results, frames):
    base = next((r for r in results if r["name"].startswith("reference")), results[0])
    print(f"\n## One frame, batch 1, 100-row prompt, temperature {TEMPERATURE}, top-k {TOPK}, "
          f"{frames} frames per run, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| path | ms/frame | RTF | CPU ms/frame | speed-up vs reference (CPU) | ATen "
          "ops/frame | kernel ops/frame | host syncs/frame | prefill+1st frame ms | warm-up s "
          "| peak RSS GB | same codes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|")

    def n(x, fmt):
        return "-" if x != x else format(x, fmt)          # NaN: not counted
    for r in results:
        same = torch.equal(r["codes"].cpu(), base["codes"].cpu())
        print(f"| {r['name']} | {r['ms']:.1f} | {r['rtf']:.3f} | {r['cpu_ms']:.1f} | "
              f"{base['cpu_ms'] / r['cpu_ms']:.2f}x | {n(r['ops'], '.0f')} | "
              f"{n(r['kernels'], '.0f')} | {n(r['syncs'], '.1f')} | {r['first_ms']:.0f} | "
              f"{r['warmup_s']:.1f} | {r['rss']:.1f} | {'yes' if same else 'NO'} |")
    ours = results[0]
    print(f"\ncsm_nb eager vs reference: {ours['ops'] / base['ops']:.2f}x the ops, "
          f"{ours['kernels'] / base['kernels']:.2f}x the kernel ops, {ours['syncs']:.1f} vs "
          f"{base['syncs']:.1f} syncs/frame, {base['ms'] / ours['ms']:.2f}x faster per frame "
          f"(wall), {base['cpu_ms'] / ours['cpu_ms']:.2f}x (CPU time)")
    best = min((r for r in results if r is not base and not r["name"].startswith("transformers")),
               key=lambda r: r["cpu_ms"])
    print(f"CPU proxy: csm_nb's fastest path ({best['name']}) {best['cpu_ms']:.1f} ms/frame vs "
          f"the official loop {base['cpu_ms']:.1f}: {base['cpu_ms'] / best['cpu_ms']:.2f}x "
          f"(CPU time; target >= 3x)")


def floor(model, device, cfg):
    bw = measure_bandwidth(device)
    weight_bytes = weight_bytes_per_frame(model)
    floor_ms = weight_bytes / bw * 1000
    print(f"\n## Bandwidth floor\n\nweights read per frame: {weight_bytes / 1e9:.3f} GB; "
          f"measured copy bandwidth: {bw / 1e9:.1f} GB/s -> floor {floor_ms:.2f} ms/frame "
          f"(RTF {floor_ms / cfg.frame_ms:.4f})")


def sweeps(model, cfg, args, frames):
    eager = ours(model, "eager")

    print("\n## Context length (csm_nb eager, batch 1)\n\n| prompt rows | ms/frame | RTF | "
          "CPU ms/frame |")
    print("|---:|---:|---:|---:|")
    for rows in (int(x) for x in args.context.split(",")):
        if rows + frames > cfg.max_seq_len:
            continue
        r = measure(eager, *random_prompt(cfg, rows), frames, cfg.frame_ms, repeats=1)
        print(f"| {rows} | {r['ms']:.1f} | {r['rtf']:.3f} | {r['cpu_ms']:.1f} |")
    print("\n## Batch size (csm_nb eager, 100-row prompts)\n\n| batch | ms/frame | frames/s "
          "(all streams) | x real time | CPU ms/frame |")
    print("|---:|---:|---:|---:|---:|")
    for b in (int(x) for x in args.batch.split(",")):
        tokens, mask = random_prompt(cfg, 100)
        r = measure(eager, tokens.expand(b, -1, -1), mask.expand(b, -1, -1), frames,
                    cfg.frame_ms, repeats=1)
        fps = b * 1000 / r["ms"]
        print(f"| {b} | {r['ms']:.1f} | {fps:.1f} | {fps * cfg.frame_ms / 1000:.2f} | "
              f"{r['cpu_ms']:.1f} |")


if __name__ == "__main__":
    os.environ.setdefault("CSM_NB_MODE", "tiny")
    main()
