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
from .codec_rvq import stuck
from .common import Solutions, as_number, draw_spectrograms, new_figure, unanswered, verdict

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

# question: (right answer, {wrong answer: the likely mistake}, where the notebook showed it).
# q1's key None stands for any wrong codebook index.
_QUIZ = {
    "q1": (0, {None: "codebooks 1-31 carry the voice and the detail, not the words."},
           "which codebook was tied to a speech-understanding model? (section 8's picture)"),
    "q2": ("b", {"a": "no level is silence on its own: every prefix decodes the whole clip.",
                 "c": "levels are not slices of time: each one covers every frame."},
           "what did one level sound like in section 6?"),
    "q3": ("a", {"b": "decoded independently, chunks click at their edges (section 9).",
                 "c": "then it could not stream at all: CSM plays audio as frames arrive."},
           "what went wrong in section 9 when chunks were decoded without the state?"),
    "q4": ("b", {"a": "the toy codec has no semantic level: it never met WavLM.",
                 "c": "the toy codec has no network: Griffin-Lim rebuilds the audio."},
           "reread what the toy codec is and is not (section 1)."),
    "q5": ("a", {"b": "SI-SDR is in dB like the mel distance; units are not the issue.",
                 "c": "a delay is not what lowered it here: both codecs keep time aligned."},
           "Griffin-Lim invents a phase; Mimi is trained to sound right (section 6)."),
}


def _quiz_answer(question: str, answer):
    """An answer as the checker compares it: an int for q1, a lower-case letter otherwise."""
    right = _QUIZ[question][0]
    if isinstance(right, int):
        return int(as_number(question, answer))
    if not isinstance(answer, str) or answer.strip().strip("()").lower() not in ("a", "b", "c"):
        raise TypeError(f"{question}: expected one of the letters 'a', 'b' or 'c', got "
                        f"{type(answer).__name__} {answer!r}")
    return answer.strip().strip("()").lower()


def check_quiz(answers) -> bool:
    """The closing quiz: {"q1": codebook index, "q2".."q5": "a", "b" or "c"}."""
    if unanswered(answers):
        return False
    if not isinstance(answers, dict):
        raise TypeError(f"quiz: expected the dict {{'q1': ..., 'q5': ...}}, got "
                        f"{type(answers).__name__}")
    unknown = sorted(set(answers) - set(_QUIZ))
    if unknown:
        raise ValueError(f"quiz: no question named {', '.join(map(repr, unknown))}; the "
                         f"questions are {', '.join(_QUIZ)}")
    given = {q: answers.get(q) for q in _QUIZ}
    if all(a is None or a is Ellipsis for a in given.values()):
        unanswered(None)                         # the template, untouched
        return False
    right, notes = 0, []
    for question, answer in given.items():
        if answer is None or answer is Ellipsis:
            notes.append(f"{question}: not answered yet.")
        else:
            value = _quiz_answer(question, answer)
            good, mistakes, pointer = _QUIZ[question]
            if value == good:
                right += 1
            else:
                mistake = mistakes.get(value, mistakes[None] if None in mistakes else "")
                notes.append(f"{question} (you said {value!r}): {mistake} Look again: {pointer}")
    if right == len(_QUIZ):
        return verdict(True, f"{right}/{len(_QUIZ)}. lesson.solution('quiz') explains each "
                       "answer.", "")
    return verdict(False, "", f"{right}/{len(_QUIZ)} right.\n  " + "\n  ".join(notes)
                   + "\n" + stuck("quiz").strip())


SOLUTIONS["quiz"] = (
    "q1: 0. Codebook 0 is Mimi's semantic level: distilled from WavLM, it follows what is\n"
    "    said; codebooks 1-31 carry voice, timbre and detail. CSM's backbone predicts it first.\n"
    "q2: b. RVQ levels refine coarse to fine, so any prefix decodes the whole clip, coarser.\n"
    "q3: a. Mimi is causal and keeps its convolutions' tails and its transformers' caches\n"
    "    between calls; chunks decoded without that state click at their edges.\n"
    "q4: b. The toy codec copies Mimi's frame layout and the RVQ prefix property; it has no\n"
    "    neural network and no semantic level.\n"
    "q5: a. SI-SDR compares waveforms sample by sample; codecs that rebuild the sound (not its\n"
    "    exact phase) score low on it even when they sound right.")
SOLUTIONS.hints["quiz"] = (
    "Each question points back to a section: q1 to 8 (the picture of Mimi), q2 and q5 to 6\n"
    "(hearing the levels), q3 to 9 (streaming), q4 to 1 (the toy codec).")
SOLUTIONS.answers["quiz"] = (
    "my_quiz = {\n"
    "    \"q1\": 0,     # a codebook index, 0..31\n"
    "    \"q2\": \"b\",   # \"a\", \"b\" or \"c\"\n"
    "    \"q3\": \"a\",\n"
    "    \"q4\": \"b\",\n"
    "    \"q5\": \"a\",\n"
    "}\n"
    "lesson.check_quiz(my_quiz)")
