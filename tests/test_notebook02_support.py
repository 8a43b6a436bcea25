"""What notebook 02 relies on: tracing with sampling, its figures and widgets (headless), and
its exercise checkers (accept a right answer, reject a wrong one, never crash on junk)."""

import math

import pytest
import torch
from matplotlib.figure import Figure

import csm_nb
from csm_nb.teach import backbone as lesson
from csm_nb.core.sampling import filtered_probs, sample_topk
from helpers import fresh_model, micro_config, mixed_prompt
from csm_nb.reference.weights import random_csm

FRAMES = 4



@pytest.fixture(scope="module")
def shared_model():
    """The official structure (32 codebooks of 2051 bins, the full text vocabulary, 4:1
    grouped-query attention) at the smallest widths, with well-scaled random weights."""
    return random_csm(micro_config(width=64, heads=4), seed=5)


@pytest.fixture
def model(shared_model):
    return fresh_model(shared_model)           # generating sets up caches: start each test clean


def assert_renders(fig):
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(b"\x89PNG")


def traced_run(model, prompt, **kwargs):
    infos = []
    codes = csm_nb.generate_codes(model, *prompt, max_frames=FRAMES, trace_logits=True,
                                  on_frame=infos.append, **kwargs)
    return codes, infos


# ---- tracing -------------------------------------------------------------------------------

def test_tracing_with_sampling_reports_what_the_untraced_run_produced(model, prompt):
    untraced = csm_nb.generate_codes(model, *prompt, max_frames=FRAMES, temperature=0.9,
                                     topk=50, generator=torch.Generator().manual_seed(11))
    traced, infos = traced_run(model, prompt, temperature=0.9, topk=50,
                               generator=torch.Generator().manual_seed(11))
    assert untraced.shape == traced.shape == (32, FRAMES)
    assert torch.equal(traced, untraced)
    assert [i.index for i in infos] == list(range(FRAMES))
    for f, info in enumerate(infos):
        assert torch.equal(info.codes[0], untraced[:, f])
        assert info.logits.shape == (1, 32, 2051) and info.logits.dtype == torch.float32
        # every sampled code lies inside the top-50 of the logits the trace reports
        allowed = filtered_probs(info.logits[0], 0.9, 50) > 0                   # [K, V]
        assert bool(allowed.gather(1, untraced[:, f, None]).all())
    other = csm_nb.generate_codes(model, *prompt, max_frames=FRAMES,
                                  generator=torch.Generator().manual_seed(12))
    assert not torch.equal(other, untraced)          # the seed matters: the test is not vacuous


def test_traced_greedy_logits_argmax_equals_the_codes(model, prompt):
    codes, infos = traced_run(model, prompt, topk=1)
    logits = torch.stack([i.logits[0] for i in infos], dim=2)                   # [K, V, F]
    assert torch.equal(logits[0].argmax(dim=0), codes[0])                       # codebook 0
    assert torch.equal(logits.argmax(dim=1), codes)                             # all of them


def test_progress_records_the_trace_and_the_bar(model, prompt):
    progress, infos = lesson.GenerationProgress(FRAMES), []

    def both(info):
        infos.append(info)
        return progress(info)

    codes = csm_nb.generate_codes(model, *prompt, max_frames=FRAMES, on_frame=both,
                                  trace_logits=True, generator=torch.Generator().manual_seed(3))
    assert progress.bar.value == FRAMES and progress.label.value == f"{FRAMES} / {FRAMES} frames"
    assert torch.equal(progress.frames, codes) and progress.stop_frame is None
    trace = progress.trace()
    assert trace["entropy"].shape == trace["chosen_prob"].shape == (FRAMES, 32)
    assert trace["stop_prob"].shape == (FRAMES,)
    assert bool((trace["entropy"] > 0).all()) and bool(
        (trace["entropy"] <= math.log2(2051) + 1e-4).all())
    probs = torch.softmax(infos[1].logits[0], dim=-1)                            # [K, V]
    torch.testing.assert_close(trace["chosen_prob"][1], probs.gather(1, codes[:, 1, None])[:, 0])
    torch.testing.assert_close(trace["stop_prob"][1], probs[0, 0])
    assert_renders(progress.figure())
    assert "application/vnd.jupyter.widget-view+json" in progress._repr_mimebundle_()


def test_progress_sees_the_stop_frame_that_generate_drops(model, prompt):
    """Heads of all zeros: every logit ties, greedy argmax picks code 0 everywhere."""
    saved = model.codebook0_head.weight.clone(), model.audio_head.clone()
    progress = lesson.GenerationProgress(FRAMES)
    try:
        with torch.no_grad():
            model.codebook0_head.weight.zero_()
            model.audio_head.zero_()
        codes = csm_nb.generate_codes(model, *prompt, max_frames=FRAMES, topk=1,
                                      on_frame=progress)
    finally:
        with torch.no_grad():
            model.codebook0_head.weight.copy_(saved[0])
            model.audio_head.copy_(saved[1])
    assert codes.shape == (32, 0)
    assert progress.frames.shape == (32, 1) and progress.stop_frame == 0
    with pytest.raises(ValueError, match="trace_logits=True"):
        progress.trace()


