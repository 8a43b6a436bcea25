"""Plain helpers several test files share: micro configs, prompts, files laid out like the
hub's, and the resets that hand a shared model to each test as a fresh one.

Not a test module and not a conftest: test files import it by name,

    from helpers import micro_config, mixed_prompt

which works because pyproject's [tool.pytest.ini_options] puts tests/ on sys.path
(`pythonpath = ["tests"]`), in pytest's own process and in every xdist worker, whatever the
import mode. tests/ is not a package, so test modules are top-level modules too; import this
file as `helpers`, never as `tests.helpers` (that would be a second copy under another name).
Fixtures (objects built once per file and handed out per test) live in conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

import csm_nb

# ------------------------------------------------------------------ micro configs


def micro_config(width: int = 16, max_seq_len: int = 2048, decoder_max_seq_len: int = 32, *,
                 heads: int = 2, decoder_width: int | None = None, **fields) -> csm_nb.CSMConfig:
    """CSM's layout at toy size: backbone and depth decoder of one layer each, `heads` query
    heads sharing one kv head, an MLP twice the width. Builds and saves in milliseconds.

    `fields`: other CSMConfig fields (num_codebooks, audio_vocab_size, text_vocab_size);
    the defaults are CSM-1B's (32 codebooks of 2051 ids, Llama-3's text vocabulary)."""
    def block(width: int, max_seq_len: int) -> csm_nb.LlamaConfig:
        return csm_nb.LlamaConfig(num_layers=1, num_heads=heads, num_kv_heads=1,
                                  embed_dim=width, intermediate_dim=2 * width,
                                  max_seq_len=max_seq_len)
    return csm_nb.CSMConfig(backbone=block(width, max_seq_len),
                            decoder=block(decoder_width or width, decoder_max_seq_len),
                            **fields)


# ------------------------------------------------------------------ rows


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


# ------------------------------------------------------------------ files laid out like the hub's


def hf_config_json(cfg: csm_nb.CSMConfig) -> dict:
    """config.json fields as transformers' CsmConfig writes them."""
    from csm_nb.reference.hf_csm import config_json_fields
    return config_json_fields(cfg)


def save_state(path, module: torch.nn.Module, extra: dict | None = None) -> dict:
    """module's state dict (plus `extra` tensors) as a safetensors file at `path`; returns what
    was written. Contiguous copies: safetensors refuses views."""
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    state.update(extra or {})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return state


def write_repo(folder, model: csm_nb.CSM, extra: dict | None = None):
    """A folder laid out like sesame/csm-1b around `model`: model.safetensors (plus `extra`
    tensors), config.json as transformers writes it, the tiny tokenizer.json. Returns folder
    as given (a str stays a str)."""
    save_state(Path(folder) / "model.safetensors", model, extra)
    (Path(folder) / "config.json").write_text(json.dumps(hf_config_json(model.config)))
    csm_nb.tiny_tokenizer().save(str(Path(folder) / "tokenizer.json"))
    return folder


def micro_repo(folder, model: csm_nb.CSM | None = None):
    """write_repo around a micro CSM (seed 2) unless a model is given: saved in milliseconds."""
    return write_repo(folder, model or csm_nb.tiny_model(micro_config(), device="cpu", seed=2))


def hub_snapshot(cache, repo_id: str, commit: str = "0" * 40) -> Path:
    """The snapshot folder of `repo_id` in a Hugging Face cache at `cache`, made, with
    refs/main pointing at it: what an offline `hf_hub_download` finds. Write files into it."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


# ------------------------------------------------------------------ shared models, fresh per test
#
# Building a model takes 0.3-6 s here, so a file builds it once (a module-scoped fixture) and
# hands it to each test through a function-scoped fixture that calls one of these first.
# Generation sets KV caches up and leaves them for the next call; without the reset a test
# would run on whatever caches (batch size, captured frame steps) the test before it left.


def _drop_patched_methods(obj) -> None:
    """Delete instance attributes that hide a method of obj's class. monkeypatch.setattr(obj,
    "generate", fake) undoes itself by setting the bound method it saw back *on the instance*,
    where it hides any later patch of the class (Generator.generate) from this object."""
    for name in [n for n in vars(obj) if callable(getattr(type(obj), n, None))]:
        delattr(obj, name)


def fresh_model(model: csm_nb.CSM) -> csm_nb.CSM:
    """`model` as a newly built one is: no KV caches, no frame steps captured on them, no
    method patched on the instance."""
    model.remove_caches()
    _drop_patched_methods(model)
    return model


def fresh_generator(gen):
    """`gen` as load_generator returns it: no half-read stream still generating in its
    worker thread, no watermark hook, no cached prompt codes, no method patched on the
    instance, a fresh model."""
    if gen._active is not None:        # what a new generate() does first (Generator._job)
        gen._active.close()
        gen._active = None
    gen.watermark = None
    gen._codes.clear()
    _drop_patched_methods(gen)
    fresh_model(gen.model)
    return gen


# ------------------------------------------------------------------ notebooks


def notebook_code(name: str, through: str) -> str:
    """The code cells of notebooks/<name>.ipynb, in order, up to and including the first cell
    that contains `through`; cells tagged skip-execution (the Colab install) are left out,
    as nbmake and Jupyter leave them out."""
    path = Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = []
    for cell in cells:
        if cell["cell_type"] != "code" or "skip-execution" in cell["metadata"].get("tags", []):
            continue
        source = "".join(cell["source"])
        code.append(source)
        if through in source:
            return "\n\n".join(code)
    raise AssertionError(f"{name}.ipynb has no code cell containing {through!r}")
