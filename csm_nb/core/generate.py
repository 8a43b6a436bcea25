"""The frame loop: prefill the prompt, then one frame of 32 codes at a time.

A frame is one backbone step (codebook 0) followed by the depth decoder's 31 steps
(codebooks 1..31). Inside a frame nothing reads a tensor back to the host: sampling noise
is drawn once per frame, caches are static and written in place, and positions are tensors.
The only host read is the stop test, once per frame on the CPU and one frame late on CUDA
(so the GPU never waits for the CPU to look at it).

Shapes: B batch, S prompt rows, C = K + 1 columns, K codebooks, V bins, F frames, D width.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from .llama import fp32
from .model import CSM, check_row_dtypes
from .sampling import check_sampling_args, draw_noise, gumbel, pick


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


def decode_frame(model: CSM, last_h: torch.Tensor, temperature: float, topk: int,
                 noise: torch.Tensor, logits_out: list | None = None) -> torch.Tensor:
    """Codebook 0 from the backbone state, then the depth decoder: [B, D] -> codes [B, K].

    noise: [K, B, V] Exp(1) draws (one slice per codebook). The decoder cache restarts at
    position 0 each frame: position 0 = the backbone state, position i = the embedding of
    code i-1. Positions are Python ints, so this loop unrolls into one static graph.
    """
    K = model.config.num_codebooks
    greedy = topk == 1 or temperature == 0
    g = None if greedy else gumbel(noise)                                    # [K, B, V]
    logits = model.codebook0_logits(last_h)                                  # [B, V]
    code = pick(logits, temperature, topk, None if greedy else g[0])          # [B]
    codes = [code]
    if logits_out is not None:
        logits_out.append(fp32(logits))
    inputs = torch.stack([last_h, model.embed_audio(0, code)], dim=1)        # [B, 2, D]
    start = 0
    for i in range(1, K):
        logits = model.decoder_step(inputs, start, i)                          # [B, V]
        code = pick(logits, temperature, topk, None if greedy else g[i])
        codes.append(code)
        if logits_out is not None:
            logits_out.append(fp32(logits))
        if i + 1 < K:       # the last code's embedding would never be used
            start += inputs.shape[1]
            inputs = model.embed_audio(i, code).unsqueeze(1)                  # [B, 1, D]
    return torch.stack(codes, dim=1)                                          # [B, K]


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
    cfg = model.config
    C = cfg.num_columns
    for name, t in (("tokens", tokens), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}; build "
                            "rows with csm_nb.text_rows / csm_nb.audio_rows")
        if t.dim() not in (2, 3) or t.shape[-1] != C or 0 in t.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}; expected [S, {C}] or "
                             f"[B, S, {C}] with B, S >= 1 ({cfg.num_codebooks} codebook columns "
                             "+ 1 text column)")
        if t.is_meta:
            raise ValueError(f"{name} is a meta tensor (a shape without values); build rows "
                             "with csm_nb.text_rows / csm_nb.audio_rows")
    check_row_dtypes(tokens, mask)
    K, V = cfg.num_codebooks, cfg.audio_vocab_size
    audio, text = tokens[..., :K], tokens[..., K]
    if bool((audio < 0).any() | (audio >= V).any()):
        raise ValueError(f"tokens: audio columns 0..{K - 1} hold ids outside 0..{V - 1} "
                         f"(min {int(audio.min())}, max {int(audio.max())}); audio codes "
                         "come from the codec (0..2047) and unused columns must be 0")
    if bool((text < 0).any() | (text >= cfg.text_vocab_size).any()):
        raise ValueError(f"tokens: text column {K} holds ids outside 0..{cfg.text_vocab_size - 1}"
                         f" (min {int(text.min())}, max {int(text.max())}); use the model's "
                         "tokenizer (csm_nb.load_tokenizer)")
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


def _explains_out_of_memory(fn):
    """Re-raise the device's bare "out of memory" with this call's sizes and what to lower
    (same type, so `except torch.OutOfMemoryError` still catches it)."""
    @functools.wraps(fn)
    def wrapper(model, tokens, mask, max_frames=125, *args, **kwargs):
        try:
            return fn(model, tokens, mask, max_frames, *args, **kwargs)
        except torch.OutOfMemoryError as err:
            B, S = (1, *tokens.shape[:1]) if tokens.dim() == 2 else tuple(tokens.shape[:2])
            weight = model.codebook0_head.weight
            said = (str(err).strip().splitlines() or [""])[0][:200]
            raise torch.OutOfMemoryError(
                f"out of memory on {weight.device} generating max_frames={max_frames} frames "
                f"for a batch of {B} prompt(s) of {S} rows, model in {weight.dtype}. Lower "
                "max_frames, shorten the prompts (less context), use a smaller batch, or load "
                "the model in a half-precision dtype (torch.bfloat16, or torch.float16 on GPUs "
                "without bf16); free other models (del them, then torch.cuda.empty_cache()). "
                f"The device said: {said}") from err
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
    backend: "eager" (the plain loop above), "compile" (the depth loop as one compiled
    graph), "graph" (each frame replayed as a CUDA graph on CUDA; the same static-buffer
    step run eagerly elsewhere), or "auto": "graph" on CUDA unless $CSM_NB_CUDA_GRAPHS=0,
    else "eager". All give the same codes for the same noise.
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
    B, S, C = tokens.shape
    K, V = cfg.num_codebooks, cfg.audio_vocab_size
    pad = _leading_pad(mask)
    if not model.caches_ready(B):
        try:
            model.setup_caches(B)
        except BaseException:       # OOM or Ctrl-C half-way: no half-built caches look ready
            model.remove_caches()
            model.__dict__.pop("_frame_steps", None)     # graphs captured on the old caches
            raise

    last_h = model.backbone_step(tokens, mask, torch.arange(S, device=device), pad)
    from . import fast  # late import: fast builds on this module
    if backend == "auto":
        backend = "graph" if fast.cuda_graphs_enabled(device) else "eager"
    if backend == "graph" and not trace_logits:
        step = fast.frame_step_for(model, B, temperature, topk, device.type == "cuda")
        step.start(last_h, S, pad)
        if device.type == "cuda" and step.graph is None:
            step.capture()

        def next_frame(index, logits):
            step.noise.exponential_(generator=generator)     # the same draws as draw_noise
            return step().clone()
    else:
        # (tracing appends to a Python list, which a compiled graph cannot do: stay eager)
        compiled = backend == "compile" and not trace_logits
        frame_fn = fast.compiled_decode_frame() if compiled else decode_frame
        slot = torch.tensor([S], device=device)              # position of the next row
        row_mask = torch.ones(B, 1, C, dtype=torch.bool, device=device)
        row_mask[..., cfg.text_column] = False               # audio row: codebook columns only
        text_col = torch.zeros(B, 1, device=device, dtype=torch.int64)

        def next_frame(index, logits):
            nonlocal last_h
            if index:                                        # feed the previous frame back
                row = torch.cat([frames[-1], text_col], dim=-1).unsqueeze(1)   # [B, 1, C]
                last_h = model.backbone_step(row, row_mask, slot, pad)
                slot.add_(1)
            noise = draw_noise((K, B, V), generator, device)
            return frame_fn(model, last_h, temperature, topk, noise, logits)   # [B, K]

    done = torch.zeros(B, dtype=torch.bool, device=device)
    stop = StopCheck(device)
    frames = []
    for index in range(max_frames):
        logits = [] if trace_logits else None
        codes = next_frame(index, logits)
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
