"""The model's structure, and the cached frame loop against recomputation from scratch."""

import pytest
import torch

import csm_nb
from csm_nb.core.frame_loop import decode_frame
from csm_nb.core.sampling import draw_noise
from csm_nb.reference.weights import parity_config, random_csm
from helpers import fresh_model, mixed_prompt

# The official checkpoint's shapes (docs/csm-reference.md, sec. 2).
PER_LAYER = {"sa_norm.scale": "D", "attn.q_proj.weight": ("D", "D"),
             "attn.k_proj.weight": ("KV", "D"), "attn.v_proj.weight": ("KV", "D"),
             "attn.output_proj.weight": ("D", "D"), "mlp_norm.scale": "D",
             "mlp.w1.weight": (8192, "D"), "mlp.w2.weight": ("D", 8192),
             "mlp.w3.weight": (8192, "D")}


def official_shapes():
    shapes = {}
    for prefix, layers, D, KV in (("backbone", 16, 2048, 512), ("decoder", 4, 1024, 256)):
        sizes = {"D": D, "KV": KV}
        for i in range(layers):
            for name, shape in PER_LAYER.items():
                shape = shape if isinstance(shape, tuple) else (shape,)
                shapes[f"{prefix}.layers.{i}.{name}"] = tuple(sizes.get(s, s) for s in shape)
        shapes[f"{prefix}.norm.scale"] = (D,)
    shapes.update({"text_embeddings.weight": (128256, 2048),
                   "audio_embeddings.weight": (65632, 2048), "projection.weight": (1024, 2048),
                   "codebook0_head.weight": (2051, 2048), "audio_head": (31, 1024, 2051)})
    return shapes


def test_full_size_on_meta_has_the_official_keys_shapes_and_count():
    with torch.device("meta"):
        model = csm_nb.CSM(csm_nb.CSMConfig.csm_1b())
    sd = model.state_dict()
    assert len(sd) == 187
    assert {k: tuple(v.shape) for k, v in sd.items()} == official_shapes()
    assert model.num_parameters == 1_552_791_552


def test_tiny_has_the_same_structure():
    tiny = csm_nb.CSMConfig.tiny()
    full = csm_nb.CSMConfig.csm_1b()
    for part in ("backbone", "decoder"):
        t, f = getattr(tiny, part), getattr(full, part)
        assert t.num_heads // t.num_kv_heads == f.num_heads // f.num_kv_heads == 4
    assert (tiny.num_codebooks, tiny.audio_vocab_size, tiny.text_vocab_size) == (32, 2051, 128256)
    assert tiny.num_columns == 33 and tiny.samples_per_frame == 1920 and tiny.frame_ms == 80


