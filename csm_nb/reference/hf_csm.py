"""transformers' `CsmForConditionalGeneration` as a reference for csm_nb (test-time only).

- `hf_config(csm_config)`: a transformers `CsmConfig` with csm_nb's sizes and RoPE.
- `to_transformers_state_dict(official_sd, hf_model)`: official checkpoint names -> HF names.
- `hf_model_from(csm_model)`: an HF model carrying exactly csm_nb's weights.
- `hf_inputs_from_rows(tokens, mask, hf_model)` + `stub_codec(hf_model, segments)`: csm_nb's
  frame rows as HF's processor would hand them to the model (text ids with `<|AUDIO|>` /
  `<|audio_eos|>` placeholders, audio samples and cutoffs), so HF embeds the prompt itself
  through `_merge_input_ids_with_input_values` (text table, backbone audio embedding, the
  all-zero frame for `<|audio_eos|>`). The codec is not under test: `stub_codec` makes its
  `encode` return the prompt's known codes instead of encoding the placeholder samples.

Key mapping: transformers 4.57 wheels do not ship `models/csm/convert_csm.py`, so when it is
not importable the table and `permute_for_rope` below are a copy of that script's (upstream
huggingface/transformers, 4.57 layout with `embed_text_tokens` at top level; same as the
docs/csm-reference.md, sec. 2 table). `MAPPING_SOURCE` says which one was used.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch

from ..core.config import CSMConfig, LlamaConfig
from ..core.model import CSM

try:        # the upstream conversion script, if this transformers ships it
    from transformers.models.csm.convert_csm import (  # type: ignore[import-not-found]
        ORIGINAL_TO_CONVERTED_KEY_MAPPING,
        permute_for_rope,
    )
    MAPPING_SOURCE = "transformers.models.csm.convert_csm"
except ImportError:
    MAPPING_SOURCE = "local copy of transformers' convert_csm.py (not shipped in the wheel)"

    # fmt: off
    ORIGINAL_TO_CONVERTED_KEY_MAPPING = {
        r"backbone\.layers\.(\d+)":   r"backbone_model.layers.\1",
        r"decoder\.layers\.(\d+)":    r"depth_decoder.model.layers.\1",
        r"attn":                      r"self_attn",
        r"output_proj":               r"o_proj",
        r"w1":                        r"gate_proj",
        r"w2":                        r"down_proj",
        r"w3":                        r"up_proj",
        r"text_embeddings":           r"embed_text_tokens",
        r"audio_embeddings":          r"backbone_model.embed_tokens.embed_audio_tokens",
        r"codebook0_head":            r"lm_head",
        r"audio_head":                r"depth_decoder.codebooks_head.weight",
        r"projection":                r"depth_decoder.model.inputs_embeds_projector",
        r"sa_norm.scale":             r"input_layernorm.weight",
        r"mlp_norm.scale":            r"post_attention_layernorm.weight",
        r"decoder.norm.scale":        r"depth_decoder.model.norm.weight",
        r"backbone.norm.scale":       r"backbone_model.norm.weight",
    }
    # fmt: on

    def permute_for_rope(input_tensor, n_heads, dim1, dim2):
        """Interleaved-pair RoPE rows -> rotate-half rows, per head (transformers' function)."""
        input_tensor = input_tensor.reshape(dim1, dim2)
        input_tensor = input_tensor.view(n_heads, dim1 // n_heads // 2, 2, dim2)
        return input_tensor.transpose(1, 2).reshape(dim1, dim2)


def convert_key(key: str) -> str:
    for pattern, replacement in ORIGINAL_TO_CONVERTED_KEY_MAPPING.items():
        key = re.sub(pattern, replacement, key)
    return key


# ---- configs ---------------------------------------------------------------------------------

def _llama3_rope(cfg: LlamaConfig, original_max_position_embeddings: int) -> dict:
    """torchtune's Llama3ScaledRoPE rewritten for HF: any `orig` with low = orig / old_ctx and
    high = orig * high_freq_factor / old_ctx gives the same cut-offs (8192 / 2048) and ramp."""
    orig = original_max_position_embeddings
    return {
        "rope_type": "llama3",
        "factor": cfg.rope_scale_factor,
        "low_freq_factor": cfg.rope_low_freq_factor * orig / cfg.rope_old_context_len,
        "high_freq_factor": cfg.rope_high_freq_factor * orig / cfg.rope_old_context_len,
        "original_max_position_embeddings": orig,
    }


def config_json_fields(cfg: CSMConfig) -> dict:
    """config.json as transformers' CsmConfig writes it into a checkpoint folder: what
    csm_nb.loading.weights.config_from_json reads the sizes from. (hf_config below builds
    the transformers object itself.)"""
    b, d = cfg.backbone, cfg.decoder
    return {"model_type": "csm", "architectures": ["CsmForConditionalGeneration"],
            "hidden_size": b.embed_dim, "num_hidden_layers": b.num_layers,
            "num_attention_heads": b.num_heads, "num_key_value_heads": b.num_kv_heads,
            "intermediate_size": b.intermediate_dim, "max_position_embeddings": b.max_seq_len,
            "rope_theta": b.rope_base, "rms_norm_eps": b.norm_eps,
            "vocab_size": cfg.audio_vocab_size, "text_vocab_size": cfg.text_vocab_size,
            "num_codebooks": cfg.num_codebooks,
            "depth_decoder_config": {
                "hidden_size": d.embed_dim, "num_hidden_layers": d.num_layers,
                "num_attention_heads": d.num_heads, "num_key_value_heads": d.num_kv_heads,
                "intermediate_size": d.intermediate_dim,
                "max_position_embeddings": cfg.num_columns,   # 33: the frame's positions
                "rope_theta": d.rope_base, "rms_norm_eps": d.norm_eps}}


def small_codec_config():
    """A tiny random Mimi that still turns 1920 samples into one frame of 32 codebooks."""
    from transformers import MimiConfig

    return MimiConfig(hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64,
                      num_attention_heads=2, num_key_value_heads=2, upsample_groups=32,
                      codebook_dim=16, vector_quantization_hidden_dimension=16,
                      num_quantizers=32, codebook_size=2048)


def hf_config(csm_config: CSMConfig, attn_implementation: str = "sdpa"):
    """transformers `CsmConfig` with csm_nb's sizes.

    RoPE: backbone {llama3, 32, 0.125, 0.5, 1024}, depth decoder {llama3, 32, 1/512, 1/128,
    16} (docs/csm-reference.md sec. 9; equal to torchtune's cut-offs). The depth decoder's
    `max_position_embeddings` = K + 1 = 33, as in the released config. `attn_implementation`
    "sdpa" is HF's default; "eager" (explicit softmax + repeat_kv) shares no kernel with csm_nb.
    """
    from transformers import CsmConfig, CsmDepthDecoderConfig

    c, b, d = csm_config, csm_config.backbone, csm_config.decoder
    for name, cfg in (("backbone", b), ("decoder", d)):
        if cfg.rope_old_context_len != 8192:
            raise ValueError(f"{name}: rope_old_context_len={cfg.rope_old_context_len}; the "
                             "HF rewrite assumes torchtune's 8192")
    depth = CsmDepthDecoderConfig(
        num_codebooks=c.num_codebooks, backbone_hidden_size=b.embed_dim,
        vocab_size=c.audio_vocab_size, hidden_size=d.embed_dim,
        intermediate_size=d.intermediate_dim, num_hidden_layers=d.num_layers,
        num_attention_heads=d.num_heads, num_key_value_heads=d.num_kv_heads,
        head_dim=d.head_dim, max_position_embeddings=c.num_codebooks + 1,
        rms_norm_eps=d.norm_eps, rope_theta=d.rope_base, rope_scaling=_llama3_rope(d, 16),
        attn_implementation=attn_implementation)
    return CsmConfig(
        num_codebooks=c.num_codebooks, vocab_size=c.audio_vocab_size,
        text_vocab_size=c.text_vocab_size, hidden_size=b.embed_dim,
        intermediate_size=b.intermediate_dim, num_hidden_layers=b.num_layers,
        num_attention_heads=b.num_heads, num_key_value_heads=b.num_kv_heads,
        head_dim=b.head_dim, max_position_embeddings=c.max_seq_len, rms_norm_eps=b.norm_eps,
        rope_theta=b.rope_base, rope_scaling=_llama3_rope(b, 1024),
        codebook_pad_token_id=c.audio_vocab_size - 1, codebook_eos_token_id=0,
        depth_decoder_config=depth, codec_config=small_codec_config(),
        attn_implementation=attn_implementation)


# ---- weights ---------------------------------------------------------------------------------

def to_transformers_state_dict(official_sd: dict, hf_model) -> dict:
    """Official (= csm_nb) state dict -> `CsmForConditionalGeneration` state dict.

    Renames with transformers' table, permutes q/k rows to rotate-half order, copies the audio
    table into the depth decoder's (tied) embedding, and adds the HF model's own codec weights.
    Unpermuted tensors share storage with `official_sd` (load_state_dict copies them anyway).
    """
    cfg = hf_model.config
    heads = {
        "backbone_model.": (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim),
        "depth_decoder.": (cfg.depth_decoder_config.num_attention_heads,
                           cfg.depth_decoder_config.num_key_value_heads,
                           cfg.depth_decoder_config.head_dim),
    }
    out = {}
    for key, value in official_sd.items():
        if key.endswith("_causal_mask"):     # buffers the official setup_caches() may save
            continue
        new_key = convert_key(key)
        if re.search(r"(q|k)_proj\.weight$", new_key):
            prefix = "backbone_model." if new_key.startswith("backbone_model.") else "depth_decoder."
            n_q, n_kv, hd = heads[prefix]
            n = n_q if "q_proj" in new_key else n_kv
            if value.shape[0] != n * hd:
                raise ValueError(f"{key}: {tuple(value.shape)} rows, expected {n} heads x {hd}")
            value = permute_for_rope(value, n, value.shape[0], value.shape[1])
        out[new_key] = value.detach()
    out["depth_decoder.model.embed_tokens.weight"] = (
        out["backbone_model.embed_tokens.embed_audio_tokens.weight"])
    out.update({f"codec_model.{k}": v for k, v in hf_model.codec_model.state_dict().items()})
    return out


def hf_model_from(csm_model: CSM, attn_implementation: str = "sdpa"):
    """A `CsmForConditionalGeneration` (fp32, eval) holding exactly `csm_model`'s weights."""
    from transformers import CsmForConditionalGeneration

    hf = CsmForConditionalGeneration(hf_config(csm_model.config, attn_implementation))
    sd = to_transformers_state_dict(csm_model.state_dict(), hf)
    hf.load_state_dict(sd, strict=True)
    return hf.to(csm_model.codebook0_head.weight.dtype).eval()


@contextmanager
def attention(hf_model, implementation: str):
    """Temporarily switch the backbone's and depth decoder's attention ("sdpa" / "eager")."""
    from transformers.utils import logging

    def switch(name):
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()       # Mimi cannot switch and says so; it is not used
        try:
            hf_model.set_attn_implementation(name)
        finally:
            logging.set_verbosity(verbosity)
        for module in (hf_model, hf_model.backbone_model, hf_model.depth_decoder.model):
            if module.config._attn_implementation != name:
                raise RuntimeError(f"{type(module).__name__} still uses "
                                   f"{module.config._attn_implementation!r}, not {name!r}")

    before = hf_model.config._attn_implementation
    switch(implementation)
    try:
        yield hf_model
    finally:
        switch(before)


# ---- prompts ---------------------------------------------------------------------------------

def hf_inputs_from_rows(tokens: torch.Tensor, mask: torch.Tensor, hf_model):
    """csm_nb rows [S, K+1] -> what `CsmProcessor` would give HF for the same prompt.

    A text row becomes its text id; an audio row `<|AUDIO|>` (its codes come from the codec);
    an all-zero audio row `<|audio_eos|>` (HF embeds the all-zero frame there), which also
    ends the current audio segment. Each segment gets F * 1920 placeholder samples.

    Returns (inputs: dict for `model(**inputs)` / `generate(**inputs)`, segments: list of
    codes [K, F], one per audio segment, for `stub_codec`).
    """
    cfg = hf_model.config
    K = cfg.num_codebooks
    samples_per_frame = round(cfg.codec_config.sampling_rate / cfg.codec_config.frame_rate)
    ids, segments, current = [], [], []
    for row, row_mask in zip(tokens.tolist(), mask.tolist()):
        if row_mask[K] and not any(row_mask[:K]):                    # text row
            ids.append(row[K])
        elif all(row_mask[:K]) and not row_mask[K]:                  # audio row
            if any(row[:K]):
                ids.append(cfg.audio_token_id)
                current.append(row[:K])
            else:
                ids.append(cfg.audio_eos_token_id)
                if current:
                    segments.append(torch.tensor(current, dtype=torch.long).T)
                current = []
        else:
            raise ValueError(f"row mask {row_mask} is neither a text nor an audio row")
    if current:
        segments.append(torch.tensor(current, dtype=torch.long).T)
    input_ids = torch.tensor([ids], dtype=torch.long)
    inputs = {"input_ids": input_ids,
              # HF's pad id (128002) is also <|AUDIO|>: without an explicit mask, generate()
              # would derive one that hides every audio row (the processor always passes one).
              "attention_mask": torch.ones_like(input_ids)}
    if segments:
        lengths = [seg.shape[1] * samples_per_frame for seg in segments]
        inputs["input_values"] = torch.zeros(1, 1, sum(lengths))
        inputs["input_values_cutoffs"] = torch.tensor([lengths]).cumsum(-1)
        encoded = hf_model.codec_model.get_encoded_length(torch.tensor(lengths))
        if encoded.tolist() != [seg.shape[1] for seg in segments]:
            raise ValueError(f"the codec maps {lengths} samples to {encoded.tolist()} frames, "
                             f"not {[seg.shape[1] for seg in segments]}")
    return inputs, segments


@contextmanager
def stub_codec(hf_model, segments: list[torch.Tensor]):
    """Make `hf_model.codec_model.encode` return the known codes of each segment, in order
    (cycling, as every forward/generate call re-encodes the prompt's segments)."""
    from transformers.models.mimi.modeling_mimi import MimiEncoderOutput

    codec = hf_model.codec_model
    calls = []

    def encode(input_values, *args, **kwargs):
        seg = segments[len(calls) % len(segments)]
        calls.append(input_values.shape)
        expected = seg.shape[1] * round(codec.config.sampling_rate / codec.config.frame_rate)
        if input_values.shape[-1] != expected:
            raise AssertionError(f"segment {len(calls) - 1}: got {input_values.shape[-1]} "
                                 f"samples, expected {expected}")
        return MimiEncoderOutput(audio_codes=seg[None].to(input_values.device))

    codec.encode = encode
    try:
        yield calls
    finally:
        del codec.encode
