"""Notebook 05, part 1: open the box. The CSM loss and one training step, written by the
student and checked against `csm_nb.training`, and the package's own code shown in the
notebook once they are done.

Gathered with the other parts by `training`, the module the notebook imports.
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.nn.functional as F

from ..training.loss import csm_loss
from .common import Solutions, stuck, unanswered, verdict

SOLUTIONS = Solutions()
_LOSS_TOL = 1e-4          # nats: float32 sums over a batch agree far closer than this
_PARAM_TOL = 1e-6         # one AdamW step on identical inputs is bitwise equal on one device
_CHECK_LR = 1e-3
_CHECK_STEPS = 2          # two steps: forgetting zero_grad only shows from the second one


def show_source(fn) -> None:
    """Print the source of a function of the package (e.g. training.csm_loss): the box, open."""
    print(inspect.getsource(fn))


# ------------------------------------------------------------------- your CSM loss (section 4)

def _decoder_variants(model, h, codes) -> dict[str, torch.Tensor]:
    """The depth decoder's loss, right and wrong in the ways students get it wrong."""
    K, V = model.config.num_codebooks, model.config.audio_vocab_size
    offsets = model.codebook_offsets[: K - 1]
    inputs = torch.cat([h[:, None], model.audio_embeddings(codes[:, :-1] + offsets)], 1)
    logits = model.decoder_forward(inputs).float()                        # [N, K-1, V]
    flat = logits.reshape(-1, V)
    return {"right": F.cross_entropy(flat, codes[:, 1:].reshape(-1)),
            "sum": F.cross_entropy(flat, codes[:, 1:].reshape(-1), reduction="sum"),
            "shifted": F.cross_entropy(flat, codes[:, :-1].reshape(-1)),
            "no offsets": F.cross_entropy(model.decoder_forward(torch.cat(
                [h[:, None], model.audio_embeddings(codes[:, :-1])], 1)).float().reshape(-1, V),
                codes[:, 1:].reshape(-1))}


