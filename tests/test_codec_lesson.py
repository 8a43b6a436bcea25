"""Notebook 01's new figures and its codec description (csm_nb.teach.codec): the picture of
Mimi, RVQ on the toy codec's frame vectors, two codecs' curves on one axis, and the lines that
say which codec is which (the mode line must match what is loaded)."""

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from csm_nb.audio.mimi_weights import load_codec
from csm_nb.core.config import FRAME_RATE, MIMI_CODEBOOKS, SAMPLE_RATE
from csm_nb.teach import codec as lesson

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_codec.ipynb"


@pytest.fixture(scope="module")
def toy():
    return load_codec("toy")


def texts(fig: Figure) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def assert_renders(fig):
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_the_picture_of_mimi_names_its_parts():
    fig = lesson.plot_mimi()
    assert_renders(fig)
    words = texts(fig)
    for part in ("encoder", "decoder", "WavLM", "codebook 0", "distilled", "causal",
                 f"codebooks 1..{MIMI_CODEBOOKS - 1}", "same latent"):
        assert part in words, part


def test_frame_vectors_unfold_into_log_mel_images(toy):
    clip = 0.1 * torch.randn(SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
    frames = toy.features(clip, SAMPLE_RATE).double().numpy()               # [F, D]
    books = list(toy.codebooks.double().numpy())
    codes = np.array([lesson.rvq_encode_reference(f, books) for f in frames]).T
    np.testing.assert_array_equal(codes, toy.encode(clip, SAMPLE_RATE).numpy())
    approx = {n: np.stack([lesson.rvq_decode_reference(c, books, n) for c in codes.T])
              for n in (1, len(books))}
    fig = lesson.plot_frame_vectors(frames, approx, toy.n_mels, toy.frame_rate)
    assert_renders(fig)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    hops = frames.shape[1] // toy.n_mels
    assert images[0].get_array().shape == (toy.n_mels, frames.shape[0] * hops)
    assert images[0].get_extent()[1] == pytest.approx(frames.shape[0] / FRAME_RATE)
    assert not any(ax.get_visible() for ax in fig.axes[3:4])           # the spare panel


def test_codec_comparison_ticks_every_codec_levels():
    curves = {"mimi": ([1, 2, 4, 8, 16, 32], [9.0] * 6, 0.1375),
              "toy": ([1, 2, 4, 8], [7.0, 6.0, 5.0, 4.0], 0.0875)}
    fig = lesson.plot_codec_comparison(curves)
    assert_renders(fig)
    assert list(fig.axes[0].get_xticks()) == [1, 2, 4, 8, 16, 32]
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [6, 4]


def test_each_codec_says_what_it_is(toy, codec, capsys):
    assert "RANDOM" in lesson.codec_summary(codec) and "noise" in lesson.codec_summary(codec)
    assert "toy codec" in lesson.codec_summary(toy)
    assert f"{toy.num_codebooks} levels x {toy.codebook_size}" in lesson.codec_summary(toy)
    real = types.SimpleNamespace(mode="real", origin="kyutai/moshiko", num_codebooks=32,
                                 codebook_size=2048, frame_rate=12.5)
    assert "official weights (kyutai/moshiko)" in lesson.codec_summary(real)
    lesson.describe_codecs(codec, toy, toy)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["mimi", "toy", "hear"]
    assert "sections 3-7 play and measure speech through toy" in lines[2]
    assert "compares it with mimi" in lines[2] and lines[2].endswith("sections 8-9 (Mimi "
                                                                     "inside, streaming) use mimi")
    lesson.describe_codecs(codec, toy, codec)                 # real mode: hear is mimi
    hear = capsys.readouterr().out.splitlines()[2]
    assert "through mimi" in hear and "RVQ runs on the toy codec" in hear
    assert "compares it with toy" in hear
    with pytest.raises(ValueError, match="codec.mode='auto'"):
        lesson.codec_summary(types.SimpleNamespace(mode="auto", num_codebooks=1,
                                                   codebook_size=2, frame_rate=12.5))


def _notebook_sections():
    """({number: title} of the numbered `## n.` headings, the intro's numbered list as
    [(number, text)]), read from the stored notebook."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    headings = {int(n): title for s in sources
                for n, title in re.findall(r"^## (\d+)\. (.+)$", s, flags=re.M)}
    intro = [(int(n), text) for n, text in re.findall(r"^(\d+)\. (.+)$", sources[0], flags=re.M)]
    return headings, intro


def test_the_intro_lists_the_sections_in_order():
    headings, intro = _notebook_sections()
    assert [n for n, _ in intro] == sorted(headings) == list(range(1, len(headings) + 1))


def test_the_codec_description_names_the_right_sections():
    headings, _ = _notebook_sections()
    first, last = lesson.HEAR_SECTIONS
    assert "frames" in headings[first] and "codebook" in headings[last]
    assert "levels" in headings[lesson.COMPARE_SECTION].lower()
    first, last = lesson.MIMI_SECTIONS
    assert "Mimi" in headings[first] and "Streaming" in headings[last]
    assert last + 1 in headings and "Quiz" in headings[last + 1]
