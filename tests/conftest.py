import os

import pytest
import torch

import csm_nb

# Tests never reach the hub and never pick up a user's weights by accident.
os.environ.setdefault("CSM_NB_MODE", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread: tiny models are per-op overhead, and `make test` runs two workers on two cores;
# more threads only add waiting (several times slower on a shared box).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    return csm_nb.tiny_tokenizer()


def mixed_prompt(tokenizer, num_codebooks=32, frames=5, seed=0):
    """Context segment (text rows, audio rows, all-zero EOS row) + the text to speak."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (num_codebooks, frames), generator=g)
    parts = [csm_nb.text_rows(tokenizer, "Hi there, how are you?", 1, num_codebooks),
             csm_nb.audio_rows(codes),
             csm_nb.text_rows(tokenizer, "Pretty good.", 0, num_codebooks)]
    tokens = torch.cat([p[0] for p in parts])
    mask = torch.cat([p[1] for p in parts])
    return tokens, mask


@pytest.fixture
def prompt(tokenizer):
    return mixed_prompt(tokenizer)


def _notebook_code(name: str, through: str) -> str:
    """The code cells of notebooks/<name>.ipynb, in order, up to and including the first cell
    that contains `through`; cells tagged skip-execution (the Colab install) are left out,
    as nbmake and Jupyter leave them out."""
    import json

    path = os.path.join(os.path.dirname(__file__), "..", "notebooks", f"{name}.ipynb")
    with open(path, encoding="utf-8") as f:
        cells = json.load(f)["cells"]
    code = []
    for cell in cells:
        if cell["cell_type"] != "code" or "skip-execution" in cell["metadata"].get("tags", []):
            continue
        source = "".join(cell["source"])
        code.append(source)
        if through in source:
            return "\n\n".join(code)
    raise AssertionError(f"{name}.ipynb has no code cell containing {through!r}")


@pytest.fixture(scope="session")
def notebook_code():
    """notebook_code(name, through) -> the notebook's own cells as one script (see above)."""
    return _notebook_code
