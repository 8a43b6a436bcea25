"""How the toy CSM is made, and that the shipped one still says what it learned.

The shipped toy CSM (csm_nb/data/toy) came from csm_nb.training.toy: a corpus plan rendered
with espeak-ng, the toy codec, the recipe's stages. None of that can rerun in CI (espeak-ng,
an hour and a half of training), so this file proves the parts that can: the plan gives exactly
the shipped corpus, the recipe's first steps give the shipped training log's losses to the
last bit, and the shipped model passes the evaluation's floor on its small committed subset.
"""

import json
import os
import sys
from pathlib import Path

import pytest

from csm_nb import data
from csm_nb.training.toy import corpus as toy_corpus_plan
from csm_nb.training.toy import espeak, recipe
from csm_nb.training.toy.codes import ToyCorpus
from csm_nb.training.toy.lexicon import CLASSES, CONTENT_CLASSES

ROOT = Path(__file__).resolve().parents[1]
CI_REFS = ROOT / "benchmarks" / "toy_eval" / "refs_ci.safetensors"
TRAINING_LOG = "toy/training.json"

# The floor for training sentences (greedy). On the full evaluation (120 lines) the shipped
# model scores ident 100%, voice 93% (short of 95%: csm_nb/data/toy/README.md), stop 100%; on
# the 7 committed lines it meets all three, so a change that costs one of them fails here.
FLOOR = {"standard": 0.90, "voice": 0.95, "stopped": 0.95}


@pytest.fixture(scope="module")
def plan():
    return toy_corpus_plan.plan(toy_corpus_plan.SEED)


@pytest.fixture(scope="module")
def shipped():
    return ToyCorpus()


def test_the_plan_gives_exactly_the_shipped_corpus(plan, shipped):
    clips, _ = plan
    planned = {c.clip: (c.role, c.voice, c.sentence.text) for c in clips}
    assert len(shipped) > 16_000
    for c in shipped.clips:
        assert planned[c.clip] == (c.role, c.voice, c.text), c


def test_held_out_sentences_and_voice_never_reach_training(plan, shipped):
    clips, items = plan
    train = {c.sentence.key for c in clips if c.role == "train"}
    for role in ("heldout", "heldout_voice", "variant"):
        keys = {c.sentence.key for c in clips if c.role == role}
        assert keys and not keys & train, role
    held_voices = {v for v, (_, held) in toy_corpus_plan.VOICES.items() if held}
    assert held_voices == {"H"}
    assert not {c.voice for c in clips if c.role == "train"} & held_voices
    assert {c.voice for c in shipped.clips if c.role == "train"} == set("ABCDEF")
    # every held-out word is a training word: new combinations, not new words
    train_words = {w for k in train for w in k.split()}
    assert {w for c in clips if c.role == "heldout" for w in c.sentence.key.split()} <= train_words


def test_each_one_word_variant_changes_exactly_one_content_word(plan):
    clips, items = plan
    by_clip = {c.clip: c for c in clips}
    for group in items.values():
        for item in group[:10]:
            truth = by_clip[item["clip"]].sentence
            assert len(item["others"]) == len(item["variants"]) == 19
            for name in item["variants"]:
                variant = by_clip[name].sentence
                changed = [i for i, (a, b) in enumerate(zip(truth.words, variant.words))
                           if a != b]
                assert len(changed) == 1 and truth.slots[changed[0]] in CONTENT_CLASSES
                assert variant.words[changed[0]] in CLASSES[truth.slots[changed[0]]]


def test_the_recipe_repeats_the_shipped_training_log(shipped):
    """The base stage's first 11 steps on the shipped codes give the shipped log's losses
    (steps 0 and 10) exactly: same plan, same codes, same seeds, same loop."""
    log = json.loads(data.path(TRAINING_LOG).read_text())["base"]
    base = recipe.STAGES[0]
    model = recipe.new_model(shipped)
    # the recipe's schedule (warm-up does not depend on the total), stopped after 11 steps
    history = recipe.train(model, recipe.batches(shipped, "train", recipe.SEED,
                                                 base.train_sentences),
                           steps=11, lr=base.lr, warmup=base.warmup,
                           decoder_fraction=base.decoder_fraction, freeze=("text_embeddings",),
                           seed=recipe.SEED, progress=False)
    assert history.total[::10] == log["steps_log"]["total"][:2]


def test_the_recipe_is_the_shipped_models_recipe(shipped):
    """Every stage the shipped model went through, with its settings, is a stage of the recipe
    in the same order (so `make toy-model` retrains this model, not another)."""
    log = json.loads(data.path(TRAINING_LOG).read_text())
    assert list(log) == [s.name for s in recipe.STAGES]
    all_train = len(shipped.where("train"))
    for stage in recipe.STAGES:
        settings = log[stage.name]["settings"]
        assert (settings["steps"], settings["lr"], settings["warmup"],
                settings["decoder_fraction"], settings["last_turn_only"], settings["batch"],
                settings["seed"], settings["train_clips"]) == (
            stage.steps, stage.lr, stage.warmup, stage.decoder_fraction, stage.last_turn_only,
            recipe.BATCH, recipe.SEED, stage.train_sentences or all_train), stage.name


def test_the_shipped_model_meets_the_floor_on_the_ci_subset():
    """benchmarks/eval_toy.py as its docstring runs it without the corpus: 7 lines per group.
    Training sentences must clear the issue's floor; the random model of the same size (same
    prompts) must not, or the test could not fail."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import eval_toy
    report = eval_toy.main(["--lines", "7", "--refs", str(CI_REFS),
                            "--systems", "trained,random"])
    trained = report["results"]["trained greedy"]["train"]
    chance = report["results"]["random greedy"]["train"]
    assert trained["lines"] == 7
    for key, floor in FLOOR.items():
        assert trained[key] >= floor, (key, trained[key])
        assert chance[key] < floor, (key, chance[key])
    assert 0.8 <= trained["length"] <= 1.25
    # every line of every group ends by the model's own stop frame, and unseen sentences are
    # identified as well as seen ones (the shipped model: 7 of 7 in every group)
    for group in report["results"]["trained greedy"].values():
        assert group["stopped"] == 1.0 and group["standard"] >= FLOOR["standard"]


def test_without_espeak_the_makers_say_how_to_get_it(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        espeak.require_espeak()


def test_a_missing_codes_folder_says_what_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make toy-codes"):
        ToyCorpus(tmp_path)


def test_unknown_stage_names_the_stages(tmp_path):
    with pytest.raises(ValueError, match="base"):
        recipe.main(["--stages", "bsae", "--out", str(tmp_path)])
    assert not os.listdir(tmp_path)
