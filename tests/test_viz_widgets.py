"""csm_nb.teach.codec (notebook 01) and common: figures headless, players, the level mixer."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from csm_nb.core.config import FRAME_RATE, SAMPLE_RATE, SAMPLES_PER_FRAME
from csm_nb.teach import codec as lesson
from csm_nb.teach import common

SR, SPF = SAMPLE_RATE, SAMPLES_PER_FRAME


@pytest.fixture(scope="module")
def clip():
    g = torch.Generator().manual_seed(0)
    return 0.2 * torch.randn(SR, generator=g)                  # 1 s -> 13 frames


@pytest.fixture(scope="module")
def codes(codec, clip):
    return codec.encode(clip, SR)


def labels(fig):
    return {text for ax in fig.axes for text in (ax.get_xlabel(), ax.get_ylabel())}


def assert_renders(fig):
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(b"\x89PNG")             # shows itself in Jupyter


def test_code_grid_axes_are_seconds_and_codebooks(codes):
    fig = lesson.plot_code_grid(codes)
    assert_renders(fig)
    assert {"time (s)", "codebook index"} <= labels(fig)
    left, right, bottom, top = fig.axes[0].images[0].get_extent()
    assert (left, right) == (0, codes.shape[1] / FRAME_RATE)
    assert (top, bottom) == (-0.5, codes.shape[0] - 0.5)        # codebook 0 on top


def test_codebook_usage_and_entropy():
    frames = 16
    constant = torch.zeros(2, frames, dtype=torch.long)
    distinct, entropy = lesson.code_entropy(torch.cat([constant, torch.arange(frames)[None]]))
    assert distinct.tolist() == [1, 1, frames] and entropy[0] == 0
    assert math.isclose(entropy[2], math.log2(frames))
    fig = lesson.plot_codebook_usage(torch.arange(frames).repeat(3, 1))
    assert_renders(fig)
    assert "codebook index" in labels(fig)


def test_spectrogram_figures(codec, codes, clip):
    recon = {n: codec.decode(codes, n) for n in (1, 2, 4)}
    fig = lesson.plot_level_spectrograms(recon, original=clip)
    assert_renders(fig)
    assert {"time (s)", "frequency (kHz)"} <= labels(fig)
    assert [ax.get_title() for ax in fig.axes[:4]] == [
        "original", "first 1 level", "first 2 levels", "first 4 levels"]
    semantic = codec.decode_levels(codes, [0])
    assert_renders(lesson.plot_semantic_vs_acoustic(semantic, semantic, recon[4]))
    db, freqs, times = common.spectrogram_db(torch.zeros(10))      # shorter than one window
    assert db.shape == (freqs.size, times.size) and freqs[-1] == SR / 2


def test_error_vs_levels_and_other_figures(clip):
    fig = lesson.plot_error_vs_levels([1, 2, 4, 8], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert_renders(fig)
    assert len(fig.axes[0].lines[0].get_xdata()) == 4
    fig = lesson.plot_waveform_frames(clip, seconds=0.5)
    assert_renders(fig)
    assert "time (s)" in labels(fig)
    books = [np.eye(2), 0.1 * np.eye(2)]
    assert_renders(lesson.plot_rvq_2d([1.0, 0.2], books))


def test_audio_player_keeps_loudness():
    quiet = 0.01 * torch.ones(SR)
    player = lesson.audio(quiet)
    assert player.data[:4] == b"RIFF"
    assert int.from_bytes(player.data[24:28], "little") == SR   # the WAV header's rate
    # normalize=False: the int16 samples stay quiet (about 0.01 * 32767), not full scale
    samples = np.frombuffer(player.data[44:], dtype=np.int16)
    assert 0 < samples.max() < 1000
    assert lesson.audio(np.zeros(0)).data                       # empty clips still play


def test_audio_player_clips_loud_input(capsys):
    lesson.audio(np.full(100, 2.0, dtype=np.float32))
    assert "clipped" in capsys.readouterr().out


def test_players_table(clip):
    table = lesson.players({"original": clip, "<b>x</b>": clip[None]}, notes={"original": "hi"})
    assert table.data.count("<audio") == 2
    assert "&lt;b&gt;x&lt;/b&gt;" in table.data and "hi" in table.data


def test_level_mixer_renders_at_once_and_on_change(codec, codes, clip):
    box = lesson.level_mixer(codec, codes, levels=(1, 4, 32), original=clip)
    slider = box.children[0]
    assert list(slider.options) == [1, 4, 32] and slider.value == 32
    assert list(box.cache) == [32]                              # headless: first state drawn
    slider.value = 4
    assert sorted(box.cache) == [4, 32]
    assert torch.equal(box.cache[4], codec.decode(codes, 4))
    with pytest.raises(ValueError, match="levels"):
        lesson.level_mixer(codec, codes, levels=(0, 4))
