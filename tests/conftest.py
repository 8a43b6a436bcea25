"""Fixtures every test file may use. Plain helpers (micro configs, prompts, fake repos, the
fresh_* resets) are in helpers.py; import them from there, never from here or a test file.

    tokenizer       the tiny byte-level tokenizer (one per session: it never changes)
    prompt          helpers.mixed_prompt(tokenizer): a context segment and the line to say
    codec           the tiny random Mimi, float64 on the CPU, built once per file (calls leave
                    no state behind: streaming sessions restore it)
    gen             the tiny Generator on the CPU, as load_generator("tiny", device="cpu")
                    returns it: built once per file (tiny_generator), reset before and after
                    each test (helpers.fresh_generator), so no test sees another's caches
    tiny_generator  the object behind `gen`, not reset: only for @given tests (hypothesis
                    refuses function-scoped fixtures), which reset it themselves
    notebook_code   helpers.notebook_code(name, through): a notebook's cells as one script
"""

import os

import pytest
import torch

import csm_nb
from csm_nb.audio.mimi_weights import load_codec
from helpers import fresh_generator, mixed_prompt, notebook_code as _notebook_code

# Tests never reach the hub and never pick up a user's weights by accident.
os.environ.setdefault("CSM_NB_MODE", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread: tiny models are per-op overhead, and `make test` runs two workers on two cores;
# more threads only add waiting (several times slower on a shared box).
torch.set_num_threads(1)

@pytest.fixture(scope="session")
def tokenizer():
    return csm_nb.tiny_tokenizer()


@pytest.fixture
def prompt(tokenizer):
    return mixed_prompt(tokenizer)


@pytest.fixture(scope="module")
def codec():
    return load_codec("tiny", device="cpu")


@pytest.fixture(scope="module")
def tiny_generator():
    return csm_nb.load_generator("tiny", device="cpu")


@pytest.fixture
def gen(tiny_generator):
    yield fresh_generator(tiny_generator)
    fresh_generator(tiny_generator)        # stop a stream left half-read, free the caches


@pytest.fixture(scope="session")
def notebook_code():
    """notebook_code(name, through) -> the notebook's own cells as one script."""
    return _notebook_code
