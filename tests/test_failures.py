"""Failure paths: the hub down or gated, broken checkpoints, out of memory, Ctrl-C, notebook
cells rerun out of order, and `auto` saying which weights it loaded and why.

Each test breaks one thing on purpose (monkeypatching the network, the allocator or the
keyboard) and checks two promises: the user is told what happened and what to do, and
nothing is left broken: the next call works and gives what a fresh run gives.
Complements tests/test_hub.py (gated from_pretrained, truncated/corrupted/wrong-size files)
and tests/test_generator.py (a half-read stream).
"""

from __future__ import annotations

import json
import signal
import time
import types

import pytest
import torch

import csm_nb
import csm_nb.speech.generator as generator_module
from csm_nb.audio import mimi as C
from csm_nb.audio.mimi_weights import build_random_mimi, load_codec, tiny_mimi_config
from csm_nb.teach import conversation as widgets
from csm_nb.apps.cli import main
from csm_nb.speech.generator import Generator, load_generator
from csm_nb.speech.segment import Segment
from csm_nb.loading.modes import notebook_mode
from helpers import hf_config_json, hub_snapshot, micro_config, micro_repo, save_state

SR, SPF = 24_000, 1920
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 14.75 GiB total capacity)"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No hub, an empty cache, no local weights: what a fresh laptop without a token has."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("CSM_NB_WEIGHTS", "CSM_NB_MIMI", "CSM_NB_MODE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def tiny_mimi_structure(monkeypatch):
    """moshi's default Mimi narrowed to the tiny one, so tiny weights load as 'real'."""
    from moshi.models import loaders
    monkeypatch.setattr(loaders, "_mimi_config", tiny_mimi_config())


# ------------------------------------------------------------------ the hub

def gpu_with_token(monkeypatch):
    """What makes `auto` try the hub at all: a GPU (faked) and a Hugging Face token."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")


def no_network(monkeypatch):
    """Every HTTP request fails as it does without a network, and hf's retry waits are
    skipped (its real backoff sleeps 1+2+4+8+8 s per file). A GPU and a token are faked, so
    `auto` gets as far as asking the hub."""
    gpu_with_token(monkeypatch)
    import requests
    from huggingface_hub.utils import _http

    def refuse(self, request, **kwargs):
        raise requests.ConnectionError(f"Failed to resolve 'huggingface.co' ({request.url})")

    monkeypatch.setattr(requests.Session, "send", refuse)
    monkeypatch.setattr(_http, "time", types.SimpleNamespace(sleep=lambda s: None,
                                                            time=time.time))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def test_unreachable_hub_real_says_how_and_auto_falls_back(offline, monkeypatch, capsys):
    no_network(monkeypatch)
    with pytest.raises(OSError, match="the hub cannot be reached") as err:
        csm_nb.load_model("real", device="cpu")
    assert "CSM_NB_WEIGHTS" in str(err.value) and "huggingface-cli download" in str(err.value)
    model, mode = csm_nb.load_model("auto", device="cpu")
    banner = capsys.readouterr().err
    assert mode == "toy" and model.config.num_codebooks == 8          # the shipped toy CSM
    assert "TOY MODE for the CSM model" in banner and "cannot be reached" in banner
    assert csm_nb.load_tokenizer(mode="auto").token_to_id("<|begin_of_text|>") == 128_000
    assert "TOY MODE for the tokenizer" in capsys.readouterr().err
    with pytest.raises(C.MimiUnavailable, match="the hub cannot be reached"):
        load_codec("real", device="cpu")


def test_hub_errors_without_a_friendly_type_still_say_what_to_do(offline, monkeypatch, capsys):
    """A 503 or a bare connection error from huggingface_hub: an OSError saying where to put
    the weights instead, and `auto` falls back with the reason in its banner."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    def down(*args, **kwargs):
        raise HfHubHTTPError("503 Server Error: Service Unavailable")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", down)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    gpu_with_token(monkeypatch)
    with pytest.raises(OSError, match="503 Server Error.*CSM_NB_WEIGHTS"):
        csm_nb.from_pretrained("sesame/csm-1b", device="cpu")
    assert csm_nb.load_model("auto", device="cpu")[1] == "toy"
    assert "503 Server Error" in capsys.readouterr().err


def test_gated_repo_without_a_token(offline, monkeypatch, capsys):
    """sesame/csm-1b gated: real says how to get access; auto falls back saying so; the
    tokenizer comes from the ungated mirror, and Mimi's repo being gated is named too."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    mirror = offline / "mirror"
    mirror.mkdir()
    csm_nb.tiny_tokenizer().save(str(mirror / "tokenizer.json"))
    asked = []

    def download(repo_id, filename, **kwargs):
        asked.append(repo_id)
        if repo_id == "unsloth/Llama-3.2-1B":
            return str(mirror / filename)
        raise GatedRepoError(f"403 Client Error: access to {repo_id} is restricted")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    gpu_with_token(monkeypatch)         # a token, but its owner has not accepted the terms

    model, mode = csm_nb.load_model("auto", device="cpu")
    banner = capsys.readouterr().err
    assert mode == "toy" and "is gated and this machine has no access" in banner
    assert "https://huggingface.co/sesame/csm-1b" in banner
    tok = csm_nb.load_tokenizer(mode="real")
    assert asked[-2:] == ["sesame/csm-1b", "unsloth/Llama-3.2-1B"]
    assert tok.encode("[0]a").ids == [128_000, 91, 48, 93, 97, 128_001]
    with pytest.raises(C.MimiUnavailable, match="is gated"):
        load_codec("real", device="cpu")


def test_cli_real_mode_offline_exits_cleanly(offline, capsys):
    out = offline / "x.wav"
    assert main(["say", "Hi", "-o", str(out), "--mode", "real", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "csm_nb say: error:" in err and "CSM_NB_WEIGHTS" in err and "Traceback" not in err
    assert not out.exists()


# ------------------------------------------------------------------ broken checkpoints

def test_empty_and_tail_truncated_checkpoints(offline):
    folder = micro_repo(offline / "m")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    for broken in (b"", data[:-7]):                  # an empty file; a download cut short
        weights.write_bytes(broken)
        with pytest.raises(OSError, match="truncated or corrupted"):
            csm_nb.from_pretrained(str(folder), device="cpu")


def test_auto_with_broken_local_weights_says_so_and_wrong_sizes_are_not_hidden(
        offline, monkeypatch, capsys):
    folder = micro_repo(offline / "m")
    monkeypatch.setenv("CSM_NB_WEIGHTS", str(folder))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    assert csm_nb.load_model("auto", device="cpu")[1] == "toy"
    assert "truncated or corrupted" in capsys.readouterr().err
    micro_repo(folder)                                # good weights again, then a wrong size:
    (folder / "config.json").write_text(json.dumps(hf_config_json(csm_nb.CSMConfig.tiny())))
    with pytest.raises(ValueError, match="wrong shape"):
        csm_nb.load_model("auto", device="cpu")       # a real mistake: never papered over


def test_truncated_mimi_checkpoint(offline, tiny_mimi_structure, capsys):
    path = offline / MIMI_FILE
    save_state(path, build_random_mimi(tiny_mimi_config(), seed=1))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(C.MimiUnavailable, match="truncated or corrupted"):
        load_codec("real", device="cpu", source=path)
    assert load_codec("auto", device="cpu", source=path).mode == "toy"
    assert "truncated or corrupted" in capsys.readouterr().err


# ------------------------------------------------------------------ out of memory

def raise_once(target, name, error):
    """Make target.name raise `error` on its next call only (as an allocator might)."""
    original = getattr(target, name)
    calls = []

    def flaky(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise error
        return original(*args, **kwargs)
    setattr(target, name, flaky)
    return lambda: setattr(target, name, original) if name not in vars(type(target)) \
        else delattr(target, name)


def test_out_of_memory_says_what_to_lower_and_the_generator_recovers(gen):
    kw = dict(max_audio_length_ms=240, seed=3, progress=False)
    before = gen.generate("Hello.", 0, **kw)
    restore = raise_once(gen.model, "backbone_step", torch.OutOfMemoryError(OOM))
    try:
        with pytest.raises(torch.OutOfMemoryError) as err:
            gen.generate("Hello.", 0, **kw)
    finally:
        restore()
    msg = str(err.value)
    for advice in ("max_audio_length_ms=240", "Lower max_audio_length_ms",
                   "shorten the context", "dtype=torch.bfloat16", "torch.float32",
                   f"The device said: {OOM}"):
        assert advice in msg, advice
    assert isinstance(err.value.__cause__, torch.OutOfMemoryError)
    assert torch.equal(gen.generate("Hello.", 0, **kw), before), "the next call must work"


def test_out_of_memory_in_a_stream(gen):
    kw = dict(max_audio_length_ms=240, seed=3, progress=False)
    before = gen.generate("Hello.", 0, **kw)
    restore = raise_once(gen.model, "backbone_step", torch.OutOfMemoryError(OOM))
    try:
        with pytest.raises(torch.OutOfMemoryError, match="Lower max_audio_length_ms"):
            list(gen.generate_stream("Hello.", 0, chunk_frames=1, **kw))
    finally:
        restore()
    assert torch.allclose(torch.cat(list(gen.generate_stream("Hello.", 0, **kw))), before,
                          atol=1e-4)


def test_cli_reports_out_of_memory(gen, tmp_path, monkeypatch, capsys):
    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("out of memory ... Lower max_audio_length_ms")
    monkeypatch.setattr(Generator, "generate", oom)
    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: gen)
    out = tmp_path / "x.wav"
    assert main(["say", "Hi", "-o", str(out), "--mode", "tiny", "--quiet"]) == 2
    assert "Lower max_audio_length_ms" in capsys.readouterr().err and not out.exists()


def test_generate_codes_out_of_memory_says_what_to_lower(tokenizer):
    model = csm_nb.tiny_model(micro_config(), device="cpu")
    tokens, mask = csm_nb.text_rows(tokenizer, "Hi", 0)
    restore = raise_once(model, "backbone_step", torch.OutOfMemoryError(OOM))
    try:
        with pytest.raises(torch.OutOfMemoryError) as err:
            csm_nb.generate_codes(model, tokens, mask, max_frames=5)
    finally:
        restore()
    for advice in ("max_frames=5", "batch", "dtype", OOM):
        assert advice in str(err.value), advice


@pytest.mark.parametrize("error", [torch.OutOfMemoryError(OOM), KeyboardInterrupt()])
def test_no_half_built_caches_after_a_failed_setup(tokenizer, error):
    """OOM (or Ctrl-C) while the caches are being allocated: the next call must not find
    them 'ready' with some layers missing (it would then generate garbage, silently)."""
    tokens, mask = csm_nb.text_rows(tokenizer, "Hi", 0)
    fresh = csm_nb.tiny_model(micro_config(), device="cpu", seed=4)
    expected = csm_nb.generate_codes(fresh, tokens, mask, max_frames=4,
                                     generator=torch.Generator().manual_seed(0))
    model = csm_nb.tiny_model(micro_config(), device="cpu", seed=4)
    restore = raise_once(model.decoder, "setup_cache", error)
    try:
        with pytest.raises(type(error)):
            csm_nb.generate_codes(model, tokens, mask, max_frames=4)
    finally:
        restore()
    again = csm_nb.generate_codes(model, tokens, mask, max_frames=4,
                                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, expected)


# ------------------------------------------------------------------ Ctrl-C

def test_ctrl_c_from_on_frame_then_the_same_codes_as_a_fresh_run(tokenizer):
    tokens, mask = csm_nb.text_rows(tokenizer, "Hello there.", 1)
    model = csm_nb.tiny_model(micro_config(), device="cpu", seed=7)
    seen = []

    def ctrl_c(info):
        seen.append(info.index)
        if info.index == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        csm_nb.generate_codes(model, tokens, mask, max_frames=6, on_frame=ctrl_c,
                              generator=torch.Generator().manual_seed(5))
    assert seen == [0, 1, 2]
    again = csm_nb.generate_codes(model, tokens, mask, max_frames=6,
                                  generator=torch.Generator().manual_seed(5))
    fresh = csm_nb.generate_codes(csm_nb.tiny_model(micro_config(), device="cpu", seed=7),
                                  tokens, mask, max_frames=6,
                                  generator=torch.Generator().manual_seed(5))
    assert again.shape == (32, 6) and torch.equal(again, fresh)


def press_ctrl_c_at(frame):
    """A progress callback that presses Ctrl-C (a real SIGINT) when frame `frame` is done."""
    def progress(done, total):
        if done == frame:
            signal.raise_signal(signal.SIGINT)
    return progress


@pytest.fixture
def ctrl_c_raises():
    """Make SIGINT raise KeyboardInterrupt here, whatever this process inherited: a shell runs
    background jobs (nohup, CI runners, xdist workers) with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("streaming", [False, True])
def test_ctrl_c_during_generate_then_the_next_call_works(gen, monkeypatch, streaming,
                                                         ctrl_c_raises):
    kw = dict(max_audio_length_ms=400, seed=9, progress=False)
    before = gen.generate("Hello.", 0, **kw)
    interrupted = dict(kw, progress=press_ctrl_c_at(2))
    with pytest.raises(KeyboardInterrupt):
        if streaming:
            for _ in gen.generate_stream("Hello.", 0, chunk_frames=1, **interrupted):
                pass
        else:
            gen.generate("Hello.", 0, **interrupted)
    assert torch.equal(gen.generate("Hello.", 0, **kw), before)


def test_ctrl_c_while_reading_a_stream_kept_alive_by_a_traceback(gen):
    """In a notebook the interrupted cell's traceback keeps the stream object alive; the next
    call must stop its worker first, not wait for it or mix its frames in."""
    kw = dict(max_audio_length_ms=400, seed=9, progress=False)
    before = gen.generate("Hello.", 0, **kw)
    stream = gen.generate_stream("Hello.", 0, chunk_frames=1, **kw)
    try:
        for _ in stream:
            raise KeyboardInterrupt                       # Ctrl-C in the consuming loop
    except KeyboardInterrupt:
        pass
    assert torch.equal(gen.generate("Hello.", 0, **kw), before)
    stream.close()


def test_cli_ctrl_c_writes_nothing(gen, tmp_path, monkeypatch, capsys):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(Generator, "generate", interrupted)
    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: gen)
    out = tmp_path / "x.wav"
    assert main(["say", "Hi", "-o", str(out), "--mode", "tiny", "--quiet"]) == 130
    assert "interrupted; nothing written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ notebooks rerun out of order

