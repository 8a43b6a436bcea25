"""Notebook 02 (Inside CSM: one frame, from text to 32 codes): the lesson the notebook imports.

`from csm_nb.teach import backbone as lesson` once, then `lesson.<name>`. The notebook
covers several concepts, each too big to share one readable file with the others, so each
has its own part (figures, widgets and checkers together) and this module gathers them:

    backbone_diagram     the picture of CSM's two transformers (the opening figure)
    backbone_rows        the 33-column row and the embedding sum (sections 1-3)
    backbone_sampling    a codebook's distribution, temperature, top-k, Gumbel-max (4-5)
    backbone_depth       the depth decoder's loop, written by the student (6)
    backbone_generation  KV caches, how much context fits, a traced generation (7-9)
    backbone_quiz        the closing quiz

plus the code grid, the players and the spectrograms from `common`.
"""

from __future__ import annotations

# Parts are imported by name, never as `from . import part`: that form runs teach/__init__,
# which imports this lesson (an import cycle, which tests/test_layout.py forbids).
from .backbone_depth import SOLUTIONS as _DEPTH
from .backbone_depth import check_depth_loop
from .backbone_diagram import plot_two_transformers
from .backbone_generation import SOLUTIONS as _GENERATION
from .backbone_generation import (GenerationProgress, check_context_seconds, context_seconds,
                                  measure_cache_savings, plot_generation_trace, plot_step_cost)
from .backbone_quiz import QUIZ, check_quiz, show_quiz
from .backbone_quiz import SOLUTIONS as _QUIZ
from .backbone_rows import SOLUTIONS as _ROWS
from .backbone_rows import (check_build_rows, check_embed_rows, format_rows,
                            plot_embedding_lookup, plot_rows, row_kinds)
from .backbone_sampling import SOLUTIONS as _SAMPLING
from .backbone_sampling import (check_sampler, entropy_bits, plot_codebook_entropy,
                                plot_distribution, plot_sampling, sampling_explorer)
from .common import Solutions, audio, players, plot_code_grid, plot_spectrograms

__all__ = [
    "QUIZ", "GenerationProgress", "audio", "check_build_rows", "check_context_seconds",
    "check_depth_loop", "check_embed_rows", "check_quiz", "check_sampler", "context_seconds",
    "entropy_bits", "format_rows", "hint", "measure_cache_savings", "players",
    "plot_code_grid", "plot_codebook_entropy", "plot_distribution", "plot_embedding_lookup",
    "plot_generation_trace", "plot_rows", "plot_sampling", "plot_spectrograms",
    "plot_step_cost", "plot_two_transformers", "row_kinds", "sampling_explorer", "show_quiz",
    "solution",
]

SOLUTIONS = Solutions(_ROWS, _SAMPLING, _DEPTH, _GENERATION, _QUIZ)
solution, hint = SOLUTIONS.show, SOLUTIONS.hint
