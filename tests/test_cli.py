"""The command line end to end in tiny mode, the script parser, atomic WAV writing."""

import importlib.util
import os
import subprocess
import sys
import wave

import pytest
import torch

from csm_nb.audio import signal as audio_io
from csm_nb.apps.cli import main, parse_script

SPF = 1920



def _wav_info(path):
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def _no_temp_files(folder):
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_say_end_to_end_writes_a_24k_wav(tmp_path):
    out = tmp_path / "hello.wav"
    env = dict(os.environ, CSM_NB_MODE="tiny", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "csm_nb", "say", "Hello there.", "--speaker",
                           "1", "-o", str(out), "--max-ms", "400", "--seed", "0", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _wav_info(out) == (24_000, 1, 2, 5 * SPF)          # 400 ms = 5 frames of 1920
    audio, rate = audio_io.read_wav(out)
    assert rate == 24_000 and audio.abs().max() > 0
    assert "not watermarked" in done.stderr
    assert _no_temp_files(tmp_path)


SCRIPT = """\
# a comment, then a blank line

prompt A: read_speech_a
A: Hey, how are you doing?
b: Pretty good: pretty good.
0: Great.
"""


def test_parse_script():
    script = parse_script(SCRIPT)
    assert script.turns == [(0, "Hey, how are you doing?"), (1, "Pretty good: pretty good."),
                            (0, "Great.")]
    assert script.prompts == {0: "read_speech_a"}


@pytest.mark.parametrize("text, words", [
    ("A: hi\nB hello\n", "line 2: 'B hello' is not a turn"),
    ("A: hi\n\nK: hello\n", "line 3: speaker 'K' is not A-J or 0-9"),
    ("A: hi\n12: hello\n", r"line 2: speaker=12 is outside 0..9"),
    ("A:   \n", "line 1: speaker A says nothing"),
    ("prompt A: nope\nA: hi\n", "line 1: no prompt named 'nope'"),
    ("prompt A: read_speech_a\nprompt A: read_speech_b\nA: hi", "line 2: speaker 0 already"),
    ("prompt B: missing.wav | words\nA: hi", "line 1: prompt audio 'missing.wav' does not"),
    ("prompt B:\nA: hi", "line 1: the prompt line names no prompt"),
    ("# only a comment\n", "has no turns"),
])
def test_malformed_scripts_name_the_line(text, words):
    with pytest.raises(ValueError, match=words):
        parse_script(text, "talk.txt")


def test_conversation_command(tmp_path, capsys):
    script = tmp_path / "talk.txt"
    script.write_text("A: One.\nB: Two.\n")
    out = tmp_path / "talk.wav"
    code = main(["conversation", str(script), "-o", str(out), "--max-ms", "160", "--seed", "1",
                 "--mode", "tiny", "--quiet", "--prompt", "B=read_speech_b"])
    assert code == 0, capsys.readouterr().err
    assert _wav_info(out) == (24_000, 1, 2, 2 * 2 * SPF)      # two turns of two frames


def test_bad_script_writes_nothing(tmp_path, capsys):
    script = tmp_path / "bad.txt"
    script.write_text("A: fine\nthis line has no speaker\n")
    out = tmp_path / "bad.wav"
    assert main(["conversation", str(script), "-o", str(out), "--mode", "tiny"]) == 2
    assert "bad.txt line 2" in capsys.readouterr().err
    assert not out.exists() and _no_temp_files(tmp_path)


@pytest.mark.parametrize("argv, words", [
    (["say", "  ", "-o", "{out}"], "empty"),
    (["say", "Hi", "--speaker", "11", "-o", "{out}"], "--speaker=11 is outside"),
    (["say", "Hi", "--max-ms", "0", "-o", "{out}"], "max_audio_length_ms=0.0 must be"),
    (["say", "Hi", "--prompt", "nope", "-o", "{out}"], "no prompt named 'nope'"),
    (["say", "Hi", "-o", "{tmp}/no/such/folder/x.wav"], "does not exist"),
    (["conversation", "{tmp}/missing.txt", "-o", "{out}"], "does not exist"),
    (["conversation", "{tmp}/s.txt", "--prompt", "A:x", "-o", "{out}"], "SPEAKER=SPEC"),
])
def test_cli_bad_input(tmp_path, capsys, argv, words):
    (tmp_path / "s.txt").write_text("A: hi\n")
    out = tmp_path / "out.wav"
    argv = [a.format(out=out, tmp=tmp_path) for a in argv] + ["--mode", "tiny", "--quiet"]
    assert main(argv) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("gradio") is not None, reason="gradio installed")
def test_demo_without_gradio_says_which_extra(capsys):
    assert main(["demo"]) == 1
    assert "[demo] extra" in capsys.readouterr().err


def test_write_wav_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.wav"
    audio_io.write_wav(path, torch.full((SPF,), 0.5), 24_000)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        audio_io.write_wav(path, torch.tensor([0.0, float("nan")]), 24_000)

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(audio_io.os, "fsync", interrupted)     # Ctrl-C mid-write
    with pytest.raises(KeyboardInterrupt):
        audio_io.write_wav(path, torch.zeros(10 * SPF), 24_000)
    assert path.read_bytes() == before and _no_temp_files(tmp_path)


def test_wav_round_trip_and_bad_arguments(tmp_path):
    audio = torch.tensor([0.0, 0.5, -0.5, 1.5, -1.5])
    path = audio_io.write_wav(tmp_path / "x.wav", audio, 16_000)
    back, rate = audio_io.read_wav(path)
    assert rate == 16_000
    assert back.tolist() == pytest.approx([0.0, 0.5, -0.5, 1.0, -1.0], abs=1e-4)  # clipped
    with pytest.raises(ValueError, match="mono"):
        audio_io.write_wav(tmp_path / "y.wav", torch.zeros(2, 10), 24_000)
    with pytest.raises(ValueError, match="sample_rate"):
        audio_io.write_wav(tmp_path / "y.wav", torch.zeros(10), 0)
    with pytest.raises(ValueError, match="folder"):
        audio_io.write_wav(tmp_path, torch.zeros(10), 24_000)


def test_say_with_a_prompt_file(tmp_path, capsys):
    import soundfile
    voice = tmp_path / "voice.wav"
    soundfile.write(voice, 0.2 * torch.sin(torch.arange(8000) * 0.1).numpy(), 16_000)
    out = tmp_path / "x.wav"
    code = main(["say", "Hi.", "--prompt", f"{voice} | What my voice says.", "-o", str(out),
                 "--max-ms", "160", "--mode", "tiny", "--quiet", "--seed", "0"])
    assert code == 0, capsys.readouterr().err
    assert _wav_info(out) == (24_000, 1, 2, 2 * SPF)
