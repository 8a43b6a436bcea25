"""Every notebook, read as a file (nothing executed): Colab-safe, banner first, no outputs.

Colab ships its own torch, torchaudio, numpy, transformers and huggingface_hub, built for its
GPU and each other; a notebook that reinstalls or upgrades one of them breaks the runtime
(or silently swaps in a CPU torch). So the install cell may add only what Colab lacks, with
--no-deps, inside `if "google.colab" in sys.modules:`, and is tagged skip-execution so
nbmake (and `make run`) never run it. Then the mode banner, so a reader knows at once whether
the audio will be speech or noise. Notebooks are stored without outputs (diffs stay
readable, nothing stale is shipped) and their Colab badge opens the notebook itself.
"""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BADGE = "https://colab.research.google.com/github/csm-notebooks/csm-notebooks/blob/main/{}"
COLAB_OWNS = {"torch", "torchaudio", "numpy", "transformers", "huggingface-hub",
              "torchvision", "tokenizers"}
SKIP_TAG = "skip-execution"


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


def load(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """'moshi==0.2.13' -> 'moshi'; 'csm_nb @ git+https://...' -> 'csm-nb'."""
    return normalize(re.split(r"[\s=<>!~\[@;]", spec.strip(), maxsplit=1)[0])


def pip_installs(source: str) -> list[list[str]]:
    """Every pip install in a cell, as argument lists: `!pip`/`%pip` lines, and the strings
    passed to a call whose arguments include "install" or to a helper named pip(...)."""
    installs, python = [], []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(("!", "%")):                # IPython magic: shell, not Python
            words = shlex.split(stripped.lstrip("!%"))
            if "pip" in stripped:
                installs.append(words[words.index("install") + 1:] if "install" in words
                                else words)
            line = line[: len(line) - len(line.lstrip())] + "pass"
        python.append(line)
    tree = ast.parse("\n".join(python))
    helpers = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
               and any(isinstance(n, ast.Constant) and n.value == "install" for n in ast.walk(f))}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        strings = [n.value for n in ast.walk(call) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str)]
        name = ast.unparse(call.func)
        if name in helpers:                       # pip("moshi==0.2.13", ...) + the helper's flags
            installs.append(strings + ["--no-deps"] * helper_uses_no_deps(tree, name))
        elif "install" in strings and name not in helpers and not inside_helper(tree, call,
                                                                                  helpers):
            installs.append(strings[strings.index("install") + 1:])
    return installs


def helper_uses_no_deps(tree, name) -> bool:
    helper = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == name)
    return any(isinstance(n, ast.Constant) and n.value == "--no-deps" for n in ast.walk(helper))


def inside_helper(tree, call, helpers) -> bool:
    return any(call in list(ast.walk(f)) for f in ast.walk(tree)
               if isinstance(f, ast.FunctionDef) and f.name in helpers)


def colab_guarded(source: str) -> bool:
    """All the cell's work sits under `if "google.colab" in sys.modules:` (imports,
    comments and definitions may stay outside: they run nothing)."""
    source = "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                       if line.strip().startswith(("!", "%")) else line
                       for line in source.splitlines())
    passive = (ast.Import, ast.ImportFrom, ast.Expr, ast.FunctionDef)
    work = [n for n in ast.parse(source).body if not isinstance(n, passive)]
    return bool(work) and all(isinstance(n, ast.If) and ast.unparse(n.test) ==
                              "'google.colab' in sys.modules" for n in work)


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param, load(request.param)


def test_stored_without_outputs(notebook):
    path, nb = notebook
    for i, cell in enumerate(code_cells(nb)):
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {i}"
    for i, cell in enumerate(nb.cells):
        assert "execution" not in cell.metadata, f"{path.name} cell {i}: timing metadata"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state"


