"""Notebook 05's checkers (csm_nb.teach.training): the CSM loss and the training step the
student writes are accepted when right and each usual mistake is named (a hint before the
solution); untouched cells are "not answered yet"; every exercise has a hint, a worked solution
and a right answer cell; the evaluation table and the comparison figures draw."""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import csm_nb
from csm_nb import training
from csm_nb.speech.segment import Segment, conversation_rows
from csm_nb.teach import training as lesson

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_train_tiny_csm.ipynb"
EXERCISES = ("target_rows", "voice_source", "chance_loss", "csm_loss", "train_step", "quiz")


def verdict(capsys, ok, check, *args, **kwargs):
    assert check(*args, **kwargs) is ok
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def batch():
    """A toy-sized model (fresh) and one batch of two 2-turn conversations of random codes."""
    cfg = training.toy_csm_config(num_codebooks=4, codebook_size=16, width=32, decoder_width=32)
    tok = csm_nb.tiny_tokenizer()
    g = torch.Generator().manual_seed(0)
    rows = [conversation_rows(tok, [Segment(s, "Hi.", codes=torch.randint(16, (4, 5),
                                                                           generator=g)),
                                    Segment(s, "Yes.", codes=torch.randint(16, (4, 4),
                                                                           generator=g))], 4)
            for s in (0, 1)]
    tokens, mask = training.pad_batch(rows)
    return cfg, tokens, mask


@pytest.fixture
def model(batch):
    return csm_nb.tiny_model(batch[0], device="cpu", dtype=torch.float32, seed=0)


def solution_fn(name, fn_name):
    namespace = {"torch": torch, "F": F, "training": training}
    exec(lesson.SOLUTIONS[name], namespace)
    return namespace[fn_name]


def test_the_notebook_cells_are_the_exercises_tested():
    cells = {c["metadata"].get("exercise"): "".join(c["source"])
             for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]}
    assert {f"training.{name}" for name in EXERCISES} <= set(cells)
    from csm_nb.teach.training_loss import LOSS_HEAD as head
    assert cells["training.csm_loss"].startswith(head), "the template and the solution differ"


def test_untouched_templates_are_not_answered_yet(capsys, model, batch):
    def my_csm_loss(model, tokens, mask):
        return None

    def train_step(model, optimizer, tokens, mask, max_norm=1.0):
        ...
    _, tokens, mask = batch
    assert "Not answered yet" in verdict(capsys, None, lesson.check_csm_loss, my_csm_loss,
                                         model, tokens, mask)
    assert "Not answered yet" in verdict(capsys, None, lesson.check_train_step, train_step,
                                         model, tokens, mask)
    assert "Not answered yet" in verdict(capsys, None, lesson.check_target_rows, None, 3, 4)
    assert "Not answered yet" in verdict(capsys, None, lesson.check_chance_loss, None, 131)
    assert "Correct" in verdict(capsys, True, lesson.check_chance_loss, 4.875, 131)
    # the measured untrained losses printed just above the question are near ln V, not it
    assert "formula in V" in verdict(capsys, False, lesson.check_chance_loss, 4.913, 131)
    assert "formula in V" in verdict(capsys, False, lesson.check_chance_loss, 4.882, 131)
    assert "Correct" in verdict(capsys, True, lesson.check_chance_loss, 4.88, 131)   # rounded
    assert "spare ids" in verdict(capsys, False, lesson.check_chance_loss, 4.852, 131)  # ln 128
    assert "Not answered yet" in verdict(capsys, None, lesson.check_voice_source, None)


def test_csm_loss_accepts_the_solution_and_names_mistakes(capsys, model, batch):
    _, tokens, mask = batch
    right = solution_fn("csm_loss", "my_csm_loss")
    assert "Correct" in verdict(capsys, True, lesson.check_csm_loss, right, model, tokens, mask)

    def swapped(model, tokens, mask):
        a, b = right(model, tokens, mask)
        return b, a
    assert "swapped" in verdict(capsys, False, lesson.check_csm_loss, swapped, model, tokens,
                                mask)

    def summed(model, tokens, mask):
        K, V = model.config.num_codebooks, model.config.audio_vocab_size
        a, _ = right(model, tokens, mask)
        h = model(tokens[:, :-1], mask[:, :-1])
        keep = mask[:, 1:, :K].all(-1)
        h, codes = h[keep], tokens[:, 1:, :K][keep]
        x = torch.cat([h[:, None], model.audio_embeddings(codes[:, :-1]
                                                           + model.codebook_offsets[:K - 1])], 1)
        logits = model.decoder_forward(x).reshape(-1, V)
        return a, F.cross_entropy(logits, codes[:, 1:].reshape(-1), reduction="sum")
    out = verdict(capsys, False, lesson.check_csm_loss, summed, model, tokens, mask)
    assert "you summed" in out and out.index("lesson.hint(") < out.index("lesson.solution(")


def test_train_step_accepts_the_solution_and_names_mistakes(capsys, model, batch):
    _, tokens, mask = batch
    before = copy.deepcopy(model.state_dict())
    right = solution_fn("train_step", "train_step")
    assert "Correct" in verdict(capsys, True, lesson.check_train_step, right, model, tokens,
                                mask)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), \
        "the checker must leave the notebook's model untouched"

    def no_clip(model, optimizer, tokens, mask, max_norm=1.0):
        loss = training.csm_loss(model, tokens, mask).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def no_zero(model, optimizer, tokens, mask, max_norm=1.0):
        loss = training.csm_loss(model, tokens, mask).total
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        return loss.item()

    def no_step(model, optimizer, tokens, mask, max_norm=1.0):
        loss = training.csm_loss(model, tokens, mask).total
        loss.backward()
        return loss.item()
    for fn, words in ((no_clip, "clip_grad_norm_"), (no_zero, "zero_grad"),
                      (no_step, "optimizer.step()")):
        out = verdict(capsys, False, lesson.check_train_step, fn, model, tokens, mask)
        assert words in out, (fn.__name__, out)



def test_quiz(capsys):
    right = lesson.QUIZ.right_answers()
    assert verdict(capsys, True, lesson.check_quiz, right)
    out = verdict(capsys, False, lesson.check_quiz, {**right, 4: "a"})
    assert "4: not a" in out and "memorise" in out
    assert len(set(right.values())) > 1, "not every answer the same letter"


def test_the_evaluation_table_and_its_summary_come_from_the_shipped_file():
    evaluation = lesson.load_evaluation()
    assert {"trained greedy", "random greedy", "codec ceiling"} <= set(evaluation["results"])
    table = lesson.evaluation_table(evaluation).data
    assert table.count("<tr>") == 1 + 1 + sum(len(s) for s in evaluation["results"].values())
    summary = lesson.evaluation_summary(evaluation)
    greedy = evaluation["results"]["trained greedy"]["heldout"]["standard"]
    assert f"{greedy:.0%}" in summary[1]
    assert lesson.plot_evaluation(evaluation).axes


def test_the_length_figure_draws():
    fig = lesson.plot_length_match({"ours": ([20, 30], [15, 15]), "shipped": ([20, 30],
                                                                            [21, 29])})
    assert fig.axes
