"""Notebook 02, the depth decoder: the student writes the loop of one frame.

A part of the `backbone` lesson (which re-exports it). `frame_codes(model, last_h,
temperature, topk, g)` is written against the model's own pieces (`codebook0_logits`,
`decoder_step`, `embed_audio`) and `csm_nb.core.sampling.pick`, and checked against
`csm_nb.core.frame_loop.decode_frame` on the same noise: sampled at a high temperature (so a
trained model's peaked distributions cannot hide a mistake) and greedy. When the codes
differ, the checker runs the usual wrong loops and names the one the student's matches.
"""

from __future__ import annotations

import torch

from ..core.frame_loop import decode_frame
from ..core.sampling import draw_noise, gumbel, pick
from .common import Solutions, unanswered, verdict, wrong

SOLUTIONS = Solutions()

_CHECK_TEMPERATURE = 1.5        # flatter than CSM's 0.9: every wrong step shows in the codes
_CHECK_SEEDS = (0, 1, 2)


def _loop(model, last_h, temperature, topk, g, *, state_first=True, embed_shift=0,
          step_by_one=False, head_shift=0, noise_shift=0):
    """The depth loop with one knob per classic mistake (all off: decode_frame's loop)."""
    K = model.config.num_codebooks
    code = pick(model.codebook0_logits(last_h), temperature, topk, g[0])
    codes = [code]
    first = model.embed_audio(0, code)[:, None]
    inputs = torch.cat([last_h[:, None], first], dim=1) if state_first else first
    start = 0
    for i in range(1, K):
        logits = model.decoder_step(inputs, start, max(i + head_shift, 1))
        code = pick(logits, temperature, topk, g[min(i + noise_shift, K - 1)])
        codes.append(code)
        start += 1 if step_by_one else inputs.shape[1]
        inputs = model.embed_audio(max(i + embed_shift, 0), code)[:, None]
    return torch.stack(codes, dim=1)                                        # [1, K]


_MISTAKES = {
    "step 1 feeds TWO positions: the backbone state h_t at position 0 and code 0's "
    "embedding at position 1 (torch.stack([last_h, model.embed_audio(0, code)], dim=1))":
        {"state_first": False},
    "after drawing code i, the next input is model.embed_audio(i, code): codebook i's band of "
    "the shared table, not codebook i-1's": {"embed_shift": -1},
    "`start` moves by the number of positions just fed: 2 after step 1 (positions 0 and 1), "
    "then 1": {"step_by_one": True},
    "decoder_step's third argument is the codebook whose logits you want (i); it reads "
    "audio_head[i - 1] itself": {"head_shift": -1},
    "codebook i is drawn with its own noise row g[i] (g[0] is codebook 0's)":
        {"noise_shift": -1},
}


def _as_codes(got, K: int) -> torch.Tensor:
    codes = torch.as_tensor(got) if not isinstance(got, (list, tuple)) else torch.stack(
        [torch.as_tensor(c).reshape(-1) for c in got], dim=-1)
    if codes.numel() != K or codes.dtype.is_floating_point:
        raise ValueError(f"expected {K} integer codes (a tensor [{K}] or [1, {K}]), got "
                         f"{codes.dtype} of shape {tuple(codes.shape)}")
    return codes.reshape(1, K).long()


def check_depth_loop(fn, model, last_h) -> bool:
    """Your `frame_codes(model, last_h [1, D], temperature, topk, g [K, 1, V]) -> [K] codes`
    against decode_frame on the same noise: sampled (several seeds) and greedy."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"frame_codes: expected a function, got {type(fn).__name__}")
    K, V = model.config.num_codebooks, model.config.audio_vocab_size
    device = last_h.device
    cases = [(_CHECK_TEMPERATURE, V, seed) for seed in _CHECK_SEEDS] + [(1.0, 1, 0)]
    with torch.inference_mode():
        for temperature, topk, seed in cases:
            noise = draw_noise((K, 1, V), torch.Generator(device).manual_seed(seed))
            g = gumbel(noise)
            how = "greedy (topk=1)" if topk == 1 else f"temperature {temperature}, seed {seed}"
            try:   # the student's code may fail or return junk: report it, never crash
                got = fn(model, last_h, temperature, topk, g)
                if got is None:
                    unanswered(None, fix="your function returns None; return the frame's "
                          f"{K} codes")
                    return None
                got = _as_codes(got, K).to(device)
            except Exception as err:
                return wrong("depth_loop", f"{how}: your function raised {type(err).__name__}:"
                               f" {err}.")
            want = decode_frame(model, last_h, temperature, topk, noise)     # [1, K]
            if torch.equal(got, want):
                continue
            for hint, knobs in _MISTAKES.items():
                if torch.equal(got, _loop(model, last_h, temperature, topk, g, **knobs)):
                    return wrong("depth_loop", f"{how}: {hint}.")
            bad = int((got != want)[0].nonzero()[0])
            where = ("codebook 0 comes from model.codebook0_logits(last_h), picked with g[0]"
                     if bad == 0 else f"the codes agree up to codebook {bad - 1}; check step "
                     f"{bad}: its inputs, its positions (start) and its noise row g[{bad}]")
            return wrong("depth_loop", f"{how}: first difference at codebook {bad}: {where}.")
    return verdict(True, f"the same {K} codes as decode_frame, sampled and greedy: you wrote "
                   "the depth decoder's loop.", "")


SOLUTIONS.hints["depth_loop"] = (
    "Codebook 0: pick(model.codebook0_logits(last_h), temperature, topk, g[0]). Then keep two "
    "things between steps: `inputs` (the rows to feed, [1, n, D]) and `start` (the position "
    "of the first of them). Step 1 feeds last_h and code 0's embedding at positions 0 and 1; "
    "each later step feeds one row, the embedding of the code just drawn.")
SOLUTIONS["depth_loop"] = (
    "def frame_codes(model, last_h, temperature, topk, g):\n"
    "    K = model.config.num_codebooks\n"
    "    code = sampling.pick(model.codebook0_logits(last_h), temperature, topk, g[0])\n"
    "    codes = [code]\n"
    "    inputs = torch.stack([last_h, model.embed_audio(0, code)], dim=1)   # positions 0, 1\n"
    "    start = 0\n"
    "    for i in range(1, K):\n"
    "        logits = model.decoder_step(inputs, start, i)    # codebook i's logits [1, V]\n"
    "        code = sampling.pick(logits, temperature, topk, g[i])\n"
    "        codes.append(code)\n"
    "        start += inputs.shape[1]                         # 2 the first time, then 1\n"
    "        inputs = model.embed_audio(i, code)[:, None]     # the next position's input\n"
    "    return torch.cat(codes)                              # [K]")
SOLUTIONS.answers["depth_loop"] = (
    SOLUTIONS["depth_loop"] + "\n\n\nlesson.check_depth_loop(frame_codes, model, last_h)")
