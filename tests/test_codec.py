"""csm_nb.audio.mimi: shapes, RVQ prefixes, streaming, loading (folder, env, fake hub cache), bad input.

All on the tiny random Mimi (same structure as the real one: 24 kHz, 1920 samples per frame,
32 codebooks of 2048 bins). "Real" loading is exercised with that tiny Mimi's weights saved
where the real file would be, with moshi's default config narrowed to match.
"""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from csm_nb.audio import mimi as C
from csm_nb.audio.metrics import mel_distance, si_sdr
from csm_nb.audio.mimi_weights import build_random_mimi, load_codec, tiny_mimi_config
from csm_nb.audio.signal import prepare_audio
from csm_nb.core.config import CSMConfig
from helpers import hub_snapshot, save_state

CFG = CSMConfig.csm_1b()
SPF = CFG.samples_per_frame          # 1920
SR = CFG.sample_rate                 # 24000
K = CFG.num_codebooks                # 32
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
MIMI_REPO = "kyutai/moshiko-pytorch-bf16"


def speechlike(seconds=1.0, seed=0, rate=SR):
    """Noise shaped by a slow envelope: varied enough to exercise every level."""
    g = torch.Generator().manual_seed(seed)
    t = round(seconds * rate)
    envelope = 0.5 + 0.5 * torch.sin(torch.arange(t) / rate * 2 * math.pi * 3)
    return (0.3 * envelope * torch.randn(t, generator=g)).float()


# ------------------------------------------------------------------ shapes and values

@pytest.mark.parametrize("samples", [1, SPF - 1, SPF, SPF + 1, 7 * SPF + 123, SR])
def test_frames_are_ceil_of_samples_over_1920(codec, samples):
    codes = codec.encode(speechlike(samples / SR), SR)
    assert codes.dtype == torch.int64
    assert codes.shape == (K, math.ceil(samples / SPF)) == (K, codec.num_frames(samples))
    assert 0 <= int(codes.min()) and int(codes.max()) < C.CODEBOOK_SIZE
    wav = codec.decode(codes)
    assert wav.dtype == torch.float32 and wav.shape == (codes.shape[1] * SPF,)


def test_codes_vary_on_every_level(codec):
    # fresh moshi codebooks are all zero (every code 0 = CSM's end-of-audio frame): not here
    codes = codec.encode(speechlike(2.0), SR)
    assert all(row.unique().numel() > 1 for row in codes)


def test_tiny_is_seeded_and_leaves_the_global_rng_alone(codec):
    state = torch.random.get_rng_state()
    again = load_codec("tiny", device="cpu").mimi.state_dict()        # seed 0, as `codec`
    assert torch.equal(torch.random.get_rng_state(), state)
    first = codec.mimi.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = load_codec("tiny", device="cpu", seed=1).mimi.state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_input_kinds_agree(codec):
    x = speechlike(0.5)
    ref = codec.encode(x, SR)
    assert torch.equal(codec.encode(x.numpy(), SR), ref)                    # numpy
    assert torch.equal(codec.encode(x[None], SR), ref)                      # [1, T]
    assert torch.equal(codec.encode(torch.stack([x, x]), SR), ref)          # stereo -> mono
    pcm = (x.clamp(-1, 1) * 32767).round().to(torch.int16)
    assert torch.equal(codec.encode(pcm.numpy(), SR), codec.encode(pcm / 32768.0, SR))
    assert torch.equal(codec.encode(x.double(), float(SR)), ref)            # float64, 24000.0


def test_other_rates_are_resampled_first(codec):
    x = speechlike(0.5, rate=44_100)
    codes = codec.encode(x, 44_100)
    assert codes.shape == (K, math.ceil(round(x.shape[0] * SR / 44_100) / SPF))
    assert prepare_audio(x, 44_100).shape[0] == round(x.shape[0] * SR / 44_100)


def test_bitrate(codec):
    assert codec.bitrate() == CFG.frame_rate * K * 11 == 4400
    assert codec.bitrate(8) == 1100


# ------------------------------------------------------------------ RVQ prefixes

@pytest.mark.parametrize("n", [1, 2, 5, 31, 32])
def test_decoding_n_levels_equals_dropping_the_levels_above(codec, n):
    codes = codec.encode(speechlike(0.5), SR)
    wav = codec.decode(codes, num_codebooks=n)
    assert torch.equal(wav, codec.decode(codes[:n]))
    assert torch.equal(wav, codec.decode_levels(codes, range(n)))


def test_decode_levels_any_subset_and_batches(codec):
    codes = codec.encode(speechlike(0.5), SR)
    semantic, acoustic = codec.decode_levels(codes, [0]), codec.decode_levels(codes, range(1, K))
    assert semantic.shape == acoustic.shape == (codes.shape[1] * SPF,)
    assert not torch.allclose(semantic, acoustic)
    batch = torch.stack([codes, codes.flip(-1)])                             # [2, K, F]
    out = codec.decode(batch)
    assert out.shape == (2, codes.shape[1] * SPF)
    assert torch.allclose(out[1], codec.decode(codes.flip(-1)), atol=1e-6)
    assert codec.decode(codes[:, :0]).shape == (0,)                          # no frames


