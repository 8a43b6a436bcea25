"""Toy mode: the small CSM, toy codec and voices shipped in csm_nb/data/toy, as users get them.

The toy CSM was trained by this project on espeak-ng speech (benchmarks/eval_toy.py measures
what it says); here: it loads from the package alone, in the toy codec's shape, speaks lines
that end by its own stop frame, follows a voice given as context, streams, and fails clearly.
"""

import pytest
import torch

import csm_nb
from csm_nb.audio.toy_codec import ToyCodec
from csm_nb.loading import modes
from csm_nb.loading.weights import save_toy_model, toy_model
from csm_nb.speech.prompts import load_prompt

SPF = 1920


@pytest.fixture(scope="module")
def toy():
    return csm_nb.load_generator("toy", device="cpu")


def test_toy_mode_loads_the_shipped_parts(toy):
    assert toy.mode == "toy" and isinstance(toy.codec, ToyCodec)
    cfg = toy.config
    assert cfg.num_codebooks == toy.codec.num_codebooks == 8
    assert cfg.audio_vocab_size == toy.codec.codebook_size + 3       # CSM's 3 spare ids kept
    assert (cfg.sample_rate, cfg.frame_rate) == (24_000, 12.5)       # Mimi's frame layout
    assert toy.tokenizer.encode("[0]Hi").ids == [128_000, 91, 48, 93, 72, 105, 128_001]
    assert toy.model.text_embeddings.weight[300].abs().sum() == 0, "unread text rows are 0"


def test_a_toy_line_ends_by_the_models_own_stop_frame(toy):
    context = [load_prompt("toy_A", speaker=0)]
    audio = toy.generate("The cat is happy today.", 0, context, max_audio_length_ms=6_000,
                         seed=0, progress=False)
    frames = audio.numel() // SPF
    assert audio.numel() % SPF == 0 and 8 <= frames < 75, f"{frames} frames: no stop frame?"
    assert torch.isfinite(audio).all() and audio.abs().max() > 0.01


def test_the_toy_stream_equals_the_one_shot_line_in_length(toy):
    context = [load_prompt("toy_B", speaker=1)]
    kw = dict(max_audio_length_ms=4_000, seed=3, progress=False)
    one_shot = toy.generate("Please close the door.", 1, context, **kw)
    chunks = list(toy.generate_stream("Please close the door.", 1, context, chunk_frames=5, **kw))
    assert sum(c.numel() for c in chunks) == one_shot.numel()
    assert all(c.numel() == 5 * SPF for c in chunks[:-1])


def test_save_and_load_round_trip(toy, tmp_path):
    path = tmp_path / "toy.safetensors"
    save_toy_model(toy.model, path, extra={"note": "test"})
    again = toy_model(device="cpu", path=path)
    ids = torch.cat([torch.arange(256), torch.tensor([128_000, 128_001])])
    for (name, a), (_, b) in zip(toy.model.state_dict().items(), again.state_dict().items()):
        if name == "text_embeddings.weight":
            a, b = a[ids], b[ids]
        torch.testing.assert_close(a, b, msg=name)


def test_a_broken_toy_file_says_how_to_fix(tmp_path):
    bad = tmp_path / "toy.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(OSError, match="make toy-model"):
        toy_model(device="cpu", path=bad)


def test_auto_offline_is_toy_and_says_what_toy_is(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CSM_NB_WEIGHTS", raising=False)
    gen = csm_nb.load_generator("auto", device="cpu")
    assert (gen.mode, gen.codec.mode) == ("toy", "toy") and modes.OFFLINE_MODE == "toy"
    banner = capsys.readouterr().err
    assert "TOY MODE for the CSM model" in banner and "it speaks, robotically" in banner


def test_decoded_toy_audio_never_clips(toy):
    """Griffin-Lim's guessed phase can sum above full scale; a player would clip it."""
    codes = torch.randint(0, toy.codec.codebook_size, (toy.codec.num_codebooks, 20),
                          generator=torch.Generator().manual_seed(0))
    audio = toy.codec.decode(codes)
    assert audio.abs().max() <= 10 ** (-1 / 20) + 1e-6


def test_the_cli_gives_a_speaker_without_a_prompt_a_toy_voice(toy, tmp_path, capsys):
    """`say` as its --help shows it, with no --prompt, in toy mode: the toy model only learned
    lines after a voice's turn, so speaker 0 speaks in toy voice A (and is told so), exactly as
    the same call with voice A's prompt given explicitly."""
    from csm_nb.apps.cli import main
    from csm_nb.audio.signal import read_wav
    text = "My sister found the little red kite in the park."
    out = tmp_path / "line.wav"
    assert main(["say", text, "--mode", "toy", "--device", "cpu", "--seed", "0", "--quiet",
                 "-o", str(out)]) in (0, None)
    assert "speaker 0 has no prompt, so it speaks in toy_A" in capsys.readouterr().err
    audio, _ = read_wav(out)
    same = toy.generate(text, 0, [load_prompt("toy_A", speaker=0)], seed=0, progress=False)
    assert audio.numel() == same.numel() and 0 < audio.numel() < 10_000 * 24   # its own stop
