"""csm_nb as a wheel, installed (not editable) and used from a folder outside the clone.

This is how Colab gets it: the install cell pip-installs the package, and nothing of the
repository is around. Everything csm_nb reads at run time must therefore ship inside it.
The fresh venv reuses the test venv's packages (torch, moshi, ...) through a path entry, so
only csm_nb itself comes from the wheel.
"""

import os
import subprocess
import sys
import sysconfig
import wave
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPF = 1920


def _run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding the csm_nb wheel, an empty folder outside the clone)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: build with the test venv's setuptools, no download needed.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp / "dist"), str(ROOT)])
    wheel = next((tmp / "dist").glob("csm_nb-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                ).stdout.strip()
    # A plain path line: the test venv's own .pth files (csm_nb's editable hook among them)
    # are not processed from there, so the repository never leaks in.
    Path(site, "test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)])
    work = tmp / "elsewhere"
    work.mkdir()
    return python, work, wheel


def test_the_wheel_ships_the_data_the_package_reads(installed):
    _, _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("csm_nb/data/speech.wav", "csm_nb/data/two_voices/transcripts.tsv",
                   "csm_nb/data/two_voices/a_00.wav", "csm_nb/data/README.md",
                   "csm_nb/data/toy/toy_csm.safetensors", "csm_nb/data/toy/toy_codec.safetensors",
                   "csm_nb/data/toy/voices.tsv", "csm_nb/data/toy/prompts/H.wav",
                   "csm_nb/data/toy/toy_codes.safetensors"):
        assert needed in names, f"{needed} is not in {wheel.name}"


def test_the_installed_package_is_the_wheel_not_the_clone(installed):
    python, work, _ = installed
    where = _run([str(python), "-c", "import csm_nb; print(csm_nb.__file__)"], cwd=work).stdout
    assert str(ROOT) not in where and "site-packages" in where, where


def _env():
    return dict(os.environ, CSM_NB_MODE="tiny", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                MPLBACKEND="Agg")


def test_say_from_a_folder_outside_the_clone(installed):
    python, work, _ = installed
    done = _run([str(python), "-m", "csm_nb", "say", "Hello there", "--max-ms", "2000",
                 "--prompt", "read_speech_a", "-o", "x.wav"], cwd=work, env=_env())
    with wave.open(str(work / "x.wav"), "rb") as w:
        assert w.getnframes() == 25 * SPF                            # 2.00 s
    assert "wrote x.wav (2.00 s at 24000 Hz)" in done.stderr


def test_notebook_03s_setup_and_prompts_from_a_folder_outside_the_clone(installed,
                                                                       notebook_code):
    python, work, _ = installed
    code = notebook_code("03_conversation", 'load_prompt("conversational_b"')
    check = ("\nimport csm_nb.data\nprint('prompt', prompt_a.label, prompt_a.duration)\n"
             "assert str(csm_nb.data.FOLDER).find('site-packages') > 0\n")
    done = _run([str(python), "-c", code + check], cwd=work, env=_env())
    # tiny mode: the toy voice clip standing in for the prompt, read from the wheel
    assert "prompt conversational_a (stand-in: toy voice A, low American man)" in done.stdout


def test_the_training_data_loads_from_the_wheel(installed):
    python, work, _ = installed
    done = _run([str(python), "-c", "from csm_nb import training; data, sr = training.load_dataset(); "
                 "print(len(data), sr)"], cwd=work, env=_env())
    assert done.stdout.split() == ["24", "24000"]
