"""Notebook 02's new teaching aids: the picture of the two transformers, the depth-loop
exercise (accepts a right loop, names each classic slip, never crashes on junk), the cache
savings harness, the closing quiz, and hints and answer cells for every exercise."""

import pytest
import torch
from matplotlib.figure import Figure

import csm_nb
from csm_nb.core import sampling
from csm_nb.teach import backbone as lesson
from csm_nb.teach.backbone_depth import _MISTAKES, _loop
from csm_nb.teach.common import AnswerRejected
from helpers import micro_config
from csm_nb.reference.weights import random_csm


@pytest.fixture(scope="module")
def model():
    m = random_csm(micro_config(width=64, heads=4, max_seq_len=64, num_codebooks=8,
                                audio_vocab_size=67), seed=5)
    m.setup_caches(1)
    return m


@pytest.fixture(scope="module")
def last_h(model):
    return torch.randn(1, model.config.backbone.embed_dim,
                       generator=torch.Generator().manual_seed(0))


def assert_renders(fig):
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(b"\x89PNG")


@pytest.mark.parametrize("config", [None, csm_nb.CSMConfig.tiny()])
def test_two_transformers_picture_renders_with_the_configs_sizes(config):
    fig = lesson.plot_two_transformers(config)
    assert_renders(fig)
    K = (config or csm_nb.CSMConfig.csm_1b()).num_codebooks
    assert f"{K} codes per" in fig._suptitle.get_text()


def right_loop(model, last_h, temperature, topk, g):
    namespace = {"sampling": sampling, "torch": torch}
    exec(lesson.SOLUTIONS["depth_loop"], namespace)
    return namespace["frame_codes"](model, last_h, temperature, topk, g)


def test_depth_loop_accepts_the_solution(model, last_h, capsys):
    with torch.inference_mode():
        assert lesson.check_depth_loop(right_loop, model, last_h) is True
    assert "Correct!" in capsys.readouterr().out


@pytest.mark.parametrize("hint", list(_MISTAKES))
def test_depth_loop_names_each_classic_slip(model, last_h, capsys, hint):
    def slipped(m, h, temperature, topk, g):
        return _loop(m, h, temperature, topk, g, **_MISTAKES[hint])[0]

    with torch.inference_mode():
        assert lesson.check_depth_loop(slipped, model, last_h) is False
    assert hint in capsys.readouterr().out


def test_depth_loop_blank_junk_and_strict(model, last_h, capsys, monkeypatch):
    def blank(m, h, temperature, topk, g):
        ...

    with torch.inference_mode():
        assert lesson.check_depth_loop(blank, model, last_h) is None
        assert "Not answered yet" in capsys.readouterr().out
        assert lesson.check_depth_loop(None, model, last_h) is None
        assert "Not answered yet" in capsys.readouterr().out
        for junk, said in ((lambda *a: 1 / 0, "ZeroDivisionError"),
                           (lambda *a: torch.zeros(3, dtype=torch.long), "8 integer codes"),
                           (lambda *a: torch.zeros(1, 8, dtype=torch.long),
                            "first difference at codebook")):
            assert lesson.check_depth_loop(junk, model, last_h) is False
            assert said in capsys.readouterr().out
        with pytest.raises(TypeError, match="frame_codes"):
            lesson.check_depth_loop(3, model, last_h)
        monkeypatch.setenv("CSM_NB_STRICT_CHECKS", "1")
        with pytest.raises(AnswerRejected):
            lesson.check_depth_loop(lambda *a: torch.zeros(8, dtype=torch.long), model, last_h)


def test_cache_savings_table_and_figure(model, capsys):
    fig = lesson.measure_cache_savings(model, repeats=1)
    out = capsys.readouterr().out
    assert_renders(fig)
    assert "16 rows before" in out and "63 rows before" in out and "operations dispatched" in out


def test_quiz_right_partial_wrong_and_blank(capsys, monkeypatch):
    right = lesson.QUIZ.right_answers()
    assert lesson.check_quiz(right) is True
    assert "6 of 6" in capsys.readouterr().out
    partial = {**right, 2: None, 4: "a", 5: "z"}
    assert lesson.check_quiz(partial) is False
    out = capsys.readouterr().out
    assert "2: not answered yet" in out and "4: not a. that is T > 1." in out
    assert "'z' is not a choice" in out and "3 of 6 right" in out
    assert lesson.check_quiz({n: None for n in right}) is None
    assert "Not answered yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="dict"):
        lesson.check_quiz(["a", "b"])
    monkeypatch.setenv("CSM_NB_STRICT_CHECKS", "1")
    with pytest.raises(AnswerRejected):
        lesson.check_quiz({n: None for n in right})

