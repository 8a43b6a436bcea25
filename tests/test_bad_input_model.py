"""Bad input to the model layer: a clear ValueError/TypeError naming the argument and fix."""

import pytest
import torch

import csm_nb


@pytest.fixture
def model(gen):
    """The tiny CSM (csm_nb.tiny_model on the CPU): the shared generator's, without caches."""
    return gen.model


@pytest.fixture
def rows(tokenizer):
    return csm_nb.text_rows(tokenizer, "Hello.", 0)


def generate(model, tokens, mask, **kw):
    return csm_nb.generate_codes(model, tokens, mask, **{"max_frames": 1, **kw})


@pytest.mark.parametrize("make, error, match", [
    (lambda t, m: (t[:, :32], m[:, :32]), ValueError, r"tokens has shape \(11, 32\).*\[S, 33\]"),
    (lambda t, m: (t[None, None], m[None, None]), ValueError, "tokens has shape"),
    (lambda t, m: (t[:0], m[:0]), ValueError, "S >= 1"),
    (lambda t, m: (t, m[:-1]), ValueError, "same shape"),
    (lambda t, m: (t.float(), m), TypeError, "tokens must be int64"),
    (lambda t, m: (t, m.long()), TypeError, "mask must be a bool"),
    (lambda t, m: (t.tolist(), m), TypeError, "tokens must be a torch.Tensor"),
    (lambda t, m: (t.index_fill(1, torch.tensor([3]), 2051), m), ValueError,
     r"audio columns 0\.\.31 hold ids outside 0\.\.2050"),
    (lambda t, m: (t.index_fill(1, torch.tensor([0]), -1), m), ValueError, "audio columns"),
    (lambda t, m: (t.index_fill(1, torch.tensor([32]), 128_256), m), ValueError,
     r"text column 32 holds ids outside 0\.\.128255"),
    (lambda t, m: (t, torch.zeros_like(m)), ValueError, "no active column"),
    (lambda t, m: (t, torch.cat([m[:2], torch.zeros_like(m[:1]), m[3:]])), ValueError,
     "only leading rows may be empty"),
])
def test_bad_prompt(model, rows, make, error, match):
    tokens, mask = make(*rows)
    with pytest.raises(error, match=match):
        generate(model, tokens, mask)


@pytest.mark.parametrize("kw, error, match", [
    ({"topk": 0}, ValueError, r"topk=0 must be between 1 \(greedy\)"),
    ({"topk": 5000}, ValueError, "topk=5000"),
    ({"topk": 2.5}, TypeError, "topk must be an int"),
    ({"temperature": -0.1}, ValueError, r"temperature=-0.1 must be a finite number >= 0"),
    ({"temperature": float("nan")}, ValueError, "temperature=nan"),
    ({"temperature": "hot"}, TypeError, "temperature must be a number"),
    ({"max_frames": 0}, ValueError, r"max_frames=0 must be >= 1 \(one frame = 80 ms"),
    ({"max_frames": 2.0}, TypeError, "max_frames must be an int"),
    ({"max_frames": 2038}, ValueError, r"has 11 rows and max_frames=2038.*lower max_frames to "
                                       "2037"),
    ({"generator": 3}, ValueError, "generator must be a torch.Generator"),
])
def test_bad_generation_args(model, rows, kw, error, match):
    with pytest.raises(error, match=match):
        generate(model, *rows, **kw)


def test_exact_fit_is_allowed(model, rows):
    from csm_nb.core.generate import check_prompt
    check_prompt(model, *rows, max_frames=2048 - 11)     # every position used: fine


def test_temperature_zero_is_greedy(model, rows):
    greedy = generate(model, *rows, max_frames=2, topk=1)
    assert torch.equal(generate(model, *rows, max_frames=2, temperature=0.0, topk=50), greedy)


def test_wrong_model_type(rows):
    with pytest.raises(TypeError, match="model must be a csm_nb.CSM"):
        csm_nb.generate_codes(torch.nn.Linear(2, 2), *rows)


def test_state_dict_missing_and_extra_keys(model):
    sd = dict(model.state_dict())
    sd.pop("audio_head")
    sd["backbone.layers.0.attn.q_proj.bias"] = torch.zeros(128)
    fresh = csm_nb.CSM(csm_nb.CSMConfig.tiny())
    with pytest.raises(ValueError, match=r"1 missing: audio_head; 1 unexpected: "
                                         r"backbone.layers.0.attn.q_proj.bias"):
        fresh.load_state_dict(sd)


def test_state_dict_wrong_shape_and_type(model):
    sd = dict(model.state_dict())
    sd["projection.weight"] = torch.zeros(3, 3)
    fresh = csm_nb.CSM(csm_nb.CSMConfig.tiny())
    with pytest.raises(ValueError, match=r"wrong shape: projection.weight: checkpoint \(3, 3\)"):
        fresh.load_state_dict(sd)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        fresh.load_state_dict([1, 2])


def test_official_cache_masks_get_a_hint(model):
    sd = dict(model.state_dict(), backbone_causal_mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="official setup_caches"):
        csm_nb.CSM(csm_nb.CSMConfig.tiny()).load_state_dict(sd)


@pytest.mark.parametrize("kw, match", [
    ({"num_heads": 3}, "divisible by num_heads"),
    ({"num_kv_heads": 3}, "multiple of num_kv_heads"),
    ({"num_layers": 0}, "num_layers must be a positive int"),
])
def test_bad_llama_config(kw, match):
    base = dict(num_layers=1, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=64,
                max_seq_len=16)
    with pytest.raises(ValueError, match=match):
        csm_nb.LlamaConfig(**{**base, **kw})


def test_bad_csm_config():
    with pytest.raises(TypeError, match="config must be a csm_nb.CSMConfig"):
        csm_nb.CSM({"num_codebooks": 32})
    tiny = csm_nb.CSMConfig.tiny()
    with pytest.raises(ValueError, match="decoder.max_seq_len=64 must be >= num_codebooks=65"):
        csm_nb.CSMConfig(backbone=tiny.backbone, decoder=tiny.decoder, num_codebooks=65)


@pytest.mark.parametrize("text, speaker, error", [
    ("", 0, ValueError), ("   ", 0, ValueError), (None, 0, TypeError),
    ("hi", -1, ValueError), ("hi", "0", ValueError), ("hi", True, ValueError)])
def test_bad_text_rows(tokenizer, text, speaker, error):
    with pytest.raises(error):
        csm_nb.text_rows(tokenizer, text, speaker)


@pytest.mark.parametrize("codes, error, match", [
    (torch.zeros(32), ValueError, r"codes has shape \(32,\)"),
    (torch.zeros(32, 3), TypeError, "integer ids"),
    (torch.full((32, 3), -1), ValueError, "must be >= 0"),
    ([[1, 2]], TypeError, "codes must be a torch.Tensor"),
])
def test_bad_audio_rows(codes, error, match):
    with pytest.raises(error, match=match):
        csm_nb.audio_rows(codes)


@pytest.mark.parametrize("mode", ["fast", "", 3])
def test_bad_mode(mode):
    with pytest.raises(ValueError, match="is not a mode; use one of real, toy, tiny, auto"):
        csm_nb.load_model(mode=mode or "nope")


def test_bad_device_and_dtype():
    with pytest.raises(ValueError, match="device='gpu0' is not a torch device"):
        csm_nb.tiny_model(device="gpu0")
    with pytest.raises(ValueError, match="dtype=torch.int8 is not supported"):
        csm_nb.tiny_model(device="cpu", dtype=torch.int8)
