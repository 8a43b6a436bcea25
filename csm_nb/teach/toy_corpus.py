"""The toy corpus as notebooks 03 and 05 read it: the codes and transcripts the shipped toy CSM
was trained and evaluated on (csm_nb/data/toy/toy_codes.safetensors + toy_codes.tsv).

Only codes ship (int16, all clips end to end, with offsets), never hours of WAV: a clip is
heard by decoding its codes with the toy codec. Roles: `train` (what the toy CSM learned from),
`heldout` (sentences it never heard, in its training voices), `heldout_voice` (voice H, never
heard in training) and `prompt` (the voice prompts' clips).

`VoiceMeter` tells the toy voices apart from their codes alone: how often each voice uses each
level-0 code, counted over its clips here, scores a line by the mean log-probability of its
codes under each voice (a bag-of-codes naive Bayes). It is a rough meter, good enough to show
a voice following its context, and only meaningful for the toy codec's codes.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass

import torch

from .. import data

CODES_FILE, INDEX_FILE = "toy/toy_codes.safetensors", "toy/toy_codes.tsv"
_METER_CLIPS = 200                  # clips per voice the meter counts codes over
_SMOOTHING = 0.5                    # added to every count: an unseen code is rare, not impossible


@dataclass(frozen=True)
class Clip:
    clip: str          # "tr00000"
    role: str          # train / heldout / heldout_voice / prompt
    voice: str         # "A" .. "F", "H"
    frames: int
    text: str


class ToyCorpus:
    """The shipped toy corpus: `clips` (its index) and `codes(i)` -> int64 [K, F]."""

    def __init__(self):
        from safetensors.torch import load_file
        with open(data.path(INDEX_FILE), newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            self.clips = [Clip(r["clip"], r["role"], r["voice"], int(r["frames"]), r["text"])
                          for r in rows]
        tensors = load_file(str(data.path(CODES_FILE)))
        self._codes, self._offsets = tensors["codes"], tensors["offsets"]     # [K, all], [N+1]
        if self._offsets.numel() != len(self.clips) + 1:
            raise ValueError(f"{CODES_FILE} holds {self._offsets.numel() - 1} clips but "
                             f"{INDEX_FILE} lists {len(self.clips)}: a broken install? "
                             "Reinstall csm_nb.")

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        return (f"ToyCorpus({len(self)} clips, {self._codes.shape[1]:,} frames = "
                f"{self.hours():.1f} h, voices {''.join(self.voices())})")

    def codes(self, i: int) -> torch.Tensor:
        """Clip i's codes, int64 [K, F]."""
        if not 0 <= i < len(self):
            raise ValueError(f"clip index {i} is outside 0..{len(self) - 1}")
        return self._codes[:, self._offsets[i]:self._offsets[i + 1]].long()

    def where(self, role: str | None = None, voice: str | None = None) -> list[int]:
        """Indices of the clips with this role and/or voice."""
        return [i for i, c in enumerate(self.clips)
                if (role is None or c.role == role) and (voice is None or c.voice == voice)]

    def voices(self) -> list[str]:
        return sorted({c.voice for c in self.clips})

    def hours(self, frame_rate: float = 12.5) -> float:
        return self._codes.shape[1] / frame_rate / 3600

    def vocabulary(self, role: str = "train") -> list[str]:
        """The words of the sentences with this role, sorted, lower case."""
        words = set()
        for c in self.clips:
            if c.role == role:
                words.update(re.findall(r"[a-z']+", c.text.lower()))
        return sorted(words)


@functools.cache
def toy_corpus() -> ToyCorpus:
    """The corpus, read once per process (~6 MB of codes)."""
    return ToyCorpus()


class VoiceMeter:
    """Which toy voice do these codes sound like? Scores from level-0 code counts per voice."""

    def __init__(self, corpus: ToyCorpus | None = None, clips_per_voice: int = _METER_CLIPS,
                 codebook_size: int = 128):
        corpus = corpus or toy_corpus()
        self.codebook_size = codebook_size
        self.log_probs = {}
        for voice in corpus.voices():
            ids = [i for i in corpus.where(voice=voice) if corpus.clips[i].role != "prompt"]
            level0 = torch.cat([corpus.codes(i)[0] for i in ids[:clips_per_voice]])
            counts = torch.bincount(level0, minlength=codebook_size).float() + _SMOOTHING
            self.log_probs[voice] = (counts / counts.sum()).log()

    def scores(self, codes: torch.Tensor) -> dict[str, float]:
        """{voice: mean log-probability of the line's level-0 codes}; higher = more alike."""
        level0 = torch.as_tensor(codes)[0].long().clamp(0, self.codebook_size - 1)
        if level0.numel() == 0:
            raise ValueError("codes has no frame; give a line's codes [K, F] with F >= 1")
        return {v: float(lp[level0].mean()) for v, lp in self.log_probs.items()}

    def closest(self, codes: torch.Tensor) -> str:
        scores = self.scores(codes)
        return max(scores, key=scores.get)
