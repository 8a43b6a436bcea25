"""Security: weights are data, files are data, and the CLI writes only where it is told.

tests/test_packaging.py already bans eval/exec/pickle.load and torch.load without
weights_only=True in csm_nb. Here: every other way Python code gets run or unpickled (in the
package and in the notebooks' cells), real malicious pickles that must never fire, scripts
and prompt files full of code that must be read as words, and a CLI run in an empty folder
that must leave exactly one new file behind.
"""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import csm_nb
from csm_nb.audio import mimi as C
from csm_nb.audio.mimi_weights import load_codec
from csm_nb.apps.cli import main, parse_script

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "csm_nb").rglob("*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Calls that run code from data, unpickle, or shell out. (eval, exec, pickle.load(s) and
# torch.load are test_packaging's; this list is everything else.)
FORBIDDEN_CALLS = {
    "compile", "__import__", "runpy.run_path", "runpy.run_module", "os.system", "os.popen",
    "marshal.loads", "marshal.load", "shelve.open", "dill.load", "dill.loads",
    "cloudpickle.load", "cloudpickle.loads", "joblib.load", "yaml.load", "yaml.unsafe_load",
    "torch.hub.load", "torch.jit.load", "torch.package.PackageImporter",
    "importlib.import_module", "code.interact", "pdb.set_trace", "breakpoint",
}
FORBIDDEN_IMPORTS = {"pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib", "runpy"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _problems(tree, packaging_checks: bool = True) -> list[str]:
    """What in `tree` runs code from data. packaging_checks=False leaves out eval/exec and
    torch.load, which test_packaging already checks in csm_nb."""
    found = []
    for node, name in _calls(tree):
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if name in FORBIDDEN_CALLS:
            found.append(name)
        if keywords.get("allow_pickle") == "True":                    # np.load(..., True)
            found.append(f"{name}(allow_pickle=True)")
        if keywords.get("trust_remote_code") == "True":               # runs the hub's code
            found.append(f"{name}(trust_remote_code=True)")
        if keywords.get("shell") == "True":                           # subprocess shell=True
            found.append(f"{name}(shell=True)")
        if not packaging_checks:
            continue
        if name.endswith("torch.load") and keywords.get("weights_only") != "True":
            found.append(f"{name} without weights_only=True")
        if name in ("eval", "exec"):
            found.append(name)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""]
            found += [f"import {m}" for m in modules if m.split(".")[0] in FORBIDDEN_IMPORTS]
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_package_runs_no_code_from_data(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert _problems(tree, packaging_checks=False) == [], path.name


def _cell_python(source: str) -> str:
    """A cell without its IPython magics (`!pip ...`, `%time`), which are not Python."""
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                     if line.strip().startswith(("!", "%")) else line
                     for line in source.splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_cells_run_no_code_from_data(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        tree = ast.parse(_cell_python(cell.source))
        assert _problems(tree) == [], f"{path.name} code cell {i}"


def test_the_scanner_sees_what_it_bans():
    bad = ("import pickle\nnp.load(f, allow_pickle=True)\ntorch.load(f)\n"
           "torch.load(f, weights_only=False)\nAutoModel.from_pretrained(r, trust_remote_code=True)"
           "\nsubprocess.run(cmd, shell=True)\n__import__('os')\nyaml.load(s)\neval('1')\n")
    assert len(_problems(ast.parse(bad))) == 9


# ------------------------------------------------------------------ weights are never unpickled

class _Payload:
    """Unpickling this creates `marker`: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    return path


def test_a_pickle_dressed_as_weights_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    folder = tmp_path / "csm-1b"
    folder.mkdir()
    _evil_pickle(folder / "model.safetensors", marker)       # wrong content, right name
    for name in ("pytorch_model.bin", "ckpt.pt", "model.pt"):
        _evil_pickle(folder / name, marker)
    with pytest.raises(OSError, match="not a readable safetensors file"):
        csm_nb.from_pretrained(str(folder), device="cpu")
    monkeypatch.setenv("CSM_NB_WEIGHTS", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert csm_nb.load_model("auto", device="cpu")[1] == "toy"
    with pytest.raises(C.MimiUnavailable, match="not a readable safetensors file"):
        load_codec("real", device="cpu", source=folder / "model.safetensors")
    with pytest.raises(ValueError, match="never unpickles"):
        load_codec("real", device="cpu", source=folder / "ckpt.pt")
    assert not marker.exists(), "a pickle was executed"


def test_a_state_dict_holding_objects_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    model = csm_nb.CSM(csm_nb.CSMConfig.tiny())
    with pytest.raises(TypeError, match="values must be torch tensors"):
        model.load_state_dict(dict(model.state_dict(), audio_head=_Payload(marker)))
    assert not marker.exists()


# ------------------------------------------------------------------ scripts and prompts are words

CODE = "__import__('os').system('touch {marker}')"


def test_a_script_full_of_code_is_read_as_words(tmp_path):
    marker = tmp_path / "PWNED"
    code = CODE.format(marker=marker)
    script = parse_script(f"A: {code}\n# {code}\nB: print(open('/etc/passwd').read())\n")
    assert script.turns == [(0, code), (1, "print(open('/etc/passwd').read())")]
    with pytest.raises(ValueError, match="is not a turn"):
        parse_script(f"import os; os.system('touch {marker}')\n")
    with pytest.raises(ValueError, match="line 1: .* is not a turn"):
        parse_script(f"{code}: hello\n")
    assert not marker.exists()


def test_prompt_specs_with_code_are_words_or_refused(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    code = CODE.format(marker=marker)
    fake_audio = tmp_path / "voice.wav"
    fake_audio.write_text(f"import os\nos.system('touch {marker}')\n")    # Python, named .wav
    out = tmp_path / "x.wav"
    argv = ["-o", str(out), "--mode", "tiny", "--quiet"]
    assert main(["say", "Hi", "--prompt", code, *argv]) == 2
    assert "no prompt named" in capsys.readouterr().err
    assert main(["say", "Hi", "--prompt", f"{fake_audio} | {code}", *argv]) == 2
    assert "is not an audio file" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


def test_a_prompt_transcript_with_code_is_spoken_text(tmp_path):
    import soundfile
    marker = tmp_path / "PWNED"
    code = CODE.format(marker=marker)
    voice = tmp_path / "voice.wav"
    soundfile.write(voice, 0.1 * torch.ones(2400).numpy(), 24_000)
    from csm_nb.apps.cli import load_prompt_spec
    seg = load_prompt_spec(f"{voice} | {code}", 1, "tiny")
    assert seg.text == code and seg.speaker == 1
    tokens, _ = csm_nb.text_rows(csm_nb.tiny_tokenizer(), seg.text, seg.speaker)
    assert tokens[1:-1, -1].tolist() == list(f"[1]{code}".encode())   # bytes, nothing else
    assert not marker.exists()


# ------------------------------------------------------------------ the CLI writes only where asked

def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_cli_writes_only_the_output_file(tmp_path):
    """A whole conversation in tiny mode, run from an empty folder with an empty home: the
    only new file anywhere is the WAV that -o names (no caches, no temp files, no logs)."""
    work, home, outdir = tmp_path / "cwd", tmp_path / "home", tmp_path / "out"
    for folder in (work, home, outdir):
        folder.mkdir()
    marker = tmp_path / "PWNED"
    script = tmp_path / "talk.txt"
    script.write_text(f"A: {CODE.format(marker=marker)}\nB: Fine.\n")
    before = _tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CSM_NB_", "XDG_"))}
    env.update(HOME=str(home), CSM_NB_MODE="tiny", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               MPLCONFIGDIR=str(home / ".matplotlib"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "csm_nb", "conversation", str(script),
                           "-o", str(outdir / "talk.wav"), "--max-ms", "160", "--seed", "0",
                           "--quiet"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert _tree(tmp_path) - before == {"out/talk.wav"}, done.stderr
    assert not marker.exists()
