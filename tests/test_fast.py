"""The fast paths give the same codes as the plain loop; the CUDA-graph step's buffer logic;
the compiled depth loop is one small graph whatever the number of codebooks."""

import pytest
import torch

import csm_nb
from csm_nb.core import depth_step as ds
from csm_nb.core import frame_loop as fast
from csm_nb.core.frame_loop import decode_frame
from csm_nb.core.sampling import draw_noise
from helpers import mixed_prompt


@pytest.fixture(scope="module")
def model():
    return csm_nb.tiny_model(device="cpu", seed=11)


def small_config():
    """Same structure, 4 codebooks and one decoder layer: compiles in seconds, not minutes."""
    tiny = csm_nb.CSMConfig.tiny()
    decoder = csm_nb.LlamaConfig(num_layers=1, num_heads=4, num_kv_heads=1, embed_dim=32,
                                 intermediate_dim=64, max_seq_len=8)
    backbone = csm_nb.LlamaConfig(num_layers=1, num_heads=4, num_kv_heads=1, embed_dim=64,
                                  intermediate_dim=128, max_seq_len=64)
    return csm_nb.CSMConfig(backbone=backbone, decoder=decoder, num_codebooks=4,
                            text_vocab_size=tiny.text_vocab_size)


@pytest.mark.parametrize("seed", [0, 1])
def test_graph_step_equals_eager_loop_when_sampling(model, tokenizer, seed):
    tokens, mask = mixed_prompt(tokenizer)
    runs = [csm_nb.generate_codes(model, tokens, mask, max_frames=5, topk=20, temperature=1.2,
                                  generator=torch.Generator().manual_seed(seed), backend=b)
            for b in ("eager", "graph")]
    assert runs[0].shape == (32, 5) and torch.equal(runs[0], runs[1])


def test_graph_step_batched_with_padding(model, tokenizer):
    p1 = mixed_prompt(tokenizer, frames=3, seed=2)
    p2 = csm_nb.text_rows(tokenizer, "Yes.", 1)
    pad = p1[0].shape[0] - p2[0].shape[0]
    tokens = torch.stack([p1[0], torch.cat([torch.zeros(pad, 33, dtype=torch.int64), p2[0]])])
    mask = torch.stack([p1[1], torch.cat([torch.zeros(pad, 33, dtype=torch.bool), p2[1]])])
    eager = csm_nb.generate_codes(model, tokens, mask, max_frames=4, topk=1, backend="eager")
    graph = csm_nb.generate_codes(model, tokens, mask, max_frames=4, topk=1, backend="graph")
    assert torch.equal(eager, graph)


def test_frame_step_buffers_are_static_and_advance(model):
    """What a CUDA graph relies on: every step reads and writes the same tensors, and the
    state a replay needs (position, backbone state) lives in them."""
    model.setup_caches(1)
    step = fast.FrameStep(model, 1, 1.0, 1, backend="graph")
    addresses = [t.data_ptr() for t in (step.last_h, step.noise, step.codes, step.row,
                                        step.slot, step.pad)]
    step.start(torch.randn(1, 128), slot=10, pad=None)
    first = step(torch.Generator().manual_seed(0)).clone()
    assert int(step.slot) == 11 and torch.equal(step.row[0, 0, :32], first[0])
    assert not step.row[0, 0, 32] and not step.row_mask[0, 0, 32] and step.row_mask[0, 0, :32].all()
    h_after = step.last_h.clone()
    step()
    assert int(step.slot) == 12 and not torch.equal(step.last_h, h_after)
    assert addresses == [t.data_ptr() for t in (step.last_h, step.noise, step.codes, step.row,
                                                step.slot, step.pad)]


def test_frame_steps_are_reused_and_dropped_with_the_cache(model):
    model.setup_caches(1)
    a = fast.frame_step_for(model, 1, 0.9, 50, "eager")
    assert fast.frame_step_for(model, 1, 0.9, 50, "eager") is a
    assert fast.frame_step_for(model, 1, 0.8, 50, "eager") is not a
    assert fast.frame_step_for(model, 1, 0.9, 50, "graph") is not a
    model.setup_caches(1)                        # new cache tensors: old steps are stale
    b = fast.frame_step_for(model, 1, 0.9, 50, "eager")
    assert b is not a and list(model.frame_steps.values()) == [b]
    model.remove_caches()
    assert model.frame_steps == {}


