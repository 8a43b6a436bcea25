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


def best_seconds(fn, repeats: int = 3) -> float:
    """The fastest of `repeats` timed calls of `fn()`: on a shared machine, noise only ever
    adds time, so the minimum is the best estimate of the cost itself."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be an int >= 1")
    best = float("inf")
    for _ in range(repeats):
        with timed() as t:
            fn()
        best = min(best, t.seconds)
    return best


# ------------------------------------------------------------------- floating-point operations

def _attention_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """Attention's two matmuls per head: q . k for every (row, slot) pair, then the weighted
    sum of v. (PyTorch's counter has no formula for the CPU kernel, and its CUDA formulas
    assume as many kv heads as query heads.) Shapes: q [B, H, S_q, d], k [B, G, L, d]."""
    B, H, S_q, d = q
    return 2 * 2 * B * H * S_q * k[-2] * d


_SDPA_KERNELS = ("_scaled_dot_product_flash_attention_for_cpu",
                 "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_cudnn_attention")


def count_flops(fn) -> int:
    """Floating-point operations of one call of `fn()` (torch's FlopCounterMode, with
    scaled-dot-product attention counted on every device)."""
    from torch.utils.flop_counter import FlopCounterMode

    attention = {getattr(torch.ops.aten, name): _attention_flops for name in _SDPA_KERNELS
                 if hasattr(torch.ops.aten, name)}
    with FlopCounterMode(display=False, custom_mapping=attention) as flops:
        fn()
    return flops.get_total_flops()


# ------------------------------------------------------------------- host syncs on purpose

@contextmanager
def sync_in_every_layer(model):
    """Inside the block, every attention call of `model` (a csm_nb CSM) reads one value back
    to the host, as the official loop's KV-cache check does: the price of a sync, measured."""
    def read_back(module, args, output):
        output[0, 0, 0].item()            # the CPU waits here until the device is done
    handles = [layer.attn.register_forward_hook(read_back)
               for part in (model.backbone, model.decoder) for layer in part.layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class GraphRecorder:
    """A torch.compile backend that keeps every graph it is handed and runs it as it is:
    how many graphs a function compiles to, and how big they are, without building kernels.

        rec = GraphRecorder()
        f = torch.compile(fn, backend=rec, dynamic=False)
        f(x); len(rec.graphs), rec.ops()
    """

    def __init__(self):
        self.graphs: list = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    def ops(self, index: int = -1) -> int:
        """Calls (ops) in one recorded graph (the last by default)."""
        if not self.graphs:
            raise ValueError("no graph recorded yet: call the compiled function first")
        return sum(node.op == "call_function" for node in self.graphs[index].graph.nodes)
