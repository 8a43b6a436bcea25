"""The toy codec: Mimi's frame layout, RVQ that refines level by level, a bounded round trip.

The round-trip bound (mel distance, dB, csm_nb.audio.mimi.mel_distance) on the shipped clip
csm_nb/data/speech.wav, with 8 levels of 32 centroids learned from that clip:

    Griffin-Lim from the exact, unquantised frame vectors   2.16   (no codebook can do better)
    8 levels (measured 2.63)                           bound 3.5
    1 level                                                 6.38
    unrelated speech (voice B of the dataset) / silence    19.4 / 31.9

3.5 dB keeps the round trip within 1.35 dB of what Griffin-Lim itself allows and far from any
other sound, while leaving room for numerical drift across machines (the codes are exact;
the audio goes through floating-point STFTs).
"""

import math

import pytest
import torch

from csm_nb import data as csm_nb_data
from csm_nb.audio.metrics import mel_distance
from csm_nb.audio.signal import load_audio
from csm_nb.audio.toy_codec import ToyCodec, kmeans, nearest
from csm_nb.training import load_dataset

ASSETS = csm_nb_data.FOLDER
ROUND_TRIP_BOUND_DB = 3.5
LEVELS = [1, 2, 4, 8]


@pytest.fixture(scope="module")
def clip():
    wav, rate = load_audio(ASSETS / "speech.wav")
    assert rate == 24_000
    return torch.from_numpy(wav[0])


@pytest.fixture(scope="module")
def toy(clip):
    return ToyCodec().fit([clip], num_codebooks=max(LEVELS), codebook_size=32, seed=0)


def test_codes_have_mimi_frame_layout(toy, clip):
    codes = toy.encode(clip, 24_000)
    F = math.ceil(clip.shape[0] / 1920)
    assert codes.shape == (8, F) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    assert (toy.sample_rate, toy.frame_rate, toy.samples_per_frame) == (24_000, 12.5, 1920)
    assert toy.bitrate(8) == 12.5 * 8 * 5                     # 5 bits per code of 32
    # RVQ's prefix property: encoding with n levels gives the first n rows
    for n in (1, 3):
        assert torch.equal(toy.quantize(toy.features(clip, 24_000), n), codes[:n])
    # Resampling happens inside: the same clip at 48 kHz gives the same number of frames
    wav48 = torch.nn.functional.interpolate(clip[None, None], scale_factor=2)[0, 0]
    assert toy.encode(wav48, 48_000).shape == codes.shape


def test_decode_shapes(toy, clip):
    codes = toy.encode(clip, 24_000)[:, :5]
    wav = toy.decode(codes)
    assert wav.shape == (5 * 1920,) and wav.dtype == torch.float32
    both = toy.decode(torch.stack([codes, codes]), num_codebooks=2)
    assert both.shape == (2, 5 * 1920)
    assert torch.equal(both[0], both[1])                       # Griffin-Lim is seeded
    assert toy.decode(codes[:, :0]).shape == (0,)


def test_round_trip_error_is_bounded_and_falls_with_levels(toy, clip):
    codes = toy.encode(clip, 24_000)
    errors = [mel_distance(clip, toy.decode(codes, n)) for n in LEVELS]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < ROUND_TRIP_BOUND_DB, errors
    feature_errors = toy.quantization_error(clip, 24_000, LEVELS)
    assert all(a > b for a, b in zip(feature_errors, feature_errors[1:])), feature_errors


def test_fit_is_deterministic(toy, clip):
    again = ToyCodec().fit([clip], num_codebooks=8, codebook_size=32, seed=0)
    assert torch.equal(again.codebooks, toy.codebooks) and again.floor_db == toy.floor_db
    other = ToyCodec().fit([clip], num_codebooks=8, codebook_size=32, seed=1)
    assert not torch.equal(other.codebooks, toy.codebooks)


def test_dataset_never_encodes_the_stop_frame():
    data, rate = load_dataset(ASSETS / "two_voices")
    codec = ToyCodec().fit([u.audio for u in data], rate, num_codebooks=8, codebook_size=128)
    for u in data:
        codes = codec.encode(u.audio, rate)
        assert not bool((codes == 0).all(0).any()), u.file


def test_avoid_stop_frame_relabels_the_last_level():
    codec = ToyCodec(n_mels=2, hops_per_frame=1)
    # Two levels of 3 centroids in 2-D; x = (1, 1) takes centroid 0 at both levels.
    codec.codebooks = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]],
                                    [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]])
    codec.num_codebooks, codec.codebook_size, codec.floor_db = 2, 3, -100.0
    x = torch.tensor([[1.0, 1.0], [5.5, 5.0]])
    assert torch.equal(codec.quantize(x), torch.tensor([[0, 1], [0, 1]]))
    codec._avoid_stop_frame(x)
    # label 1 of the last level was used by a frame with a non-zero prefix only: 0 <-> 1
    assert torch.equal(codec.codebooks[1], torch.tensor([[0.5, 0.0], [0.0, 0.0], [0.0, 0.5]]))
    assert torch.equal(codec.quantize(x), torch.tensor([[0, 1], [1, 0]]))


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centres[:, None] + 0.1 * torch.randn(3, 50, 2, generator=g)).reshape(-1, 2)
    found = kmeans(x, 3, 10, torch.Generator().manual_seed(0))
    order = nearest(centres, found)
    assert sorted(order.tolist()) == [0, 1, 2]
    assert torch.allclose(found[order], centres, atol=0.1)


def test_bad_input(toy, clip):
    with pytest.raises(RuntimeError, match="fit"):
        ToyCodec().encode(clip, 24_000)
    with pytest.raises(ValueError, match="codebook_size"):
        ToyCodec().fit([clip], codebook_size=1)
    with pytest.raises(ValueError, match="num_codebooks"):
        ToyCodec().fit([clip], num_codebooks=0)
    with pytest.raises(ValueError, match="fewer than"):
        ToyCodec().fit([clip[:1920]], codebook_size=64)
    with pytest.raises(TypeError, match="clips"):
        ToyCodec().fit("speech.wav")
    with pytest.raises(ValueError, match="hops_per_frame"):
        ToyCodec(hops_per_frame=7)
    with pytest.raises(ValueError, match="outside"):
        toy.decode(torch.full((8, 2), 32))
    with pytest.raises(TypeError, match="integer"):
        toy.decode(torch.zeros(8, 2))
    with pytest.raises(ValueError, match="K <= 8"):
        toy.decode(torch.zeros(9, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_codebooks"):
        toy.decode(torch.zeros(8, 2, dtype=torch.int64), num_codebooks=9)
