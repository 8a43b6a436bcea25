"""Notebook 04's new teaching aids: the static-cache write and the sync-free stop test
(accept a right answer, name the likely mistake, never crash on junk, count host syncs), the
closing quiz, the measuring harnesses that moved out of the notebook, and hints and answer
cells for every exercise."""

import pytest
import torch

from csm_nb.core.profiling import (GraphRecorder, OpCounter, best_seconds, count_flops,
                                   sync_in_every_layer, weight_bytes_per_frame)
from csm_nb.teach import fast as lesson
from csm_nb.teach.common import AnswerRejected


def said(capsys, ok, check, *args):
    """Run a checker, assert its return value, return what it printed; a wrong answer to an
    exercise ends with the pointer to its hint, then (after it) to its worked answer."""
    assert check(*args) is ok
    out = capsys.readouterr().out
    if ok is False and check is not lesson.check_quiz:
        name = check.__name__.removeprefix("check_")
        hint, answer = f"lesson.hint({name!r})", f"lesson.solution({name!r})"
        assert out.startswith("Not yet.") and hint in out and answer in out, out
        assert out.index(hint) < out.index(answer)
    return out


# ------------------------------------------------------------------ a static-cache write

def test_cache_write_accepts_index_copy_and_index_put(capsys):
    assert "Correct!" in said(capsys, True, lesson.check_cache_write,
                              lambda c, n, p: c.index_copy_(2, p, n))

    def index_put(cache, new, positions):
        cache[:, :, positions] = new
        return cache
    assert "Correct!" in said(capsys, True, lesson.check_cache_write, index_put)


def test_cache_write_names_the_mistake(capsys):
    def syncs(cache, new, positions):
        for j, p in enumerate(positions.tolist()):
            cache[:, :, p] = new[:, :, j]
        return cache

    def item(cache, new, positions):
        cache[:, :, positions[0].item()] = new[:, :, 0]
        return cache

    def not_in_place(cache, new, positions):
        return cache.clone().index_copy_(2, positions, new)

    def wrong_order(cache, new, positions):
        return cache.index_copy_(2, positions.flip(0), new)

    def spills(cache, new, positions):
        cache.index_copy_(2, positions, new)
        cache[:, :, 0] = 0
        return cache

    for fn, hint in ((syncs, "host"), (item, "aten::_local_scalar_dense"),
                     (not_in_place, "new tensor"), (lambda c, n, p: c, "did not change"),
                     (wrong_order, "wrong values"), (spills, "outside `positions`"),
                     (lambda c, n, p: 1 / 0, "ZeroDivisionError")):
        assert hint in said(capsys, False, lesson.check_cache_write, fn)


def test_cache_write_blank_and_wrong_kind(capsys):
    assert "Not answered yet" in said(capsys, None, lesson.check_cache_write, None)

    def blank(cache, new, positions):
        ...
    assert "Not answered yet" in said(capsys, None, lesson.check_cache_write, blank)
    with pytest.raises(TypeError, match="write_cache"):
        lesson.check_cache_write("index_copy_")


# ------------------------------------------------------------------ a stop test with no sync

def test_stop_flags_accepts_the_device_side_update(capsys):
    assert "not one host sync" in said(capsys, True, lesson.check_stop_flags,
                                       lambda d, f: d | (f == 0).all(dim=-1))


def test_stop_flags_names_the_mistake(capsys):
    def with_if(done, frame):
        done = done.clone()
        for b in range(frame.shape[0]):
            if (frame[b] == 0).all():
                done[b] = True
        return done

    for fn, hint in ((with_if, "host"), (lambda d, f: d | (f == 0).any(dim=-1), "ALL its codes"),
                     (lambda d, f: (f == 0).all(dim=-1), "stays stopped"),
                     (lambda d, f: (f == 0).all(dim=0), "codebook axis"),
                     (lambda d, f: ~d, "done_new = done_old OR"),
                     (lambda d, f: 1 / 0, "ZeroDivisionError")):
        assert hint in said(capsys, False, lesson.check_stop_flags, fn)
    assert "Not answered yet" in said(capsys, None, lesson.check_stop_flags, None)


