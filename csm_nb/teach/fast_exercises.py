"""Notebook 04's coding exercises and its closing quiz.

A part of the `fast` lesson (which re-exports it). Two functions the student writes, each the
core of a fast frame loop and each checked by running it:

- `write_cache(cache, new, positions)`: a static KV-cache write at a position *tensor*, in
  place (the cache keeps its address, as a CUDA graph needs) and with no host sync;
- `update_done(done, frame)`: the stop test's flags, kept on the device: a row is done once
  it wrote its all-zero frame, and nothing is read back inside the frame (counted by
  `csm_nb.core.profiling.OpCounter`).
"""

from __future__ import annotations

import torch

from ..core.profiling import SYNC_OPS, OpCounter
from .common import Solutions, unanswered, verdict, wrong
from .recall_quiz import Question, Quiz

SOLUTIONS = Solutions()


def _syncs(ops: OpCounter) -> list[str]:
    return sorted(name for name in ops.counts if name in SYNC_OPS)


class _HostRead(Exception):
    pass


class _DeviceValues(torch.Tensor):
    """A tensor whose values, as on a GPU, cannot reach Python for free. `.tolist()` and
    `.numpy()` read a CPU tensor's memory without any ATen op (so OpCounter cannot see them);
    on a GPU they are host syncs, so here they are refused."""

    def tolist(self):
        raise _HostRead("tolist")

    def numpy(self, *args, **kwargs):
        raise _HostRead("numpy")


_READ_BACK = ("your code read a value back to the host ({}): `.item()`, `.tolist()`, `int(t)`, "
              "an `if` on a tensor or a Python loop over its values each stall the GPU.")


class _Done(Exception):
    """Ends a check early; `value` is what the checker returns."""

    def __init__(self, value):
        super().__init__()
        self.value = value


def _run_sync_free(name: str, where: str, returns: str, advice: str, call):
    """The student's `call()`, run counting its ops: its result, or _Done with the verdict
    when it read a value back to the host (refused or counted), raised, or returned None."""
    try:   # the student's code may fail or return junk: report it, never crash the cell
        with OpCounter() as ops:
            got = call()
    except _HostRead as read:
        raise _Done(wrong(name, f"{where}, " + _READ_BACK.format(f".{read}()") + advice))
    except Exception as err:
        raise _Done(wrong(name, f"{where}, your function raised {type(err).__name__}: "
                                f"{err}."))
    if got is None:
        unanswered(None, fix=f"your function returns None; return {returns}")
        raise _Done(None)
    if _syncs(ops):
        raise _Done(wrong(name, f"{where}, " + _READ_BACK.format(", ".join(_syncs(ops)))
                          + advice))
    return got


# ------------------------------------------------------------------- a static-cache write

def _cache_cases():
    """(cache [B, G, L, hd], new [B, G, S, hd], positions [S]): a decode step, a prefill
    chunk, and slots that are not next to each other."""
    g = torch.Generator().manual_seed(0)
    for (B, G, L, hd), slots in (((1, 2, 16, 4), [5]), ((2, 2, 16, 4), [7, 8, 9]),
                                 ((1, 3, 12, 2), [2, 10])):
        cache = torch.randn(B, G, L, hd, generator=g)
        new = torch.randn(B, G, len(slots), hd, generator=g)
        yield cache, new, torch.tensor(slots, dtype=torch.int64)


