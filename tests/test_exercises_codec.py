"""Notebook 01's checkers (csm_nb.teach.codec): right answers pass, wrong ones fail kindly and
name the likely mistake, an untouched cell is "not answered yet", wrong kinds raise; every
exercise has a hint, a worked solution and a right answer cell."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from csm_nb.teach import codec as lesson

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_codec.ipynb"
EXERCISES = ("num_frames", "bitrate", "rvq_codes", "rvq_encoder", "rvq_decoder", "quiz")
BLANK_QUIZ = {n: None for n in range(1, 6)}
RIGHT_QUIZ = {1: "a", 2: "b", 3: "a", 4: "b", 5: "a"}


def verdict(capsys, ok, check, *args, **kwargs):
    """Run a checker, assert its return value, return what it printed."""
    assert check(*args, **kwargs) is ok
    return capsys.readouterr().out


def placeholder_encoder(x, codebooks):
    """The notebook's template, untouched."""
    ...


def placeholder_decoder(codes, codebooks, n):
    """The notebook's template, untouched."""
    ...


def rvq_decode(codes, codebooks, n):
    return sum(np.asarray(book)[c] for book, c in zip(codebooks[:n], codes[:n]))


@pytest.mark.parametrize("check", [lesson.check_bitrate, lesson.check_num_frames,
                                   lesson.check_rvq_codes, lesson.check_rvq_encoder,
                                   lesson.check_rvq_decoder, lesson.check_quiz])
@pytest.mark.parametrize("blank", [None, ...])
def test_blanks_are_not_answered_yet(capsys, check, blank):
    assert "Not answered yet" in verdict(capsys, None, check, blank)


@pytest.mark.parametrize("check, template", [(lesson.check_rvq_encoder, placeholder_encoder),
                                             (lesson.check_rvq_decoder, placeholder_decoder),
                                             (lesson.check_quiz, BLANK_QUIZ)])
def test_the_untouched_templates_are_not_answered_yet(capsys, check, template):
    out = verdict(capsys, None, check, template)
    assert "Not answered yet" in out and "Not yet." not in out


def test_the_templates_in_the_notebook_are_the_ones_tested():
    """The untouched answer cells of 01 are what the checkers call "not answered yet"."""
    cells = {c["metadata"].get("exercise"): "".join(c["source"])
             for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]}
    assert {f"codec.{name}" for name in EXERCISES} <= set(cells)
    for name in ("rvq_encoder", "rvq_decoder"):
        tree = ast.parse(cells[f"codec.{name}"])
        fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
        body = fn.body[1:] if isinstance(fn.body[0].value, ast.Constant) and isinstance(
            fn.body[0].value.value, str) else fn.body           # skip the docstring
        assert [ast.unparse(n) for n in body] == ["..."], name
    assert "None" in cells["codec.quiz"] and "lesson.check_quiz(answers)" in cells["codec.quiz"]


def test_a_wrong_answer_offers_the_hint_before_the_solution(capsys):
    out = verdict(capsys, False, lesson.check_bitrate, 123)
    assert out.index('lesson.hint("bitrate")'.replace('"', "'")) < out.index("lesson.solution(")


def test_bitrate(capsys):
    assert "4400" in verdict(capsys, True, lesson.check_bitrate, 4400)
    verdict(capsys, True, lesson.check_bitrate, np.float32(4400.0))
    verdict(capsys, True, lesson.check_bitrate, torch.tensor(4400))
    verdict(capsys, True, lesson.check_bitrate, 1100, num_codebooks=8)
    assert "kbps" in verdict(capsys, False, lesson.check_bitrate, 4.4)
    assert "log2" in verdict(capsys, False, lesson.check_bitrate, 12.5 * 32 * 2048)
    assert "bits" in verdict(capsys, False, lesson.check_bitrate, 400)
    assert "one codebook" in verdict(capsys, False, lesson.check_bitrate, 137.5)
    assert "multiply" in verdict(capsys, False, lesson.check_bitrate, 123)
    for wrong_kind in ("4400", [4400], True):
        with pytest.raises(TypeError, match="bitrate"):
            lesson.check_bitrate(wrong_kind)


def test_num_frames(capsys):
    verdict(capsys, True, lesson.check_num_frames, 38)
    assert "round up" in verdict(capsys, False, lesson.check_num_frames, 37)
    assert "whole numbers" in verdict(capsys, False, lesson.check_num_frames, 37.5)
    assert "1920 samples" in verdict(capsys, False, lesson.check_num_frames, 3)
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
    assert "count from 0" in verdict(capsys, False, lesson.check_rvq_codes, [2, 2])  # 1-based
    with pytest.raises(TypeError, match="codes"):
        lesson.check_rvq_codes("one, one")


