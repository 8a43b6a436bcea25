"""The rehearsal's real-mode runs, each in its own process: the notebooks, the CLI's `say`, one
conversation through the app. Also this file's command line, which is what those processes run:

    python benchmarks/rehearse_steps.py notebooks OUT_DIR NB.ipynb ...   # all at once (asyncio)
    python benchmarks/rehearse_steps.py app LINE_SECONDS

Each process gets the stand-in folders' variables (rehearse_files.environment) and a
`sitecustomize` (written by `write_hook`) that, when $CSM_NB_REHEARSE_CAP_GB is set, plays a
Colab T4: torch.cuda.is_bf16_supported() answers False (so csm_nb picks fp16, as on a T4) and
torch.cuda.set_per_process_memory_fraction caps the process at that many GiB; every step must
then fit. Peak device memory comes back on stdout (REHEARSAL-PEAK lines).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAK = "REHEARSAL-PEAK"
CAP_ENV = "CSM_NB_REHEARSE_CAP_GB"

HOOK = '''"""Written by benchmarks/rehearse_steps.py for the rehearsal's processes only."""
import os
if os.environ.get("%(cap)s"):
    import torch
    if torch.cuda.is_available():
        torch.cuda.is_bf16_supported = lambda *args, **kwargs: False   # a T4: fp16 only
        _cap = float(os.environ["%(cap)s"]) * 2**30
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, _cap / torch.cuda.get_device_properties(0).total_memory))
if os.environ.get("CSM_NB_REHEARSE_PEAK"):
    import atexit

    def _peak():
        import sys
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            print("%(peak)s", torch.cuda.max_memory_reserved() / 2**30, flush=True)
    atexit.register(_peak)
