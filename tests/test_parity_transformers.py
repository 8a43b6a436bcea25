"""csm_nb vs transformers' `CsmForConditionalGeneration` on the same random fp32 weights.

HF gets the prompt the way its processor would give it (text ids with `<|AUDIO|>` and
`<|audio_eos|>` placeholders + audio samples) and embeds it itself; only Mimi's `encode` is
stubbed to return the prompt's known codes (the codec is not under test). Run with -s to see
the measured differences.
"""

import pytest
import torch

pytest.importorskip("transformers")

import csm_nb  # noqa: E402
from csm_nb.reference import hf_csm  # noqa: E402
from csm_nb.reference.weights import parity_config, random_csm  # noqa: E402
from helpers import fresh_model  # noqa: E402

TOL = 1e-4          # fp32, max abs difference
FRAMES = 12         # greedy frames compared


@pytest.fixture(scope="module")
def hf_pair():
    # Full text vocabulary: the tiny tokenizer's BOS/EOS are 128000/128001 and HF embeds its
    # <|AUDIO|> / <|audio_eos|> placeholders (128002/128003) with the text table first.
    cfg = parity_config(text_vocab_size=csm_nb.CSMConfig.text_vocab_size)
    ours = random_csm(cfg, seed=0)
    return ours, hf_csm.hf_model_from(ours)


@pytest.fixture
def pair(hf_pair):
    """Built once per file (seconds); each test gets ours without KV caches (HF's generate
    makes its own cache per call)."""
    ours, hf = hf_pair
    return fresh_model(ours), hf


@pytest.fixture(scope="module")
def prompt(hf_pair):
    """Two context segments (text rows, random audio rows, all-zero EOS row) + text to say."""
    ours, hf = hf_pair
    tok = csm_nb.tiny_tokenizer()
    g = torch.Generator().manual_seed(1)
    parts = [csm_nb.text_rows(tok, "Hi there.", 0),
             csm_nb.audio_rows(torch.randint(0, 2048, (32, 3), generator=g)),
             csm_nb.text_rows(tok, "Yes?", 1),
             csm_nb.audio_rows(torch.randint(0, 2048, (32, 5), generator=g)),
             csm_nb.text_rows(tok, "Go on then.", 0)]
    tokens = torch.cat([p[0] for p in parts])
    mask = torch.cat([p[1] for p in parts])
    inputs, segments = hf_csm.hf_inputs_from_rows(tokens, mask, hf)
    ids = inputs["input_ids"][0]
    assert ids.shape[0] == tokens.shape[0]
    assert int((ids == hf.config.audio_token_id).sum()) == 3 + 5
    assert int((ids == hf.config.audio_eos_token_id).sum()) == 2
    assert [s.shape for s in segments] == [(32, 3), (32, 5)]
    return tokens, mask, inputs, segments


