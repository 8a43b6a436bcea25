"""csm_nb.audio.mimi (moshi's Mimi) against transformers' MimiModel on the same random weights.

Recipe C of docs/csm-reference.md: rename moshi's keys to transformers', split the fused
attention projection into q, k, v and reorder the q/k rows (moshi rotates interleaved pairs,
transformers rotates halves). Same structure as the real Mimi, narrowed (tiny_mimi_config);
float64 on both sides so near-tied random centroids cannot flip a code.
"""

import re

import pytest
import torch

from csm_nb.audio import mimi as C
from csm_nb.audio.mimi_weights import tiny_mimi_config

transformers = pytest.importorskip("transformers")

# moshi name -> transformers name, applied in order (re.sub on the whole key)
RENAMES = [
    (r"self_attn\.out_projs\.0\.weight", "self_attn.o_proj.weight"),
    (r"self_attn\.in_projs\.0\.weight", "self_attn.in_proj_weight"),
    (r"\.conv\.conv\.conv\.", ".conv."), (r"\.convtr\.convtr\.convtr\.", ".conv."),
    (r"\.conv\.conv\.", ".conv."), (r"\.convtr\.convtr\.", ".conv."),
    (r"quantizer\.rvq_first\.vq\.", "quantizer.semantic_residual_vector_quantizer."),
    (r"quantizer\.rvq_first\.", "quantizer.semantic_residual_vector_quantizer."),
    (r"quantizer\.rvq_rest\.vq\.", "quantizer.acoustic_residual_vector_quantizer."),
    (r"quantizer\.rvq_rest\.", "quantizer.acoustic_residual_vector_quantizer."),
    (r"\._codebook\.", ".codebook."), (r"\._initialized$", ".initialized"),
    (r"\.embedding_sum$", ".embed_sum"),
    (r"^(en|de)coder\.model\.", r"\1coder.layers."),
    (r"^(en|de)coder_transformer\.transformer\.", r"\1coder_transformer."),
    (r"\.linear1\.", ".mlp.fc1."), (r"\.linear2\.", ".mlp.fc2."),
    (r"\.norm1\.", ".input_layernorm."), (r"\.norm2\.", ".post_attention_layernorm."),
    (r"\.layer_scale_1\.", ".self_attn_layer_scale."), (r"\.layer_scale_2\.", ".mlp_layer_scale."),
]


def interleaved_to_halves(weight, num_heads):
    """Reorder q/k rows per head: pairs (2j, 2j+1) -> (j, j + head_dim/2)."""
    out_dim, in_dim = weight.shape
    head_dim = out_dim // num_heads
    return (weight.view(num_heads, head_dim // 2, 2, in_dim).transpose(1, 2)
            .reshape(out_dim, in_dim))


def to_transformers(state, num_heads):
    converted = {}
    for key, value in state.items():
        for pattern, replacement in RENAMES:
            key = re.sub(pattern, replacement, key)
        if key.endswith("self_attn.in_proj_weight"):           # fused [3 d, d] -> q, k, v
            q, k, v = value.chunk(3, dim=0)
            prefix = key.removesuffix("in_proj_weight")
            converted[prefix + "q_proj.weight"] = interleaved_to_halves(q, num_heads)
            converted[prefix + "k_proj.weight"] = interleaved_to_halves(k, num_heads)
            converted[prefix + "v_proj.weight"] = v
        else:
            converted[key] = value
    return converted


def hf_config(cfg):
    """transformers' MimiConfig with the sizes of a moshi Mimi config dict."""
    seanet, quant, tr = cfg["seanet"], cfg["quantizer"], cfg["transformer"]
    return transformers.MimiConfig(
        sampling_rate=cfg["sample_rate"], frame_rate=cfg["frame_rate"],
        hidden_size=seanet["dimension"], num_filters=seanet["n_filters"],
        upsampling_ratios=seanet["ratios"], num_residual_layers=seanet["n_residual_layers"],
        kernel_size=seanet["kernel_size"], last_kernel_size=seanet["last_kernel_size"],
        residual_kernel_size=seanet["residual_kernel_size"], compress=seanet["compress"],
        dilation_growth_rate=seanet["dilation_base"],
        codebook_size=quant["bins"], codebook_dim=quant["dimension"],
        vector_quantization_hidden_dimension=quant["dimension"], num_quantizers=quant["n_q"],
        upsample_groups=seanet["dimension"],
        num_hidden_layers=tr["num_layers"], num_attention_heads=tr["num_heads"],
        num_key_value_heads=tr["num_heads"], intermediate_size=tr["dim_feedforward"],
        sliding_window=tr["context"], rope_theta=tr["max_period"],
        layer_scale_initial_scale=tr["layer_scale"])


@pytest.fixture(scope="module")
def pair(codec):
    cfg = tiny_mimi_config()
    ours = codec                                             # tiny: float64, codebooks filled
    theirs = transformers.MimiModel(hf_config(cfg)).double().eval()
    state = to_transformers(ours.mimi.state_dict(), cfg["transformer"]["num_heads"])
    result = theirs.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ours, theirs


def noise(samples):
    g = torch.Generator().manual_seed(samples)
    return 0.3 * torch.randn(samples, generator=g, dtype=torch.float64)


def hf_encode(model, x, num_codebooks):
    with torch.no_grad():
        return model.encode(x[None, None], num_quantizers=num_codebooks).audio_codes[0]


@pytest.mark.parametrize("frames", [1, 20])
def test_codes_and_audio_match_transformers(pair, frames):
    ours, theirs = pair
    x = noise(frames * C.SAMPLES_PER_FRAME)
    codes = ours.encode(x, C.SAMPLE_RATE)                      # [K, F]
    assert frames == 1 or codes.unique().numel() > 100        # a real test: codes vary
    assert torch.equal(hf_encode(theirs, x, ours.num_codebooks), codes)
    with torch.no_grad():
        hf_audio = theirs.decode(codes[None]).audio_values[0, 0]
    torch.testing.assert_close(ours.decode(codes), hf_audio.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("samples", [24_000, 72_000])     # 12.5 and 37.5 frames
def test_a_partial_last_frame_is_zero_padded_once(pair, samples):
    """moshi (and so CSM) pads the input with zeros to whole frames, then encodes; transformers
    pads inside every strided convolution instead, so only the last, partial frame differs.
    Fed the zero-padded input, transformers gives our codes exactly."""
    ours, theirs = pair
    x = noise(samples)
    codes = ours.encode(x, C.SAMPLE_RATE)
    padded = torch.nn.functional.pad(x, (0, codes.shape[1] * C.SAMPLES_PER_FRAME - samples))
    assert torch.equal(hf_encode(theirs, padded, ours.num_codebooks), codes)
    assert torch.equal(hf_encode(theirs, x, ours.num_codebooks)[:, :-1], codes[:, :-1])