def test_tiny_model_is_seeded():
    a, b = csm_nb.tiny_model(device="cpu"), csm_nb.tiny_model(device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


@pytest.fixture(scope="module")
def parity_model():
    return random_csm(parity_config(), seed=3)


@pytest.fixture
def model(parity_model):
    """Built once per file (seconds); each test gets it without the caches the last one left."""
    return fresh_model(parity_model)


def test_embedding_sums_active_columns_with_codebook_offsets(model, tokenizer):
    tokens, mask = mixed_prompt(tokenizer, frames=2)
    h = model.embed_rows(tokens[None], mask[None])[0]                        # [S, D]
    V = model.config.audio_vocab_size
    text_row = 0
    assert torch.equal(h[text_row], model.text_embeddings.weight[tokens[text_row, 32]])
    audio_row = next(i for i in range(len(mask)) if mask[i, 0])
    expected = sum(model.audio_embeddings.weight[tokens[audio_row, k] + k * V]
                   for k in range(32))
    torch.testing.assert_close(h[audio_row], expected, rtol=1e-5, atol=1e-5)


def test_cached_frame_loop_equals_recomputing_without_cache(model, tokenizer):
    """Greedy codes from the cached loop; then every frame's codebook-0 logits and depth
    logits recomputed from scratch over the whole sequence, no cache at all."""
    tokens, mask = mixed_prompt(tokenizer)
    frames, logits = 6, []
    codes = csm_nb.generate_codes(model, tokens, mask, max_frames=frames, topk=1,
                                  trace_logits=True, on_frame=lambda f: logits.append(f.logits[0]))
    assert codes.shape == (32, frames)
    rows, row_mask = csm_nb.audio_rows(codes)
    full_tokens = torch.cat([tokens, rows[:-1]])[None]                      # no EOS row
    full_mask = torch.cat([mask, row_mask[:-1]])[None]
    with torch.no_grad():
        h = model(full_tokens, full_mask)[0]                                 # [S+F, D]
        S = tokens.shape[0]
        for f in range(frames):
            last_h = h[S - 1 + f]
            c0 = model.codebook0_logits(last_h[None])[0]
            torch.testing.assert_close(c0, logits[f][0], rtol=0, atol=1e-5)
            embeds = [model.embed_audio(k, codes[k, f][None])[0] for k in range(31)]
            inputs = torch.stack([last_h] + embeds)[None]                    # [1, 32, D]
            depth = model.decoder_forward(inputs)[0]                         # [31, V]
            torch.testing.assert_close(depth, logits[f][1:], rtol=0, atol=1e-5)
            assert torch.equal(depth.argmax(-1), codes[1:, f])


def test_compiled_style_noise_makes_sampling_reproducible(model, tokenizer):
    tokens, mask = mixed_prompt(tokenizer)
    run = [csm_nb.generate_codes(model, tokens, mask, max_frames=3,
                                 generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    other = csm_nb.generate_codes(model, tokens, mask, max_frames=3,
                                  generator=torch.Generator().manual_seed(8))
    assert torch.equal(run[0], run[1])
    assert not torch.equal(run[0], other)


def test_decode_frame_is_greedy_argmax_whatever_the_noise(model):
    h = torch.randn(2, model.config.backbone.embed_dim)
    noise_a = draw_noise((32, 2, 2051), torch.Generator().manual_seed(0))
    noise_b = draw_noise((32, 2, 2051), torch.Generator().manual_seed(1))
    model.setup_caches(2)
    with torch.no_grad():
        a = decode_frame(model, h, 1.0, 1, noise_a)
        b = decode_frame(model, h, 1.0, 1, noise_b)
    assert a.shape == (2, 32) and torch.equal(a, b)


def test_batch_with_left_padding_equals_one_by_one(model, tokenizer):
    p1 = mixed_prompt(tokenizer, frames=4, seed=1)
    p2 = csm_nb.text_rows(tokenizer, "Short.", 1)
    S = p1[0].shape[0]
    pad = S - p2[0].shape[0]
    tokens = torch.stack([p1[0], torch.cat([torch.zeros(pad, 33, dtype=torch.int64), p2[0]])])
    mask = torch.stack([p1[1], torch.cat([torch.zeros(pad, 33, dtype=torch.bool), p2[1]])])
    batched = csm_nb.generate_codes(model, tokens, mask, max_frames=5, topk=1)
    single = [csm_nb.generate_codes(model, *p, max_frames=5, topk=1) for p in (p1, p2)]
    assert batched.shape == (2, 32, 5)
    assert torch.equal(batched[0], single[0]) and torch.equal(batched[1], single[1])


def test_stop_frame_is_dropped_and_later_rows_zero_filled():
    from csm_nb.core.generate import _trim
    codes = torch.randint(1, 2048, (2, 32, 6))
    codes[0, :, 3] = 0                       # row 0 stops at frame 3
    out = _trim(codes.clone(), single=False)
    assert out.shape == (2, 32, 6)
    assert torch.equal(out[0, :, :3], codes[0, :, :3]) and not out[0, :, 3:].any()
    assert torch.equal(out[1], codes[1])
    assert _trim(codes[:1].clone(), single=True).shape == (32, 3)
    codes[:, :, 0] = 0                       # both stop at once: no audio at all
    assert _trim(codes, single=True).shape == (32, 0)


def test_loop_stops_at_the_all_zero_frame(monkeypatch, model, tokenizer):
    import csm_nb.core.frame_loop as gen
    calls = []

    def fake_frame(model, last_h, temperature, topk, noise, logits_out=None):
        calls.append(1)
        value = 0 if len(calls) == 4 else len(calls)
        return torch.full((last_h.shape[0], 32), value, dtype=torch.int64)

    monkeypatch.setattr(gen, "decode_frame", fake_frame)
    codes = csm_nb.generate_codes(model, *mixed_prompt(tokenizer), max_frames=10)
    assert len(calls) == 4                       # the CPU checks every frame: no extra frame
    assert codes.shape == (32, 3) and torch.equal(codes[0], torch.tensor([1, 2, 3]))
