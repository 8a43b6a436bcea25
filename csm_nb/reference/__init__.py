"""The references csm_nb is proven against (extra `[reference]`: torchtune, transformers).

`official` rebuilds Sesame's layout and frame loop on torchtune 0.6.1; `hf_csm` converts
weights and inputs for transformers' CsmForConditionalGeneration; `weights` makes random
weights that make parity meaningful. The parity tests and benchmarks/ import them; nothing
else in csm_nb does (tests/test_layout.py checks), so csm_nb runs without those libraries.
"""
