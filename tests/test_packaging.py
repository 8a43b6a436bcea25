"""The project's files agree with each other and keep their promises."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    pins = list(project["dependencies"])
    for extra in ("dev", "reference", "demo"):
        pins += project["optional-dependencies"][extra]
    return pins


def test_environment_yml_has_the_same_pins():
    env = re.findall(r"^\s+- ([A-Za-z0-9_.\-]+==[^\s#]+)", (ROOT / "environment.yml").read_text(),
                     re.M)
    assert sorted(env) == sorted(pyproject_pins())


def test_every_pin_is_exact():
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^,;<>!~=]*", p) for p in pyproject_pins())


def test_moshi_caps_are_respected():
    pins = dict(p.split("==") for p in pyproject_pins())
    major, minor = (int(x) for x in pins["torch"].split(".")[:2])
    assert (major, minor) < (2, 10) and pins["torchaudio"] == pins["torch"]
    assert tuple(int(x) for x in pins["numpy"].split(".")[:2]) < (2, 3)
    assert int(pins["huggingface_hub"].split(".")[0]) < 1


def test_readme_shows_exactly_two_commands_first():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S).group(1)
    commands = [line for line in first_block.splitlines() if line.strip()
                and not line.lstrip().startswith("#")]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


IMPORT_PROBE = """
import os, sys
before, read = dict(os.environ), set()


class Spy(type(os.environ)):
    def __getitem__(self, key):      # os.environ[key], .get(key), `key in`, os.getenv(key)
        frame = sys._getframe(1)
        while frame.f_code.co_filename.startswith(("<frozen", os.__file__)):
            frame = frame.f_back     # past Mapping.get and os.getenv to whoever asked
        if frame.f_code.co_filename.startswith(os.path.join(ROOT, "csm_nb")):
            read.add(key)
        return super().__getitem__(key)


os.environ.__class__ = Spy
import csm_nb
heavy = [m for m in ("moshi", "transformers", "torchtune", "huggingface_hub") if m in sys.modules]
changed = [k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)]
print(heavy, sorted(read), sorted(changed))
"""


def test_import_is_cheap_and_offline():
    """Importing csm_nb loads no weights and no moshi/transformers/torchtune, its code reads
    no environment variable (a notebook cell may set one later), and it sets none."""
    code = f"ROOT = {str(ROOT)!r}\n{IMPORT_PROBE}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[] [] []", out.stdout


def test_package_never_unpickles_or_evals():
    for path in (ROOT / "csm_nb").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                assert name not in ("eval", "exec", "pickle.load", "pickle.loads"), (path, name)
                if name in ("torch.load",):
                    kws = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert kws.get("weights_only") == "True", f"{path}: torch.load without " \
                                                              "weights_only=True"
