"""The package's shape: imports flow one way through the sub-packages, with no cycle.

    core -> loading -> audio -> speech -> training -> teach -> apps      (reference aside)

A module may import from its own sub-package and from those before it, never after (core is
torch only; apps sit on top). `env` and `data` are leaves anyone may use: they import nothing
from csm_nb. Lazy imports inside functions count too: a cycle hidden in a function is still a
cycle. Files stay readable: none over 450 lines.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "csm_nb"
LAYERS = ["core", "loading", "audio", "speech", "training", "teach", "apps", "reference"]
LEAVES = {"env", "data"}
FACADES = {"__init__", "__main__"}          # the public API and `python -m csm_nb`: on top
MAX_LINES = 450


def modules() -> dict[str, Path]:
    """'core.model' -> its file, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The csm_nb modules `name` imports, relative and absolute, at any depth of the file."""
    package = name.split(".")[:-1]              # the sub-package a relative import starts in
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "csm_nb":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:       # `from . import env` names a module itself
                out.add(".".join(target + [alias.name]))
                out.add(".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "csm_nb":
                    out.add(".".join(alias.name.split(".")[1:]))
    known = modules()
    resolved = set()
    for target in out:
        while target and target not in known and f"{target}.__init__" not in known:
            target = target.rpartition(".")[0]
        if target and target not in known:
            target += ".__init__"             # a package: its __init__ runs
        if target and target != name:
            resolved.add(target)
    return resolved


def rank(name: str) -> int:
    top = name.split(".")[0]
    if top in LEAVES:
        return -1
    if top in FACADES:
        return len(LAYERS)
    return LAYERS.index(top)


def test_every_module_lives_in_a_known_place():
    for name in modules():
        top = name.split(".")[0]
        assert top in LAYERS or top in LEAVES or top in FACADES, f"{name}: not in {LAYERS}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_flow_one_way(name):
    path = modules()[name]
    for target in imports_of(name, path):
        if name.split(".")[0] in LEAVES:
            raise AssertionError(f"{name} is a leaf and must not import {target}")
        assert rank(target) <= rank(name), (
            f"{name} ({LAYERS[rank(name)] if 0 <= rank(name) < len(LAYERS) else 'top'}) "
            f"imports {target}, which sits later in {' -> '.join(LAYERS)}")


def test_nothing_depends_on_the_references():
    """csm_nb.reference needs torchtune/transformers (extra [reference]): only tests and
    benchmarks may import it."""
    for name, path in modules().items():
        if not name.startswith("reference."):
            assert not any(t.startswith("reference.") for t in imports_of(name, path)), name


def test_core_needs_only_torch():
    allowed = {"torch", "math", "functools", "dataclasses", "typing", "itertools", "collections",
               "contextlib", "__future__", "time", "sys", "os"}
    for name, path in modules().items():
        if not name.startswith("core."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{name} imports {roots - allowed}: core is torch only"


def test_no_import_cycle():
    graph = {name: imports_of(name, path) for name, path in modules().items()
             if name not in FACADES}
    state: dict[str, int] = {}            # 1 = on the current path, 2 = done

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):]
                                                                     + [nxt]))
            if state.get(nxt) is None:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [node])


def test_files_stay_readable():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by concept): {long}"
