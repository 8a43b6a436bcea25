"""`generate_codes`: prefill the prompt, then one frame of 32 codes at a time until the
all-zero stop frame or `max_frames`.

Each frame is one call of the frame step (csm_nb.core.frame_loop): the depth loop, then the
backbone step that reads the frame back. Inside a frame nothing reads a tensor back to the
host: sampling noise is drawn once per frame, caches are static and written in place, and
positions are tensors. The only host read is the stop test, once per frame on the CPU and one
frame late on CUDA (so the GPU never waits for the CPU to look at it).

Shapes: B batch, S prompt rows, C = K + 1 columns, K codebooks, V bins, F frames, D width.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from .frame_loop import default_backend, frame_step_for
from .model import CSM
from .rows import check_rows
from .sampling import check_sampling_args

BACKENDS = ("auto", "eager", "compile", "graph")


class _StopSignal:
    """The one value an `on_frame` callback returns to end generation after this frame."""

    def __repr__(self) -> str:
        return "csm_nb.STOP"


STOP = _StopSignal()


@dataclass
class FrameInfo:
    """What `on_frame` receives after each frame (tensors stay on the model's device)."""

    index: int                     # frame number, from 0
    codes: torch.Tensor            # [B, K] the frame just sampled
    logits: torch.Tensor | None    # [B, K, V] fp32 logits of every codebook, if asked for


class StopCheck:
    """"Has every row emitted its all-zero frame?" without stalling a GPU.

    On the CPU the answer is read at once (a sync costs nothing there). On CUDA the flag is
    copied to pinned memory asynchronously and read one frame later, while the next frame
    is already queued: at most one extra frame is computed, and then discarded.
    """

    def __init__(self, device: torch.device):
        self.lagged = device.type == "cuda"
        self.pending = None

    def __call__(self, all_done: torch.Tensor) -> bool:
        if not self.lagged:
            return bool(all_done)
        previous, self.pending = self.pending, (
            all_done.to("cpu", non_blocking=True), torch.cuda.Event())
        self.pending[1].record()
        if previous is None:
            return False
        previous[1].synchronize()
        return bool(previous[0])


def _leading_pad(mask: torch.Tensor) -> torch.Tensor | None:
    """Rows with no active column at the start of a batch row are left padding: [B] or None."""
    active = mask.any(dim=-1)                                                 # [B, S]
    first = active.to(torch.int64).argmax(dim=-1)                             # [B]
    if not bool(active.any(dim=-1).all()):
        bad = int((~active.any(dim=-1)).nonzero()[0])
        raise ValueError(f"mask: batch row {bad} has no active column at all; every prompt "
                         "needs at least one text or audio row")
    seen = active.to(torch.int64).cumsum(dim=-1) > 0
    if bool((seen & ~active).any()):
        raise ValueError("mask: a row with no active column follows real rows; only leading "
                         "rows may be empty (left padding of a batch)")
    return first if bool(first.any()) else None


def check_prompt(model: CSM, tokens, mask, max_frames) -> None:
    """The rows (see rows.check_rows) and room in the window for max_frames more."""
    cfg = model.config
    check_rows(cfg, tokens, mask, "generate_codes")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int):
        raise TypeError(f"max_frames must be an int, got {type(max_frames).__name__}")
    if max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be >= 1 (one frame = "
                         f"{cfg.frame_ms:g} ms of audio)")
    S = tokens.shape[-2]
    if S + max_frames > cfg.max_seq_len:
        raise ValueError(
            f"the prompt has {S} rows and max_frames={max_frames}, but the model sees at most "
            f"{cfg.max_seq_len} rows; lower max_frames to {cfg.max_seq_len - S} or less, or "
            "shorten the context (fewer or shorter segments)")


