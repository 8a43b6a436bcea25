"""Loading from folders laid out like sesame/csm-1b, a fake hub cache, and every failure."""

import os

import pytest
import torch
from safetensors.torch import save_file

import csm_nb
from csm_nb.loading.weights import config_from_json
from csm_nb.reference.weights import random_csm
from helpers import fresh_model, hf_config_json, hub_snapshot, write_repo

REPO = "sesame/csm-1b"
COMMIT = "c92a71e1" + "0" * 32


@pytest.fixture(scope="module")
def tiny_random():
    return random_csm(csm_nb.CSMConfig.tiny(), seed=5)


@pytest.fixture
def tiny(tiny_random):
    """A random tiny CSM, built once per file; each test gets it without caches."""
    return fresh_model(tiny_random)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_config_json_round_trip():
    cfg = csm_nb.CSMConfig.tiny()
    back = config_from_json(hf_config_json(cfg))
    assert back.backbone.embed_dim == cfg.backbone.embed_dim
    assert back.decoder.num_kv_heads == cfg.decoder.num_kv_heads
    assert config_from_json({"backbone_flavor": "llama-1B"}) == csm_nb.CSMConfig.csm_1b()


def test_from_local_folder(tmp_path, tiny):
    folder = write_repo(str(tmp_path / "csm-1b"), tiny)
    loaded = csm_nb.CSM.from_pretrained(folder, device="cpu")
    assert_same_weights(loaded, tiny)
    assert torch.equal(loaded.backbone.rope, tiny.backbone.rope)       # rebuilt off meta
    assert torch.equal(loaded.codebook_offsets, tiny.codebook_offsets)
    tok = csm_nb.load_tokenizer(folder, mode="real")
    tokens, mask = csm_nb.text_rows(tok, "Hi", 0)
    assert torch.equal(csm_nb.generate_codes(loaded, tokens, mask, max_frames=2, topk=1),
                       csm_nb.generate_codes(tiny, tokens, mask, max_frames=2, topk=1))


def test_from_local_folder_in_bf16(tmp_path, tiny):
    folder = write_repo(str(tmp_path / "csm-1b"), tiny)
    loaded = csm_nb.from_pretrained(folder, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    tokens, mask = csm_nb.text_rows(csm_nb.tiny_tokenizer(), "Hi", 0)
    assert csm_nb.generate_codes(loaded, tokens, mask, max_frames=2).shape == (32, 2)


def test_env_var_is_read_at_call_time(tmp_path, tiny, monkeypatch):
    folder = write_repo(str(tmp_path / "weights"), tiny)
    monkeypatch.setenv("CSM_NB_WEIGHTS", folder)
    model, mode = csm_nb.load_model(mode="real", device="cpu")
    assert mode == "real"
    assert_same_weights(model, tiny)


def test_official_cache_masks_are_dropped(tmp_path, tiny):
    extra = {"backbone_causal_mask": torch.ones(4, 4, dtype=torch.bool),
             "decoder_causal_mask": torch.ones(4, 4, dtype=torch.bool)}
    folder = write_repo(str(tmp_path / "m"), tiny, extra)
    assert_same_weights(csm_nb.from_pretrained(folder, device="cpu"), tiny)


def fake_hub_cache(root, model):
    write_repo(str(hub_snapshot(root, REPO, COMMIT)), model)
    return root


def test_from_hub_id_through_an_offline_cache(tmp_path, tiny, monkeypatch):
    cache = fake_hub_cache(tmp_path / "hub", tiny)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CSM_NB_WEIGHTS", raising=False)
    assert_same_weights(csm_nb.from_pretrained(REPO, device="cpu"), tiny)
    assert_same_weights(csm_nb.load_model(mode="auto", device="cpu")[0], tiny)
    assert csm_nb.load_tokenizer(mode="real").encode("[0]a").ids[1:4] == [91, 48, 93]


def test_not_cached_and_offline_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="CSM_NB_WEIGHTS") as err:
        csm_nb.from_pretrained(REPO, device="cpu")
    assert "huggingface-cli download sesame/csm-1b" in str(err.value)


def test_auto_falls_back_to_tiny_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CSM_NB_WEIGHTS", raising=False)
    model, mode = csm_nb.load_model(mode="auto", device="cpu")
    assert mode == "toy" and model.config.num_codebooks == 8          # the shipped toy CSM
    assert "TOY MODE" in capsys.readouterr().err


def test_gated_repo_without_token_says_how_to_get_access(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(*args, **kwargs):
        raise GatedRepoError("403 Client Error: access to model sesame/csm-1b is restricted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(OSError) as err:
        csm_nb.from_pretrained(REPO, device="cpu")
    msg = str(err.value)
    assert "https://huggingface.co/sesame/csm-1b" in msg and "HF_TOKEN" in msg


def test_missing_weights_file_in_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        csm_nb.from_pretrained(str(tmp_path), device="cpu")


def test_source_that_is_neither_folder_nor_repo():
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a hub repo id"):
        csm_nb.from_pretrained("./no/such/folder", device="cpu")


def test_truncated_checkpoint(tmp_path, tiny):
    folder = write_repo(str(tmp_path / "m"), tiny)
    path = os.path.join(folder, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(OSError, match="truncated or corrupted"):
        csm_nb.from_pretrained(folder, device="cpu")


def test_corrupted_header(tmp_path, tiny):
    folder = write_repo(str(tmp_path / "m"), tiny)
    path = os.path.join(folder, "model.safetensors")
    open(path, "wb").write(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(OSError, match="truncated or corrupted"):
        csm_nb.from_pretrained(folder, device="cpu")


def test_checkpoint_of_the_wrong_size(tmp_path, tiny):
    folder = write_repo(str(tmp_path / "m"), tiny)
    os.remove(os.path.join(folder, "config.json"))       # so the official sizes are expected
    with pytest.raises(ValueError, match="wrong shape"):
        csm_nb.from_pretrained(folder, device="cpu")


def test_transformers_format_checkpoint_is_named(tmp_path):
    sd = {"backbone_model.norm.weight": torch.ones(4), "codec_model.x": torch.ones(1)}
    os.makedirs(tmp_path / "m")
    save_file(sd, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(ValueError, match="transformers-format"):
        csm_nb.from_pretrained(str(tmp_path / "m"), device="cpu")


def test_never_unpickles(tmp_path):
    """Only safetensors is read: a ckpt.pt next to it is ignored, never torch.load-ed."""
    (tmp_path / "ckpt.pt").write_bytes(b"not even a pickle")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        csm_nb.from_pretrained(str(tmp_path), device="cpu")
