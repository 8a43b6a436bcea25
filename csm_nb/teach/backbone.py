"""Notebook 02 (Inside CSM: one frame, from text to 32 codes): the lesson the notebook imports.

`from csm_nb.teach import backbone as lesson` once, then `lesson.<name>`. The notebook
covers three concepts, each too big to share one readable file with the others, so each
has its own part (figures, widgets and checkers together) and this module gathers them:

    backbone_rows        the 33-column row and the embedding sum (sections 1-3)
    backbone_sampling    a codebook's distribution, temperature and top-k (4-6)
    backbone_generation  KV caches, how much context fits, a traced generation (7-9)

plus the code grid and the player from `common`.
"""

from __future__ import annotations

from . import backbone_generation, backbone_rows, backbone_sampling
from .backbone_generation import (GenerationProgress, check_context_seconds, context_seconds,
                                  plot_generation_trace, plot_step_cost)
from .backbone_rows import (check_build_rows, check_embed_rows, format_rows,
                            plot_embedding_lookup, plot_rows, row_kinds)
from .backbone_sampling import (check_sampler, entropy_bits, plot_codebook_entropy,
                                plot_distribution, plot_sampling, sampling_explorer)
from .common import Solutions, audio, plot_code_grid

__all__ = [
    "GenerationProgress", "audio", "check_build_rows", "check_context_seconds",
    "check_embed_rows", "check_sampler", "context_seconds", "entropy_bits", "format_rows",
    "plot_code_grid", "plot_codebook_entropy", "plot_distribution", "plot_embedding_lookup",
    "plot_generation_trace", "plot_rows", "plot_sampling", "plot_step_cost", "row_kinds",
    "sampling_explorer", "solution",
]

SOLUTIONS = Solutions(backbone_rows.SOLUTIONS, backbone_sampling.SOLUTIONS,
                      backbone_generation.SOLUTIONS)
solution = SOLUTIONS.show
