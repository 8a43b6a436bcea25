"""Notebook 01's checkers (csm_nb.teach.codec): right answers pass, wrong ones fail kindly,
wrong kinds raise."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from csm_nb.teach import codec as lesson


def verdict(capsys, ok, check, *args, **kwargs):
    """Run a checker, assert its return value, return what it printed."""
    assert check(*args, **kwargs) is ok
    return capsys.readouterr().out


@pytest.mark.parametrize("check", [lesson.check_bitrate, lesson.check_num_frames,
                                   lesson.check_rvq_codes, lesson.check_rvq_encoder,
                                   lesson.check_keep_one_level])
@pytest.mark.parametrize("blank", [None, ...])
def test_blanks_are_not_answered_yet(capsys, check, blank):
    assert "Not answered yet" in verdict(capsys, False, check, blank)


def test_bitrate(capsys):
    assert "4400" in verdict(capsys, True, lesson.check_bitrate, 4400)
    verdict(capsys, True, lesson.check_bitrate, np.float32(4400.0))
    verdict(capsys, True, lesson.check_bitrate, torch.tensor(4400))
    verdict(capsys, True, lesson.check_bitrate, 1100, num_codebooks=8)
    assert "kbps" in verdict(capsys, False, lesson.check_bitrate, 4.4)
    assert "11 bits" in verdict(capsys, False, lesson.check_bitrate, 12.5 * 32 * 2048)
    assert "bits" in verdict(capsys, False, lesson.check_bitrate, 400)
    assert "multiply" in verdict(capsys, False, lesson.check_bitrate, 123)
    for wrong_kind in ("4400", [4400], True):
        with pytest.raises(TypeError, match="bitrate"):
            lesson.check_bitrate(wrong_kind)


def test_num_frames(capsys):
    verdict(capsys, True, lesson.check_num_frames, 38)
    assert "round up" in verdict(capsys, False, lesson.check_num_frames, 37)
    assert "whole numbers" in verdict(capsys, False, lesson.check_num_frames, 37.5)
    verdict(capsys, True, lesson.check_num_frames, 13, seconds=1.0)
    with pytest.raises(TypeError, match="num_frames"):
        lesson.check_num_frames("38")


def test_rvq_codes(capsys):
    toy = lesson.rvq_toy_problem()
    right = lesson.rvq_encode_reference(toy["x"], toy["codebooks"])
    assert right == [1, 1]
    verdict(capsys, True, lesson.check_rvq_codes, right)
    verdict(capsys, True, lesson.check_rvq_codes, np.array(right))
    assert "residual" in verdict(capsys, False, lesson.check_rvq_codes, [1, 0])  # x, not residual
    assert "level 0" in verdict(capsys, False, lesson.check_rvq_codes, [3, 1])
    assert "one code per codebook" in verdict(capsys, False, lesson.check_rvq_codes, [1])
    with pytest.raises(TypeError, match="codes"):
        lesson.check_rvq_codes("one, one")


def test_rvq_encoder(capsys):
    verdict(capsys, True, lesson.check_rvq_encoder, lesson.rvq_encode_reference)

    def not_residual(x, books):                # quantises x itself at every level
        return [int(np.argmin(((np.asarray(b) - x) ** 2).sum(1))) for b in books]

    def broken(x, books):
        raise IndexError("oops")

    assert "Subtract" in verdict(capsys, False, lesson.check_rvq_encoder, not_residual)
    assert "IndexError" in verdict(capsys, False, lesson.check_rvq_encoder, broken)
    assert "returned None" in verdict(capsys, False, lesson.check_rvq_encoder, lambda x, b: None)
    with pytest.raises(TypeError, match="function"):
        lesson.check_rvq_encoder([0, 1])


def test_keep_one_level(capsys):
    assert "semantic" in verdict(capsys, True, lesson.check_keep_one_level, 0)
    verdict(capsys, False, lesson.check_keep_one_level, 31)
    with pytest.raises(TypeError, match="level"):
        lesson.check_keep_one_level("zero")


def test_solutions(capsys):
    for name in ("bitrate", "num_frames", "rvq_codes", "rvq_encoder", "keep_one_level"):
        lesson.solution(name)
        assert capsys.readouterr().out.strip()
    with pytest.raises(ValueError, match="bitrate"):
        lesson.solution("nope")


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_reference_rvq_picks_the_nearest_entry_to_each_residual(dim, levels, seed):
    rng = np.random.default_rng(seed)
    books = [rng.normal(size=(6, dim)) for _ in range(levels)]
    x = rng.normal(size=dim)
    codes = lesson.rvq_encode_reference(x, books)
    residual = x
    for book, code in zip(books, codes):
        distances = ((book - residual) ** 2).sum(1)
        assert distances[code] == distances.min()
        residual = residual - book[code]