def test_load_generator_twice(gen):
    """Rerunning the setup cell builds an equal, independent generator; the old one works."""
    again = load_generator("tiny", device="cpu")
    kw = dict(max_audio_length_ms=160, seed=4, progress=False)
    assert torch.equal(again.generate("Hi", 1, **kw), gen.generate("Hi", 1, **kw))
    assert again.model is not gen.model and again.codec is not gen.codec


def test_generator_after_failed_calls(gen):
    kw = dict(max_audio_length_ms=160, seed=4, progress=False)
    before = gen.generate("Hi", 1, **kw)
    for bad in (dict(speaker=42), dict(context=[Segment(0, "x", torch.ones(4) * 2)] * 0 + [3]),
                dict(max_audio_length_ms=(2048 + 1) * 80)):
        with pytest.raises((ValueError, TypeError)):
            gen.generate(**{"text": "Hi", "speaker": 1, **kw, **bad})

    def broken(audio, rate):
        raise RuntimeError("watermark service down")
    gen.watermark = broken
    try:
        with pytest.raises(RuntimeError, match="watermark service down"):
            gen.generate("Hi", 1, **kw)
        with pytest.raises(RuntimeError, match="watermark service down"):
            list(gen.generate_stream("Hi", 1, **kw))
    finally:
        gen.watermark = None
    assert torch.equal(gen.generate("Hi", 1, **kw), before)


