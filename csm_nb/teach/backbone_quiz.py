"""Notebook 02's closing quiz: what to remember about rows, the two transformers, sampling
and the stop frame. A part of the `backbone` lesson (which re-exports it)."""

from __future__ import annotations

from .common import Solutions
from .recall_quiz import Question, Quiz

SOLUTIONS = Solutions()

QUIZ = Quiz("backbone.quiz", [
    Question("Which column of a CSM-1B row holds a text token?",
             {"a": "column 0", "b": "every column, added up", "c": "column 32, the last one",
              "d": "none: text goes through the mask"},
             "c", "columns 0..31 are the 32 codebooks; a text row uses only column 32.",
             {"a": "column 0 is codebook 0, the semantic codebook."}),
    Question("What does the backbone predict for each new frame?",
             {"a": "codebook 0, through codebook0_head", "b": "all 32 codebooks at once",
              "c": "codebooks 1..31", "d": "the next text token"},
             "a", "the depth decoder then fills codebooks 1..31 inside the frame.",
             {"b": "one head, 2051 logits: only codebook 0.",
              "c": "that is the depth decoder's job."}),
    Question("Code 7 of codebook 3 and code 7 of codebook 5: how are they embedded?",
             {"a": "the same vector", "b": "two rows of one shared table: 7 + 3 x 2051 and "
              "7 + 5 x 2051", "c": "by two separate tables", "d": "not at all: only code 0 is"},
             "b", "codebook k owns the band k x 2051 .. k x 2051 + 2050 of audio_embeddings.",
             {"a": "the offsets make them different rows.",
              "c": "one table, 32 bands (that is why the offsets exist)."}),
    Question("What does a temperature below 1 do to a distribution?",
             {"a": "flattens it", "b": "removes all but the k likeliest codes",
              "c": "changes the random seed", "d": "sharpens it (towards greedy)"},
             "d", "logits / T with T < 1 stretches the gaps between logits.",
             {"a": "that is T > 1.", "b": "that is top-k."}),
    Question("How does CSM end a line?",
             {"a": "with an end-of-text token", "b": "it writes the all-zero frame, which "
              "generate_codes drops", "c": "only at max_frames", "d": "when the audio is silent"},
             "b", "the same all-zero row that closes every context segment's audio.",
             {"c": "max_frames is the cap when the model never stops (random models)."}),
    Question("What does the KV cache change?",
             {"a": "the work per step: one new row instead of every row again",
              "b": "the logits", "c": "the codes drawn", "d": "the number of rows that fit"},
             "a", "the numbers agree to rounding; only the work shrinks.",
             {"b": "they agree to rounding (section 7 measured it).",
              "d": "the window is max_seq_len rows either way."}),
])


show_quiz, check_quiz = QUIZ.show, QUIZ.check      # check_quiz({1: "a", ...})


QUIZ.register(SOLUTIONS, hint="Sections 1 and 3 (rows, offsets), 4 (the backbone), 5 "
              "(sampling), 7 (caches) and 8 (the stop frame).")
