"""Run every notebook top to bottom and keep the executed copies: `make run`.

    python -m csm_nb.apps.runner notebooks --out results

Each notebook runs in its own folder (as nbmake and Jupyter do), with cells tagged
`skip-execution` (the Colab install cell) skipped. The executed notebook, outputs included,
goes to results/<name>.ipynb, and a summary table says how each went and how long it took.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def run_notebook(path: Path, out_dir: Path, timeout: int) -> tuple[str, float, str]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    # nbclient itself skips cells tagged skip-execution (the Colab install cell).
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    status, detail = "ok", ""
    try:
        client.execute()
    except CellExecutionError as err:
        status, detail = "FAILED", str(err).strip().splitlines()[-1][:200]
    except Exception as err:   # a dead kernel or timeout: report it, run the next notebook
        status, detail = "FAILED", f"{type(err).__name__}: {err}"[:200]
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    return status, seconds, detail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding the .ipynb files")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="where executed copies go (default: results)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = sorted(args.folder.glob("*.ipynb"))
    if not notebooks:
        print(f"no notebooks in {args.folder}", file=sys.stderr)
        return 2
    from ..loading.modes import notebook_mode
    mode = notebook_mode()                    # printed once here; each notebook decides again
    os.environ.setdefault("MPLBACKEND", "Agg")
    rows = []
    for path in notebooks:
        print(f"running {path.name} ...", flush=True)
        status, seconds, detail = run_notebook(path, args.out, args.timeout)
        rows.append((path.name, status, seconds, detail))
        print(f"  {status} in {seconds:.0f} s {detail}", flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"\nSummary ({mode} mode); executed notebooks with outputs are in {args.out.resolve()}:")
    for name, status, seconds, detail in rows:
        print(f"  {name:<{width}}  {status:<6} {seconds:6.1f} s  {args.out / name}"
              + (f"  ({detail})" if detail else ""))
    print("Open them with `make lab` (or any Jupyter) to read, listen and play.")
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
