"""Notebook 05 (Train a tiny CSM on a CPU): the lesson the notebook imports.

`from csm_nb.teach import training as lesson` once, then `lesson.<name>`. Here: conversations
as training rows, the loss curves, generated codes against their targets, the voice question
and the quiz. Its parts:

    training_loss     the CSM loss and one training step, written by the student (4-5)
    training_compare  the live model beside the shipped toy CSM, its evaluation table (7-8)
    toy_corpus        the toy corpus and its voice meter (shared with notebook 03)

plus the code grid, error curve, spectrograms and players from `common`.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ..core.config import AUDIO_SPECIAL_IDS, FRAME_RATE
from .common import (Solutions, as_number, new_figure, players, plot_code_grid,
                     plot_error_vs_levels, plot_spectrograms, stuck, to_numpy, unanswered,
                     verdict)
from .recall_quiz import Question, Quiz
from .toy_corpus import VoiceMeter, toy_corpus
from .training_compare import (evaluation_summary, evaluation_table, load_evaluation,
                               plot_evaluation, plot_length_match)
from .training_loss import SOLUTIONS as _LOSS
from .training_loss import check_csm_loss, check_train_step, show_source

__all__ = [
    "QUIZ", "VoiceMeter", "check_chance_loss", "check_csm_loss", "check_quiz",
    "check_target_rows", "check_train_step", "check_voice_source", "evaluation_summary",
    "evaluation_table", "hint", "load_evaluation", "players", "plot_code_grid",
    "plot_code_match", "plot_error_vs_levels", "plot_evaluation", "plot_length_match",
    "plot_loss_targets", "plot_spectrograms", "plot_training", "show_quiz", "show_source",
    "solution", "toy_corpus",
]

_OWN = Solutions()          # this file's exercises; SOLUTIONS (at the end) gathers every part


# ----------------------------------------------------- conversations as training rows (section 3)

def plot_loss_targets(tokens, mask, num_codebooks: int, title: str | None = None) -> Figure:
    """A conversation as CSM's rows: which columns each row uses (text, audio codes, the
    all-zero end-of-audio row) and which rows the loss predicts, each from the row before."""
    t, m = to_numpy(tokens), to_numpy(mask).astype(bool)    # [S, K+1]
    K = num_codebooks
    kind = np.zeros(m.shape, dtype=int)                       # 0 unused
    kind[m[:, K], K] = 1                                      # text token
    audio = m[:, :K].all(1)
    eos = audio & (t[:, :K] == 0).all(1)
    kind[audio & ~eos, :K] = 2                                # codes of a frame
    kind[eos, :K] = 3                                         # end-of-audio row
    cmap = ListedColormap(["white", "tab:blue", "tab:orange", "tab:red"])
    S = t.shape[0]
    fig, axes = new_figure(width=min(14, 3 + S * 0.12), height=3.0)
    ax = axes[0, 0]
    ax.imshow(kind.T, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=3,
              extent=[-0.5, S - 0.5, K + 0.5, -0.5])
    targets = np.flatnonzero(audio[1:]) + 1                   # rows predicted from row - 1
    ax.plot(targets, np.full(targets.shape, K + 0.5), "k^", ms=4, clip_on=False)
    ax.set_yticks([0, K - 1, K], ["code 0", f"code {K - 1}", "text"])
    ax.set_xlabel("row (position)")
    ax.set_title(title or "blue: text rows, orange: audio frames, red: end-of-audio row; "
                 "▲ = a loss target (predicted from the row before)", fontsize=10)
    return fig


def check_target_rows(answer, context_frames: int, target_frames: int) -> bool:
    """How many rows of a two-turn conversation (context turn of `context_frames` frames,
    target turn of `target_frames`) are loss targets?"""
    if unanswered(answer):
        return None
    value = as_number("rows", answer)
    right = context_frames + 1 + target_frames + 1
    if value == right:
        return verdict(True, f"({context_frames} + 1) + ({target_frames} + 1) = {right}: every "
                       "frame row and each turn's all-zero end row, which teaches the model "
                       "when to stop. Text rows are inputs only.", "")
    if value == context_frames + target_frames:
        hint = "the all-zero end-of-audio rows are targets too: how else would it learn to stop?"
    elif value == target_frames + 1 or value == target_frames:
        hint = "the context turn's frames are trained on as well, not only the last turn's."
    else:
        hint = "count the audio rows: frames and end rows, in both turns; text rows are inputs."
    return verdict(False, "", f"{value:g}: {hint}" + stuck("target_rows"))


_OWN["target_rows"] = (
    "Targets are the audio rows: each turn's frames plus its all-zero end-of-audio row.\n"
    "Each is predicted from the hidden state of the row before it (the first frame from the\n"
    "last text row, EOS). So (F1 + 1) + (F2 + 1).")


# ------------------------------------------------------------------- the CSM loss, training (4-5)

_EXACT = 1.1e-3    # ln V rounded to 2 decimals passes; the printed untrained losses (4.882,
                   # 4.913 for V = 131: 0.14% and 0.8% off) do not
_NEAR = 2e-2       # close enough to name the likely mistake


def check_chance_loss(answer, num_bins: int) -> bool:
    """The codebook-0 loss of an untrained model that spreads its bets evenly over
    `num_bins` codes: ln(num_bins) nats."""
    if unanswered(answer):
        return None
    value = as_number("loss", answer)
    right = math.log(num_bins)
    if math.isclose(value, right, rel_tol=_EXACT):
        return verdict(True, f"-ln(1/{num_bins}) = ln {num_bins} = {right:.3f} nats. The "
                       "curve starts there; the total starts near twice that (codebook 0 + "
                       "the decoder's mean over the other codebooks). Why the untrained model "
                       "is only near it: its random weights give every code a slightly "
                       "different logit, so it is not exactly uniform, and a guess that is "
                       "not uniform usually pays a little more on codes it knows nothing "
                       "about.", "")
    if math.isclose(value, math.log(num_bins - AUDIO_SPECIAL_IDS), rel_tol=_EXACT):
        hint = (f"that is ln {num_bins - AUDIO_SPECIAL_IDS}: the head has {num_bins} bins, the "
                f"codec's codes plus {AUDIO_SPECIAL_IDS} spare ids, and a uniform guess spreads "
                "over all of them.")
    elif math.isclose(value, right, rel_tol=_NEAR):
        hint = ("close, but not it: compute the exact value, a formula in V, to 2 decimals or "
                "more (a measured untrained loss is only near it: that model is nearly uniform).")
    elif math.isclose(value, math.log2(num_bins), rel_tol=_NEAR):
        hint = "that is in bits (log base 2); PyTorch's cross-entropy uses natural logs."
    elif math.isclose(value, 1 / num_bins, rel_tol=_NEAR):
        hint = "that is the probability of the right code; the loss is minus its log."
    elif math.isclose(value, 2 * right, rel_tol=_NEAR):
        hint = "that is the total (two parts); the question asks codebook 0 alone."
    else:
        hint = (f"a uniform guess gives the right code probability 1/{num_bins}; "
                "cross-entropy is -ln(probability of the right code).")
    return verdict(False, "", f"{value:g}: {hint}" + stuck("chance_loss"))


_OWN["chance_loss"] = (
    "Every code has probability 1/V, so the cross-entropy is -ln(1/V) = ln V nats per frame.\n"
    "For V = 131 (128 toy codes + 3 spare ids) that is ln 131 = 4.875.")


def plot_training(history, chance: float | None = None) -> Figure:
    """Loss curves of `csm_nb.training.train` (total, codebook 0, depth decoder; log scale) and
    the teacher-forced codebook-0 accuracy. chance: ln(V), the loss of a uniform guess."""
    steps = np.asarray(history.step) + 1
    fig, axes = new_figure(1, 2, width=11, height=3.4)
    ax, acc = axes[0]
    for name, colour in (("total", "k"), ("codebook0", "tab:blue"), ("decoder", "tab:orange")):
        label = {"total": "total", "codebook0": "codebook 0 (backbone)",
                 "decoder": "codebooks 1.. (depth decoder)"}[name]
        ax.plot(steps, getattr(history, name), color=colour, lw=1.2, label=label)
    if chance is not None:
        ax.axhline(chance, color="0.5", ls="--", lw=1, label=f"chance, ln V = {chance:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(f"CSM loss over {len(steps)} steps ({history.seconds[-1]:.0f} s)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    acc.plot(steps, 100 * np.asarray(history.accuracy), color="tab:green", lw=1.2)
    acc.set_ylim(0, 101)
    acc.set_xlabel("step")
    acc.set_ylabel("% of frames")
    acc.set_title("codebook 0 right given the true past (teacher forcing)", fontsize=10)
    acc.grid(alpha=0.3)
    return fig


# ------------------------------------------------------------------- let it speak (6)

def plot_code_match(generated, target, frame_rate: float = FRAME_RATE) -> Figure:
    """Generated codes against the training target, frame by frame: green where equal."""
    g, t = to_numpy(generated), to_numpy(target)            # [K, F'], [K, F]
    K, F = t.shape[0], max(g.shape[1], t.shape[1])
    same = np.full((K, F), np.nan)
    common = min(g.shape[1], t.shape[1])
    same[:, :common] = g[:, :common] == t[:, :common]
    fig, axes = new_figure(width=9, height=2.6)
    ax = axes[0, 0]
    ax.imshow(same, aspect="auto", interpolation="nearest", vmin=0, vmax=1,
              cmap=ListedColormap(["tab:red", "tab:green"]),
              extent=[0, F / frame_rate, K - 0.5, -0.5])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("codebook")
    c0 = float((g[0, :common] == t[0, :common]).sum()) / max(t.shape[1], 1)
    ax.set_title(f"generated vs target: green = same code; codebook 0 matches on {c0:.0%} of "
                 f"the {t.shape[1]} target frames (generated {g.shape[1]})", fontsize=10)
    return fig


_VOICE_CHOICES = {
    "a": "the speaker id in the text, [0] or [1]",
    "b": "the audio of the context turn",
    "c": "the words of the sentence",
}


def check_voice_source(answer) -> bool:
    """Multiple choice: what tells the trained toy CSM which voice to speak in?"""
    if unanswered(answer):
        return None
    if not isinstance(answer, str):
        raise TypeError(f"answer: expected one of {sorted(_VOICE_CHOICES)} as a string, got "
                        f"{type(answer).__name__} {answer!r}")
    choice = answer.strip().lower().strip("()")
    if choice == "b":
        return verdict(True, "we drew the [0]/[1] label at random for every training "
                       "conversation, and every sentence exists in both voices, so only the "
                       "context's audio says whose voice comes next. CSM-1B works the same "
                       "way: the speaker id is just text; context sets the voice.", "")
    hints = {"a": "during training the label was drawn at random for each conversation: it "
                  "says nothing about the voice.",
             "c": "every sentence was recorded in both voices: the words alone cannot decide."}
    return verdict(False, "", hints.get(choice, f"pick one of {sorted(_VOICE_CHOICES)}.")
                   + stuck("voice_source"))


_OWN["voice_source"] = (
    "(b) the context's audio. The training conversations paired each clip with another clip\n"
    "of the same voice and a random [0]/[1] label; the same words exist in both voices. The\n"
    "only evidence of the voice is the context turn's codes, and the model learned to read it.")
_OWN.hints["target_rows"] = (
    "Which rows does the loss predict? Only audio rows: every frame, and the all-zero row that\n"
    "ends each turn's audio. Text rows are read, never predicted. Count them in both turns.")
_OWN.answers["target_rows"] = (
    "my_rows = (20 + 1) + (9 + 1)   # frames + end row, both turns\n"
    "lesson.check_target_rows(my_rows, context_frames=20, target_frames=9)\n")
_OWN.hints["chance_loss"] = (
    "Cross-entropy is minus the log of the probability given to the right code. What is that\n"
    "probability when all V codes get the same share? (PyTorch's logs are natural logs.)")
_OWN.answers["chance_loss"] = (
    "my_loss = math.log(cfg.audio_vocab_size)   # -ln(1/V)\n"
    "lesson.check_chance_loss(my_loss, num_bins=cfg.audio_vocab_size)\n")
_OWN.hints["voice_source"] = (
    "Look at how make_conversation chose the label [0]/[1], and which sentences exist in which\n"
    "voices. What, in a training conversation, says which voice comes next?")
_OWN.answers["voice_source"] = "my_choice = \"b\"\nlesson.check_voice_source(my_choice)\n"


# ------------------------------------------------------------------- the quiz (end)

QUIZ = Quiz("training.quiz", [
    Question(
        "CSM-1B trains its depth decoder on a random 1/16 of the frames. Why?",
        {"a": "the decoder runs once per codebook for every frame (31 steps in CSM-1B), the "
         "costliest part of training; codebook 0 still learns from every frame",
         "b": "the other 15/16 are silence", "c": "to overfit less"},
        "a", "Sesame calls it compute amortisation: the backbone sees every frame, the "
        "decoder a sample, and quality holds.",
        {"b": "the frames are chosen at random, speech and silence alike.",
         "c": "the point is compute: the decoder's cost grows with frames x codebooks."}),
    Question(
        "Why is the text embedding table frozen while the toy models train?",
        {"a": "it cannot learn", "b": "the byte tokenizer reads a few dozen of its 128,256 "
         "rows: updating them all every step costs time and teaches nothing",
         "c": "CSM-1B has no text table"},
        "b", "Freezing a table that is mostly unused saves time and memory; fine-tuning "
        "CSM-1B can freeze its 262 M text parameters too.",
        {"a": "it is an ordinary nn.Embedding: it could learn, we chose not to.",
         "c": "it has one: 128,256 x 2048 numbers."}),
    Question(
        "csm_loss(..., last_turn_only=True) learns only the frames of each conversation's "
        "last turn. What is that for?",
        {"a": "speed alone", "b": "skipping the text rows",
         "c": "the first turn has no earlier voice to follow, so learning it teaches an "
         "average voice; the last turn always has a voice in its context to copy"},
        "c", "It trades some data for a cleaner lesson: every target has a voice to follow.",
        {"a": "the backbone still reads every row; only the targets change.",
         "b": "text rows are never targets, with or without it."}),
    Question(
        "What would most help the live model say sentences it never heard?",
        {"a": "more steps on the same 24 clips", "b": "many more sentences, as the shipped "
         "toy model had (thousands of clips, hours of speech)", "c": "a larger learning rate"},
        "b", "Data is the lever: 24 clips can only be recited; thousands of sentences over a "
        "few hundred words teach the words themselves.",
        {"a": "it already recites them perfectly; more steps only memorise harder.",
         "c": "the loss already reached ~0: the limit is what the data contains."}),
    Question(
        "In the evaluation table, what is the 'codec ceiling'?",
        {"a": "the true clips sent through the toy codec and back: the best a model "
         "speaking through this codec could score", "b": "the best trained model",
         "c": "the random model"},
        "a", "It scores 100% by construction; the distance to it is the model's own error.",
        {"b": "trained models are the other rows; the ceiling has no model at all.",
         "c": "the random model is the floor ('random greedy')."}),
])


show_quiz, check_quiz = QUIZ.show, QUIZ.check      # check_quiz({1: "a", ...})

SOLUTIONS = Solutions(_OWN, _LOSS)
QUIZ.register(SOLUTIONS, hint="Sections 4 and 5 (questions 1-3), 7 (4) and 8 (5).")
solution = SOLUTIONS.show
hint = SOLUTIONS.hint
