"""The paths users take, called the way the README, the notebooks and `--help` show them.

Progress bars stay on and lengths are the defaults unless a comment says why not. A progress
bar once stopped every line at its first redraw (tqdm's `update()` returns True when it draws,
and any truthy callback return used to mean "stop"); every test then passed progress=False and
none of them saw it. Random tiny models never emit the all-zero stop frame, so in tiny mode
every line must last exactly its cap: that is what these tests assert.
"""

import os
import socket
import subprocess
import sys
import threading
import wave
from pathlib import Path

import pytest
import soundfile
import torch

import csm_nb
from csm_nb.apps import demo as app
from csm_nb.speech.streaming import RunawayGuard
from helpers import fresh_generator

SR, SPF = 24_000, 1920                      # samples per second, per 80 ms frame
ROOT = Path(__file__).resolve().parents[1]


def frames(ms):
    return int(ms / 80)


@pytest.fixture(scope="module")
def readme_generator():
    """Built as the README builds it: no device= (conftest's `gen` is pinned to the CPU)."""
    return csm_nb.load_generator("tiny")


@pytest.fixture
def gen(readme_generator):
    yield fresh_generator(readme_generator)
    fresh_generator(readme_generator)


def test_generate_as_the_readme_shows_it_lasts_its_cap_with_the_bar_on(gen, capfd):
    wav = torch.zeros(SR)                   # the README's `wav`: one second of a prior turn
    audio = gen.generate(text="Hello there.", speaker=0,
                         context=[csm_nb.Segment(speaker=1, text="Hi!", audio=wav)],
                         max_audio_length_ms=10_000, temperature=0.9, topk=50, seed=None)
    assert audio.shape == (frames(10_000) * SPF,) and audio.dtype == torch.float32
    drawn = capfd.readouterr().err
    assert "generating" in drawn and "125/125" in drawn, "the bar was on and redrew to the end"


def test_generate_with_only_text_and_speaker_uses_the_10_s_default(gen):
    assert gen.generate("Hello there.", 0).numel() == frames(10_000) * SPF


def test_generate_stream_with_defaults_adds_up_to_the_cap_in_10_frame_chunks(gen):
    chunks = list(gen.generate_stream("Hello there.", 0, max_audio_length_ms=4_000))
    assert [c.numel() for c in chunks] == [10 * SPF] * 5
    assert torch.cat(chunks).numel() == frames(4_000) * SPF


def test_generate_conversation_with_defaults_gives_every_turn_its_cap(gen):
    turns = gen.generate_conversation([(0, "Hey, how are you doing?"), (1, "Pretty good.")])
    assert [t.audio.numel() for t in turns] == [frames(10_000) * SPF] * 2
    assert [t.speaker for t in turns] == [0, 1]


def test_the_runaway_guard_on_noise_does_not_cut_the_line(gen):
    # Non-default on purpose: the guard is off by default; on noise it must not fire.
    audio = gen.generate("Hello there.", 0, max_audio_length_ms=2_000, seed=0,
                         runaway_guard=RunawayGuard())
    assert audio.numel() == frames(2_000) * SPF


# ------------------------------------------------------------------ the stop signal

def test_only_csm_nb_stop_ends_a_generation(gen):
    tokens, mask = csm_nb.text_rows(gen.tokenizer, "Hello.", 0)
    seen = []
    for answer in (True, 1, "stop", False, None, [0]):         # what callbacks happen to return
        codes = csm_nb.generate_codes(gen.model, tokens, mask, max_frames=6,
                                      on_frame=lambda info, a=answer: a)
        seen.append(codes.shape[-1])
    assert seen == [6] * 6, "no return value but csm_nb.STOP may stop a line"
    calls = []

    def stop_after_two(info):
        calls.append(info.index)
        return csm_nb.STOP if info.index == 1 else None
    codes = csm_nb.generate_codes(gen.model, tokens, mask, max_frames=6, on_frame=stop_after_two)
    assert codes.shape == (32, 2) and calls == [0, 1]
    assert repr(csm_nb.STOP) == "csm_nb.STOP"


