"""Train the toy CSM on the toy corpus's codes: the recipe of the shipped model, one command.

    make toy-model            # python -m csm_nb.training.toy.recipe: every stage, seeded
    python -m csm_nb.training.toy.recipe --stages base --steps 20 --out /tmp/try   # a taste

What it learns from: conversations laid out exactly as CSM-1B sees them at inference: a
context turn (another sentence by the same voice, its text rows then its audio rows and the
all-zero end-of-audio row) and then the target line. The speaker label ("[0]" or "[1]") is
drawn at random per conversation (csm_nb.training.context_batches), so the voice can only
come from the context audio; that is what lets a held-out voice be given as context.

How: csm_nb's own loss and loop (csm_nb.training.csm_loss / train): codebook 0 from the
backbone on every target frame, the depth decoder on a random fraction of them (the
frame-subset trick CSM-1B's authors use at 1/16), AdamW with warm-up and cosine decay.
The shipped model is STAGES run in order, each starting from the last one's best weights:

  base      both turns learned, decoder on 1/8 of their frames, from random weights, on the
            first 16,000 training sentences (the corpus v1 was made with)
  tune, tune2  the target line only (the context turn has no earlier voice to follow, so it
            teaches an average voice), decoder on 1/4 of its frames (as many decoder frames
            per step as 1/8 of both turns), on all 48,000 training sentences, gently (lr 5e-4)

Why stages and not one run: the base stage was made first; 48,000 sentences came later, and a
from-scratch last-turn-only run on them learned codebook 0 at about half the pace (half the
target frames per step: held-out loss 3.97 at step 1200 against the base's 3.63), so it was
stopped and the base was fine-tuned instead. The curves are in each stage's train_log.json.

Text is bytes through csm_nb's toy tokenizer (tiny_tokenizer): it needs no extra package or
download, reads any text a notebook user types, and every word of the corpus recurs hundreds
of times in training, so the model learns each word's spelling-to-sound as a whole. As in
notebook 05 the Llama-3-sized text table is frozen (random, fixed): the byte tokenizer reads
258 of its 128,256 rows, and updating all of them every step would cost more time than the
whole backbone; random 256-d vectors are already distinct codes for 258 symbols.

Every EVAL_EVERY steps the teacher-forced loss is measured (decoder on every frame) on fixed
batches of held-out sentences (training voices) and of training sentences; the weights with
the lowest held-out loss are kept. Each stage writes to --out/<stage>/: toy_csm_fp32.safetensors,
toy_csm.safetensors (float16: what ships) and train_log.json.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ...audio.toy_codec import ToyCodec
from ...loading.tokenizer import tiny_tokenizer
from ...loading.weights import save_toy_model, tiny_model, toy_model
from ..datasets import context_batches
from ..loop import train
from ..loss import csm_loss
from .codes import CODEC_FILE, ToyCorpus, one_thread
from .config import toy_csm_config

OUT = "results/toy/model"
SEED = 0
BATCH = 32
TURNS = 2                       # a context turn, then the target line
WIDTH, LAYERS = 256, 4          # backbone
DECODER_WIDTH, DECODER_LAYERS = 128, 2
MAX_SEQ_LEN = 384               # rows: the longest context + target + 1.5x frames fit
EVAL_EVERY = 150                # steps between held-out loss measurements
EVAL_BATCHES = 6                # fixed batches of BATCH conversations per measurement


@dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    lr: float
    warmup: int
    decoder_fraction: float
    last_turn_only: bool
    train_sentences: int | None         # the first N training clips; None: all of them


STAGES = (
    Stage("base", 1800, 2e-3, 100, 1 / 8, False, 16_000),     # 68 min here (2 cores shared)
    Stage("tune", 300, 5e-4, 20, 1 / 4, True, None),          # 10 min
    Stage("tune2", 600, 5e-4, 20, 1 / 4, True, None),         # 19 min
)


class MeasureEvery:
    """Wraps the endless batch stream: every `every` batches (and once more at the end),
    measures the teacher-forced loss on fixed batches while the loop waits for its next batch.
    csm_nb.training.train has no evaluation hook, and calling it in chunks would restart its
    learning-rate schedule; reading the loss here changes nothing the loop computes.
    sets: name -> (batches, last_turn_only); the set named "heldout" picks the best weights."""

    def __init__(self, model, batches, every: int, sets: dict[str, tuple[list, bool]]):
        self.model, self.batches, self.every, self.sets = model, batches, every, sets
        self.log: dict[str, list] = {"step": [], "seconds": []}
        self.best = (float("inf"), -1, None)          # (held-out loss, step, state dict)
        self.start = time.perf_counter()

    def __iter__(self):
        for step in itertools.count():
            if step % self.every == 0:
                self.measure(step)
            yield next(self.batches)

    @torch.no_grad()
    def measure(self, step: int) -> None:
        self.log["step"].append(step)
        self.log["seconds"].append(round(time.perf_counter() - self.start, 1))
        self.log.setdefault("load_average", []).append(round(os.getloadavg()[0], 2))
        for name, (batches, last_turn_only) in self.sets.items():
            parts = [csm_loss(self.model, t, m, last_turn_only=last_turn_only)
                     for t, m in batches]
            frames = sum(p.frames for p in parts)
            for key in ("total", "codebook0", "decoder"):
                value = sum(float(getattr(p, key)) * p.frames for p in parts) / frames
                self.log.setdefault(f"{name}_{key}", []).append(round(value, 4))
        held, log = self.log["heldout_total"][-1], self.log
        print(f"step {step}: train {log['train_total'][-1]:.3f} held-out {held:.3f} (codebook 0 "
              f"{log['heldout_codebook0'][-1]:.3f}) ({log['seconds'][-1]:.0f} s)", flush=True)
        if held < self.best[0]:
            self.best = (held, step, copy.deepcopy(self.model.state_dict()))


def new_model(corpus: ToyCorpus, seed: int = SEED):
    """The recipe's CSM, random and seeded, sized for the codec beside the corpus's codes."""
    codec = ToyCodec.load(corpus.folder / CODEC_FILE)       # the codes' sizes are its sizes
    cfg = toy_csm_config(num_codebooks=codec.num_codebooks, codebook_size=codec.codebook_size,
                         width=WIDTH, layers=LAYERS, decoder_width=DECODER_WIDTH,
                         decoder_layers=DECODER_LAYERS, max_seq_len=MAX_SEQ_LEN)
    return tiny_model(cfg, device="cpu", dtype=torch.float32, seed=seed)


def batches(corpus: ToyCorpus, role: str, seed: int, limit: int | None = None):
    """Endless batches of conversations (a context turn, then the target line, one voice)
    from the first `limit` clips with this role."""
    picked = corpus.where(role)[:limit]
    names = sorted({corpus.clips[i].voice for i in corpus.where("train")})
    speakers = [names.index(corpus.clips[i].voice) for i in picked]
    return context_batches(tiny_tokenizer(), speakers, [corpus.clips[i].text for i in picked],
                           [corpus.codes(i) for i in picked], BATCH, turns=TURNS, seed=seed)


def run_stage(stage: Stage, corpus: ToyCorpus, model, out: Path, seed: int = SEED):
    """Train `model` (in place) for one stage; keep and save its best weights; return it."""
    held = list(itertools.islice(batches(corpus, "heldout", seed + 1), EVAL_BATCHES))
    train_fixed = list(itertools.islice(batches(corpus, "train", seed + 2,
                                                stage.train_sentences), EVAL_BATCHES))
    fixed = {"heldout": (held, stage.last_turn_only),
             "train": (train_fixed, stage.last_turn_only)}
    if stage.last_turn_only:            # both turns too: comparable with a both-turns stage
        fixed["heldout_all"] = (held, False)
    clips = len(corpus.where("train")[:stage.train_sentences])
    print(f"stage {stage.name}: {stage.steps} steps on {clips} training clips", flush=True)
    meter = MeasureEvery(model, batches(corpus, "train", seed, stage.train_sentences),
                         EVAL_EVERY, fixed)
    t0 = time.perf_counter()
    history = train(model, iter(meter), steps=stage.steps, lr=stage.lr, warmup=stage.warmup,
                    decoder_fraction=stage.decoder_fraction, freeze=("text_embeddings",),
                    seed=seed, progress=False, last_turn_only=stage.last_turn_only)
    meter.measure(stage.steps)
    wall = time.perf_counter() - t0
    print(history.summary(100), flush=True)

    best_loss, best_step, best_state = meter.best
    model.load_state_dict(best_state)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"stage": stage.name, "steps": stage.steps, "batch": BATCH, "lr": stage.lr,
                "warmup": stage.warmup, "decoder_fraction": stage.decoder_fraction,
                "last_turn_only": stage.last_turn_only, "turns": TURNS, "seed": seed,
                "train_clips": clips, "step": best_step,
                "text": "bytes (tiny_tokenizer), frozen random text table"}
    save_toy_model(model, out / "toy_csm_fp32.safetensors", settings)
    save_toy_model(model, out / "toy_csm.safetensors", settings, half=True)
    log = {"settings": settings, "threads": torch.get_num_threads(),
           "wall_seconds": round(wall, 1), "best_step": best_step,
           "best_heldout_loss": best_loss, "curves": meter.log,
           "steps_log": {"step": history.step[::10], "total": history.total[::10],
                         "codebook0": history.codebook0[::10],
                         "decoder": history.decoder[::10], "lr": history.lr[::10]}}
    (out / "train_log.json").write_text(json.dumps(log) + "\n")
    print(f"stage {stage.name} done in {wall / 60:.1f} min; best held-out loss "
          f"{best_loss:.3f} at step {best_step}", flush=True)
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codes", default=None, help="folder with toy_codes.* (default: the "
                    "shipped csm_nb/data/toy; `make toy-codes` writes results/toy/codes)")
    ap.add_argument("--out", default=OUT, help=f"one folder per stage in it (default: {OUT})")
    ap.add_argument("--stages", default=",".join(s.name for s in STAGES),
                    help="which stages, in order (default: all)")
    ap.add_argument("--init", default=None, help="a saved toy CSM to start from (default: "
                    "random weights for the first stage)")
    ap.add_argument("--steps", type=int, default=None, help="steps per stage instead of the "
                    "recipe's (for a quick look; the schedule shrinks with it)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    one_thread()
    chosen = args.stages.split(",")
    known = {s.name: s for s in STAGES}
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ValueError(f"--stages {args.stages!r}: unknown {unknown}; the recipe has "
                         f"{list(known)}")
    corpus = ToyCorpus(args.codes)
    model = new_model(corpus, args.seed)
    if args.init:
        start = toy_model(device="cpu", dtype=torch.float32, path=args.init)
        if start.config != model.config:
            raise ValueError(f"--init {args.init} has another config than this recipe: "
                             f"{start.config}")
        model = start
    logs = {}
    for name in chosen:
        stage = known[name]
        if args.steps is not None:
            stage = Stage(**{**asdict(stage), "steps": args.steps,
                             "warmup": min(stage.warmup, args.steps // 5)})
        model = run_stage(stage, corpus, model, Path(args.out) / name, args.seed)
        logs[name] = json.loads((Path(args.out) / name / "train_log.json").read_text())
    # every stage's log in one file, as shipped beside the model (csm_nb/data/toy/training.json)
    (Path(args.out) / "training.json").write_text(json.dumps(logs) + "\n")


if __name__ == "__main__":
    main()