def test_a_bad_last_turn_is_refused_before_any_turn_is_spoken(gen, monkeypatch):
    spoken = []
    monkeypatch.setattr(gen, "generate", lambda *a, **k: spoken.append(a) or torch.zeros(SPF))
    with pytest.raises(ValueError, match=r"turns\[2\]: text='  ' is empty"):
        gen.generate_conversation([(0, "One."), (1, "Two."), (0, "  ")])
    assert spoken == [], "minutes of generation must not come before the error"


def test_conversation_builder_rerun_and_a_failed_click(gen, capsys):
    kw = dict(max_audio_length_ms=160, progress=False)
    first = widgets.conversation_builder(gen, turns=[(0, "One.")], **kw)
    second = widgets.conversation_builder(gen, turns=[(0, "One.")], **kw)  # the cell, rerun
    assert torch.equal(first.turns[0].audio, second.turns[0].audio)
    speaker, line, button, undo = first.children[0].children
    capsys.readouterr()
    line.value = "Half an emoji \ud83d"
    button.click()                                      # bad input: said, not raised
    assert len(first.turns) == 1 and not button.disabled
    assert "Could not generate: text holds" in capsys.readouterr().out   # headless Output
    line.value = "Two."
    button.click()                                      # and the widget still works
    assert [t.text for t in first.turns] == ["One.", "Two."] and len(second.turns) == 1