def test_a_tqdm_update_as_the_callback_runs_to_the_cap(gen):
    from tqdm import tqdm

    tokens, mask = csm_nb.text_rows(gen.tokenizer, "Hello.", 0)
    with tqdm(total=40, mininterval=0, file=sys.stderr) as bar:   # redraws at every frame
        codes = csm_nb.generate_codes(gen.model, tokens, mask, max_frames=40,
                                      on_frame=lambda info: bar.update(1))
    assert codes.shape == (32, 40)


# ------------------------------------------------------------------ the command line

def _cli(*args, cwd=None, python=sys.executable):
    env = dict(os.environ, CSM_NB_MODE="tiny", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([python, "-m", "csm_nb", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _samples(path):
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 1, 2)
        return w.getnframes()


def test_cli_say_without_quiet_writes_exactly_the_cap(tmp_path):
    out = tmp_path / "x.wav"
    done = _cli("say", "Hello there", "--max-ms", "2000", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert _samples(out) == frames(2_000) * SPF                    # 2.00 s
    assert "generating" in done.stderr and "25/25" in done.stderr  # the bar was drawn
    assert f"wrote {out} (2.00 s at 24000 Hz)" in done.stderr


def test_cli_conversation_without_quiet_gives_every_turn_its_cap(tmp_path):
    script = tmp_path / "talk.txt"
    script.write_text("A: Hey, how are you doing?\nB: Pretty good, pretty good.\nA: Great.\n")
    out = tmp_path / "talk.wav"
    done = _cli("conversation", str(script), "--max-ms", "800", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert _samples(out) == 3 * frames(800) * SPF
    assert done.stderr.count("10/10") >= 3                         # one full bar per turn


# ------------------------------------------------------------------ the app, through a client

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_app_answers_two_clients_at_once_with_full_length_turns(monkeypatch):
    from gradio_client import Client

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    port = _free_port()
    blocks = app.launch(server_port=port, mode="tiny", prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        lines = ["Hey how are you doing.\nPretty good, pretty good.",
                 "Hello.\nHi there.\nBye now."]
        results = [None, None]

        def ask(i):
            client = Client(url, verbose=False)
            # The page's own defaults for everything but the conversation; nothing uploaded
            # (the client has no default for an empty upload or its transcript box).
            results[i] = client.predict(text=lines[i], a_upload=None, a_text="",
                                        b_upload=None, b_text="", api_name="/generate")
        callers = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(timeout=600)
    finally:
        blocks.close()
    cap = frames(app.DEFAULT_SECONDS["tiny"] * 1000) * SPF          # the slider's default: 2 s
    for text, result in zip(lines, results):
        assert result is not None, "a client got no answer"
        status, whole, *players = result
        turns = text.count("\n") + 1
        assert f"{turns} turn" in status and "done" in status, status
        shown = [p["value"] for p in players if p.get("visible")]
        assert len(shown) == turns
        assert [soundfile.info(p).frames for p in shown] == [cap] * turns
        assert soundfile.info(whole).frames == turns * cap


# ------------------------------------------------------------------ the notebooks' own cells

# The four-turn conversation of notebook 03, run as its cells are written (progress bars on),
# then one check: every executed turn lasts exactly the notebook's cap.
CHECK_TURNS = """
cap = gen.max_frames(LINE_MS) * gen.config.samples_per_frame
print("turn samples", [t.audio.numel() for t in turns], "cap", cap)
assert [t.audio.numel() for t in turns] == [cap] * len(script), "a turn was cut short"
"""


def test_notebook_03s_turns_each_last_exactly_their_cap(notebook_code):
    code = notebook_code("03_conversation", "for i, (speaker, text) in enumerate(script)")
    env = dict(os.environ, CSM_NB_MODE="tiny", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "-c", code + CHECK_TURNS], cwd=ROOT / "notebooks",
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "turn samples [28800, 28800, 28800, 28800] cap 28800" in done.stdout, done.stdout


# ------------------------------------------------------------------ the README's own code

def test_the_readme_python_runs_offline_as_written():
    """The README's python block, run as a user would on a machine without the weights: auto
    falls back to the toy model, and the block must still work and make codes."""
    import re
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README shows no python"
    env = {k: v for k, v in os.environ.items() if k != "CSM_NB_MODE"}   # the user's default
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    check = "\nassert codes.dim() == 2 and codes.shape[0] == K and codes.shape[1] >= 1, codes.shape\n"
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block + check], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
