"""The toy corpus as notebooks 03 and 05 read it (csm_nb.training.toy.codes: the codes and
transcripts the shipped toy CSM was trained and evaluated on), and a meter of its voices.

`VoiceMeter` tells the toy voices apart from their codes alone: how often each voice uses each
level-0 code, counted over its clips here, scores a line by the mean log-probability of its
codes under each voice (a bag-of-codes naive Bayes). It is a rough meter, good enough to show
a voice following its context, and only meaningful for the toy codec's codes.
"""

from __future__ import annotations

import torch

from ..training.toy.codes import Clip, ToyCorpus, toy_corpus

__all__ = ["Clip", "ToyCorpus", "VoiceMeter", "toy_corpus"]

_METER_CLIPS = 200                  # clips per voice the meter counts codes over
_SMOOTHING = 0.5                    # added to every count: an unseen code is rare, not impossible


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