def check_cache_write(fn) -> bool:
    """Your `write_cache(cache [B, G, L, hd], new [B, G, S, hd], positions [S] int64)`:
    in place (same memory), no host sync, equal to `cache.index_copy_(2, positions, new)`."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"write_cache: expected a function, got {type(fn).__name__}")
    for cache, new, positions in _cache_cases():
        before, address = cache.clone(), cache.data_ptr()
        want = before.clone().index_copy_(2, positions, new)
        where = f"writing {new.shape[2]} row(s) at slots {positions.tolist()}"
        try:
            got = _run_sync_free("cache_write", where, "the cache",
                                 " Index with the position tensor itself.",
                                 lambda: fn(cache, new.clone(),
                                            positions.clone().as_subclass(_DeviceValues)))
        except _Done as done:
            return done.value
        if not isinstance(got, torch.Tensor) or got.data_ptr() != address:
            return wrong("cache_write", f"{where}, you returned a new tensor: the rows must "
                         "land in the cache's own memory (in place, e.g. a method ending in "
                         "`_`), because a compiled graph or a CUDA graph keeps using that "
                         "address.")
        if torch.equal(cache, before):
            return wrong("cache_write", f"{where}, the cache did not change: write `new` "
                         "into it.")
        if not torch.equal(cache, want):
            untouched = torch.ones(cache.shape[2], dtype=torch.bool)
            untouched[positions] = False
            if not torch.equal(cache[:, :, untouched], before[:, :, untouched]):
                hint = ("slots outside `positions` changed: write only there, along the slot "
                        "axis (dim 2 of [B, G, L, hd]).")
            else:
                hint = ("the right slots changed but hold the wrong values: new[:, :, j] "
                        "belongs at slot positions[j].")
            return wrong("cache_write", f"{where}: {hint}")
    return verdict(True, "in place, no host sync, and equal to index_copy_ for a decode step, "
                   "a prefill chunk and scattered slots: csm_nb's KVCache.update does exactly "
                   "this.", "")


SOLUTIONS.hints["cache_write"] = (
    "The slot axis of [B, G, L, hd] is dim 2. Tensor methods ending in `_` write in place; "
    "one of them copies rows of a source into chosen indices of a dimension, taking the "
    "indices as a tensor.")
SOLUTIONS["cache_write"] = (
    "cache.index_copy_(2, positions, new) writes new[:, :, j] into slot positions[j] of dim 2,\n"
    "in place, with the positions staying on the device (no .item(), no host sync).\n"
    "cache[:, :, positions] = new (index_put_) is just as good; torch.cat would allocate a\n"
    "new tensor every frame, and a Python loop over positions.tolist() would sync.")
SOLUTIONS.answers["cache_write"] = (
    "def write_cache(cache, new, positions):\n"
    "    return cache.index_copy_(2, positions, new)     # slots along dim 2, in place\n"
    "\n"
    "\n"
    "lesson.check_cache_write(write_cache)")


# ------------------------------------------------------------------- a stop test that never syncs

def _done_cases():
    """(done [B], frame [B, K]): rows already done, a stop frame, a frame with some zeros."""
    frame = torch.tensor([[0, 0, 0, 0, 0], [0, 5, 0, 0, 0], [3, 1, 4, 1, 5], [0, 0, 0, 0, 0]])
    yield torch.tensor([False, False, False, False]), frame
    yield torch.tensor([False, True, False, True]), frame
    yield torch.tensor([False]), torch.tensor([[7, 0, 2, 0, 0]])


def check_stop_flags(fn) -> bool:
    """Your `update_done(done [B] bool, frame [B, K]) -> done [B]`: a row is done once it
    wrote an all-zero frame; no value may be read back to the host (OpCounter counts)."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"update_done: expected a function, got {type(fn).__name__}")
    for done, frame in _done_cases():
        want = done | (frame == 0).all(dim=-1)
        where = f"with done={done.tolist()} and frame={frame.tolist()}"
        try:
            got = _run_sync_free("stop_flags", where, "the new flags [B]",
                                 " Keep the flags a tensor and combine them with tensor ops.",
                                 lambda: fn(done.clone().as_subclass(_DeviceValues),
                                            frame.clone().as_subclass(_DeviceValues)))
        except _Done as stop:
            return stop.value
        got = torch.as_tensor(got).as_subclass(torch.Tensor)
        if got.shape != want.shape:
            return wrong("stop_flags", f"{where}: expected {tuple(want.shape)} flags (one per "
                         f"row), got shape {tuple(got.shape)}: reduce over the codebook axis "
                         "(dim=-1) of the [B, K] frame.")
        got = got.bool()
        if torch.equal(got, want):
            continue
        if torch.equal(got, done | (frame == 0).any(dim=-1)):
            hint = ("a row is done when ALL its codes are 0 (the stop frame); a single 0 is an "
                    "ordinary code.")
        elif torch.equal(got, (frame == 0).all(dim=-1)):
            hint = "a row that stopped stays stopped: combine with the old flags (`|`)."
        else:
            hint = "done_new = done_old OR (every code of the row's frame is 0)."
        return wrong("stop_flags", f"{where}: you returned {got.tolist()}, expected "
                     f"{want.tolist()}. {hint}")
    return verdict(True, "right flags for every row, and not one host sync: the loop reads "
                   "done.all() once per frame, and on a GPU one frame late (StopCheck).", "")


