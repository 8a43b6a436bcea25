"""Training CSM: data and batches, the two-part loss, the loop, the toy model's sizes.

    from csm_nb import training
    history = training.train(model, training.context_batches(...), steps=300)
"""

from .datasets import Utterance, context_batches, load_dataset, pad_batch
from .loop import History, code_match, lr_at, train
from .loss import CSMLoss, csm_loss
from .toy import toy_csm_config

__all__ = ["CSMLoss", "History", "Utterance", "code_match", "context_batches", "csm_loss",
           "load_dataset", "lr_at", "pad_batch", "toy_csm_config", "train"]
