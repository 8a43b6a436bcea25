"""Notebook 01, sections 8-10: Mimi itself, and the closing quiz.

A part of the `codec` lesson (which re-exports it): the picture of Mimi (encoder, the semantic
codebook distilled from WavLM beside the acoustic RVQ, decoder), the semantic/acoustic
decodes, and the quiz of what the notebook taught (recall only; the exercises that ask for
work come earlier, where their concept is).
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ..core.config import (FRAME_MS, FRAME_RATE, MIMI_CODEBOOK_SIZE, MIMI_CODEBOOKS,
                           SAMPLE_RATE, SAMPLES_PER_FRAME)
from .common import Solutions, draw_spectrograms, new_figure
from .recall_quiz import Question, Quiz

SOLUTIONS = Solutions()

# Mimi's sizes the picture names (docs/csm-reference.md sec. 6; not needed by any code here).
_LATENT_WIDTH = 512          # numbers per frame between encoder and decoder
_SEMANTIC_LEVELS = 1         # codebook 0; the other MIMI_CODEBOOKS - 1 are acoustic


# ------------------------------------------------------------------- the picture (8)

def _box(ax, x, y, w, h, text, colour, **kw):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04",
                                fc=colour, ec="0.3", lw=1, **kw))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=5)


def _arrow(ax, start, end, text="", dashed=False, text_offset=(0, 0.12)):
    ax.annotate("", end, start, arrowprops=dict(arrowstyle="-|>", color="0.25", lw=1.2,
                                                ls="--" if dashed else "-"))
    if text:
        ax.text((start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1],
                text, ha="center", va="bottom", fontsize=7.5, color="0.25")


def plot_mimi() -> Figure:
    """Mimi in one picture: waveform -> encoder -> latent -> (semantic VQ, distilled from WavLM)
    + (acoustic RVQ) -> sum -> decoder -> waveform, with the codes CSM sees in between."""
    acoustic = MIMI_CODEBOOKS - _SEMANTIC_LEVELS
    fig, axes = new_figure(width=12.5, height=4.6)
    ax = axes[0, 0]
    ax.set_xlim(0, 12.6)
    ax.set_ylim(-0.3, 4.6)
    ax.axis("off")
    mid, top, low = 2.0, 3.0, 1.0
    _box(ax, 0.75, mid, 1.3, 1.0, f"audio\n{SAMPLE_RATE // 1000} kHz, mono\n"
         f"{SAMPLES_PER_FRAME} samples\n= one {FRAME_MS:g} ms frame", "#eeeeee")
    _box(ax, 2.6, mid, 1.5, 1.2, "encoder\nconvolutions\n+ transformer\n(causal)", "#cfe2f3")
    _box(ax, 4.45, mid, 1.3, 1.0, f"latent\n{_LATENT_WIDTH} numbers\nper frame,\n"
         f"{FRAME_RATE:g} per second", "#eeeeee")
    _box(ax, 6.6, top, 1.9, 0.85, f"semantic VQ\ncodebook 0\n(1 x {MIMI_CODEBOOK_SIZE})",
         "#f9cb9c")
    # the acoustic RVQ: a stack of levels, each quantising what the one above left over
    for i, label in enumerate(["level 1", "level 2", "...", f"level {acoustic}"]):
        _box(ax, 6.2 + 0.25 * i, low + 0.45 - 0.3 * i, 1.2, 0.3, label, "#b6d7a8")
    ax.text(6.6, low - 0.8, f"acoustic RVQ: codebooks 1..{acoustic}\n({acoustic} x "
            f"{MIMI_CODEBOOK_SIZE}), each level codes\nwhat the levels before it left over",
            ha="center", va="top", fontsize=7.5)
    _box(ax, 6.6, 4.25, 2.3, 0.55, "WavLM (speech model): training only", "white",
         ls="--")
    _arrow(ax, (6.6, 3.97), (6.6, 3.45), "distilled", dashed=True, text_offset=(0.42, -0.12))
    _box(ax, 8.55, mid, 0.6, 0.6, "+", "#eeeeee")
    _box(ax, 10.0, mid, 1.5, 1.2, "decoder\ntransformer\n+ convolutions\n(causal)", "#cfe2f3")
    _box(ax, 11.85, mid, 1.2, 1.0, f"audio\n{SAMPLE_RATE // 1000} kHz", "#eeeeee")
    _arrow(ax, (1.42, mid), (1.83, mid))
    _arrow(ax, (3.37, mid), (3.78, mid))
    _arrow(ax, (5.12, mid + 0.2), (5.62, top), "same latent", text_offset=(-0.25, 0.1))
    _arrow(ax, (5.12, mid - 0.2), (5.55, low + 0.45))
    _arrow(ax, (7.6, top), (8.3, mid + 0.25))
    _arrow(ax, (7.6, low), (8.3, mid - 0.25))
    _arrow(ax, (8.87, mid), (9.23, mid))
    _arrow(ax, (10.77, mid), (11.23, mid))
    ax.text(10.9, 4.1, f"The codes CSM reads and writes are in the middle:\n{MIMI_CODEBOOKS} "
            f"integers per frame, {FRAME_RATE:g} frames per second", ha="center", va="center",
            fontsize=8, color="tab:red")
    ax.set_title("Mimi: encoder, split quantiser (1 semantic + "
                 f"{acoustic} acoustic codebooks), decoder", fontsize=10)
    return fig


def plot_semantic_vs_acoustic(semantic_only, acoustic_only, full,
                              sample_rate: int = SAMPLE_RATE) -> Figure:
    """Decodes from codebook 0 alone, from codebooks 1..31 alone, and from all of them."""
    panels = {"codebook 0 only (semantic)": semantic_only,
              "codebooks 1-31 only (acoustic)": acoustic_only,
              "all codebooks": full}
    fig, axes = new_figure(1, 3, width=13, height=3.2, sharey=True)
    draw_spectrograms(fig, axes, panels, sample_rate)
    return fig


# ------------------------------------------------------------------- the quiz (10)

QUIZ = Quiz("codec.quiz", [
    Question("If you could keep only one of Mimi's 32 codebooks and wanted to preserve *what* "
             "is said, which would you keep?",
             {"a": "codebook 0", "b": "codebook 1", "c": "codebook 31"}, "a",
             "codebook 0 is Mimi's semantic level, distilled from WavLM: it follows what is "
             "said (section 8's picture).",
             {"b": "codebooks 1-31 carry the voice and the detail, not the words.",
              "c": "the last level is the finest acoustic detail, not the words."}),
    Question("Decoding only the first n of an RVQ's K levels gives",
             {"a": "silence where the missing levels were", "b": "a coarser version of the "
              "whole clip", "c": "the first n/K of the clip in time"}, "b",
             "levels refine coarse to fine, so any prefix decodes the whole clip, coarser.",
             {"a": "no level is silence on its own: every prefix decodes the whole clip.",
              "c": "levels are not slices of time: each one covers every frame."}),
    Question("Mimi decoded frame by frame gives the same audio as decoded all at once because",
             {"a": "it is causal and keeps its state between calls", "b": "it decodes every "
              "frame independently of the others", "c": "it waits for the end of the sentence "
              "before it starts"}, "a",
             "Mimi is causal and keeps its convolutions' tails and its transformers' caches "
             "between calls.",
             {"b": "decoded independently, chunks click at their edges (section 9).",
              "c": "then it could not stream at all: CSM plays audio as frames arrive."}),
    Question("What does the toy codec share with Mimi?",
             {"a": "a codebook distilled from WavLM", "b": "the frame layout: 12.5 frames a "
              "second, one code per level per frame, any first few levels decode",
              "c": "a neural decoder"}, "b",
             "it copies Mimi's frame layout and the RVQ prefix property; nothing else.",
             {"a": "the toy codec has no semantic level: it never met WavLM.",
              "c": "the toy codec has no network: Griffin-Lim rebuilds the audio."}),
    Question("A codec that sounds right can score a low SI-SDR because",
             {"a": "it rebuilds the sound's spectrum, not the exact waveform", "b": "SI-SDR is "
              "measured in the wrong units", "c": "the codec delays the audio by one frame"},
             "a", "SI-SDR compares waveforms sample by sample; a codec that rebuilds the sound, "
             "not its exact phase, scores low on it even when it sounds right.",
             {"b": "SI-SDR is in dB like the mel distance; units are not the issue.",
              "c": "a delay is not what lowered it here: both codecs keep time aligned."}),
])
show_quiz, check_quiz = QUIZ.show, QUIZ.check        # check_quiz({1: "a", ...})
QUIZ.register(SOLUTIONS, hint="Each question points back to a section: 1 to 8 (the picture of "
              "Mimi), 2 and 5 to 6 (hearing the levels), 3 to 9 (streaming), 4 to 1 (the toy "
              "codec).")