def test_strict_checks_fail_a_wrong_answer(monkeypatch):
    monkeypatch.setenv("CSM_NB_STRICT_CHECKS", "1")
    with pytest.raises(AnswerRejected):
        lesson.check_stop_flags(lambda d, f: (f == 0).all(dim=-1))
    with pytest.raises(AnswerRejected):
        lesson.check_cache_write(lambda c, n, p: c)


# ------------------------------------------------------------------ quiz, hints, answer cells

def test_quiz_accepts_the_right_letters_and_explains_a_wrong_one(capsys):
    right = lesson.QUIZ.right_answers()
    assert "6 of 6" in said(capsys, True, lesson.check_quiz, right)
    out = said(capsys, False, lesson.check_quiz, {**right, 5: "B"})
    assert "5: not b. that is what the first version did" in out


def test_csm_with_layers():
    c = lesson.csm_with_layers(28, 8)
    assert (c.backbone.num_layers, c.decoder.num_layers) == (28, 8)
    assert lesson.official_host_syncs(c) == 285


# ------------------------------------------------------------------ the harnesses

def test_count_flops_counts_attention_and_best_seconds_checks_repeats():
    q = torch.randn(1, 4, 3, 8)
    kv = torch.randn(1, 4, 10, 8)
    flops = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, kv, kv))
    assert flops == 2 * 2 * 1 * 4 * 3 * 10 * 8
    assert count_flops(lambda: torch.randn(4, 5) @ torch.randn(5, 6)) == 2 * 4 * 5 * 6
    assert best_seconds(lambda: None, 2) >= 0
    with pytest.raises(ValueError, match="repeats"):
        best_seconds(lambda: None, 0)


def test_graph_recorder_counts_graphs_and_ops():
    rec = GraphRecorder()
    with pytest.raises(ValueError, match="no graph"):
        rec.ops()
    f = torch.compile(lambda x: (x + 1) * 2, backend=rec, dynamic=False)
    f(torch.ones(3))
    f(torch.ones(3))
    assert len(rec.graphs) == 1 and rec.ops() == 2


def test_frame_bench_and_parts_on_the_tiny_generator(gen):
    tokens, mask, _ = gen.prompt_rows("Hi.", 0)
    bench = lesson.FrameBench(gen, tokens, mask, frames=3)
    ms, first = bench.ms_per_frame()
    assert ms > 0 and first > 0
    counts = bench.counts_per_frame()
    assert counts.syncs == 1 and 0 < counts.kernels < counts.total
    with sync_in_every_layer(gen.model):
        heavy = bench.counts_per_frame()
    cfg = gen.config
    assert heavy.syncs == 1 + cfg.backbone.num_layers + (cfg.num_codebooks - 1) * \
        cfg.decoder.num_layers
    assert bench.run(batch=2).shape == (2, cfg.num_codebooks, 3)
    rows = bench.prompt_of(tokens.shape[0] + 10)
    assert rows[0].shape[0] == tokens.shape[0] + 10
    with pytest.raises(ValueError, match="no room"):
        bench.prompt_of(3)
    with pytest.raises(ValueError, match="frames"):
        lesson.FrameBench(gen, tokens, mask, frames=1)
    assert bench.first_chunk_seconds("Hi.", 1) > 0
    assert sum(lesson.frame_bytes(gen.model).values()) == weight_bytes_per_frame(gen.model)
    with torch.inference_mode():
        last_h = gen.model.backbone_step(tokens[None], mask[None], torch.arange(tokens.shape[0]))
        codes = torch.ones(1, cfg.num_codebooks, dtype=torch.int64)
        kernels, ms = lesson.count_parts(lesson.frame_parts(gen.model, last_h, codes,
                                                            tokens.shape[0]), repeats=1)
    assert set(kernels) == set(ms) and all(n > 0 for n in kernels.values())


def test_meta_csm_counts_the_full_model_for_free():
    big = lesson.meta_csm()
    kernels = lesson.count_frame_kernels(big)
    assert len(kernels) == 3 and sum(kernels.values()) > 1000
    assert lesson.kv_cache_bytes(big) == 16 * 2 * 8 * 2048 * 64 * 2
    with OpCounter() as ops:
        pass
    assert ops.total == 0
