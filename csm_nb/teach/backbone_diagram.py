"""Notebook 02's picture of CSM: two transformers, one over time and one inside each frame.

A part of the `backbone` lesson (which re-exports it). Left: the backbone reads one row per
position (text tokens, then audio frames) and turns the last row's state into codebook 0.
Right: the depth decoder runs inside that one frame, one position per codebook, each
position fed the code just drawn, each codebook read by its own head. The finished frame
becomes the backbone's next row. Sizes come from the config, so the same picture labels
CSM-1B, the toy model and the tiny one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch, FancyArrowPatch, FancyBboxPatch

from ..core.config import CSMConfig
from .common import CSM_1B, new_figure

_TEXT, _AUDIO, _MODEL, _HEAD, _OUT = "#fdd49e", "#c6dbef", "#e5e5e5", "#d9f0d3", "#fff7bc"


def _box(ax, x, y, w, h, text, colour, fontsize=8, **kwargs):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                                fc=colour, ec="0.35", lw=0.8, **kwargs))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, **kwargs):
    style = dict(arrowstyle="-|>", mutation_scale=9, lw=0.9, color="0.25")
    style.update(kwargs)
    ax.add_patch(FancyArrowPatch(start, end, **style))


def _backbone_panel(ax, c: CSMConfig):
    """Rows at the bottom, the backbone over them, the last state's head on top.
    Returns where h_t and c_0 leave the panel (for the arrows to the depth decoder)."""
    rows = [("BOS", _TEXT), ("[0]Hi", _TEXT), ("EOS", _TEXT), ("frame\n1", _AUDIO),
            ("frame\n2", _AUDIO), ("...", "white"), ("frame\nt-1", _AUDIO)]
    for x, (label, colour) in enumerate(rows):
        _box(ax, x, 0, 0.8, 0.7, label, colour, fontsize=7)
        _arrow(ax, (x, 0.37), (x, 0.95))
        ax.plot([x], [2.55], "o", ms=5, color="tab:purple" if x == len(rows) - 1 else "0.6")
        _arrow(ax, (x, 2.05), (x, 2.45))
    b = c.backbone
    _box(ax, (len(rows) - 1) / 2, 1.5, len(rows) - 0.2, 1.0,
         f"backbone: a Llama, {b.num_layers} layers x {b.embed_dim} wide, causal over time\n"
         "(each row sees itself and every row before it; KV cache of "
         f"{b.max_seq_len} rows)", _MODEL, fontsize=8)
    last = len(rows) - 1
    ax.text(last + 0.15, 2.7, "$h_t$", fontsize=9, color="tab:purple")
    _box(ax, last, 3.45, 1.9, 0.6, "codebook0_head\n-> code $c_0$", _HEAD, fontsize=7)
    _arrow(ax, (last, 2.62), (last, 3.13))
    ax.text(1.5, 3.45, "one row per position: text rows,\nthen one audio row per 80 ms frame",
            ha="center", va="center", fontsize=8, color="0.3")
    ax.set_xlim(-0.6, last + 1.3)
    ax.set_ylim(-0.6, 4.1)
    ax.set_title("the backbone: over time", fontsize=10)
    return (last + 0.1, 2.55), (last + 0.95, 3.45)


def _depth_panel(ax, c: CSMConfig):
    """Positions 0..K-1 of one frame through projection, decoder and per-codebook heads.
    Returns where h_t and c_0 enter the panel."""
    K, d = c.num_codebooks, c.decoder
    shown = [0, 1, 2, None, K - 1]                       # None: the positions in between
    for x, i in enumerate(shown):
        if i is None:
            ax.text(x, 0, "...", ha="center", va="center", fontsize=10)
            ax.text(x, 3.2, "...", ha="center", va="center", fontsize=10)
            continue
        label = "$h_t$" if i == 0 else f"emb($c_{{{i - 1}}}$)"
        _box(ax, x, 0, 0.9, 0.55, label, _AUDIO if i else "#e7d4e8", fontsize=7)
        _arrow(ax, (x, 0.3), (x, 0.95))
        _arrow(ax, (x, 2.05), (x, 2.75))
        if i == 0:
            ax.text(x, 3.2, "(unused)", ha="center", va="center", fontsize=7, color="0.4")
        else:
            _box(ax, x, 3.2, 0.95, 0.75, f"audio_head\n[{i - 1}]\n-> $c_{{{i}}}$", _HEAD,
                 fontsize=7)
        if i and i < K - 1 and shown[x + 1] is not None:     # the code drawn feeds the next
            _arrow(ax, (x + 0.48, 3.0), (x + 0.75, 0.28), connectionstyle="arc3,rad=-0.3",
                   ls="--", color="tab:blue")
    _box(ax, 2, 1.5, 4.8, 1.0, f"projection {c.backbone.embed_dim} -> {d.embed_dim}, then the "
         f"depth decoder:\na Llama, {d.num_layers} layers x {d.embed_dim} wide, causal over "
         f"the {K} codebooks\n(its KV cache restarts every frame)", _MODEL, fontsize=8)
    _box(ax, 2, 4.25, 4.6, 0.5, f"frame t = [$c_0$, $c_1$, ..., $c_{{{K - 1}}}$]: the "
         "backbone's next row", _OUT, fontsize=8)
    _arrow(ax, (1, 3.6), (1.6, 4.0))
    ax.set_xlim(-0.7, 4.7)
    ax.set_ylim(-0.6, 4.6)
    ax.set_title("the depth decoder: inside frame t, one position per codebook", fontsize=10)
    return (-0.45, 0.0), (0.6, 0.28)


def plot_two_transformers(config: CSMConfig | None = None) -> Figure:
    """CSM in one picture: the backbone over time, the depth decoder over codebooks inside
    each frame, and the frame fed back as the next row. Sizes from `config` (CSM-1B by
    default)."""
    c = config or CSM_1B
    fig, axes = new_figure(1, 2, width=13, height=4.6, gridspec_kw={"width_ratios": [1.15, 1]})
    left, right = axes[0]
    leave = _backbone_panel(left, c)
    enter = _depth_panel(right, c)
    for start, end, colour, bend in zip(leave, enter, ("tab:purple", "tab:blue"), (0.15, -0.25)):
        fig.add_artist(ConnectionPatch(start, end, "data", "data", axesA=left, axesB=right,
                                       arrowstyle="-|>", mutation_scale=10, lw=1.2, ls="--",
                                       color=colour, connectionstyle=f"arc3,rad={bend}"))
    for ax in (left, right):
        ax.axis("off")
    fig.suptitle(f"CSM: {c.num_codebooks} codes per {c.frame_ms:g} ms frame = 1 backbone step "
                 f"+ {c.num_codebooks - 1} depth-decoder steps", fontsize=11)
    return fig
