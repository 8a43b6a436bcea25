"""`make rehearse` on its CPU path (tiny sizes, short lines, no CUDA rows), so the script that
proves the real path on a GPU cannot rot between GPU sessions; and the line cap it relies on."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import csm_nb

ROOT = Path(__file__).resolve().parents[1]


def test_the_cpu_rehearsal_runs_end_to_end(tmp_path):
    """Stand-in folders written, real mode loaded from them by the CLI and the app, the frame
    loop benchmarked: every row ok or skipped with a reason, one table written."""
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rehearse.py"), "--device", "cpu",
         "--skip", "notebooks,compile", "--line-ms", "400", "--frames", "4",
         "--budget-s", "200", "--work", str(tmp_path / "work"), "--out", str(out),
         "--wheels", str(tmp_path / "no-wheels")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (out / "rehearsal.md").read_text()
    assert table.strip() in done.stdout
    rows = json.loads((out / "rehearsal.json").read_text())
    checks = {r["check"]: r for r in rows}
    assert all(r["status"] in ("ok", "skipped") for r in rows), table
    assert checks["python -m csm_nb say"]["status"] == "ok"
    assert "0.40 s at 24000 Hz" in checks["python -m csm_nb say"]["result"]
    assert checks["app: two-turn conversation"]["status"] == "ok"
    assert "2 turns" in checks["app: two-turn conversation"]["result"]
    for backend in ("eager", "graph"):
        row = checks[f"fp32 batch 1 {backend}"]
        assert row["status"] == "ok" and row["numbers"]["ms_per_frame"] > 0
    assert checks["fp32 batch 2 graph"]["numbers"]["same_codes_as_eager"] == "yes"
    assert "ms to the first 1920 samples" in checks[
        "fp32 time to first audio (stream, 1-frame chunks)"]["result"]
    t4 = [r for r in rows if r["part"].startswith("T4")]
    assert [r["status"] for r in t4] == ["skipped"] and "needs CUDA" in t4[0]["result"]
    # real mode found the stand-ins through csm_nb's own variables, laid out like the hub's
    work = tmp_path / "work"
    assert (work / "sesame--csm-1b" / "model.safetensors").is_file()
    assert (work / "sesame--csm-1b" / "prompts" / "conversational_a.wav").is_file()
    assert (work / "kyutai--moshiko-pytorch-bf16" /
            "tokenizer-e351c8d8-checkpoint125.safetensors").is_file()


def test_the_gpu_schedule_runs_on_a_cpu(tmp_path):
    """--gpu-schedule: what a CUDA machine runs (the T4 pass beside the real one, bf16 and fp16
    at batch 1 and 8), here at tiny size, so the GPU-only branches cannot rot either. The T4
    hook caps nothing without CUDA; the point is that every branch runs."""
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rehearse.py"), "--device", "cpu",
         "--gpu-schedule", "--skip", "notebooks,app,compile", "--line-ms", "240",
         "--frames", "3", "--budget-s", "200", "--work", str(tmp_path / "work"),
         "--out", str(out), "--wheels", str(tmp_path / "no-wheels")],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads((out / "rehearsal.json").read_text())
    said = [r for r in rows if r["check"] == "python -m csm_nb say"]
    assert [r["part"] for r in said] == ["real mode", "T4 (15 GiB, fp16)"]
    assert all(r["status"] == "ok" and "0.24 s" in r["result"] for r in said)
    checks = {r["check"]: r for r in rows}
    for name in ("bf16 batch 8 graph", "fp16 batch 1 graph", "fp16 batch 8 eager"):
        assert checks[name]["status"] == "ok" and checks[name]["numbers"]["ms_per_frame"] > 0
    assert checks["bf16 batch 8 graph"]["numbers"]["same_codes_as_eager"] == "yes"


def test_the_wheel_list_pins_one_version_of_each():
    lines = [line.split("#")[0].strip()
             for line in (ROOT / "benchmarks" / "rehearse-wheels.txt").read_text().splitlines()]
    pins = [line for line in lines if line]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.]*", p) for p in pins)
    names = [p.split("==")[0].lower().replace("_", "-") for p in pins]
    assert len(names) == len(set(names))
    assert "gradio" not in names          # 63.5 MB: does not fit a device run's 64 MiB


def test_line_cap(monkeypatch):
    monkeypatch.delenv(csm_nb.env.MAX_LINE_MS, raising=False)
    assert csm_nb.env.max_line_ms(10_000) == 10_000
    monkeypatch.setenv(csm_nb.env.MAX_LINE_MS, " 2000 ")
    assert csm_nb.env.max_line_ms(10_000) == 2000 and isinstance(
        csm_nb.env.max_line_ms(10_000), int)
    assert csm_nb.env.max_line_ms(1500) == 1500
    assert csm_nb.env.max_line_ms(30_000.0) == 2000.0
    for bad in ("two seconds", "0", "-5", "inf", "nan"):
        monkeypatch.setenv(csm_nb.env.MAX_LINE_MS, bad)
        with pytest.raises(ValueError, match="CSM_NB_MAX_LINE_MS=.* is not a length in milli"):
            csm_nb.env.max_line_ms(10_000)
