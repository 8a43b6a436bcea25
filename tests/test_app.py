"""csm_nb.apps.demo without a browser: checking what was typed and uploaded, the page's wiring,
and a tiny-mode run through the same handler the Generate button calls."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import csm_nb.speech.generator
from csm_nb.apps import demo as app
from csm_nb.audio import signal as audio_io
from csm_nb.speech.prompts import PROMPTS

SPF = 1920                     # samples per 80 ms frame at 24 kHz
TURNS = [(0, "Hey how are you doing."), (1, "Pretty good, pretty good.")]


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model here fails the test: bad input must be refused before any model work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the app loaded a model")
    monkeypatch.setattr(csm_nb.speech.generator, "load_generator", refuse)


# ------------------------------------------------------------------ the conversation box

def test_lines_become_alternating_turns_from_a():
    text = "  Hello.\n\n\tHi there!  \nBye.\n   \n"
    assert app.parse_conversation(text) == [(0, "Hello."), (1, "Hi there!"), (0, "Bye.")]
    assert app.parse_conversation("Just one line") == [(0, "Just one line")]


@pytest.mark.parametrize("text", ["", "   ", "\n\n \t\n"])
def test_an_empty_conversation_says_what_to_type(text):
    with pytest.raises(ValueError, match="The conversation is empty: type one line per turn"):
        app.parse_conversation(text)


def test_at_most_twenty_turns():
    assert len(app.parse_conversation("\n".join(["line"] * app.MAX_TURNS))) == 20
    with pytest.raises(ValueError, match="has 21 lines; this demo speaks at most 20 turns. "
                                         r"Remove 1 line\(s\)"):
        app.parse_conversation("\n".join(["line"] * 21))
    with pytest.raises(TypeError, match="must be text, got NoneType"):
        app.parse_conversation(None)


# ------------------------------------------------------------------ the 2000-character limit

def test_the_limit_counts_the_conversation_and_both_transcripts_as_the_space_does():
    a, b = PROMPTS["conversational_a"].transcript, PROMPTS["conversational_b"].transcript
    assert app.transcript_for("conversational_a", None, "ignored") == a
    assert app.transcript_for("read_speech_c", "/tmp/mine.wav", " my words ") == " my words "
    assert app.transcript_for("read_speech_c", "/tmp/mine.wav", None) == ""
    room = app.MAX_CHARS - 1 - len(a) - len(b)          # the Space refuses at >= 2000
    text = "x" * room
    assert app.check_length(f"  {text}\n", a, b) == 1999           # stripped, as the Space does
    with pytest.raises(ValueError, match="Prompts and conversation too long: 2000 characters"):
        app.check_length(text + "y", a, b)
    assert app.check_length("Hi.", "", "") == 3


# ------------------------------------------------------------------ uploads and the seed

def test_an_upload_that_is_not_audio_is_named(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a recording")
    with pytest.raises(ValueError, match="Speaker B: the uploaded file 'notes.txt' is not audio "
                                         r"this app can read \(WAV, FLAC, OGG or MP3\)"):
        app.read_upload(str(notes), "some words", speaker=1)


def test_an_upload_needs_its_transcript_and_some_audio(tmp_path):
    clip = tmp_path / "me.wav"
    audio_io.write_wav(clip, torch.zeros(SPF), 16_000)
    with pytest.raises(ValueError, match="Speaker A: you uploaded 'me.wav'; type what it says"):
        app.read_upload(str(clip), "  ", speaker=0)
    empty = tmp_path / "empty.wav"
    audio_io.write_wav(empty, torch.zeros(0), 16_000)
    with pytest.raises(ValueError, match="'empty.wav' cannot be a prompt: audio is empty"):
        app.read_upload(str(empty), "words", speaker=0)


def test_a_stereo_upload_becomes_a_mono_prompt_at_its_own_rate(tmp_path):
    import soundfile
    left, right = np.full(800, 0.5, np.float32), np.full(800, -0.25, np.float32)
    soundfile.write(tmp_path / "duo.wav", np.stack([left, right], axis=1), 16_000)
    seg = app.read_upload(str(tmp_path / "duo.wav"), " Hello me. ", speaker=1)
    assert (seg.speaker, seg.text, seg.sample_rate, seg.label) == (1, "Hello me.", 16_000,
                                                                  "duo.wav")
    assert seg.audio.shape == (800,)
    torch.testing.assert_close(seg.audio, torch.full((800,), 0.125), atol=1e-4, rtol=0)


def test_seed_box():
    assert app.parse_seed("") is None and app.parse_seed(None) is None
    assert app.parse_seed("  42 ") == 42 and app.parse_seed("0") == 0
    for bad in ("-1", "4.2", "abc", str(2**32)):
        with pytest.raises(ValueError, match=f"Seed '{bad}' is not a whole number from 0 to"):
            app.parse_seed(bad)


def test_max_seconds_is_one_frame_to_thirty():
    assert app.check_max_seconds(0.08) == 0.08 and app.check_max_seconds(30) == 30.0
    for bad in (0.05, 31, True, "2"):
        with pytest.raises(ValueError, match="must be a number of seconds from 0.08"):
            app.check_max_seconds(bad)


# ------------------------------------------------------------------ mode banner

def test_mode_is_decided_without_loading_and_the_banner_says_why(monkeypatch, no_model):
    monkeypatch.delenv("CSM_NB_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    assert app.decide_mode("tiny") == ("tiny", "asked for tiny (argument or $CSM_NB_MODE)")
    mode, why = app.decide_mode("auto")
    assert mode == "toy" and "HF_HUB_OFFLINE is set" in why
    assert "the audio is noise" in app.mode_banner("tiny", why) and why in app.mode_banner(
        "tiny", why)
    assert app.mode_banner("real", "a GPU is present").startswith("**Real weights**")


def test_importing_the_app_is_cheap():
    code = ("import sys, csm_nb.apps.demo; "
            "print(sorted(m for m in ('gradio', 'moshi') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------ the page (needs gradio)

def _handler(blocks):
    return next(f.fn for f in blocks.fns.values() if f.api_name == "generate")


def _inputs(text, seconds=0.16, seed="", a_upload=None, a_text=""):
    """The handler's arguments in page order: conversation, A (choice, upload, transcript),
    B (...), max seconds, temperature, top-k, seed."""
    return [text, "conversational_a", a_upload, a_text, "conversational_b", None, "", seconds,
            0.9, 50, seed]


def test_the_page_is_built_without_a_model_and_wired_for_one_run_at_a_time(no_model):
    pytest.importorskip("gradio")
    blocks = app.build_app(mode="tiny", max_seconds=0.8)
    ids = {c.get("props", {}).get("elem_id") for c in blocks.config["components"]}
    assert {"mode-banner", "prompt-A", "prompt-B", "upload-A", "upload-B", "conversation",
            "max-seconds", "generate", "status", "conversation-audio"} <= ids
    assert {f"turn-{i}" for i in range(1, 21)} <= ids and "turn-21" not in ids
    run = next(f for f in blocks.fns.values() if f.api_name == "generate")
    assert run.concurrency_limit == 1 and run.concurrency_id == "generate"
    click = next(f for f in blocks.fns.values() if f.trigger_mode == "once")
    assert [t[1] for t in click.targets] == ["click"]
    with pytest.raises(ValueError, match="max_seconds=99 must be a number of seconds"):
        app.build_app(mode="tiny", max_seconds=99)


@pytest.mark.parametrize("text, upload, words", [
    ("", None, "**Error:** The conversation is empty"),
    ("x" * 2000, None, "**Error:** Prompts and conversation too long"),
    ("Hi.", "NOTES", "**Error:** Speaker A: the uploaded file 'notes.txt' is not audio"),
])
def test_bad_input_reaches_the_page_as_a_message(tmp_path, no_model, text, upload, words):
    pytest.importorskip("gradio")
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    run = _handler(app.build_app(mode="tiny"))
    status, whole, *players = run(*_inputs(text, a_upload=upload and str(notes)))
    assert status.startswith(words) and "Traceback" not in status
    assert whole is None and all(p["visible"] is False for p in players)
    status, *_ = run(*_inputs("Hi.", seed="seven"))
    assert status.startswith("**Error:** Seed 'seven' is not a whole number")


def test_a_tiny_run_fills_one_player_per_turn_and_the_whole(gen):
    pytest.importorskip("gradio")
    run = _handler(app.build_app(gen, max_seconds=0.8))
    status, whole, *players = run(*_inputs("Hello there.\nHi, how are you?", seconds=0.16,
                                           seed="3"))
    assert status.startswith("**Conversation #1 done**: 2 turns")
    assert "Voices: A = conversational_a (stand-in: " in status     # tiny mode says so
    shown = [p for p in players if p["visible"]]
    assert len(shown) == 2 and all(p["visible"] is False for p in players[2:])
    assert shown[0]["label"] == "Turn 1, speaker A: Hello there."
    assert shown[1]["label"] == "Turn 2, speaker B: Hi, how are you?"
    rate, samples = whole
    assert rate == 24_000 and samples.dtype == np.int16
    lengths = [p["value"][1].size for p in shown]
    assert all(0 < n <= 2 * SPF and n % SPF == 0 for n in lengths)    # 0.16 s = 2 frames
    np.testing.assert_array_equal(samples, np.concatenate([p["value"][1] for p in shown]))
    again = run(*_inputs("Hello there.\nHi, how are you?", seconds=0.16, seed="3"))
    assert again[0].startswith("**Conversation #2 done**")
    np.testing.assert_array_equal(again[1][1], samples)               # same seed, same audio


def test_speak_matches_generate_conversation_and_reports_progress(gen):
    demo = app.Demo(gen)
    prompts = [demo.voice(0, "read_speech_a", None, ""), demo.voice(1, "read_speech_b", None, "")]
    assert demo.voice(0, "read_speech_a", None, "") is prompts[0]          # cached
    seen = []
    spoken, notes = demo.speak(TURNS, prompts, 0.4, 0.9, 50, seed=7,
                               on_progress=lambda f, d: seen.append((f, d)))
    ref = gen.generate_conversation(TURNS, prompts, seed=7, max_audio_length_ms=400,
                                    progress=False)
    assert notes == [] and [(s.speaker, s.text) for s in spoken] == TURNS
    for ours, theirs in zip(spoken, ref):
        torch.testing.assert_close(ours.audio, theirs.audio, atol=1e-4, rtol=0)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0.5 < fractions[-1] <= 1.0
    assert seen[0][1] == "turn 1 of 2 (speaker A)" and seen[-1][1] == "turn 2 of 2 (speaker B)"


def test_launch_passes_share_through_and_main_refuses_bad_options(monkeypatch, gen, capsys):
    gr = pytest.importorskip("gradio")
    calls = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: calls.append(kw))
    monkeypatch.setattr(csm_nb.speech.generator, "load_generator", lambda mode, device=None: gen)
    blocks = app.launch(share=True, mode="tiny", server_port=7999)
    assert isinstance(blocks, gr.Blocks)
    assert calls == [{"share": True, "server_name": "127.0.0.1", "server_port": 7999,
                      "ssr_mode": False}]
    assert app.main(["--", "--port", "7998", "--mode", "tiny"]) == 0
    assert calls[-1]["server_port"] == 7998 and calls[-1]["share"] is False
    assert app.main(["--max-seconds", "99"]) == 2
    assert "csm_nb demo: error: max_seconds=99.0 must be" in capsys.readouterr().err


def test_a_bug_shows_one_line_on_the_page_and_the_traceback_in_the_log(capsys):
    pytest.importorskip("gradio")

    class Broken:                  # a generator whose model fails mid-way
        mode = "tiny"

        def conversation(self, *args, **kwargs):
            raise RuntimeError("boom")

    status, whole, *players = _handler(app.build_app(Broken()))(*_inputs("Hi."))
    assert status == ("**Error:** generation failed (RuntimeError: boom); the console running "
                      "the app has the details.")
    assert whole is None and all(p["visible"] is False for p in players)
    assert "Traceback" in capsys.readouterr().err
