"""Run every notebook top to bottom and keep the executed copies: `make run`.

    python -m csm_nb.apps.runner notebooks --out results
    python -m csm_nb.apps.runner notebooks --solutions --out results/solved

--solutions fills every answer cell with its right answer (csm_nb.teach.common.fill_answers)
and turns strict checks on ($CSM_NB_STRICT_CHECKS): a checker that rejects a right answer, or
an answer cell left empty, fails the notebook. `make test` runs it, so solutions cannot rot;
a teacher gets the solved notebooks in the same go.

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


def run_notebook(path: Path, out_dir: Path, timeout: int,
                 solutions: dict | None = None) -> tuple[str, float, str]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    if solutions is not None:
        from ..teach.common import fill_answers
        fill_answers(nb, solutions)
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
    parser.add_argument("--solutions", action="store_true",
                        help="fill every answer cell with its right answer; checkers must accept")
    args = parser.parse_args(argv)
    notebooks = sorted(args.folder.glob("*.ipynb"))
    if not notebooks:
        print(f"no notebooks in {args.folder}", file=sys.stderr)
        return 2
    from ..loading.modes import notebook_mode
    mode = notebook_mode()                    # printed once here; each notebook decides again
    os.environ.setdefault("MPLBACKEND", "Agg")
    solutions = None
    if args.solutions:
        from .. import env
        from ..teach import solutions as all_solutions
        solutions = all_solutions()
        os.environ[env.STRICT_CHECKS] = "1"   # the kernels inherit it
    rows = []
    for path in notebooks:
        print(f"running {path.name} ...", flush=True)
        status, seconds, detail = run_notebook(path, args.out, args.timeout, solutions)
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
