"""Exercises are checked both ways: the tests of each lesson prove its checkers reject wrong
answers; this file holds the machinery that proves they accept right ones (`make test` runs
every notebook with its answer cells filled and strict checks on) and keeps it honest."""

import ast
import json
from pathlib import Path

import pytest

from csm_nb.teach import LESSONS, solutions
from csm_nb.teach.common import AnswerRejected, Solutions, fill_answers, unanswered, verdict

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_strict_checks_turn_a_rejection_or_a_blank_into_an_error(monkeypatch, capsys):
    monkeypatch.delenv("CSM_NB_STRICT_CHECKS", raising=False)
    assert verdict(False, "good", "bad") is False and unanswered(None) is True
    assert "Not yet. bad" in capsys.readouterr().out          # a student only reads a verdict
    monkeypatch.setenv("CSM_NB_STRICT_CHECKS", "1")
    assert verdict(True, "good", "bad") is True
    with pytest.raises(AnswerRejected, match="rejected the answer: bad"):
        verdict(False, "good", "bad")
    with pytest.raises(AnswerRejected, match="left unanswered"):
        unanswered(...)


def test_fill_answers_replaces_exactly_the_answer_cells():
    lesson = Solutions({"sum": "worked answer"})
    lesson.answers["sum"] = "total = 1 + 2\ncheck(total)"
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1"},
                    {"cell_type": "code", "metadata": {"exercise": "demo.sum"},
                     "source": "total = None   # your answer"}]}
    assert fill_answers(nb, {"demo": lesson}) == 1
    assert [c["source"] for c in nb["cells"]] == ["x = 1", "total = 1 + 2\ncheck(total)"]
    with pytest.raises(ValueError, match="no lesson named 'other'"):
        fill_answers({"cells": [{"metadata": {"exercise": "other.sum"}}]}, {"demo": lesson})
    with pytest.raises(ValueError, match="no exercise named 'nope'"):
        lesson.answer_cell("nope")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_answer_cell_has_a_right_answer_to_fill_in(path):
    lessons = solutions()
    assert set(lessons) == set(LESSONS)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        key = cell.get("metadata", {}).get("exercise")
        if key is not None:
            lesson, _, name = key.partition(".")
            assert lessons[lesson].answer_cell(name).strip(), key


EXERCISES = [(lesson, name) for lesson, sol in solutions().items() for name in sorted(sol)]


@pytest.mark.parametrize("lesson, name", EXERCISES, ids=[f"{a}.{b}" for a, b in EXERCISES])
def test_every_exercise_has_a_hint_a_solution_and_a_checked_answer_cell(capsys, lesson, name):
    """A nudge first, then the worked answer (not the same text), and a right answer cell
    that ends by calling the lesson's checker."""
    sol = solutions()[lesson]
    sol.hint(name)
    nudge = capsys.readouterr().out.strip()
    sol.show(name)
    worked = capsys.readouterr().out.strip()
    assert nudge and worked and nudge != worked
    last = ast.parse(sol.answer_cell(name)).body[-1]
    call = last.value if isinstance(last, (ast.Expr, ast.Assign)) else None
    assert isinstance(call, ast.Call) and ast.unparse(call.func).startswith("lesson.check_")