def test_notebook_mode_twice_and_a_mode_change_between_cells(monkeypatch, capsys):
    monkeypatch.setenv("CSM_NB_MODE", "tiny")
    assert notebook_mode() == notebook_mode() == "tiny"
    assert capsys.readouterr().out.count("csm_nb mode: TINY") == 2
    monkeypatch.setenv("CSM_NB_MODE", "warp")
    with pytest.raises(ValueError, match="CSM_NB_MODE='warp' is not a mode"):
        notebook_mode()


# ------------------------------------------------------------------ auto never pretends

def fake_cache_with_weights(root):
    (hub_snapshot(root, "sesame/csm-1b") / "model.safetensors").write_bytes(b"x")


@pytest.mark.parametrize("setup, verdict, reason", [
    ("weights", "REAL", "holds model.safetensors"),
    ("empty-folder", "TOY", "has no model.safetensors"),
    ("offline", "TOY", "HF_HUB_OFFLINE is set and sesame/csm-1b is not in"),
    ("cached", "REAL", "sesame/csm-1b is in the Hugging Face cache"),
    ("online-cpu", "TOY", "no GPU: CSM-1B would take minutes"),
    ("asked", "TINY", "asked for tiny"),
])
def test_auto_banner_says_which_weights_and_why(offline, monkeypatch, capsys, setup, verdict,
                                               reason):
    mode = None
    if setup == "weights":
        monkeypatch.setenv("CSM_NB_WEIGHTS", str(micro_repo(offline / "w")))
    elif setup == "empty-folder":
        (offline / "w").mkdir()
        monkeypatch.setenv("CSM_NB_WEIGHTS", str(offline / "w"))
    elif setup == "cached":
        fake_cache_with_weights(offline / "empty-cache")
    elif setup == "online-cpu":
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    elif setup == "asked":
        mode = "tiny"
    chosen = notebook_mode(mode)
    out = capsys.readouterr().out
    assert chosen == verdict.lower()
    assert out.startswith(f"csm_nb mode: {verdict} on cpu: ") and reason in out
    said = {"real": "the official CSM-1B weights", "toy": "it speaks, robotically",
            "tiny": "the audio is noise"}
    assert said[chosen] in out


