"""Notebook 02, sections 4-6: a codebook's distribution, and temperature + top-k sampling.

A part of the `backbone` lesson (which re-exports it): entropy, the distribution figures,
the sampling explorer (sliders) and the sampler checker.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core.config import MIMI_CODEBOOK_SIZE
from ..core.sampling import check_sampling_args, filtered_probs, sample_topk
from .common import (Solutions, new_figure, probs_entropy_bits, to_numpy, unanswered,
                     verdict, wrong)

SOLUTIONS = Solutions()


# ------------------------------------------------------------------- distributions (sections 4-5)

def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) in bits over the last axis (stays on the device)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1) / math.log(2)


def _sorted_probs(probs: np.ndarray, show: int):
    """The `show` likeliest codes (ties in id order) and their probabilities."""
    order = np.argsort(-probs, kind="stable")[:show]
    return order, probs[order]


def plot_distribution(logits, show: int = 30, title: str | None = None,
                      num_codes: int = MIMI_CODEBOOK_SIZE) -> Figure:
    """One codebook's distribution: the `show` likeliest codes, and how many codes it takes
    to cover most of the probability. Bins from `num_codes` up (2048..2050) are not Mimi
    codes and are drawn in red."""
    x = torch.as_tensor(to_numpy(logits)).float().reshape(-1)
    probs = torch.softmax(x, dim=0).numpy()
    V = probs.size
    order, top = _sorted_probs(probs, show)
    fig, axes = new_figure(1, 2, width=11, height=3.0, gridspec_kw={"width_ratios": [2, 1]})
    ax, cax = axes[0]
    ax.bar(range(len(top)), top,
           color=["tab:red" if c >= num_codes else "tab:blue" for c in order])
    ax.set_xticks(range(len(top)), [str(c) for c in order], rotation=90, fontsize=7)
    ax.set_xlabel(f"code id (the {len(top)} likeliest of {V})")
    ax.set_ylabel("probability")
    ax.axhline(1 / V, color="0.5", ls=":", lw=1, label=f"uniform 1/{V}")
    ax.legend(fontsize=8)
    cumulative = np.cumsum(np.sort(probs)[::-1])
    cax.plot(np.arange(1, V + 1), cumulative, color="tab:green")
    for level in (0.5, 0.9):
        n = int(np.searchsorted(cumulative, level) + 1)
        cax.axhline(level, color="0.8", lw=0.8)
        cax.annotate(f"{level:.0%} in {n} codes", (n, level), fontsize=8,
                     xytext=(4, -10), textcoords="offset points")
    cax.set_xscale("log")
    cax.set_xlabel("number of likeliest codes")
    cax.set_ylabel("probability covered")
    H = float(entropy_bits(torch.as_tensor(x)))
    fig.suptitle(title or f"entropy {H:.2f} bits (max log2({V}) = {math.log2(V):.2f}); "
                 f"likeliest code {order[0]} with p = {top[0]:.3f}", fontsize=10)
    return fig


def plot_codebook_entropy(logits, title: str | None = None) -> Figure:
    """Uncertainty per codebook: entropy (bits) of each codebook's distribution, [K, V] for
    one frame or [F, K, V] for several (line = mean over frames, band = min..max)."""
    x = torch.as_tensor(to_numpy(logits)).float()
    x = x[None] if x.dim() == 2 else x                       # [F, K, V]
    H = entropy_bits(x).numpy()                              # [F, K]
    F, K, V = x.shape
    levels = np.arange(K)
    fig, axes = new_figure(width=9, height=3.0)
    ax = axes[0, 0]
    ax.fill_between(levels, H.min(0), H.max(0), color="tab:purple", alpha=0.2,
                    label=f"min..max over {F} frame(s)")
    ax.plot(levels, H.mean(0), "o-", color="tab:purple", ms=3, label="mean")
    ax.axhline(math.log2(V), color="0.5", ls="--", lw=1, label=f"uniform: log2({V})")
    ax.axvline(0.5, color="0.3", lw=0.8)
    ax.text(0.6, ax.get_ylim()[0], "depth decoder ->", fontsize=8, va="bottom")
    ax.set_xlabel(f"codebook (0 from the backbone, 1..{K - 1} from the depth decoder)")
    ax.set_ylabel("entropy (bits)")
    ax.set_title(title or "how unsure the model is about each codebook", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_sampling(logits, temperature: float, topk: int, show: int = 40) -> Figure:
    """The distribution before (softmax of the raw logits) and after temperature and top-k
    (what is actually sampled from), over the `show` likeliest codes."""
    x = torch.as_tensor(to_numpy(logits)).float().reshape(1, -1)
    before = torch.softmax(x, dim=-1)[0].numpy()
    after = filtered_probs(x, temperature, topk)[0].numpy()
    order, _ = _sorted_probs(before, show)
    fig, axes = new_figure(width=10, height=3.0)
    ax = axes[0, 0]
    ranks = np.arange(len(order))
    ax.bar(ranks - 0.2, before[order], width=0.4, color="0.6", label="before: softmax(logits)")
    ax.bar(ranks + 0.2, after[order], width=0.4, color="tab:orange",
           label=f"after: temperature {temperature:g}, top-k {topk}")
    ax.set_xticks(ranks, [str(c) for c in order], rotation=90, fontsize=7)
    ax.set_xlabel(f"code id (the {len(order)} likeliest before filtering)")
    ax.set_ylabel("probability")
    kept = int((after > 0).sum())
    h0, h1 = (probs_entropy_bits(p) for p in (before, after))
    ax.set_title(f"{kept} code(s) can be drawn; entropy {h0:.2f} -> {h1:.2f} bits", fontsize=10)
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------- sampling (6)

_TEMPERATURE_RANGE = (0.05, 2.0, 0.05)          # slider min, max, step
_TOPK_CHOICES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def sampling_explorer(logits, temperature: float = 0.9, topk: int = 50, show: int = 40,
                      draws: int = 12, seed: int = 0):
    """Sliders for temperature and top-k over one real distribution (`logits` [V]).

    Shows the distribution before and after filtering, how many codes can still be drawn,
    and `draws` samples from csm_nb.core.sampling with a fixed seed (same sliders, same draws).
    Headless path: the first state renders at once; `box.render(temperature, topk)` does
    what moving the sliders does and returns the draws.
    """
    import ipywidgets as W
    from IPython.display import display

    x = torch.as_tensor(to_numpy(logits)).float().reshape(1, -1)     # [1, V]
    V = x.shape[-1]
    check_sampling_args(temperature, topk, V)
    low, high, step = _TEMPERATURE_RANGE
    t_slider = W.FloatSlider(value=min(max(temperature, low), high), min=low, max=high,
                             step=step, description="temperature", continuous_update=False)
    choices = sorted({c for c in _TOPK_CHOICES if c <= V} | {topk, V})
    k_slider = W.SelectionSlider(options=choices, value=topk, description="top-k",
                                 continuous_update=False)
    out = W.Output()
    box = W.VBox([W.HBox([t_slider, k_slider]), out])

    def render(temperature: float, topk: int) -> list[int]:
        check_sampling_args(temperature, topk, V)
        generator = torch.Generator().manual_seed(seed)
        ids = sample_topk(x.expand(draws, V), temperature, topk, generator=generator)
        kept = int((filtered_probs(x, temperature, topk) > 0).sum())
        out.clear_output(wait=True)
        with out:
            print(f"temperature {temperature:g}, top-k {topk}: {kept} of {V} codes can be "
                  f"drawn; {draws} draws (seed {seed}): {ids.tolist()}")
            display(plot_sampling(x[0], temperature, topk, show))
        box.last_draws = ids.tolist()
        return box.last_draws

    def on_change(_):
        render(t_slider.value, k_slider.value)

    t_slider.observe(on_change, names="value")
    k_slider.observe(on_change, names="value")
    box.render, box.sliders = render, (t_slider, k_slider)
    render(temperature, topk)                  # headless path: the first state, right now
    return box


_SAMPLER_DRAWS = 30_000           # draws per case: a correct sampler lands within ~0.007 TV
_SAMPLER_TV = 0.025               # total-variation distance a sampler may be off by
_SAMPLER_BINS = 8                 # a toy vocabulary: every bin gets thousands of draws
_SAMPLER_CASES = ((1.0, _SAMPLER_BINS), (0.5, 5), (2.0, 3), (0.9, 1))   # (temperature, topk)


def _sampler_logits():
    """Evenly spaced logits in a shuffled order: no ties, and every mistake shows."""
    g = torch.Generator().manual_seed(0)
    return torch.linspace(3.0, -3.0, _SAMPLER_BINS)[torch.randperm(_SAMPLER_BINS, generator=g)]


def _sampler_hint(freq, logits, temperature, topk) -> str:
    """Name the likeliest mistake: the distribution the student's draws look like."""
    suspects = {
        "the temperature is not applied: divide the logits by it":
            filtered_probs(logits, 1.0, topk),
        "logits are multiplied by the temperature; divide them instead":
            filtered_probs(logits * temperature ** 2, temperature, topk),
        "top-k is not applied: keep only the k largest logits":
            filtered_probs(logits, temperature, _SAMPLER_BINS),
        "your draws ignore the probabilities (uniform over the kept codes)":
            (filtered_probs(logits, temperature, topk) > 0).float() / topk,
    }
    name, p = min(suspects.items(), key=lambda kv: float((freq - kv[1]).abs().sum()))
    if 0.5 * float((freq - p).abs().sum()) < _SAMPLER_TV:
        return f"it looks like {name}."
    return ("compute softmax(logits / temperature) over the top-k logits only, then draw "
            "from it with the generator.")


