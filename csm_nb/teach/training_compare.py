"""Notebook 05, part 2: the live model beside the shipped toy CSM. Lengths of unseen lines
(does the model read the text, or recite?), and the shipped model's evaluation table
(csm_nb/data/toy/evaluation.json, written by the project's toy evaluation).

Gathered with the other parts by `training`, the module the notebook imports.
"""

from __future__ import annotations

import html
import json

import numpy as np
from matplotlib.figure import Figure

from .. import data
from .common import new_figure

EVALUATION_FILE = "toy/evaluation.json"
SPLITS = {"train": "training sentences", "heldout": "unseen sentences",
          "heldout_voice": "unseen voice H"}
METRICS = {"standard": "identified among 20", "one_word": "one-word test",
           "pairwise": "truth over a one-word variant", "voice": "voice match",
           "stopped": "ended by its own stop"}
SHORT = {"standard": "identified\namong 20", "one_word": "one-word\ntest",
         "pairwise": "truth over\na variant", "voice": "voice\nmatch", "stopped": "own\nstop"}
CHANCE = {"standard": 1 / 20, "one_word": 1 / 20, "pairwise": 1 / 2, "voice": 1 / 7,
          "stopped": None}             # stopping has no chance level: a model does or does not


def load_evaluation() -> dict:
    """The shipped toy model's evaluation summary: {"about", "model", "results"}."""
    with open(data.path(EVALUATION_FILE), encoding="utf-8") as f:
        return json.load(f)


def evaluation_table(evaluation: dict):
    """The evaluation as an HTML table: a row per (model, split), a column per metric."""
    from IPython.display import HTML
    head = "".join(f"<th>{html.escape(name)}<br><small>{html.escape(key)}</small></th>"
                   for key, name in METRICS.items())
    chance = "".join(f"<td><i>{'' if CHANCE[k] is None else f'{CHANCE[k]:.0%}'}</i></td>"
                     for k in METRICS)
    rows = [f"<tr><td colspan=2><i>chance</i></td>{chance}<td></td></tr>"]
    for model, splits in evaluation["results"].items():
        for split, r in splits.items():
            cells = "".join(f"<td>{r[k]:.0%}</td>" for k in METRICS)
            rows.append(f"<tr><td><b>{html.escape(model)}</b></td><td>"
                        f"{html.escape(SPLITS.get(split, split))} ({r['lines']})</td>{cells}"
                        f"<td>{r['length']:.2f}</td></tr>")
    return HTML(f"<table><tr><th>model</th><th>lines</th>{head}<th>length<br><small>ratio"
                f"</small></th></tr>{''.join(rows)}</table>")


def plot_evaluation(evaluation: dict, models=("trained greedy", "trained t0.9k50",
                                              "random greedy")) -> Figure:
    """A panel per split: each metric's score for each model, chance dashed, the codec
    round trip (the ceiling) as a grey bar behind."""
    results = evaluation["results"]
    models = [m for m in models if m in results]
    metrics = list(METRICS)
    splits = [s for s in SPLITS if s in results[models[0]]]
    fig, axes = new_figure(1, len(splits), width=4.2 * len(splits), height=3.4, sharey=True)
    x = np.arange(len(metrics))
    width = 0.8 / len(models)
    for ax, split in zip(axes[0], splits):
        if "codec ceiling" in results:
            ax.bar(x, [results["codec ceiling"][split][m] for m in metrics], 0.9,
                   color="0.9", label="codec ceiling")
        for j, model in enumerate(models):
            ax.bar(x - 0.4 + (j + 0.5) * width, [results[model][split][m] for m in metrics],
                   width, label=model)
        for i, m in enumerate(metrics):
            if CHANCE[m] is not None:
                ax.plot([i - 0.45, i + 0.45], [CHANCE[m]] * 2, "k--", lw=1)
        ax.set_xticks(x, [SHORT[m] for m in metrics], fontsize=8)
        ax.set_title(SPLITS[split], fontsize=10)
        ax.set_ylim(0, 1.05)
    axes[0, 0].set_ylabel("share of lines (dashed: chance)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=len(labels))
    return fig


def evaluation_summary(evaluation: dict, model: str = "trained greedy") -> list[str]:
    """What the table says, as sentences computed from it (so they stay true after a retrain)."""
    r, rand = evaluation["results"][model], evaluation["results"].get("random greedy")
    lines = []
    for split in ("train", "heldout"):
        s = r[split]
        lines.append(f"{SPLITS[split]}: identified among 20 in {s['standard']:.0%} of lines "
                     f"(chance 5%, random model {rand[split]['standard']:.0%}); voice right "
                     f"{s['voice']:.0%} (chance 14%); own stop {s['stopped']:.0%}; length "
                     f"x{s['length']:.2f}")
    words = r["heldout"]
    lines.append(f"single words blur: in the one-word test it picks the exact sentence in "
                 f"{words['one_word']:.0%} of lines, though it is closer to the truth than to a "
                 f"one-word variant {words['pairwise']:.0%} of the time (chance 50%)")
    h = r["heldout_voice"]
    lines.append(f"unseen voice H: the words still come out ({h['standard']:.0%} identified), "
                 f"the voice does not ({h['voice']:.0%} voice match)")
    return lines


def plot_length_match(lengths: dict, frame_rate: float = 12.5) -> Figure:
    """Generated vs true length of unseen sentences, one colour per model:
    {model: (true frames list, generated frames list)}. On the diagonal: the model reads the
    text; a flat cloud: it recites lengths it memorised, whatever the text."""
    fig, axes = new_figure(width=5.5, height=4.2)
    ax = axes[0, 0]
    top = 0
    for (model, (true, made)), marker in zip(lengths.items(), "os^D"):
        t, g = np.asarray(true) / frame_rate, np.asarray(made) / frame_rate
        ax.plot(t, g, marker, ls="none", alpha=0.8, label=model)
        top = max(top, t.max(), g.max())
    ax.plot([0, top * 1.05], [0, top * 1.05], "k--", lw=1, label="same length")
    ax.set_xlabel("true length (s)")
    ax.set_ylabel("generated length (s)")
    ax.set_title("unseen sentences: does the length follow the text?", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