def test_auto_generator_falls_back_loudly_and_consistently(offline, capsys):
    gen = load_generator("auto", device="cpu")
    err = capsys.readouterr().err
    assert gen.mode == "toy" and gen.codec.mode == "toy"
    assert err.count("TOY MODE") == 1, "one banner for one decision"
    assert "TOY MODE for the CSM model" in err
    assert "Why: offline: $HF_HUB_OFFLINE is set and sesame/csm-1b is not in the local cache" in err


def test_auto_never_pairs_real_weights_with_a_random_codec(offline, monkeypatch):
    monkeypatch.setenv("CSM_NB_WEIGHTS", str(micro_repo(offline / "w")))
    with pytest.raises(C.MimiUnavailable, match="CSM_NB_MIMI"):
        load_generator("auto", device="cpu")


def test_auto_with_every_weight_local_is_real(offline, monkeypatch, tiny_mimi_structure,
                                              capsys):
    monkeypatch.setenv("CSM_NB_WEIGHTS", str(micro_repo(offline / "w")))
    save_state(offline / MIMI_FILE, build_random_mimi(tiny_mimi_config(), seed=1))
    monkeypatch.setenv("CSM_NB_MIMI", str(offline))
    assert notebook_mode() == "real"
    gen = load_generator("auto", device="cpu")
    assert (gen.mode, gen.codec.mode) == ("real", "real")
    assert "mode='real'" in repr(gen) and "MODE" not in capsys.readouterr().err
    assert gen.generate("Hi", 0, max_audio_length_ms=80, seed=0, progress=False).shape == (SPF,)