def check_csm_loss(fn, model, tokens, mask) -> bool:
    """Your `my_csm_loss(model, tokens, mask) -> (codebook-0 loss, decoder loss)` against
    csm_nb.training.csm_loss on the same batch (every frame through the decoder)."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"my_csm_loss: expected a function, got {type(fn).__name__}")
    K = model.config.num_codebooks
    with torch.no_grad():
        want = csm_loss(model, tokens, mask)
        try:   # the student's code may fail or return junk: report it, never crash the cell
            got = fn(model, tokens, mask)
            if got is None:
                unanswered(None, fix="your my_csm_loss(...) returns None: fill in the two losses")
                return None
            loss0, loss_dec = (float(x) for x in got)
        except Exception as err:
            return verdict(False, "", f"my_csm_loss raised or returned something odd "
                           f"({type(err).__name__}: {err}); return (loss0, loss_dec)."
                           + stuck("csm_loss"))
        h = model(tokens[:, :-1], mask[:, :-1])
        is_frame = mask[:, 1:, :K].all(-1)
        variants = _decoder_variants(model, h[is_frame], tokens[:, 1:, :K][is_frame])
    ok0 = abs(loss0 - float(want.codebook0)) < _LOSS_TOL
    ok_dec = abs(loss_dec - float(want.decoder)) < _LOSS_TOL
    if ok0 and ok_dec:
        return verdict(True, f"codebook 0 {loss0:.4f} + decoder {loss_dec:.4f} nats, exactly "
                       f"csm_loss's on these {want.frames} target frames.", "")
    if not ok0:
        if abs(loss0 - float(want.decoder)) < _LOSS_TOL:
            why = "your two losses are swapped: return (codebook-0 loss, decoder loss)."
        else:
            why = ("codebook 0: cross-entropy of codebook0_head(h) against code 0 of the NEXT "
                   "row, over the target frames only (h[t] predicts row t+1).")
        return verdict(False, "", f"codebook-0 loss {loss0:.4f}, expected "
                       f"{float(want.codebook0):.4f}: {why}" + stuck("csm_loss"))
    near = {name: abs(loss_dec - float(v)) < _LOSS_TOL for name, v in variants.items()}
    why = ("you summed; take the mean over frames and codebooks (F.cross_entropy's default)."
           if near["sum"] else
           "the targets are codes 1..K-1; the inputs are h and the embeddings of codes "
           "0..K-2." if near["shifted"] else
           "each codebook has its own slice of audio_embeddings: add "
           "model.codebook_offsets[:K-1] to the codes before embedding them."
           if near["no offsets"] else
           "the decoder reads [h, emb(code 0), ..., emb(code K-2)] and predicts codes "
           "1..K-1 (decoder_forward gives their logits [N, K-1, V]).")
    return verdict(False, "", f"codebook 0 is right; decoder loss {loss_dec:.4f}, expected "
                   f"{float(want.decoder):.4f}: {why}" + stuck("csm_loss"))


_LOSS_BODY = (
    "    V = model.config.audio_vocab_size\n"
    "    loss0 = F.cross_entropy(model.codebook0_head(h).float(), codes[:, 0])\n"
    "    offsets = model.codebook_offsets[: K - 1]            # codebook k's slice of the table\n"
    "    inputs = torch.cat([h[:, None], model.audio_embeddings(codes[:, :-1] + offsets)], 1)\n"
    "    logits = model.decoder_forward(inputs).float()       # [N, K-1, V]: codebooks 1..K-1\n"
    "    loss_dec = F.cross_entropy(logits.reshape(-1, V), codes[:, 1:].reshape(-1))\n")
LOSS_HEAD = (
    "def my_csm_loss(model, tokens, mask):\n"
    "    \"\"\"(codebook-0 loss, depth-decoder loss) of a batch [B, S, K+1], as in section 4.\"\"\"\n"
    "    K = model.config.num_codebooks\n"
    "    h = model(tokens[:, :-1], mask[:, :-1])                # [B, S-1, D]: row t's state\n"
    "    is_frame = mask[:, 1:, :K].all(-1)                     # [B, S-1]: row t+1 is audio\n"
    "    h, codes = h[is_frame], tokens[:, 1:, :K][is_frame]    # [N, D], [N, K]: the targets\n")
SOLUTIONS["csm_loss"] = LOSS_HEAD + _LOSS_BODY + "    return loss0, loss_dec"
SOLUTIONS.answers["csm_loss"] = SOLUTIONS["csm_loss"] + (
    "\n\n\nlesson.check_csm_loss(my_csm_loss, model, tokens, mask)\n")
SOLUTIONS.hints["csm_loss"] = (
    "Codebook 0: F.cross_entropy(model.codebook0_head(h), codes[:, 0]). Decoder: its input is\n"
    "[h, emb(code 0), ..., emb(code K-2)]: torch.cat([h[:, None], model.audio_embeddings(\n"
    "codes[:, :-1] + model.codebook_offsets[:K-1])], dim=1); model.decoder_forward(inputs)\n"
    "gives logits [N, K-1, V] for codes 1..K-1; flatten both to a cross-entropy.")


# ------------------------------------------------------------------- one training step (5)

def _reference_step(model, optimizer, tokens, mask, max_norm, clip=True, zero=True) -> float:
    loss = csm_loss(model, tokens, mask).total
    if zero:
        optimizer.zero_grad()
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def _copy_for_step(model):
    twin = copy.deepcopy(model).train()
    twin.text_embeddings.weight.requires_grad_(False)      # frozen, as in the notebook
    params = [p for p in twin.parameters() if p.requires_grad]
    return twin, torch.optim.AdamW(params, lr=_CHECK_LR)


def check_train_step(fn, model, tokens, mask, max_norm: float = 1.0) -> bool:
    """Your `train_step(model, optimizer, tokens, mask, max_norm) -> loss` against the
    reference, twice on copies of `model` (which itself is left untouched)."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"train_step: expected a function, got {type(fn).__name__}")
    results = {}
    for name, kwargs in (("right", {}), ("no clip", {"clip": False}),
                         ("no zero_grad", {"zero": False})):
        twin, opt = _copy_for_step(model)
        losses = [_reference_step(twin, opt, tokens, mask, max_norm, **kwargs)
                  for _ in range(_CHECK_STEPS)]
        results[name] = (twin, losses)
    mine, opt = _copy_for_step(model)
    try:   # the student's code may fail or return junk: report it, never crash the cell
        losses = [fn(mine, opt, tokens, mask, max_norm) for _ in range(_CHECK_STEPS)]
        if losses[0] is None:
            unanswered(None, fix="your train_step(...) returns None: fill it in and return "
                                 "the loss")
            return None
        losses = [float(x) for x in losses]
    except Exception as err:
        return verdict(False, "", f"train_step raised or returned something odd "
                       f"({type(err).__name__}: {err}); return the loss as a number."
                       + stuck("train_step"))

    def same(name):
        twin = results[name][0]
        return all(torch.allclose(a, b, atol=_PARAM_TOL, rtol=0)
                   for a, b in zip(mine.parameters(), twin.parameters()))
    right_losses = results["right"][1]
    if same("right") and all(abs(a - b) < _LOSS_TOL for a, b in zip(losses, right_losses)):
        return verdict(True, f"two steps, losses {losses[0]:.4f} then {losses[1]:.4f}, and "
                       "every weight equal to the reference step's.", "")
    start = dict(model.named_parameters())
    if all(torch.equal(p, start[n]) for n, p in mine.named_parameters() if p.requires_grad):
        why = "the weights did not change: call optimizer.step() after loss.backward()."
    elif same("no clip"):
        why = ("the update is right except for the clipping: call torch.nn.utils."
               "clip_grad_norm_(model.parameters(), max_norm) between backward() and step().")
    elif same("no zero_grad"):
        why = ("the second step went wrong: gradients add up across backward() calls unless "
               "you clear them with optimizer.zero_grad() first.")
    elif not same("right"):
        why = ("the weights differ from the reference: loss = csm_loss(...).total, then "
               "zero_grad, backward, clip, step, in that order.")
    else:
        why = (f"the weights are right, but you returned {losses}, the loss is "
               f"{right_losses}: return loss.item() of the loss you stepped on.")
    return verdict(False, "", why + stuck("train_step"))


SOLUTIONS["train_step"] = (
    "def train_step(model, optimizer, tokens, mask, max_norm=1.0):\n"
    "    \"\"\"One step: the loss, its gradients, clipped, and an update. Returns the loss.\"\"\"\n"
    "    loss = training.csm_loss(model, tokens, mask).total\n"
    "    optimizer.zero_grad()                 # gradients add up unless cleared\n"
    "    loss.backward()\n"
    "    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)   # no step too big\n"
    "    optimizer.step()\n"
    "    return loss.item()")
SOLUTIONS.answers["train_step"] = SOLUTIONS["train_step"] + (
    "\n\n\nlesson.check_train_step(train_step, model, tokens, mask)\n")
SOLUTIONS.hints["train_step"] = (
    "Five lines: the loss (training.csm_loss(...).total), optimizer.zero_grad(),\n"
    "loss.backward(), torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm),\n"
    "optimizer.step(); return loss.item().")
