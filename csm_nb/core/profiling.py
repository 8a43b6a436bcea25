"""Counting what a frame costs: ATen ops dispatched, host syncs, time, and bytes of weights.

On a GPU at batch 1, CSM is bound by overheads, not math: every ATen op is a kernel launch
(microseconds of CPU each) and every host sync (`.item()`, `bool(tensor)`, `.tolist()`)
stalls the CPU until the GPU has drained its queue. Counting both on a CPU predicts how a
frame loop will behave on a GPU without owning one.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Ops that copy a device value to the host: each one blocks until the device catches up.
SYNC_OPS = frozenset({"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero",
                      "aten::equal", "aten::nonzero", "aten::tolist"})
# Ops that only reinterpret memory: no kernel is launched for them.
VIEW_OPS = frozenset({"aten::view", "aten::_unsafe_view", "aten::reshape", "aten::expand",
                      "aten::transpose", "aten::t", "aten::permute", "aten::unsqueeze",
                      "aten::squeeze", "aten::slice", "aten::select", "aten::as_strided",
                      "aten::alias", "aten::detach", "aten::unflatten", "aten::flatten",
                      "aten::split", "aten::unbind", "aten::lift_fresh",
                      "aten::view_as_complex", "aten::view_as_real"})


def _aten_name(func) -> str:
    schema = getattr(func, "_schema", None)
    return schema.name if schema is not None else str(func)


class OpCounter(TorchDispatchMode):
    """Count every ATen op dispatched inside the `with` block, by name.

        with OpCounter() as ops:
            model(x)
        ops.total, ops.kernels, ops.syncs, ops.counts.most_common(5)
    """

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[_aten_name(func)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def syncs(self) -> int:
        """Host syncs: ops that read a device value back (`.item()` and friends)."""
        return sum(n for name, n in self.counts.items() if name in SYNC_OPS)

    @property
    def kernels(self) -> int:
        """Ops that would launch a kernel on a GPU (everything but views)."""
        return sum(n for name, n in self.counts.items() if name not in VIEW_OPS)


@contextmanager
def timed():
    """`with timed() as t: ...; t.seconds` (synchronising CUDA before and after)."""
    class Result:
        seconds = 0.0
    result = Result()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield result
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    result.seconds = time.perf_counter() - start


def weight_bytes_per_frame(model) -> int:
    """Bytes of weights one frame reads at batch 1: the whole backbone and codebook-0 head,
    then the depth decoder and projection once per decoder step, and one audio_head slice
    per codebook. Embedding tables are read one row at a time, so they barely count."""
    cfg = model.config
    size = model.codebook0_head.weight.element_size()

    def params(module) -> int:
        return sum(p.numel() for p in module.parameters())

    steps = cfg.num_codebooks - 1
    head_slice = model.audio_head[0].numel()
    total = (params(model.backbone) + params(model.codebook0_head)
             + steps * (params(model.decoder) + params(model.projection) + head_slice))
    return total * size


def measure_bandwidth(device=None, megabytes: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s, from copying a large buffer (read + write)."""
    device = torch.device(device or "cpu")
    n = megabytes * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)                                    # warm up: page in both buffers
    best = float("inf")
    for _ in range(repeats):
        with timed() as t:
            dst.copy_(src)
        best = min(best, t.seconds)
    return 2 * src.numel() * src.element_size() / best