def out_of_memory_error(err: torch.OutOfMemoryError, device, doing: str,
                        lower: str) -> torch.OutOfMemoryError:
    """The device's bare "out of memory", rewritten to say what the call was doing and what
    to lower. Same type, so `except torch.OutOfMemoryError` still catches it; the allocator's
    cached blocks are released, so a retry with smaller settings has room."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    root = err                             # the allocator's own words, under any rewording
    while isinstance(root.__cause__, torch.OutOfMemoryError):
        root = root.__cause__
    said = (str(root).strip().splitlines() or [""])[0][:200]
    return torch.OutOfMemoryError(
        f"out of memory on {device} {doing}. Lower {lower}, load the model in half precision "
        "(dtype=torch.bfloat16, or torch.float16 on GPUs without bf16), or free memory (delete "
        f"other models, then torch.cuda.empty_cache()). The device said: {said}")


def _explains_out_of_memory(fn):
    @functools.wraps(fn)
    def wrapper(model, tokens, mask, max_frames=125, *args, **kwargs):
        try:
            return fn(model, tokens, mask, max_frames, *args, **kwargs)
        except torch.OutOfMemoryError as err:
            B, S = (1, *tokens.shape[:1]) if tokens.dim() == 2 else tuple(tokens.shape[:2])
            weight = model.codebook0_head.weight
            raise out_of_memory_error(
                err, weight.device, f"generating max_frames={max_frames} frames for a batch of "
                f"{B} prompt(s) of {S} rows, model in {weight.dtype}",
                "max_frames, shorten the prompts (less context), use a smaller batch") from err
    return wrapper


@_explains_out_of_memory
@torch.inference_mode()
def generate_codes(model: CSM, tokens: torch.Tensor, mask: torch.Tensor, max_frames: int = 125,
                   temperature: float = 0.9, topk: int = 50,
                   generator: torch.Generator | None = None,
                   on_frame: Callable[[FrameInfo], object] | None = None,
                   trace_logits: bool = False, backend: str = "auto") -> torch.Tensor:
    """Generate Mimi codes for the prompt rows until the all-zero frame or `max_frames`.

    tokens, mask: [S, C] (or [B, S, C]; leading all-False mask rows are left padding).
    Returns int64 codes [K, F] (or [B, K, F]); the stop frame is dropped. In a batch, rows
    that stopped early are filled with all-zero frames after their end.
    `temperature=0` or `topk=1` is greedy. `generator` (a torch.Generator on the model's
    device) makes sampling reproducible; `on_frame` is called with a FrameInfo after every
    frame, with every codebook's logits when `trace_logits=True` (tracing costs nothing
    when off). To end generation after a frame (which is kept), `on_frame` returns
    `csm_nb.STOP`; any other return value is ignored, so a progress bar's `update()` (tqdm
    returns True when it redraws) or `list.append` can never cut a line short.
    backend: how the one frame step runs (csm_nb.core.frame_loop): "eager", "compile" (the
    depth loop as one compiled graph), "graph" (replayed as a CUDA graph on CUDA; eagerly
    elsewhere), or "auto": "graph" on CUDA unless $CSM_NB_CUDA_GRAPHS is off, else "eager".
    All give the same codes for the same noise.
    """
    if not isinstance(model, CSM):
        raise TypeError(f"model must be a csm_nb.CSM, got {type(model).__name__}")
    cfg = model.config
    check_prompt(model, tokens, mask, max_frames)
    check_sampling_args(temperature, topk, cfg.audio_vocab_size)
    device = model.codebook0_head.weight.device
    if generator is not None and (not isinstance(generator, torch.Generator)
                                  or generator.device.type != device.type):
        raise ValueError(f"generator must be a torch.Generator on the model's device ({device}),"
                         f" got {generator!r}; e.g. torch.Generator({str(device)!r})"
                         ".manual_seed(0)")
    if on_frame is not None and not callable(on_frame):
        raise TypeError(f"on_frame must be a function taking a FrameInfo (or None), got "
                        f"{type(on_frame).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    single = tokens.dim() == 2
    tokens = (tokens[None] if single else tokens).to(device=device, dtype=torch.int64)
    mask = (mask[None] if single else mask).to(device)
    B, S, _ = tokens.shape
    pad = _leading_pad(mask)
    if not model.caches_ready(B):
        try:
            model.setup_caches(B)
        except BaseException:       # OOM or Ctrl-C half-way: no half-built caches look ready
            model.remove_caches()
            raise
    if backend == "auto":
        backend = default_backend(device)
    step = frame_step_for(model, B, temperature, topk, backend)
    step.start(model.backbone_step(tokens, mask, torch.arange(S, device=device), pad), S, pad)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    stop = StopCheck(device)
    frames = []
    for index in range(max_frames):
        logits = [] if trace_logits else None
        codes = step(generator, logits).clone()                               # [B, K]
        frames.append(codes)
        if on_frame is not None and on_frame(
                FrameInfo(index, codes, None if logits is None else torch.stack(logits, 1))
        ) is STOP:
            break                                  # the callback asked to stop here
        done |= (codes == 0).all(dim=-1)
        if stop(done.all()):
            break
    return _trim(torch.stack(frames, dim=2), single)                          # [B, K, F]


def _trim(codes: torch.Tensor, single: bool) -> torch.Tensor:
    """Cut each row at its first all-zero frame; pad shorter rows with zero frames."""
    B, K, F = codes.shape
    eos = (codes == 0).all(dim=1)                                             # [B, F]
    lengths = torch.where(eos.any(dim=1), eos.to(torch.int64).argmax(dim=1), F)   # [B]
    keep = torch.arange(F, device=codes.device)[None, :] < lengths[:, None]  # [B, F]
    codes = (codes * keep[:, None, :]).to(torch.int64)[..., : int(lengths.max())]
    return codes[0] if single else codes