def _maxdiff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def test_conversion_renames_and_permutes(pair):
    """Every official tensor lands in HF (strict load in hf_model_from), q/k rows permuted."""
    ours, hf = pair
    sd = hf_csm.to_transformers_state_dict(ours.state_dict(), hf)
    print(f"\nkey mapping: {hf_csm.MAPPING_SOURCE}")
    assert set(sd) == set(hf.state_dict())
    hd = ours.config.backbone.head_dim
    for proj, heads in (("q_proj", ours.config.backbone.num_heads),
                        ("k_proj", ours.config.backbone.num_kv_heads)):
        old = ours.state_dict()[f"backbone.layers.1.attn.{proj}.weight"].view(heads, hd, -1)
        new = hf.state_dict()[f"backbone_model.layers.1.self_attn.{proj}.weight"].view(
            heads, hd, -1)
        # rotate-half row j pairs with row j + hd/2: old interleaved rows 2j and 2j + 1
        assert torch.equal(new[:, : hd // 2], old[:, 0::2])
        assert torch.equal(new[:, hd // 2:], old[:, 1::2])
    for official, converted in (("text_embeddings.weight", "embed_text_tokens.weight"),
                                ("audio_embeddings.weight",
                                 "depth_decoder.model.embed_tokens.weight"),
                                ("audio_head", "depth_decoder.codebooks_head.weight"),
                                ("decoder.layers.1.attn.v_proj.weight",
                                 "depth_decoder.model.layers.1.self_attn.v_proj.weight")):
        assert torch.equal(hf.state_dict()[converted], ours.state_dict()[official])


def test_rope_frequencies_equal(pair):
    """HF's llama3 rope_scaling rewrite gives torchtune's (= csm_nb's) frequencies."""
    ours, hf = pair
    from csm_nb.core.llama import llama3_inv_freq
    for name, cfg, rotary in (("backbone", ours.config.backbone, hf.backbone_model.rotary_emb),
                              ("decoder", ours.config.decoder, hf.depth_decoder.model.rotary_emb)):
        ref = llama3_inv_freq(cfg)
        rel = ((rotary.inv_freq - ref).abs() / ref).max().item()
        print(f"\nRoPE {name}: max relative inv_freq difference {rel:.1e}")
        assert rotary.inv_freq.shape == ref.shape and rel <= 1e-6
        assert rotary.attention_scaling == 1.0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_backbone_hidden_states_and_codebook0_logits(pair, prompt, attn):
    ours, hf = pair
    tokens, mask, inputs, segments = prompt
    with hf_csm.attention(hf, attn):
        _check_backbone(ours, hf, tokens, mask, inputs, segments, attn)


def _check_backbone(ours, hf, tokens, mask, inputs, segments, attn):
    h_ours = ours(tokens[None], mask[None])                                   # [1, S, D]
    logits_ours = ours.codebook0_logits(h_ours)                               # [1, S, V]
    with hf_csm.stub_codec(hf, segments) as calls:
        embeds = hf._merge_input_ids_with_input_values(
            inputs["input_ids"], inputs["input_values"], inputs["input_values_cutoffs"],
        )["inputs_embeds"]
        out = hf(**inputs, output_hidden_states=True)
    assert len(calls) == 2 * len(segments)       # HF really embedded the audio segments
    h_hf = out.hidden_states[-1]                  # final-normed (HF ties it to last_hidden_state)
    d_emb = _maxdiff(embeds, ours.embed_rows(tokens[None], mask[None]))
    d_h, d_logits = _maxdiff(h_hf, h_ours), _maxdiff(out.logits, logits_ours)
    print(f"\nbackbone, HF {attn} ({tokens.shape[0]} rows): max |diff| embeddings "
          f"{d_emb:.2e}, hidden {d_h:.2e} (|h| max {h_ours.abs().max():.2f}), codebook-0 "
          f"logits {d_logits:.2e}")
    assert h_ours.abs().max() > 0.5 and logits_ours.std() > 0.5      # not a trivial signal
    assert d_emb <= TOL and d_h <= TOL and d_logits <= TOL

    # The comparison can fail: without the interleaved -> rotate-half permutation of layer 0's
    # q/k rows, HF's hidden states move far outside the tolerance.
    layer0 = hf.backbone_model.layers[0].self_attn
    official = ours.backbone.layers[0].attn
    saved = layer0.q_proj.weight.clone(), layer0.k_proj.weight.clone()
    try:
        layer0.q_proj.weight.copy_(official.q_proj.weight)
        layer0.k_proj.weight.copy_(official.k_proj.weight)
        d_unpermuted = _maxdiff(hf.backbone_model(inputs_embeds=embeds).last_hidden_state,
                                h_ours)
    finally:
        layer0.q_proj.weight.copy_(saved[0])
        layer0.k_proj.weight.copy_(saved[1])
    print(f"  control: q/k not permuted -> hidden max |diff| {d_unpermuted:.2e}")
    assert d_unpermuted > 100 * TOL
    assert _maxdiff(hf.backbone_model(inputs_embeds=embeds).last_hidden_state, h_ours) <= TOL


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_depth_decoder_logits_teacher_forced(pair, prompt, attn):
    """One frame: same backbone state, same codes c0..c30 -> logits of codebooks 1..31."""
    ours, hf = pair
    tokens, mask, _, _ = prompt
    K = ours.config.num_codebooks
    last_h = ours(tokens[None], mask[None])[:, -1]                            # [1, D]
    codes = torch.randint(0, 2048, (K,), generator=torch.Generator().manual_seed(2))
    # HF: position 0 is a placeholder id replaced by the backbone state, then c0..c30.
    hf_ids = torch.cat([torch.zeros(1, dtype=torch.long), codes[:-1]])[None]  # [1, K]
    with hf_csm.attention(hf, attn):
        logits_hf = hf.depth_decoder(input_ids=hf_ids, backbone_last_hidden_state=last_h,
                                     use_cache=False).logits                  # [1, K-1, V]
    inputs = torch.stack([last_h] + [ours.embed_audio(i, codes[i:i + 1]) for i in range(K - 1)],
                         dim=1)                                               # [1, K, D]
    logits_ours = ours.decoder_forward(inputs)                                # [1, K-1, V]
    d = _maxdiff(logits_hf, logits_ours)
    print(f"\ndepth decoder, HF {attn} (codebooks 1..{K - 1}, teacher forced): max |logit "
          f"diff| {d:.2e} (logit std {logits_ours.std():.2f})")
    assert logits_ours.shape == (1, K - 1, ours.config.audio_vocab_size)
    assert logits_ours.std() > 0.5
    assert d <= TOL


@torch.no_grad()
def test_greedy_generation_identical(pair, prompt):
    ours, hf = pair
    tokens, mask, inputs, segments = prompt
    our_c0 = []
    codes_ours = csm_nb.generate_codes(ours, tokens, mask, max_frames=FRAMES, topk=1,
                                       trace_logits=True,
                                       on_frame=lambda info: our_c0.append(info.logits[0, 0]))
    with hf_csm.stub_codec(hf, segments):      # HF's default attention (sdpa)
        out = hf.generate(**inputs, do_sample=False, depth_decoder_do_sample=False,
                          max_new_tokens=FRAMES, return_dict_in_generate=True,
                          output_logits=True)
    # A 2-D text prompt is not echoed: sequences holds only the generated frames [1, F, K].
    # Stop rules differ (HF: codebooks 0..30 all 0, frame kept; csm_nb: all 32 zero, frame
    # dropped); random weights never produce a zero frame here, so both run FRAMES frames.
    codes_hf = out.sequences[0].T                                             # [K, F]
    assert codes_ours.shape == codes_hf.shape == (ours.config.num_codebooks, FRAMES)
    assert not (codes_hf[:-1] == 0).all(0).any()
    matching = int((codes_hf == codes_ours).all(0).cumprod(0).sum())
    d_c0 = _maxdiff(torch.stack(out.logits)[:, 0], torch.stack(our_c0))
    print(f"\ngreedy: {matching}/{FRAMES} leading frames identical; codebook-0 logits over all "
          f"frames max |diff| {d_c0:.2e}")
    assert torch.equal(codes_hf, codes_ours), f"{matching}/{FRAMES} leading frames identical"
    assert d_c0 <= TOL