SOLUTIONS.hints["stop_flags"] = (
    "(frame == 0) is a [B, K] bool tensor; reduce it over the codebooks with a method that "
    "asks 'all of them?', then OR it with the old flags. No `if`, no bool(): those read the "
    "value on the host.")
SOLUTIONS["stop_flags"] = (
    "done | (frame == 0).all(dim=-1): three tensor ops (eq, all, or), so the flags stay on the\n"
    "device and the GPU's queue keeps flowing. `if (frame == 0).all(): ...` would read the\n"
    "value (aten::is_nonzero, a host sync) in every frame.")
SOLUTIONS.answers["stop_flags"] = (
    "def update_done(done, frame):\n"
    "    return done | (frame == 0).all(dim=-1)      # all codes 0 = the stop frame\n"
    "\n"
    "\n"
    "lesson.check_stop_flags(update_done)")


# ------------------------------------------------------------------- the closing quiz

QUIZ = Quiz("fast.quiz", [
    Question("What is a host sync?",
             {"a": "a kernel launch", "b": "replaying a CUDA graph",
              "c": "the CPU waiting until the GPU has finished everything queued, to read a "
                   "value back", "d": "copying the weights to the GPU"},
             "c", "e.g. .item(), bool(t), .tolist(): the GPU's queue drains, then it idles "
             "while the CPU launches again.",
             {"a": "a launch queues work and returns at once; nothing waits.",
              "b": "a replay is one launch of many recorded kernels; it does not wait."}),
    Question("At batch 1 on a GPU, what sets the floor on the time of one frame?",
             {"a": "memory bandwidth: the bytes of weights a frame must read",
              "b": "the floating-point operations", "c": "Mimi's decoder",
              "d": "the tokenizer"},
             "a", "about 9.1 GB of bf16 weights per frame; the math on one row is tiny.",
             {"b": "at batch 1 every weight is used for one row: the math waits for memory."}),
    Question("Which part of a CSM-1B frame reads the most bytes?",
             {"a": "the backbone", "b": "sampling", "c": "the embedding tables",
              "d": "the depth decoder"},
             "d", "it is small, but read 31 times per frame: about 78 % of the bytes.",
             {"a": "the backbone is read once per frame; the decoder 31 times."}),
    Question("Why does csm_nb allocate every KV cache once, for all positions?",
             {"a": "it uses less memory than a growing cache",
              "b": "fixed shapes and addresses: one compiled graph and one CUDA graph serve "
                   "every frame", "c": "it makes the model more accurate",
              "d": "it lets the context grow past 2048 rows"},
             "b", "a growing cache changes shape (recompiles) and address (breaks a graph).",
             {"a": "it reserves all 2048 slots up front: more memory, not less."}),
    Question("What does `generate_codes(..., backend=\"compile\")` compile?",
             {"a": "one depth-decoder step with its position as a tensor, reused for every "
                   "codebook", "b": "the whole unrolled loop of 31 steps",
              "c": "Mimi's decoder", "d": "nothing on a CPU"},
             "a", "one small graph serves every position, so it compiles in seconds.",
             {"b": "that is what the first version did: minutes to compile, growing with K."}),
    Question("What does replaying a frame as a CUDA graph remove?",
             {"a": "the memory reads", "b": "the math",
              "c": "the CPU's work per kernel: Python and one launch for each kernel",
              "d": "the need for static buffers"},
             "c", "the GPU still runs every kernel and reads every byte; the CPU is out of "
             "the loop.",
             {"a": "the kernels still read every weight: the bandwidth floor stays.",
              "d": "a replay reuses the recorded addresses, so it needs static buffers."}),
])


show_quiz, check_quiz = QUIZ.show, QUIZ.check      # check_quiz({1: "a", ...})


QUIZ.register(SOLUTIONS, hint="The five words at the top; sections 2 (bytes), 3 (static caches), "
              "4 (host syncs), 5 (compile) and 6 (CUDA graphs).")
