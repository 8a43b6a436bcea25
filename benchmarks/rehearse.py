"""`make rehearse`: prove csm_nb's real path on any machine, without the gated weights.

    python benchmarks/rehearse.py                  # CUDA: full size, every part, <= 8 minutes
    python benchmarks/rehearse.py --skip notebooks,compile --budget-s 120   # CPU, quick

1. Stand-in checkpoints (rehearse_files.py): random CSM-1B weights (bf16 safetensors), a random
   Mimi of moshi's structure and the Llama-3.2 tokenizer, in folders laid out like
   sesame/csm-1b and kyutai/moshiko-pytorch-bf16, plus an offline Hugging Face cache. `real`
   mode then loads them through csm_nb's own loading code.
2. Real mode end to end (rehearse_steps.py), each in its own process: every notebook,
   `python -m csm_nb say`, one two-turn conversation through the app (through gradio_client
   when Gradio is installed, else through the app's handler). Lines are capped at --line-ms
   with $CSM_NB_MAX_LINE_MS (csm_nb.env.max_line_ms; the table says which notebooks read it).
3. The frame loop (rehearse_bench.py): eager, CUDA graph and compiled backends, bf16 and fp16,
   batch 1 and 8: ms/frame, real-time factor, first call (compile/capture), prefill, time to
   first audio, peak memory, same codes as eager for the same noise.
4. On CUDA, a T4 rehearsal: step 2 again with fp16 (bf16 reported unsupported) and each
   process capped at 15 GiB by torch.cuda.set_per_process_memory_fraction.

On a machine without CUDA the same script runs at tiny size (CSMConfig.tiny(), fp32, batch 1
and 2, no T4 part): tests/test_rehearse.py runs that path so the script cannot rot. Wheels for
packages the machine lacks are installed from .whl/ (`make rehearse-wheels`) with pip
--no-index --no-deps --target into the work folder; the table lists what still cannot be
imported and skips the parts that need it. One summary table is printed and written to
$OUT/rehearsal.md (results/ when $OUT is unset), with rehearsal.json and rehearsal-log.txt.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

import csm_nb  # noqa: E402
import rehearse_bench as bench  # noqa: E402
import rehearse_files as files  # noqa: E402
import rehearse_steps as steps  # noqa: E402
from rehearse_bench import Row  # noqa: E402

PARTS = ("notebooks", "cli", "app", "bench", "compile", "t4")
# What the parts import (module: what needs it); checked after the wheels are installed.
MODULES = {"moshi": "Mimi (every real-mode part)", "einops": "moshi", "sentencepiece": "moshi",
           "soundfile": "reading prompts (WAV)", "librosa": "the toy codec (notebook 05)",
           "sphn": "nothing in csm_nb (moshi's optional audio I/O)",
           "nbformat": "notebooks", "nbclient": "notebooks", "ipykernel": "notebooks",
           "IPython": "notebooks", "ipywidgets": "notebooks (widgets)",
           "matplotlib": "notebooks (figures)", "gradio": "the app's web page",
           "gradio_client": "the app's conversation through a client"}
T4_GIB = 15.0
T4_LABEL = f"T4 ({T4_GIB:g} GiB, fp16)"


def install_wheels(wheels: Path, site: Path) -> Row:
    """pip install --no-index --no-deps --target site, for the carried wheels whose
    distribution is not installed here already (two versions of one package stop pip)."""
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not found:
        return Row("setup", "carried wheels", "skipped", result=f"none in {wheels}")
    missing = []
    for wheel in found:
        name = wheel.name.split("-")[0]
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(wheel)
    row = Row("setup", f"carried wheels ({len(found)} in {wheels.name}/)")
    if missing:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                               "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                               "--target", str(site), *map(str, missing)],
                              capture_output=True, text=True)
        row.seconds = time.perf_counter() - start
        if done.returncode != 0:
            row.status = "FAIL"
            row.result = f"pip failed: {steps.tail(done.stderr)}"
            return row
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    row.result = (f"installed {len(missing)}: " + ", ".join(w.name.split("-")[0] for w in missing)
                  if missing else "all already installed here")
    return row


def check_imports() -> tuple[Row, set[str]]:
    missing = {}
    for module, used_by in MODULES.items():
        try:
            importlib.import_module(module)
        except Exception as err:          # ImportError, or a package broken on this torch
            missing[module] = f"{module} ({used_by}: {type(err).__name__})"
    needed = {"moshi", "einops", "sentencepiece", "soundfile"} & set(missing)   # real mode
    row = Row("setup", f"imports ({len(MODULES)} packages)", "FAIL" if needed else "ok",
              result="all import" if not missing else "missing: " + "; ".join(missing.values()))
    return row, set(missing)


def environment_row(device: torch.device) -> Row:
    gpu = (f"{torch.cuda.get_device_name(device)}, "
           f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
           if device.type == "cuda" else f"CPU, {os.cpu_count()} cores, "
           f"{torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f}")
    return Row("setup", "machine", result=f"{gpu}; Python {platform.python_version()}, torch "
               f"{torch.__version__}, CUDA {torch.version.cuda}")


def real_mode_rows(passes: list[tuple[str, dict]], args, missing: set[str], timeout: float,
                   work: Path) -> list[Row]:
    """Notebooks, say and the app for every (label, environment) pass, all at once (each its
    own process; the T4 pass's processes are capped, so both fit one GPU). One Row each."""
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    need = {"nbformat", "nbclient", "ipykernel", "IPython"} & missing
    rows: list[Row] = []
    with concurrent.futures.ThreadPoolExecutor(3 * len(passes)) as pool:
        jobs = {}
        for n, (label, env) in enumerate(passes):
            tag = "t4" if n else "real"
            if "notebooks" not in args.skip and not need and "moshi" not in missing:
                jobs[label, "notebooks"] = pool.submit(steps.notebooks, notebooks, env, timeout,
                                                       work / f"executed-{tag}")
            if "cli" not in args.skip and "moshi" not in missing:
                jobs[label, "cli"] = pool.submit(steps.say, env, timeout, args.line_ms,
                                                 work / f"say-{tag}.wav")
            if "app" not in args.skip and "moshi" not in missing:
                jobs[label, "app"] = pool.submit(steps.app, env, timeout, args.line_ms / 1000)
            time.sleep(0.5)         # the passes' kernels do not start in the same instant
        for label, _ in passes:
            for part in ("notebooks", "cli", "app"):
                if (label, part) not in jobs:
                    why = ("--skip" if part in args.skip else
                           "missing " + ", ".join(sorted(need or {"moshi"})))
                    rows.append(Row(label, part, "skipped", result=f"not run: {why}"))
                    continue
                got = jobs[label, part].result()
                for item in got if isinstance(got, list) else [got]:
                    check = {"cli": "python -m csm_nb say", "app": "app: two-turn conversation"
                             }.get(part) or f"notebook {item['name']}"
                    result = item["result"]
                    if part == "notebooks" and not item.get("line_cap"):
                        result += "; does not read $CSM_NB_MAX_LINE_MS yet (full-length lines)"
                    rows.append(Row(label, check, item["status"], item.get("seconds"),
                                    item.get("peak_gb"), result,
                                    {"log": item["log"]} if item.get("log") else {}))
    return rows


def setup_rows(work: Path, cfg, device: torch.device, no_moshi: bool) -> list[Row]:
    written = files.write_all(work, cfg, device, mimi=not no_moshi)
    c = written["csm"]
    rows = [Row("setup", "stand-in sesame/csm-1b folder", seconds=c["seconds"],
                result=f"{c['params'] / 1e9:.3f} B random params, {c['bytes'] / 1e9:.2f} GB "
                       f"bf16 safetensors; tokenizer: {written['tokenizer']}")]
    m = written.get("mimi")
    rows.append(Row("setup", "stand-in Mimi (moshi layout)", "ok" if m else "skipped",
                    m and m["seconds"], None,
                    f"{m['params'] / 1e6:.1f} M random params, {m['bytes'] / 1e6:.0f} MB"
                    if m else "not written: moshi does not import"))
    return rows


def seconds_needed(device: torch.device):
    def need(what: str) -> float:
        if what == "compile":
            return 60.0 if device.type == "cuda" else 90.0
        return 20.0 if what == "load" else 10.0
    return need


def write_table(rows: list[Row], out: Path, header: str) -> str:
    lines = [header, "", "| part | check | status | s | peak GiB | result |",
             "|---|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.part} | {r.check} | {r.status} | "
                     f"{'' if r.seconds is None else f'{r.seconds:.1f}'} | "
                     f"{'' if r.peak_gb is None else f'{r.peak_gb:.1f}'} | "
                     f"{r.result.replace('|', '/')} |")
    failed = sum(r.status == "FAIL" for r in rows)
    lines += ["", f"{len(rows)} checks: {failed} failed, "
              f"{sum(r.status == 'skipped' for r in rows)} skipped."]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rehearsal.md").write_text(text + "\n")
    (out / "rehearsal.json").write_text(json.dumps(
        [{**r.__dict__, "numbers": {k: v for k, v in r.numbers.items() if k != "log"}}
         for r in rows], indent=1, default=str))
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="default: cuda if present, else cpu")
    p.add_argument("--size", choices=("full", "tiny"), default=None,
                   help="default: full on CUDA, tiny on a CPU")
    p.add_argument("--skip", default="", help=f"comma-separated parts: {','.join(PARTS)}")
    p.add_argument("--line-ms", type=int, default=2000, help="cap on every line (default 2000)")
    p.add_argument("--budget-s", type=float, default=480, help="stop starting parts after this")
    p.add_argument("--frames", type=int, default=None, help="frames of a long benchmark run")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "csm_nb_rehearsal")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "results"))
    p.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    p.add_argument("--gpu-schedule", action="store_true",
                   help="run the CUDA schedule (T4 pass, bf16/fp16, batch 8) on this device: "
                        "tests the script itself on a machine without a GPU")
    args = p.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    start = time.monotonic()
    deadline = start + args.budget_s
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda" or args.gpu_schedule
    size = args.size or ("full" if device.type == "cuda" else "tiny")
    if device.type == "cpu":
        os.environ.setdefault("OMP_NUM_THREADS", "1")   # tiny models: one thread is fastest
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    args.work.mkdir(parents=True, exist_ok=True)
    log = []

    rows = [environment_row(device), install_wheels(args.wheels, args.work / "site")]
    imports, missing = check_imports()
    rows.append(imports)
    header = (f"## csm_nb rehearsal: {size} size, {device} ({rows[0].result.split(';')[0]}), "
              f"{time.strftime('%Y-%m-%d %H:%M')}, lines capped at {args.line_ms} ms")

    def phase(name: str, fn) -> None:
        """Run one part; a crash becomes a FAIL row, and the table so far is written at once
        (a run killed by a timeout still leaves what it measured)."""
        print(f"rehearsal: {name} ({time.monotonic() - start:.0f} s in)", file=sys.stderr,
              flush=True)
        try:
            rows.extend(fn())
        except Exception as err:
            rows.append(Row(name, "crashed", "FAIL", result=f"{type(err).__name__}: {err}"[:300]))
            log.append(f"{name} crashed:\n{traceback.format_exc()}")
        write_table(rows, args.out, header + " (partial)")

    cfg = csm_nb.CSMConfig.csm_1b() if size == "full" else csm_nb.CSMConfig.tiny()
    phase("setup", lambda: setup_rows(args.work, cfg, device, "moshi" in missing))
    files.apply_environment(args.work)
    os.environ[csm_nb.env.MAX_LINE_MS] = str(args.line_ms)
    hook = steps.write_hook(args.work / "hook")
    site = args.work / "site" if (args.work / "site").is_dir() else None
    base = {**files.environment(args.work), csm_nb.env.MAX_LINE_MS: str(args.line_ms)}
    t4 = cuda and "t4" not in args.skip

    # 2. real mode as shipped and, on CUDA, as on a T4 (fp16, 15 GiB per process), together
    passes = [("real mode", steps.child_env(base, hook, site, None))]
    if t4:
        passes.append((T4_LABEL, steps.child_env(base, hook, site, T4_GIB)))
    left = deadline - time.monotonic()
    phase("real mode", lambda: real_mode_rows(
        passes, args, missing, min(left * 0.45, 240) if cuda else left * 0.6, args.work))
    if not t4:
        rows.append(Row(T4_LABEL, "all rows", "skipped",
                        result="not run: " + ("--skip" if cuda else "needs CUDA")))

    # 3. the frame loop, alone on the machine (timings). On CUDA: bf16 (what GPUs default to),
    # then the fp32 check where compiled codes must equal eager ones, then fp16 (a T4's dtype)
    folder = files.environment(args.work)["CSM_NB_WEIGHTS"]
    backends = ["eager", "graph"] + ([] if "compile" in args.skip else ["compile"])
    frames = args.frames or (34 if cuda else 6)
    if "bench" in args.skip:
        rows.append(Row("frame loop", "all rows", "skipped", result="not run: --skip"))
    elif not cuda:
        phase("frame loop", lambda: bench.run_all(folder, device, ["fp32"], [1, 2], backends,
                                                  frames, deadline, seconds_needed(device)))
    else:
        phase("frame loop", lambda: bench.run_all(folder, device, ["bf16"], [1, 8], backends,
                                                  frames, deadline, seconds_needed(device)))
        if "compile" not in args.skip:
            phase("frame loop", lambda: [
                r for r in bench.run_all(folder, device, ["fp32"], [1], ["eager", "compile"],
                                         10, deadline, seconds_needed(device),
                                         first_audio=False)
                if r.check.startswith("fp32 batch")])
        phase("frame loop", lambda: bench.run_all(folder, device, ["fp16"], [1, 8], backends,
                                                  frames, deadline, seconds_needed(device)))

    total = time.monotonic() - start
    text = write_table(rows, args.out, header + f", {total:.0f} s in all")
    log += [f"== {r.part} / {r.check}: {r.status}: {r.result}\n{r.numbers.get('log', '')}"
            for r in rows if r.status == "FAIL"]
    (args.out / "rehearsal-log.txt").write_text("\n".join(log) + "\n")
    print(text)
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