def test_title_and_colab_badge_point_at_this_notebook(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    badges = re.findall(r"https://colab\.research\.google\.com/github/[^\s)]+", first.source)
    assert badges == [BADGE.format(f"notebooks/{path.name}")], badges


def test_install_cell_is_skipped_guarded_and_leaves_colab_alone(notebook):
    path, nb = notebook
    install = code_cells(nb)[0]
    assert SKIP_TAG in install.metadata.get("tags", []), f"{path.name}: install cell not skipped"
    assert colab_guarded(install.source), f"{path.name}: install cell runs outside Colab"
    installs = pip_installs(install.source)
    assert installs, f"{path.name}: the install cell installs nothing"
    pins = dict(p.split("==") for p in tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    names = set()
    for args in installs:
        flags = [a for a in args if a.startswith("-")]
        specs = [a for a in args if not a.startswith("-")]
        assert "--no-deps" in flags, f"{path.name}: {args} may pull Colab's packages in"
        assert not {"-U", "--upgrade", "--force-reinstall", "-I", "--ignore-installed"} & set(
            flags), f"{path.name}: {args} upgrades or reinstalls"
        for spec in specs:
            name = requirement_name(spec)
            assert name not in COLAB_OWNS, f"{path.name}: installs {spec}, which Colab owns"
            if name == "moshi":
                assert spec == f"moshi=={pins['moshi']}", f"{path.name}: moshi must be pinned"
            if name == "csm-nb":
                assert "git+https://github.com/csm-notebooks/csm-notebooks" in spec
            names.add(name)
    assert {"moshi", "csm-nb"} <= names


def test_the_mode_banner_comes_right_after_the_install_cell(notebook):
    path, nb = notebook
    banner = ast.parse(code_cells(nb)[1].source)
    calls = [ast.unparse(n.func) for n in ast.walk(banner) if isinstance(n, ast.Call)]
    assert {"csm_nb.notebook_mode", "csm_nb.loading.modes.notebook_mode"} & set(calls), (
        f"{path.name}: the first cell after the install cell must call csm_nb.notebook_mode()")
    assigned = [ast.unparse(n.targets[0]) for n in banner.body if isinstance(n, ast.Assign)
                and isinstance(n.value, ast.Call) and ast.unparse(n.value.func).endswith(
                    "notebook_mode")]
    assert assigned == ["MODE"], f"{path.name}: write MODE = csm_nb.notebook_mode()"


def test_nbmake_skips_the_tagged_cell():
    """nbmake runs notebooks through nbclient, whose skip tag must still be ours."""
    import inspect

    from nbclient import NotebookClient
    from nbmake import nb_run

    assert NotebookClient.class_traits()["skip_cells_with_tag"].default_value == SKIP_TAG
    assert "skip_cells_with_tag" not in inspect.getsource(nb_run)


@pytest.mark.parametrize("source, bad", [
    ('import sys\nif "google.colab" in sys.modules:\n    !pip install -q torch==2.1\n', "torch"),
    ("!pip install -q --no-deps numpy\n", "numpy"),
    ('import subprocess, sys\nif "google.colab" in sys.modules:\n    subprocess.run([sys.'
     'executable, "-m", "pip", "install", "-U", "--no-deps", "transformers"])\n', "transformers"),
    ('import subprocess, sys\nif "google.colab" in sys.modules:\n    subprocess.run(["pip", '
     '"install", "--no-deps", "huggingface_hub==0.20"])\n', "huggingface-hub"),
])
def test_the_checker_catches_what_would_break_colab(source, bad):
    """The parser above is the test's own logic: prove it sees the mistakes it guards."""
    names = {requirement_name(s) for args in pip_installs(source) for s in args
             if not s.startswith("-")}
    assert bad in names and bad in COLAB_OWNS


def test_the_guard_checker_catches_an_unguarded_install():
    assert colab_guarded('import sys\nif "google.colab" in sys.modules:\n    !pip install x\n')
    assert not colab_guarded("!pip install --no-deps moshi==0.2.13\n")
    assert not colab_guarded('import sys\nif "colab" in sys.argv:\n    !pip install x\n')