def test_more_levels_get_closer_to_the_full_decode(codec):
    x = speechlike(1.0)
    codes = codec.encode(x, SR)
    full = codec.decode(codes)
    errors = [mel_distance(full, codec.decode(codes, n)) for n in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]


# ------------------------------------------------------------------ streaming

@pytest.mark.parametrize("chunk_frames", [1, 3])
def test_streaming_encode_equals_one_shot(codec, chunk_frames):
    x = speechlike(0.9)                                      # 21600 samples: a partial frame
    ref = codec.encode(x, SR)
    chunks = list(codec.encode_stream(x, SR, chunk_frames=chunk_frames))
    assert all(c.shape[1] <= chunk_frames for c in chunks)
    assert torch.equal(torch.cat(chunks, dim=1), ref)


@pytest.mark.parametrize("chunk_frames", [1, 4])
def test_streaming_decode_equals_one_shot(codec, chunk_frames):
    codes = codec.encode(speechlike(0.9), SR)
    pieces = list(codec.decode_stream(codes, chunk_frames=chunk_frames))
    assert [p.shape[0] for p in pieces[:-1]] == [chunk_frames * SPF] * (len(pieces) - 1)
    torch.testing.assert_close(torch.cat(pieces), codec.decode(codes), atol=1e-5, rtol=0)


def test_stream_buffers_ragged_chunks_and_sessions_are_independent(codec):
    x = speechlike(0.9)
    ref = codec.encode(x, SR)
    first, second = codec.stream(), codec.stream()
    got_first, got_second, start = [], [], 0
    for size in [1000, 3000, 1, 5000, 7000]:                 # interleave two sessions
        got_first.append(first.encode(x[start:start + size]))
        got_second.append(second.encode(x[start:start + size]))
        start += size
    got_first += [first.encode(x[start:]), first.flush()]
    got_second += [second.encode(x[start:]), second.flush()]
    assert torch.equal(torch.cat(got_first, dim=1), ref)
    assert torch.equal(torch.cat(got_second, dim=1), ref)


def test_an_abandoned_stream_does_not_leak_state(codec):
    codes = codec.encode(speechlike(0.5), SR)
    before = codec.decode(codes)
    gen = codec.decode_stream(codes)
    next(gen)                                                # stop halfway
    assert not codec.mimi.is_streaming
    assert torch.equal(codec.decode(codes), before)
    torch.testing.assert_close(torch.cat(list(codec.decode_stream(codes))), codec.decode(codes),
                               atol=1e-5, rtol=0)


# ------------------------------------------------------------------ quality measures

def test_quality_measures():
    x = speechlike(1.0)
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert mel_distance(x, x) == 0
    assert mel_distance(x, x + noise) < mel_distance(x, x + 4 * noise)
    assert si_sdr(x, x) > 100
    assert si_sdr(x, 0.5 * x) > 100                         # scale-invariant
    expected = 10 * math.log10(float(x.pow(2).sum() / noise.pow(2).sum()))
    assert abs(si_sdr(x, x + noise) - expected) < 0.5
    assert si_sdr(x, torch.cat([x, torch.zeros(SPF)])) > 100  # compares the overlap
    with pytest.raises(ValueError, match="silent"):
        si_sdr(torch.zeros(SR), x)


# ------------------------------------------------------------------ loading "real" Mimi

@pytest.fixture
def tiny_structure(monkeypatch):
    """Make moshi's default Mimi config the tiny one, so a tiny checkpoint loads as real."""
    from moshi.models import loaders
    monkeypatch.setattr(loaders, "_mimi_config", tiny_mimi_config())
    monkeypatch.delenv("CSM_NB_MIMI", raising=False)


def save_tiny_checkpoint(folder, seed=7):
    return save_state(folder / MIMI_FILE, build_random_mimi(tiny_mimi_config(), seed=seed))


def assert_loaded(codec, state, mode="real"):
    assert codec.mode == mode and codec.dtype == torch.float32
    loaded = codec.mimi.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert codec.encode(speechlike(0.2), SR).shape == (K, 3)


def test_real_from_a_folder_laid_out_like_the_moshi_repo(tmp_path, tiny_structure):
    folder = tmp_path / MIMI_REPO
    state = save_tiny_checkpoint(folder)
    assert_loaded(load_codec("real", device="cpu", source=folder), state)
    assert_loaded(load_codec("real", device="cpu", source=folder / MIMI_FILE), state)


def test_real_from_the_env_variable(tmp_path, tiny_structure, monkeypatch):
    state = save_tiny_checkpoint(tmp_path)
    monkeypatch.setenv("CSM_NB_MIMI", str(tmp_path))
    assert_loaded(load_codec("real", device="cpu"), state)
    assert_loaded(load_codec("auto", device="cpu"), state)