def test_progress_rejects_a_bad_length():
    with pytest.raises(ValueError, match="max_frames"):
        lesson.GenerationProgress(0)


# ---- figures and the sampling widget -------------------------------------------------------

def test_rows_table_and_heatmap(tokenizer):
    tokens, mask = mixed_prompt(tokenizer, frames=2)
    kinds = lesson.row_kinds(tokens, mask)
    n_first = len(tokenizer.encode("[1]Hi there, how are you?").ids)
    assert kinds == ["text"] * n_first + ["audio"] * 2 + ["end"] + ["text"] * (
        len(kinds) - n_first - 3)
    table = lesson.format_rows(tokens, mask, tokenizer).splitlines()
    assert len(table) == len(kinds) + 2                     # header, rule, one line per row
    assert "128000" in table[2] and "<|begin_of_text|>" in table[2]
    fig = lesson.plot_rows(tokens, mask, tokenizer)
    assert_renders(fig)
    image = fig.axes[0].images[0].get_array()               # masked cells are masked out
    assert image.shape == (len(kinds), 32)
    assert bool(image.mask[0].all()) and not bool(image.mask[n_first].any())
    assert_renders(lesson.plot_embedding_lookup(tokens[n_first], 2051))


def test_entropy_and_distribution_figures():
    V = 2051
    assert math.isclose(float(lesson.entropy_bits(torch.zeros(V))), math.log2(V), rel_tol=1e-5)
    spike = torch.full((V,), -1e4)
    spike[7] = 0
    assert float(lesson.entropy_bits(spike)) < 1e-3
    logits = torch.randn(3, 32, V, generator=torch.Generator().manual_seed(0))
    assert_renders(lesson.plot_distribution(logits[0, 0]))
    fig = lesson.plot_codebook_entropy(logits)
    assert_renders(fig)
    assert fig.axes[0].lines[0].get_ydata().shape == (32,)
    assert_renders(lesson.plot_codebook_entropy(logits[0]))
    fig = lesson.plot_sampling(logits[0, 0], 0.9, 5)
    assert fig.axes[0].get_title().startswith("5 code(s) can be drawn")
    assert_renders(fig)
    assert len(lesson.plot_step_cost([16, 256], [1.0, 1.0], [2.0, 30.0]).axes) == 1
    fig = lesson.plot_step_cost([16, 256], [1.0, 1.0], [2.0, 30.0], "MFLOP", [1.0, 1.1], [1.5, 9.0])
    assert [ax.get_ylabel() for ax in fig.axes] == ["work per step (MFLOP)",
                                                   "time per step (ms, measured)"]
    assert_renders(fig)
    assert_renders(lesson.plot_generation_trace(torch.rand(5, 32), torch.rand(5, 32),
                                                torch.rand(5)))


def test_sampling_explorer_headless_and_slider_path():
    logits = torch.randn(2051, generator=torch.Generator().manual_seed(1))
    box = lesson.sampling_explorer(logits, temperature=0.9, topk=50, draws=6, seed=4)
    expected = sample_topk(logits.expand(6, 2051), 0.9, 50,
                           generator=torch.Generator().manual_seed(4))
    assert box.last_draws == expected.tolist()
    assert box.render(0.5, 1) == [int(logits.argmax())] * 6                    # greedy
    t_slider, k_slider = box.sliders
    t_slider.value, k_slider.value = 1.0, 2051                                  # "move" them
    assert box.last_draws == sample_topk(logits.expand(6, 2051), 1.0, 2051,
                                         generator=torch.Generator().manual_seed(4)).tolist()
    with pytest.raises(ValueError, match="topk"):
        lesson.sampling_explorer(logits, topk=0)


# ---- exercise checkers ---------------------------------------------------------------------

def sample_multinomial(logits, temperature, topk, generator):
    logits = logits / temperature
    kth = torch.topk(logits, topk, dim=-1).values[..., -1:]
    probs = torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def sample_like_csm_nb(logits, temperature, topk, generator):
    return sample_topk(logits, temperature, topk, generator=generator)


def sample_inverse_cdf(logits, temperature, topk, generator):
    """A third valid way: one uniform draw per row, looked up in the cumulative sum."""
    probs = filtered_probs(logits, temperature, topk)
    u = torch.rand(logits.shape[0], 1, generator=generator)
    return torch.searchsorted(probs.cumsum(-1), u)[:, 0].clamp(max=logits.shape[-1] - 1)


@pytest.mark.parametrize("fn, identical", [(sample_multinomial, True),   # multinomial (one
                                           (sample_like_csm_nb, True),   # draw) is itself an
                                           (sample_inverse_cdf, False)])  # exponential race
def test_check_sampler_accepts_right_samplers(fn, identical, capsys):
    assert lesson.check_sampler(fn) is True
    out = capsys.readouterr().out
    assert out.startswith("Correct!")
    assert ("draw for draw identical" in out) == identical