def test_rvq_encoder(capsys):
    verdict(capsys, True, lesson.check_rvq_encoder, lesson.rvq_encode_reference)

    def not_residual(x, books):                # quantises x itself at every level
        return [int(np.argmin(((np.asarray(b) - x) ** 2).sum(1))) for b in books]

    def farthest(x, books):                    # argmax instead of argmin
        return [int(np.argmax(((np.asarray(b) - x) ** 2).sum(1))) for b in books]

    def broken(x, books):
        raise IndexError("oops")

    def forgot_return(x, books):
        codes = [int(np.argmin(((np.asarray(b) - x) ** 2).sum(1))) for b in books]  # noqa: F841

    assert "residual" in verdict(capsys, False, lesson.check_rvq_encoder, not_residual)
    assert "nearest" in verdict(capsys, False, lesson.check_rvq_encoder, farthest)
    assert "IndexError" in verdict(capsys, False, lesson.check_rvq_encoder, broken)
    out = verdict(capsys, False, lesson.check_rvq_encoder, forgot_return)
    assert "returned None" in out and "Not answered" not in out
    assert "one code per" in verdict(capsys, False, lesson.check_rvq_encoder, lambda x, b: [0])
    with pytest.raises(TypeError, match="function"):
        lesson.check_rvq_encoder([0, 1])


def test_rvq_decoder(capsys):
    verdict(capsys, True, lesson.check_rvq_decoder, lesson.rvq_decode_reference)
    verdict(capsys, True, lesson.check_rvq_decoder, rvq_decode)
    mistakes = {
        "summed every level": lambda codes, books, n: rvq_decode(codes, books, len(books)),
        "one level too many": lambda codes, books, n: rvq_decode(codes, books, n + 1),
        "alone": lambda codes, books, n: np.asarray(books[n - 1])[codes[n - 1]],
        "one vector": lambda codes, books, n: [np.asarray(b)[c] for b, c in zip(books, codes)],
        "ZeroDivisionError": lambda codes, books, n: 1 / 0,
        "returned None": lambda codes, books, n: print(codes),
        "codebooks[k][codes[k]]": lambda codes, books, n: -rvq_decode(codes, books, n),
    }
    for why, fn in mistakes.items():
        assert why in verdict(capsys, False, lesson.check_rvq_decoder, fn), why
    with pytest.raises(TypeError, match="function"):
        lesson.check_rvq_decoder(np.zeros(3))


def test_quiz(capsys):
    assert "5 of 5" in verdict(capsys, True, lesson.check_quiz, RIGHT_QUIZ)
    loose = {**RIGHT_QUIZ, 2: " B) "}                                   # forgiving about form
    verdict(capsys, True, lesson.check_quiz, loose)
    out = verdict(capsys, False, lesson.check_quiz, {**RIGHT_QUIZ, 1: "c", 3: None})
    assert "3 of 5 right" in out and "3: not answered yet" in out
    assert "1: not c. the last level is the finest acoustic detail" in out   # the likely mistake
    out = verdict(capsys, False, lesson.check_quiz, {**RIGHT_QUIZ, 3: "b", 4: "c"})
    assert "section 9" in out and "no network" in out
    assert out.index("3: not b") < out.index("4: not c")
    out = verdict(capsys, False, lesson.check_quiz, {**RIGHT_QUIZ, 2: "d"})
    assert "'d' is not a choice" in out
    with pytest.raises(TypeError, match="dict"):
        lesson.check_quiz(["b", "a"])
    lesson.show_quiz()
    shown = capsys.readouterr().out
    assert shown.startswith("1. If you could keep only one") and "   b) codebook 1" in shown



@pytest.mark.parametrize("name", EXERCISES)
def test_each_right_answer_cell_passes_its_checker_when_run(capsys, monkeypatch, name):
    """What `runner --solutions` proves in the notebook, here in a second: strict checks on."""
    import math

    monkeypatch.setenv("CSM_NB_STRICT_CHECKS", "1")
    scope = {"lesson": lesson, "np": np, "math": math}
    exec(lesson.SOLUTIONS.answer_cell(name), scope)
    assert "Correct!" in capsys.readouterr().out


def test_solutions_name_unknown_exercises():
    with pytest.raises(ValueError, match="bitrate"):
        lesson.solution("nope")
    with pytest.raises(ValueError, match="rvq_encoder"):
        lesson.hint("keep_one_level")


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_reference_rvq_picks_the_nearest_entry_and_decoding_leaves_the_residual(dim, levels,
                                                                                  seed):
    rng = np.random.default_rng(seed)
    books = [rng.normal(size=(6, dim)) for _ in range(levels)]
    x = rng.normal(size=dim)
    codes = lesson.rvq_encode_reference(x, books)
    residual = x
    for n, (book, code) in enumerate(zip(books, codes), start=1):
        distances = ((book - residual) ** 2).sum(1)
        assert distances[code] == distances.min()
        residual = residual - book[code]
        # x - x_hat_n = r_n: what the first n levels miss is the next level's residual
        np.testing.assert_allclose(x - lesson.rvq_decode_reference(codes, books, n), residual,
                                   atol=1e-12)