@pytest.mark.parametrize("backend", ["eager", "compile", "graph"])
def test_every_backend_runs_the_one_step_function(model, tokenizer, monkeypatch, backend):
    """The backends differ only in how FrameStep.step runs: count its calls."""
    calls = []
    original = fast.FrameStep.step
    monkeypatch.setattr(fast.FrameStep, "step", lambda self, *a: calls.append(1) or
                        original(self, *a))
    if backend == "compile":      # compiling is the slow part; what runs it is the point here
        monkeypatch.setattr(fast, "compiled_depth_step", lambda device: ds.depth_step)
    codes = csm_nb.generate_codes(model, *mixed_prompt(tokenizer), max_frames=3, topk=1,
                                  backend=backend)
    assert codes.shape == (32, 3) and len(calls) == 3


def test_cuda_graph_switch_is_read_at_call_time(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.delenv("CSM_NB_CUDA_GRAPHS", raising=False)
    assert fast.default_backend(cuda) == "graph"
    assert fast.default_backend(torch.device("cpu")) == "eager"
    monkeypatch.setenv("CSM_NB_CUDA_GRAPHS", "0")
    assert fast.default_backend(cuda) == "eager"


def test_bad_backend(model, tokenizer):
    with pytest.raises(ValueError, match="backend='fastest' is not one of auto, eager"):
        csm_nb.generate_codes(model, *csm_nb.text_rows(tokenizer, "a", 0), backend="fastest")


def test_whole_depth_loop_compiles_as_one_graph_and_matches_eager():
    """fullgraph=True: the unrolled loop, sampling included, has no graph break and no host
    sync; same noise -> same codes. (The notebook compiles it this way; generate_codes'
    compile backend compiles one step instead: below.)"""
    model = csm_nb.tiny_model(small_config(), device="cpu", seed=3)
    model.setup_caches(2)
    h = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    noise = draw_noise((4, 2, 2051), torch.Generator().manual_seed(1))
    graphs = []
    compiled = torch.compile(decode_frame, fullgraph=True, dynamic=False,
                             backend=lambda gm, inputs: graphs.append(gm) or gm.forward)
    with torch.inference_mode():
        eager_codes = decode_frame(model, h, 0.9, 50, noise)
        compiled_codes = compiled(model, h, 0.9, 50, noise)
    assert torch.equal(eager_codes, compiled_codes) and len(graphs) == 1


@pytest.mark.parametrize("batch, topk", [(1, 50), (2, 20), (2, 1)])
def test_position_by_position_loop_is_the_same_math_as_decode_frame(model, batch, topk):
    """depth_step with tensor positions (what is compiled), run eagerly: the same codes as the
    unrolled loop with Python-int positions, sampled and greedy."""
    cfg = model.config
    model.setup_caches(batch)
    h = torch.randn(batch, cfg.backbone.embed_dim, generator=torch.Generator().manual_seed(4))
    positions = ds.position_tensors(cfg.num_codebooks, "cpu")
    for seed in range(3):
        noise = draw_noise((32, batch, 2051), torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            unrolled = decode_frame(model, h, 0.9, topk, noise)
            stepped = ds.depth_loop(model, h, 0.9, topk, noise, positions)
        assert stepped.shape == (batch, 32) and torch.equal(unrolled, stepped)


def test_one_graph_serves_every_position(model):
    """32 codebooks, 32 steps per frame, 3 frames: dynamo captures ONE graph (so compile time
    does not grow with K), with no graph break (fullgraph=True) and no recompile."""
    graphs = []
    step = torch.compile(ds.depth_step, fullgraph=True, dynamic=False,
                         backend=lambda gm, inputs: graphs.append(gm) or gm.forward)
    model.setup_caches(1)
    positions = ds.position_tensors(32, "cpu")
    with torch.inference_mode():      # as generate_codes runs it: every input an inference tensor
        h = torch.randn(1, model.config.backbone.embed_dim)
        for seed in range(3):
            noise = draw_noise((32, 1, 2051), torch.Generator().manual_seed(seed))
            codes = ds.depth_loop(model, h, 0.9, 50, noise, positions, step)
            assert torch.equal(codes, decode_frame(model, h, 0.9, 50, noise))
    assert len(graphs) == 1


def test_compiled_step_matches_eager_through_generate_codes():
    """The real thing: Inductor (with the C++ wrapper on a CPU) through generate_codes'
    compile backend, against eager, sampling with the same generator. Small config: the
    graph is one decoder step, so this compiles in seconds."""
    model = csm_nb.tiny_model(small_config(), device="cpu", seed=5)
    tokens, mask = mixed_prompt(csm_nb.tiny_tokenizer(), num_codebooks=4, frames=3)
    runs = {b: csm_nb.generate_codes(model, tokens, mask, max_frames=4, topk=20,
                                     temperature=1.1, backend=b,
                                     generator=torch.Generator().manual_seed(2))
            for b in ("eager", "compile")}
    assert runs["eager"].shape == (4, 4) and torch.equal(runs["eager"], runs["compile"])