def no_temperature(logits, temperature, topk, generator):
    return sample_multinomial(logits, 1.0, topk, generator)


def no_topk(logits, temperature, topk, generator):
    return sample_multinomial(logits, temperature, logits.shape[-1], generator) if topk > 1 \
        else logits.argmax(-1)


def global_rng(logits, temperature, topk, generator):
    return sample_multinomial(logits, temperature, topk, None)


def crashes(logits, temperature, topk, generator):
    raise RuntimeError("oops")


@pytest.mark.parametrize("fn, hint", [(no_temperature, "temperature is not applied"),
                                      (no_topk, "outside the"),
                                      (global_rng, "same seed gave different draws"),
                                      (crashes, "RuntimeError: oops")])
def test_check_sampler_rejects_wrong_samplers(fn, hint, capsys):
    assert lesson.check_sampler(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet.") and hint in out


def test_check_sampler_an_untouched_function_is_not_answered_yet(capsys):
    def sample(logits, temperature, topk, generator):
        ...   # the notebook's blank cell

    assert lesson.check_sampler(sample) is None
    assert capsys.readouterr().out.startswith("Not answered yet")


def build_rows(tokenizer, text, speaker, codes):
    K, F = codes.shape
    ids = tokenizer.encode(f"[{speaker}]{text}").ids
    tokens = torch.zeros(len(ids) + F + 1, K + 1, dtype=torch.int64)
    mask = torch.zeros(len(ids) + F + 1, K + 1, dtype=torch.bool)
    tokens[:len(ids), K] = torch.tensor(ids)
    mask[:len(ids), K] = True
    tokens[len(ids):len(ids) + F, :K] = codes.T
    mask[len(ids):, :K] = True
    return tokens, mask


def test_check_build_rows(tokenizer, capsys):
    assert lesson.check_build_rows(build_rows, tokenizer) is True

    def no_end_row(tokenizer, text, speaker, codes):
        tokens, mask = build_rows(tokenizer, text, speaker, codes)
        return tokens[:-1], mask[:-1]

    def spaced(tokenizer, text, speaker, codes):
        return build_rows(tokenizer, " " + text, speaker, codes)

    def untransposed(tokenizer, text, speaker, codes):
        tokens, mask = build_rows(tokenizer, text, speaker, codes)
        n = tokens.shape[0] - codes.shape[1] - 1
        tokens[n:n + codes.shape[1], :codes.shape[0]] = codes.flip(0).T
        return tokens, mask

    capsys.readouterr()
    for fn, hint in ((no_end_row, "one all-zero end-of-audio row"),
                     (spaced, "no space after ']'"), (untransposed, "codes[:, f]")):
        assert lesson.check_build_rows(fn, tokenizer) is False
        assert hint in capsys.readouterr().out
    assert lesson.check_build_rows(None, tokenizer) is None


def embed_by_hand(model, tokens, mask):
    K, V = model.config.num_codebooks, model.config.audio_vocab_size
    audio = model.audio_embeddings.weight[tokens[:, :K] + torch.arange(K) * V]
    text = model.text_embeddings.weight[tokens[:, K]]
    return (torch.cat([audio, text[:, None]], 1) * mask[..., None]).sum(1)


def test_check_embed_rows(model, prompt, capsys):
    assert lesson.check_embed_rows(embed_by_hand, model, *prompt) is True

    def no_offsets(model, tokens, mask):
        K = model.config.num_codebooks
        audio = model.audio_embeddings.weight[tokens[:, :K]]
        text = model.text_embeddings.weight[tokens[:, K]]
        return (torch.cat([audio, text[:, None]], 1) * mask[..., None]).sum(1)

    def no_mask(model, tokens, mask):
        return embed_by_hand(model, tokens, torch.ones_like(mask))

    capsys.readouterr()
    for fn, hint in ((no_offsets, "add the offsets"), (no_mask, "multiply by the mask"),
                     (lambda m, t, k: torch.zeros(3), "expected shape")):
        assert lesson.check_embed_rows(fn, model, *prompt) is False
        assert hint in capsys.readouterr().out


def test_check_context_seconds(capsys):
    assert math.isclose(lesson.context_seconds(10, 20, 2, 15), 1871 / 12.5)
    assert lesson.check_context_seconds(149.68) is True
    assert lesson.check_context_seconds(149.6) is True             # the official strict rule
    capsys.readouterr()
    for wrong, hint in ((1871, "number of rows"), (149.68 + 10, "frames the new line"),
                        (149.68 + 2 / 12.5, "end row"), (149.68 + 30 / 12.5, "own text rows"),
                        (5000, "at most")):
        assert lesson.check_context_seconds(wrong) is False
        out = capsys.readouterr().out
        assert hint in out       # and every "Not yet" points to the hint before the solution
        assert out.index("lesson.hint('context_seconds')") < out.index("lesson.solution(")
    assert lesson.check_context_seconds(None) is None
    with pytest.raises(TypeError, match="seconds"):
        lesson.check_context_seconds("150 s")