def check_sampler(fn) -> bool:
    """Your `sample(logits [B, V], temperature, topk, generator) -> ids [B]`, checked against
    csm_nb.core.sampling: same support, same distribution (30k draws), greedy at topk=1, and
    reproducible with a fixed torch.Generator."""
    if unanswered(fn):
        return None
    if not callable(fn):
        raise TypeError(f"sample: expected a function, got {type(fn).__name__}")
    logits = _sampler_logits()
    batch = logits.expand(_SAMPLER_DRAWS, _SAMPLER_BINS)                   # [N, V]
    identical = True
    for temperature, topk in _SAMPLER_CASES:
        case = f"temperature={temperature:g}, topk={topk}"
        try:   # the student's code may fail or return junk: report it, never crash the cell
            ids, again = (fn(batch.clone(), temperature, topk,
                             torch.Generator().manual_seed(1)) for _ in range(2))
        except Exception as err:
            return wrong("sampler", f"with {case} your function raised "
                           f"{type(err).__name__}: {err}")
        if ids is None:
            unanswered(None, fix="your function returns None; return the ids, one per row "
                  "of logits (a tensor of shape [B])")
            return None
        ids, again = torch.as_tensor(ids), torch.as_tensor(again)
        if ids.shape != (_SAMPLER_DRAWS,) or ids.dtype.is_floating_point:
            return wrong("sampler", f"with {case}: expected {_SAMPLER_DRAWS} integer ids "
                           f"(one per row of logits [{_SAMPLER_DRAWS}, {_SAMPLER_BINS}]), got "
                           f"{ids.dtype} of shape {tuple(ids.shape)}.")
        ids, again = ids.long().reshape(-1), again.long().reshape(-1)
        if not torch.equal(ids, again):
            return wrong("sampler", f"with {case}, the same seed gave different draws: "
                           "draw with the `generator` argument (torch.multinomial(..., "
                           "generator=generator) or .exponential_(generator=generator)).")
        if topk == 1 and not bool((ids == logits.argmax()).all()):
            return wrong("sampler", "with topk=1 every draw must be the largest logit "
                           "(greedy), whatever the temperature.")
        allowed = filtered_probs(logits, temperature, topk) > 0
        if (ids < 0).any() or (ids >= _SAMPLER_BINS).any() or not bool(allowed[ids].all()):
            return wrong("sampler", f"with {case} you drew codes outside the {topk} "
                           "largest logits; top-k keeps only those.")
        freq = torch.bincount(ids, minlength=_SAMPLER_BINS).float() / _SAMPLER_DRAWS
        p = filtered_probs(logits, temperature, topk)
        tv = 0.5 * float((freq - p).abs().sum())
        if tv > _SAMPLER_TV:
            return wrong("sampler", f"with {case} your draws' frequencies are "
                           f"{tv:.3f} (total variation) away from the right distribution: "
                           + _sampler_hint(freq, logits, temperature, topk))
        reference = sample_topk(batch, temperature, topk,
                                generator=torch.Generator().manual_seed(1))
        identical &= torch.equal(ids, reference)
    how = ("draw for draw identical to csm_nb.core.sampling (the exponential race, which is also "
           "how torch.multinomial draws one sample)" if identical
           else "a different way of drawing than csm_nb.core.sampling, with the same distribution")
    return verdict(True, f"right support, right distribution, greedy at topk=1, reproducible "
                   f"with a seed: {how}.", "")


SOLUTIONS["sampler"] = (
    "def sample(logits, temperature, topk, generator):\n"
    "    logits = logits / temperature\n"
    "    kth = torch.topk(logits, topk, dim=-1).values[..., -1:]          # k-th largest\n"
    "    logits = logits.masked_fill(logits < kth, float('-inf'))        # drop the rest\n"
    "    probs = torch.softmax(logits, dim=-1)\n"
    "    return torch.multinomial(probs, 1, generator=generator)[:, 0]\n"
    "# For one sample, torch.multinomial draws E ~ Exp(1) and returns argmax(probs / E).\n"
    "# csm_nb.core.sampling does the same on the logits, argmax(logits - log E), with no softmax:\n"
    "# the same draws from the same generator (see its docstring).")

SOLUTIONS.hints["sampler"] = (
    "Divide by the temperature first, then find the k-th largest logit of each row "
    "(torch.topk(...).values[..., -1:]) and set everything below it to -inf; softmax turns "
    "what is left into probabilities; torch.multinomial(probs, 1, generator=generator) draws.")
SOLUTIONS.answers["sampler"] = (
    SOLUTIONS["sampler"].split("\n# ")[0] + "\n\n\nlesson.check_sampler(sample)")