def fake_hub_cache(root, commit="0123456789abcdef0123456789abcdef01234567"):
    return save_tiny_checkpoint(hub_snapshot(root, MIMI_REPO, commit))


def test_real_through_an_offline_hub_cache(tmp_path, tiny_structure, monkeypatch):
    state = fake_hub_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_loaded(load_codec("real", device="cpu"), state)


def test_offline_and_not_cached_says_how_to_fix(tmp_path, tiny_structure, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(C.MimiUnavailable, match="CSM_NB_MIMI") as err:
        load_codec("real", device="cpu")
    assert "huggingface-cli download" in str(err.value) and "offline" in str(err.value)
    codec = load_codec("auto", device="cpu")                   # falls back, loudly
    assert codec.mode == "toy" and "TOY MODE" in capsys.readouterr().err


def test_bad_sources(tmp_path, tiny_structure):
    with pytest.raises(C.MimiUnavailable, match="folder without"):
        load_codec("real", device="cpu", source=tmp_path)
    with pytest.raises(C.MimiUnavailable, match="does not exist"):
        load_codec("real", device="cpu", source=tmp_path / "nope.safetensors")
    pickle = tmp_path / "mimi.pt"
    pickle.write_bytes(b"not really")
    with pytest.raises(ValueError, match="never unpickles"):
        load_codec("real", device="cpu", source=pickle)
    wrong = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(wrong))
    with pytest.raises(ValueError, match="not a Mimi checkpoint"):
        load_codec("real", device="cpu", source=wrong)
    with pytest.raises(ValueError, match="source"):
        load_codec("tiny", source=tmp_path)
    with pytest.raises(ValueError, match="mode"):
        load_codec("huge")
    with pytest.raises(ValueError, match="dtype"):
        load_codec("tiny", dtype=torch.int32)


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("wav, match", [
    (np.zeros(0, dtype=np.float32), "empty"),
    (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),
    (np.array([0.1, np.inf], dtype=np.float32), "NaN/inf"),
    (np.zeros((3, 100), dtype=np.float32), "3 channels"),
    (np.zeros((100, 2), dtype=np.float32), r"wav\.T"),
    (np.zeros((1, 1, 100), dtype=np.float32), "shape"),
])
def test_bad_audio_raises_value_error(codec, wav, match):
    with pytest.raises(ValueError, match=match):
        codec.encode(wav, SR)


@pytest.mark.parametrize("wav", [
    np.zeros(10, dtype=bool), np.zeros(10, dtype=np.complex64), np.array(["a", "b"]),
    torch.zeros(10, dtype=torch.int64), [0.0, 0.1], "speech.wav",
])
def test_wrong_kinds_of_audio_raise_type_error(codec, wav):
    with pytest.raises(TypeError, match="wav"):
        codec.encode(wav, SR)


@pytest.mark.parametrize("rate, error", [
    (0, ValueError), (-24000, ValueError), (22050.5, ValueError), (float("nan"), ValueError),
    ("24000", TypeError), (True, TypeError), (None, TypeError),
])
def test_bad_sample_rates(codec, rate, error):
    with pytest.raises(error, match="sample_rate"):
        codec.encode(speechlike(0.1), rate)


@pytest.mark.parametrize("codes, error, match", [
    (torch.zeros(K, 3), TypeError, "dtype"),
    (torch.zeros(5, dtype=torch.long), ValueError, "shape"),
    (torch.zeros(K + 1, 3, dtype=torch.long), ValueError, "shape"),
    (torch.full((K, 3), 2048), ValueError, "0..2047"),
    (torch.full((K, 3), -1), ValueError, "0..2047"),
    ([[1, 2]], TypeError, "codes"),
])
def test_bad_codes(codec, codes, error, match):
    with pytest.raises(error, match=match):
        codec.decode(codes)


@pytest.mark.parametrize("n, error", [(0, ValueError), (K + 1, ValueError), (1.5, TypeError),
                                      (True, TypeError), ("4", TypeError)])
def test_bad_num_codebooks(codec, n, error):
    codes = torch.zeros(K, 2, dtype=torch.long)
    with pytest.raises(error, match="num_codebooks"):
        codec.decode(codes, num_codebooks=n)
    with pytest.raises(error, match="num_codebooks"):
        codec.bitrate(n)


def test_bad_levels_and_chunks(codec):
    codes = torch.zeros(8, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="num_codebooks=9"):    # only 8 levels given
        codec.decode(codes, num_codebooks=9)
    for levels in ([], [K], [-1]):
        with pytest.raises(ValueError, match="levels"):
            codec.decode_levels(torch.zeros(K, 2, dtype=torch.long), levels)
    with pytest.raises(TypeError, match="levels"):
        codec.decode_levels(codes, 3)
    with pytest.raises(ValueError, match="chunk_frames"):
        codec.encode_stream(speechlike(0.1), SR, chunk_frames=0)
    with pytest.raises(TypeError, match="chunk_frames"):
        codec.decode_stream(codes, chunk_frames=1.0)
