"""A plain PyTorch training loop for CSM: AdamW, warm-up then cosine decay, gradient
clipping, optional autocast, frozen parameters by name.

Nothing here is specific to tiny models: `train` takes the device and autocast dtype, so the
same loop fine-tunes CSM-1B on a GPU.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from ..core.model import CSM
from .loss import CSMLoss, csm_loss


@dataclass
class History:
    """Per step: the losses, codebook-0 accuracy (teacher forced), learning rate, seconds."""

    step: list[int] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    codebook0: list[float] = field(default_factory=list)
    decoder: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def summary(self, last: int = 10) -> str:
        if not self.step:
            return "no steps yet"

        def mean(xs):
            return sum(xs[-last:]) / len(xs[-last:])
        return (f"{self.step[-1] + 1} steps in {self.seconds[-1]:.0f} s; mean of the last "
                f"{min(last, len(self))}: loss {mean(self.total):.3f} = codebook 0 "
                f"{mean(self.codebook0):.3f} + decoder {mean(self.decoder):.3f}; codebook-0 "
                f"accuracy {mean(self.accuracy):.0%}")


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of `lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def train(model: CSM, batches, steps: int, lr: float = 3e-3, warmup: int = 20,
          weight_decay: float = 0.0, grad_clip: float = 1.0, decoder_fraction: float = 1.0,
          freeze: tuple[str, ...] = (), device=None, dtype: torch.dtype | None = None,
          seed: int = 0, optimizer: torch.optim.Optimizer | None = None,
          progress: bool = True, last_turn_only: bool = False) -> History:
    """Train `model` for `steps` batches with AdamW; returns the History.

    batches: one (tokens, mask) pair (trained on again and again) or an iterable of them.
    freeze: names (or name prefixes) of parameters to leave as they are, e.g.
    ("text_embeddings",): CSM-1B's 262 M-parameter text table, or a toy's 16 M rows of which
    it reads a few dozen. device: where to train (default: the model's). dtype: autocast dtype
    of the forward pass (e.g. torch.bfloat16 on a GPU; None = no autocast).
    last_turn_only: learn only each conversation's last turn (see csm_loss).
    """
    from tqdm.auto import tqdm

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive int")
    stream = _batch_stream(batches)
    freeze = (freeze,) if isinstance(freeze, str) else tuple(freeze)
    names = dict(model.named_parameters())
    frozen = [n for n in names if n.startswith(tuple(freeze))]
    unknown = [f for f in freeze if not any(n.startswith(f) for n in names)]
    if unknown:
        raise ValueError(f"freeze={unknown} matches no parameter; names start with "
                         f"{sorted({n.split('.')[0] for n in names})}")
    device = torch.device(device) if device is not None else model.codebook0_head.weight.device
    trainable = [p for n, p in names.items() if n not in frozen and p.requires_grad]
    was_trainable = {n: p.requires_grad for n, p in names.items()}
    for n in frozen:
        names[n].requires_grad_(False)
    model.to(device).train()
    # fused: one kernel for the whole update instead of ~10 per tensor (CPU and CUDA have it).
    optimizer = optimizer or torch.optim.AdamW(
        trainable, lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay,
        fused=device.type in ("cpu", "cuda") or None)
    generator = torch.Generator().manual_seed(seed)
    history, start = History(), time.perf_counter()
    bar = tqdm(range(steps), desc="training", disable=not progress)
    try:
        for step in bar:
            tokens, mask = next(stream)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, lr, warmup)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = csm_loss(model, tokens.to(device), mask.to(device), decoder_fraction,
                                generator, last_turn_only)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
            optimizer.step()
            _record(history, step, loss, optimizer.param_groups[0]["lr"],
                    time.perf_counter() - start)
            bar.set_postfix(loss=f"{history.total[-1]:.3f}", c0=f"{history.codebook0[-1]:.3f}")
    finally:
        bar.close()
        for n, p in names.items():
            p.requires_grad_(was_trainable[n])
        model.eval()
    return history


def _batch_stream(batches) -> Iterator:
    """Checked at once (before the model is touched); then batch after batch."""
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        return itertools.repeat(batches)      # one fixed batch, again and again
    if not isinstance(batches, Iterable):
        raise TypeError(f"batches must be a (tokens, mask) pair or an iterable of them, got "
                        f"{type(batches).__name__}")

    def stream():
        yield from batches
        raise ValueError("batches ran out before `steps` were done; pass an endless iterator "
                         "(e.g. context_batches) or fewer steps")
    return stream()


def _record(history: History, step: int, loss: CSMLoss, lr: float, seconds: float) -> None:
    history.step.append(step)
    history.total.append(loss.total.item())
    history.codebook0.append(loss.codebook0.item())
    history.decoder.append(loss.decoder.item())
    history.accuracy.append(loss.codebook0_accuracy)
    history.lr.append(lr)
    history.seconds.append(seconds)


def code_match(generated: torch.Tensor, target: torch.Tensor) -> dict:
    """How close generated codes [K, F'] come to the target [K, F], frame by frame: the
    fraction of the target's frames whose code 0 (and whose whole frame) is equal."""
    F_common = min(generated.shape[1], target.shape[1])
    g, t = generated[:, :F_common].cpu(), target[:, :F_common].cpu()
    frames = max(target.shape[1], 1)
    return {"codebook0": float((g[0] == t[0]).sum()) / frames,
            "all_codebooks": float((g == t).all(0).sum()) / frames,
            "frames": (generated.shape[1], target.shape[1])}
