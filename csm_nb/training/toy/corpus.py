"""Render the toy-mode corpus with espeak-ng: template sentences in several synthetic voices.

    apt-get install espeak-ng                       # Debian's eSpeak NG (1.51 made ours)
    make toy-corpus                                 # python -m csm_nb.training.toy.corpus
                                                    # --out results/toy/corpus: ~13 min on
                                                    # one core, ~6 GB of WAV (never committed)

Toy mode needs a CSM that says sentences it never heard, in a voice taken from its context.
That takes (1) many short sentences over a small vocabulary, so each word recurs hundreds of
times (lexicon.py), (2) several voices, so the model must read the voice from the context
audio rather than memorise one, and (3) held-out material that proves both:

* held-out sentences: the pool of unique sentences (unique by lower-case word sequence) is
  shuffled and split; a held-out sentence's word sequence is never a training sentence's.
  Every word of a held-out sentence does occur in training (checked): the test is new
  combinations of known words, not unknown words.
* a held-out voice, rendered only for evaluation and its prompt, never for training.
* for the one-word test, each evaluation sentence gets 19 variants that differ from it by
  exactly one content word (same template, one slot refilled), rendered in the same voice;
  no variant is a training or held-out sentence.
* for the voice test, each evaluation sentence is also rendered in every other voice.

Processing: espeak.py (24 kHz, trimmed, -3 dBFS peak, 16-bit mono PCM; the same bytes on every
rerun with the same espeak-ng). Everything is seeded: the same seed and espeak-ng version give
the same corpus.

Outputs in --out: wav/<role>/<clip>.wav (not to be committed), manifest.tsv (one line per clip:
clip, role, voice, sentence, text, file, samples, parent, slot), voices.tsv (name, espeak-ng
arguments, held out or not), eval.json (the evaluation items) and corpus.json (counts, hours,
espeak-ng version, seed).

eSpeak NG is GPL-3.0-or-later; we only run it. The rendered audio is this project's own.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ...core.config import SAMPLE_RATE
from .espeak import espeak_version, render, require_espeak, write_pcm16
from .lexicon import CLASSES, CONTENT_CLASSES, TEMPLATES

# name -> espeak-ng arguments (voice+variant, pitch 0-99, speed in words per minute) and
# whether the voice is held out of training. A and B are the two voices notebook 05 already
# uses; the others spread over pitch, speed, accent and formant variant, so that "the voice"
# is something the model has to read from context, not one of two labels.
VOICES = {
    "A": (["-v", "en-us+m3", "-p", "25", "-s", "165"], False),
    "B": (["-v", "en-gb+f4", "-p", "80", "-s", "180"], False),
    "C": (["-v", "en-us+f2", "-p", "60", "-s", "150"], False),
    "D": (["-v", "en-gb-scotland+m7", "-p", "40", "-s", "175"], False),
    "E": (["-v", "en-029+m1", "-p", "35", "-s", "160"], False),
    "F": (["-v", "en-gb-x-rp+f1", "-p", "70", "-s", "170"], False),
    "H": (["-v", "en-us+m5", "-p", "55", "-s", "160"], True),      # held out
}

DEFAULT_OUT = "results/toy/corpus"
SEED = 0
TRAIN_SENTENCES = 48_000        # one training voice each, round robin: 8,000 per voice
SPLIT_TRAIN_SENTENCES = 16_000  # the training share of the pool the held-out sets are cut
                                # from (v1's corpus): fixed, so that growing the training set
                                # never changes a held-out sentence, variant or voice check
VALID_PER_VOICE = 60            # held-out sentences per training voice for the held-out loss
EVAL_PER_VOICE = 20             # evaluation sentences per training voice, per group
EVAL_HELDOUT_VOICE = 40         # evaluation sentences in the held-out voice
CANDIDATES = 20                 # closed-set identification: the truth + 19 others (chance 5%)

SLOT = re.compile(r"\{(\w+)(?::\d+)?\}")


@dataclass(frozen=True)
class Sentence:
    """A template with its slots filled: text and the (class, word) of every slot."""

    template: int
    words: tuple[str, ...]          # one per slot, in template order

    @property
    def slots(self) -> list[str]:
        return SLOT.findall(TEMPLATES[self.template])

    @property
    def text(self) -> str:
        parts = iter(self.words)
        text = SLOT.sub(lambda m: next(parts), TEMPLATES[self.template])
        return text[0].upper() + text[1:]

    @property
    def key(self) -> str:
        """The word sequence, lower case, no punctuation: what "the same sentence" means."""
        return key_of(self.text)


def key_of(text: str) -> str:
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


def random_sentence(rng: random.Random) -> Sentence:
    """A random template with random words; two slots of one class get different words."""
    t = rng.randrange(len(TEMPLATES))
    words, used = [], {}
    for cls in SLOT.findall(TEMPLATES[t]):
        choices = [w for w in CLASSES[cls] if w not in used.get(cls, ())]
        word = rng.choice(choices)
        used.setdefault(cls, set()).add(word)
        words.append(word)
    return Sentence(t, tuple(words))


def one_word_variants(s: Sentence, count: int, taken: set[str],
                      rng: random.Random) -> list[tuple[Sentence, int]]:
    """`count` sentences that differ from `s` in exactly one content slot: (variant, slot).

    The slot is drawn at random for each variant and refilled with another word of its class
    (not one the sentence already uses in that class). Variants are distinct and none is in
    `taken` (the keys of every corpus sentence)."""
    slots = s.slots
    content = [i for i, cls in enumerate(slots) if cls in CONTENT_CLASSES]
    out, seen = [], {s.key} | taken
    while len(out) < count:
        i = rng.choice(content)
        cls = slots[i]
        in_class = {w for j, w in enumerate(s.words) if slots[j] == cls}
        word = rng.choice([w for w in CLASSES[cls] if w not in in_class])
        v = Sentence(s.template, s.words[:i] + (word,) + s.words[i + 1:])
        if v.key not in seen:
            seen.add(v.key)
            out.append((v, i))
    return out


# ---- the plan: which sentence in which voice, for what ------------------------------------

@dataclass
class Clip:
    clip: str
    role: str           # train | heldout | heldout_voice | prompt | variant | voicecheck
    voice: str
    sentence: Sentence
    parent: str = ""    # variant / voicecheck: the evaluation clip it belongs to
    slot: int = -1      # variant: the slot that differs

    @property
    def file(self) -> str:
        return f"wav/{self.role}/{self.clip}.wav"


def plan(seed: int, train_sentences: int = TRAIN_SENTENCES) -> tuple[list[Clip], dict]:
    """Every clip to render and the evaluation items, from the seed alone.

    First a pool of SPLIT_TRAIN_SENTENCES + held-out unique sentences is drawn, shuffled and
    split, and the evaluation items (with their one-word variants) are drawn from it: this
    part never depends on `train_sentences`, so every held-out set is the same for any
    training size. Then the training set is topped up to `train_sentences` with new random
    sentences from a second seeded stream, none of which is a held-out sentence or a variant."""
    if train_sentences < SPLIT_TRAIN_SENTENCES:
        raise ValueError(f"train_sentences={train_sentences} must be at least "
                         f"{SPLIT_TRAIN_SENTENCES} (the split the held-out sets come from)")
    rng = random.Random(seed)
    train_voices = [v for v, (_, held) in VOICES.items() if not held]
    held_voices = [v for v, (_, held) in VOICES.items() if held]
    n_heldout = (len(train_voices) * (VALID_PER_VOICE + EVAL_PER_VOICE)
                 + len(held_voices) * EVAL_HELDOUT_VOICE + len(VOICES))   # + one prompt each
    pool: dict[str, Sentence] = {}
    while len(pool) < SPLIT_TRAIN_SENTENCES + n_heldout:
        s = random_sentence(rng)
        pool.setdefault(s.key, s)
    sentences = list(pool.values())
    rng.shuffle(sentences)
    heldout, train = sentences[:n_heldout], sentences[n_heldout:]
    taken = set(pool)

    train_vocab = {w for s in train for w in s.key.split()}
    unknown = {w for s in heldout for w in s.key.split()} - train_vocab
    if unknown:
        raise RuntimeError(f"held-out sentences use words never trained on: {sorted(unknown)}")

    clips: list[Clip] = []
    it = iter(heldout)
    for v in VOICES:
        clips.append(Clip(f"pr_{v}", "prompt", v, next(it)))
    for v in train_voices:
        for i in range(VALID_PER_VOICE + EVAL_PER_VOICE):
            clips.append(Clip(f"ho{v}{i:03d}", "heldout", v, next(it)))
    for v in held_voices:
        for i in range(EVAL_HELDOUT_VOICE):
            clips.append(Clip(f"hv{v}{i:03d}", "heldout_voice", v, next(it)))
    train_clips = [Clip(f"tr{i:05d}", "train", train_voices[i % len(train_voices)], s)
                   for i, s in enumerate(train)]

    # Evaluation items: the last EVAL_PER_VOICE held-out clips of each training voice (the
    # first VALID_PER_VOICE give the held-out loss), the first EVAL_PER_VOICE training clips
    # per voice, every held-out-voice clip.
    by = {}
    for c in train_clips + clips:
        by.setdefault((c.role, c.voice), []).append(c)
    groups = {
        "train": [c for v in train_voices for c in by[("train", v)][:EVAL_PER_VOICE]],
        "heldout": [c for v in train_voices for c in by[("heldout", v)][VALID_PER_VOICE:]],
        "heldout_voice": [c for v in held_voices for c in by[("heldout_voice", v)]],
    }
    items = {}
    for group, truths in groups.items():
        items[group] = []
        for c in truths:
            same_voice = [o.clip for o in truths if o.voice == c.voice and o is not c]
            others = sorted(rng.sample(same_voice, CANDIDATES - 1))
            variants = []
            for j, (v, slot) in enumerate(one_word_variants(c.sentence, CANDIDATES - 1,
                                                            taken, rng)):
                variant = Clip(f"{c.clip}_w{j:02d}", "variant", c.voice, v, c.clip, slot)
                clips.append(variant)
                variants.append(variant.clip)
            renderings = {c.voice: c.clip}
            for v in VOICES:
                if v != c.voice:
                    check = Clip(f"{c.clip}_v{v}", "voicecheck", v, c.sentence, c.clip)
                    clips.append(check)
                    renderings[v] = check.clip
            items[group].append({"clip": c.clip, "voice": c.voice, "text": c.sentence.text,
                                 "others": others, "variants": variants,
                                 "voices": renderings})

    # Top up the training set: new sentences that are neither in the pool nor a variant.
    # (`clips` is everything but the training clips; a voice check repeats its parent's
    # sentence, which for the "train" group is a training sentence)
    tested = {c.sentence.key for c in clips if c.role != "voicecheck"}
    extra_rng = random.Random(f"{seed}/train")
    used = taken | tested
    while len(train_clips) < train_sentences:
        s = random_sentence(extra_rng)
        if s.key not in used:
            used.add(s.key)
            i = len(train_clips)
            train_clips.append(Clip(f"tr{i:05d}", "train", train_voices[i % len(train_voices)],
                                    s))
    leaked = {c.sentence.key for c in train_clips} & tested
    if leaked:
        raise RuntimeError(f"{len(leaked)} evaluated word sequences are also training "
                           f"sentences, e.g. {sorted(leaked)[:3]}")
    return train_clips + clips, items


def reusable(out: Path) -> dict[str, int]:
    """(clip, voice, text) -> samples of the WAVs a previous run left in `out` (read from its
    manifest), so that a rerun renders only what is new: a clip is reused only if the plan
    gives it the same voice and text and its file is still there (espeak-ng is deterministic,
    so rendering it again would write the same bytes)."""
    path = out / "manifest.tsv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return {(r["clip"], r["voice"], r["text"]): int(r["samples"]) for r in rows
                if (out / r["file"]).is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--train-sentences", type=int, default=TRAIN_SENTENCES,
                    help=f"training sentences (default: {TRAIN_SENTENCES}; v1 used "
                         f"{SPLIT_TRAIN_SENTENCES})")
    ap.add_argument("--fresh", action="store_true",
                    help="render every clip again (default: reuse the WAVs of a previous run "
                         "that the manifest shows have the same voice and text)")
    args = ap.parse_args()
    require_espeak()
    out = Path(args.out)
    clips, items = plan(args.seed, args.train_sentences)
    done = {} if args.fresh else reusable(out)
    t0, samples, rendered = time.perf_counter(), {}, 0
    for n, c in enumerate(clips):
        key = (c.clip, c.voice, c.sentence.text)
        if key in done:
            samples[c.clip] = done[key]
            continue
        path = out / c.file
        path.parent.mkdir(parents=True, exist_ok=True)
        y = render(c.sentence.text, VOICES[c.voice][0])
        write_pcm16(path, y)
        samples[c.clip] = y.size
        rendered += 1
        if rendered % 2000 == 0:
            print(f"{rendered} clips rendered ({n + 1}/{len(clips)}), "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)

    with open(out / "manifest.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["clip", "role", "voice", "sentence", "text", "file", "samples", "parent",
                    "slot"])
        for c in clips:
            w.writerow([c.clip, c.role, c.voice, c.sentence.key, c.sentence.text, c.file,
                        samples[c.clip], c.parent, c.slot])
    with open(out / "voices.tsv", "w") as f:
        f.write("voice\tespeak_args\theld_out\n")
        for v, (a, held) in VOICES.items():
            f.write(f"{v}\t{' '.join(a)}\t{int(held)}\n")
    (out / "eval.json").write_text(json.dumps(items, indent=1) + "\n")

    hours: dict[str, float] = {}
    count: dict[str, int] = {}
    for c in clips:
        hours[c.role] = hours.get(c.role, 0.0) + samples[c.clip] / SAMPLE_RATE / 3600
        count[c.role] = count.get(c.role, 0) + 1
    vocab = sorted({w for c in clips if c.role != "variant" for w in c.sentence.key.split()})
    info = {"espeak_ng": espeak_version(), "seed": args.seed, "sample_rate": SAMPLE_RATE,
            "clips": count, "hours": {k: round(h, 3) for k, h in hours.items()},
            "vocabulary": len(vocab), "templates": len(TEMPLATES),
            "voices": {v: {"args": a, "held_out": held} for v, (a, held) in VOICES.items()},
            "rendered_clips": rendered,
            "render_seconds": round(time.perf_counter() - t0, 1)}
    (out / "corpus.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