''' % {"cap": CAP_ENV, "peak": PEAK}

PEAK_CELL = (f"import sys as _s\n_t = _s.modules.get('torch')\n"
             f"if _t is not None and _t.cuda.is_available() and _t.cuda.is_initialized():\n"
             f"    print('{PEAK}', _t.cuda.max_memory_reserved() / 2**30)")
LINES = ["Hey how are you doing.", "Pretty good, pretty good."]


def write_hook(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(HOOK)
    return folder


def child_env(base: dict, hook_dir: Path, site: Path | None, cap_gb: float | None) -> dict:
    """os.environ + the stand-in variables + PYTHONPATH (carried wheels, the hook, the repo:
    csm_nb is imported from the tree, not installed)."""
    env = dict(os.environ)
    env.update(base)
    paths = [str(p) for p in (site, hook_dir, ROOT) if p is not None]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop(CAP_ENV, None)
    if cap_gb:
        env[CAP_ENV] = str(cap_gb)
    env["CSM_NB_REHEARSE_PEAK"] = "1"
    # Kernels' connection files, IPython's profile and matplotlib's cache in the work folder:
    # a bare machine's home may be missing or read-only.
    scratch = hook_dir.parent
    env.setdefault("JUPYTER_RUNTIME_DIR", str(scratch / "jupyter-runtime"))
    env.setdefault("IPYTHONDIR", str(scratch / "ipython"))
    env.setdefault("MPLCONFIGDIR", str(scratch / "matplotlib"))
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    # A dozen processes share the machine's cores: a few threads each, not all of them each.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 8)))
    return env


def peak_from(text: str) -> float | None:
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(PEAK)]
    return max(values) if values else None


def run_child(args: list[str], env: dict, timeout: float, cwd: Path = ROOT):
    """(returncode or None on timeout, stdout, stderr, seconds); a timeout kills the group."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(timeout, 1))
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return code, out, err, time.perf_counter() - start


def tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip() and PEAK not in line]
    return " | ".join(kept[-lines:])[-400:]


# ------------------------------------------------------------------ the CLI


def say(env: dict, timeout: float, line_ms: int, out: Path) -> dict:
    """`python -m csm_nb say` in real mode; random weights never stop, so the WAV must last
    exactly the cap."""
    out.unlink(missing_ok=True)
    code, stdout, stderr, seconds = run_child(
        [sys.executable, "-m", "csm_nb", "say", "Hello from the rehearsal.", "--mode", "real",
         "-o", str(out), "--max-ms", str(line_ms), "--seed", "0", "--quiet"], env, timeout)
    result = {"seconds": seconds, "peak_gb": peak_from(stdout + stderr)}
    if code != 0:
        why = "timed out" if code is None else f"exit {code}"
        return {**result, "status": "FAIL", "result": f"{why}: {tail(stderr)}",
                "log": stderr[-6000:]}
    with wave.open(str(out)) as w:
        duration = w.getnframes() / w.getframerate()
    ok = abs(duration - (line_ms // 80) * 0.08) < 1e-6
    return {**result, "status": "ok" if ok else "FAIL",
            "result": f"wrote {out.name}: {duration:.2f} s at {w.getframerate()} Hz"
                      + ("" if ok else f" (expected {(line_ms // 80) * 0.08:.2f} s)")}


# ------------------------------------------------------------------ the app


def app(env: dict, timeout: float, line_s: float) -> dict:
    code, stdout, stderr, seconds = run_child(
        [sys.executable, str(Path(__file__).resolve()), "app", str(line_s)], env, timeout)
    result = {"seconds": seconds, "peak_gb": peak_from(stdout)}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        why = "timed out" if code is None else f"exit {code}"
        return {**result, "status": "FAIL", "result": f"{why}: {tail(stderr)}",
                "log": stderr[-6000:]}
    return {**result, **json.loads(lines[-1])}


def app_child(line_s: float) -> dict:
    """In the child: two turns through the Gradio app and gradio_client when both import,
    else through Demo.speak, the function the Generate button calls (the same generator,
    prompts and context handling; only the web page is left out)."""
    from csm_nb.apps import demo as page

    turns = page.parse_conversation("\n".join(LINES))
    try:
        import gradio  # noqa: F401
        from gradio_client import Client
    except ImportError as err:
        demo = page.Demo(mode="real")
        prompts = [demo.voice(0, "conversational_a", None, None),
                   demo.voice(1, "conversational_b", None, None)]
        spoken, notes = demo.speak(turns, prompts, line_s, 0.9, 50, 0)
        ok = len(spoken) == 2 and all(t.audio is not None for t in spoken)
        return {"status": "ok" if ok else "FAIL",
                "result": f"{len(spoken)} turns, {sum(t.duration for t in spoken):.2f} s of "
                          f"audio through Demo.speak (no web layer: {err.name} missing)"}
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocks = page.launch(server_port=port, mode="real", prevent_thread_lock=True, quiet=True,
                         max_seconds=line_s)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        status, whole, *players = client.predict(
            text="\n".join(LINES), a_upload=None, a_text="", b_upload=None, b_text="",
            max_seconds=line_s, seed="0", api_name="/generate")
    finally:
        blocks.close()
    shown = [p for p in players if p.get("visible")]
    ok = "2 turns" in status and "done" in status and len(shown) == 2 and whole is not None
    return {"status": "ok" if ok else "FAIL",
            "result": f"gradio_client: {status.splitlines()[0][:160]}"}


# ------------------------------------------------------------------ the notebooks


def honours_line_cap(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    return "max_line_ms" in text or "CSM_NB_MAX_LINE_MS" in text


def notebooks(paths: list[Path], env: dict, timeout: float, out_dir: Path) -> list[dict]:
    """Run every notebook at once in one child process (one event loop: kernels started
    together in one process do not race for the same ports). One dict per notebook."""
    code, stdout, stderr, seconds = run_child(
        [sys.executable, str(Path(__file__).resolve()), "notebooks", str(out_dir),
         str(int(timeout)), *map(str, paths)], env, timeout + 30)
    found = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            found[item["name"]] = item
    rows = []
    for path in paths:
        item = found.get(path.name)
        if item is None:
            why = "timed out" if code is None else f"runner exit {code}"
            item = {"name": path.name, "status": "FAIL", "seconds": seconds,
                    "result": f"{why}: {tail(stderr)}", "log": stderr[-6000:]}
        item["line_cap"] = honours_line_cap(path)
        rows.append(item)
    return rows


async def _one_notebook(path: Path, out_dir: Path, timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    client = NotebookClient(nb, timeout=timeout + 60, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    status, detail, log = "ok", "", ""
    try:          # the whole notebook within `timeout`; a cancelled run shuts its kernel down
        await asyncio.wait_for(client.async_execute(), timeout)
    except asyncio.TimeoutError:
        status, detail = "FAIL", f"timed out after {timeout} s (the rehearsal's time budget)"
    except CellExecutionError as err:
        status, detail, log = "FAIL", str(err).strip().splitlines()[-1][:300], str(err)[-6000:]
    except Exception as err:        # a dead kernel or a timeout: say so, run the others on
        status, detail, log = "FAIL", f"{type(err).__name__}: {err}"[:300], repr(err)[-6000:]
    seconds = time.perf_counter() - start
    if status == "FAIL" and seconds >= timeout - 1:    # cancelling kills the kernel mid-cell
        detail = f"timed out after {timeout} s (the rehearsal's time budget); then {detail}"
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    cells = sum(c.cell_type == "code" for c in nb.cells) - 1
    return {"name": path.name, "status": status, "seconds": seconds, "peak_gb": peak_from(text),
            "result": detail or f"{cells} code cells ran", "log": log}


async def _all_notebooks(paths, out_dir, timeout):
    jobs = []
    for path in paths:
        jobs.append(asyncio.ensure_future(_one_notebook(path, out_dir, timeout)))
        await asyncio.sleep(1.0)                # kernels start one after the other
    for job in asyncio.as_completed(jobs):
        print(json.dumps(await job), flush=True)


def main(argv: list[str]) -> int:
    if argv[0] == "app":
        print(json.dumps(app_child(float(argv[1]))), flush=True)
        return 0
    if argv[0] == "notebooks":
        asyncio.run(_all_notebooks([Path(p) for p in argv[3:]], Path(argv[1]), int(argv[2])))
        return 0
    raise SystemExit(f"unknown child command {argv[0]!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
