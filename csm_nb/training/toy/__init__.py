"""The toy CSM and how it is made: a corpus rendered with espeak-ng, a toy codec fitted on it,
a small CSM trained on its codes. What it made ships in csm_nb/data/toy/ (its README).

    lexicon      the words and sentence templates (written for this project)
    espeak       rendering a sentence in a voice (only corpus makers need espeak-ng)
    corpus       the corpus: training, held-out sentences and voice, one-word variants
    two_voices   notebook 05's twelve sentences in voices A and B
    codec_fit    fit the toy codec, encode the corpus into compact codes
    codes        the codes on disk (ToyCorpus) and the rendered corpus's manifest
    config       toy_csm_config: CSM-1B's structure, about 1,000x narrower
    recipe       the shipped toy CSM's training, stage by stage

Importing this package imports none of the makers (they run as `python -m ...`).
"""

from .config import toy_csm_config

__all__ = ["toy_csm_config"]
