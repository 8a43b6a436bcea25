"""csm_nb.speech.generator: segments, context packing and budget, streaming, seeds, guard, hooks."""

import math
import types
import warnings

import numpy as np
import pytest
import torch

import csm_nb
import csm_nb.audio.mimi_weights
import csm_nb.loading.weights
import csm_nb.loading.tokenizer
from csm_nb.audio.mimi_weights import load_codec
from csm_nb.speech.budget import ContextTrimmed
from csm_nb.speech.generator import Generator, load_generator
from csm_nb.speech.segment import Segment
from csm_nb.speech.streaming import RunawayGuard, frame_levels_db
from csm_nb.loading.tokenizer import BOS_ID, EOS_ID

SR, SPF, K = 24_000, 1920, 32


@pytest.fixture
def gen32(gen):
    """Same model, a float32 tiny Mimi: streaming vs one-shot differ by rounding only."""
    return Generator(gen.model, gen.tokenizer, load_codec("tiny", "cpu", torch.float32), "tiny")


def tone(seconds, rate=SR, freq=220.0):
    t = torch.arange(round(seconds * rate)) / rate
    return 0.3 * torch.sin(2 * math.pi * freq * t)


# ------------------------------------------------------------------ segments

def test_segment_normalises_audio_and_owns_a_copy():
    wav = tone(0.5)[None]                                   # [1, T]: mono with a channel axis
    seg = Segment(1, "Hi!", wav, SR)
    assert seg.audio.shape == (12_000,) and seg.audio.dtype == torch.float32
    wav.zero_()
    assert seg.audio.abs().max() > 0.1, "the segment keeps its own copy"
    assert seg.duration == 0.5 and Segment(0, "Hi").duration == 0.0
    seg64 = Segment(0, "Hi", np.zeros(100, dtype=np.float64) + 0.1, 16_000.0)
    assert seg64.audio.dtype == torch.float32 and seg64.sample_rate == 16_000
    with pytest.raises(AttributeError):
        seg.text = "changed"                                # frozen: use dataclasses.replace


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(text=""), ValueError, "empty"),
    (dict(text="   \n"), ValueError, "empty"),
    (dict(text=3), TypeError, "str"),
    (dict(speaker=-1), ValueError, "0..9"),
    (dict(speaker=10), ValueError, "0..9"),
    (dict(speaker=True), TypeError, "int"),
    (dict(speaker="A"), TypeError, "int"),
    (dict(audio=torch.zeros(2, 4800)), ValueError, "stereo"),
    (dict(audio=torch.zeros(4800, 2)), ValueError, "stereo"),
    (dict(audio=torch.zeros(0)), ValueError, "empty"),
    (dict(audio=torch.tensor([0.0, float("nan"), 0.0])), ValueError, "index 1"),
    (dict(audio=torch.tensor([0.0, float("inf")])), ValueError, "NaN/inf"),
    (dict(audio=torch.zeros(10, dtype=torch.int16)), TypeError, "32768"),
    (dict(audio=[0.0, 0.1]), TypeError, "list"),
    (dict(audio=torch.zeros(10), sample_rate=None), ValueError, "sample_rate=None"),
    (dict(audio=torch.zeros(10), sample_rate=0), ValueError, "positive"),
    (dict(audio=torch.zeros(10), sample_rate=22_050.5), ValueError, "whole"),
])
def test_segment_bad_input(kwargs, error, words):
    args = dict(speaker=0, text="Hello.") | kwargs
    with pytest.raises(error, match=words):
        Segment(**args)


# ------------------------------------------------------------------ context packing

def test_prompt_rows_are_the_reference_segment_layout(gen):
    """Sec. 4: per segment text rows (BOS "[spk]text" EOS), one row per frame, a zero row;
    then the new line's text rows only."""
    a = Segment(1, "Hi", tone(0.3), SR)                       # 7200 samples -> 4 frames
    b = Segment(0, "Yo", tone(0.2, 48_000), 48_000)           # 4800 at 24 kHz -> 3 frames
    tokens, mask, max_frames = gen.prompt_rows("Ok", 1, [a, b], max_audio_length_ms=400)
    assert max_frames == 5
    codes_a, codes_b = gen.codec.encode(a.audio, SR), gen.codec.encode(b.audio, 48_000)
    assert codes_a.shape == (K, 4) and codes_b.shape == (K, 3)
    text = {"[1]Hi": [BOS_ID, 91, 49, 93, 72, 105, EOS_ID],  # tiny tokenizer: bytes
            "[0]Yo": [BOS_ID, 91, 48, 93, 89, 111, EOS_ID],
            "[1]Ok": [BOS_ID, 91, 49, 93, 79, 107, EOS_ID]}
    expected_tokens, expected_mask = [], []
    for line, codes in (("[1]Hi", codes_a), ("[0]Yo", codes_b), ("[1]Ok", None)):
        t = torch.zeros(len(text[line]), K + 1, dtype=torch.int64)
        t[:, K] = torch.tensor(text[line])
        m = torch.zeros_like(t, dtype=torch.bool)
        m[:, K] = True
        expected_tokens.append(t)
        expected_mask.append(m)
        if codes is not None:
            F = codes.shape[1]
            t = torch.zeros(F + 1, K + 1, dtype=torch.int64)
            t[:F, :K] = codes.T                                 # frame f -> row f
            m = torch.zeros_like(t, dtype=torch.bool)
            m[:, :K] = True                                     # incl. the all-zero EOS row
            expected_tokens.append(t)
            expected_mask.append(m)
    assert torch.equal(tokens, torch.cat(expected_tokens))
    assert torch.equal(mask, torch.cat(expected_mask))
    assert tokens.shape == (7 + 5 + 7 + 4 + 7, K + 1)


def test_text_only_segment_adds_only_text_rows(gen):
    tokens, mask = gen.segment_rows(Segment(0, "Hi"))
    assert tokens[:, K].tolist() == [BOS_ID, 91, 48, 93, 72, 105, EOS_ID]
    assert not mask[:, :K].any()


def test_context_budget_numbers(gen):
    a = Segment(1, "Hi", tone(0.3), SR)
    budget = gen.context_budget("Ok", 1, [a, Segment(0, "Hey")], max_audio_length_ms=1000)
    assert budget.segment_frames == (4, 0)
    assert budget.segment_rows == (7 + 4 + 1, 8)
    assert (budget.text_rows, budget.max_frames, budget.max_seq_len) == (7, 12, 2048)
    assert budget.total == 12 + 8 + 7 + 12 and budget.fits and budget.first_kept == 0
    assert "39 of 2048 rows (fits)" in str(budget)


def _three_segments():
    return [Segment(0, "First turn.", tone(0.4), SR, label="one"),
            Segment(1, "Second.", tone(0.3), SR, label="two"),
            Segment(0, "Third!", tone(0.2), SR, label="three")]


def test_trimming_drops_the_oldest_whole_segments(gen):
    context = _three_segments()
    rows = gen.context_budget("Go", 1, context).segment_rows
    text_rows = 7
    # Room for the last segment only, not the last two.
    frames = 2048 - text_rows - rows[2] - 1
    with pytest.warns(ContextTrimmed, match=r"#0 \(one\), #1 \(two\)") as record:
        tokens, _, max_frames = gen.prompt_rows("Go", 1, context, frames * 80)
    assert f"{sum(rows[:2])} rows" in str(record[0].message)
    expected, _ = gen.segment_rows(context[2])
    assert max_frames == frames
    assert torch.equal(tokens[: rows[2]], expected)
    assert tokens.shape[0] == rows[2] + text_rows


def test_strict_raises_with_the_numbers(gen):
    context = _three_segments()
    frames = 2048 - 7 - 10
    with pytest.raises(ValueError, match=r"strict=True.*over by \d+"):
        gen.prompt_rows("Go", 1, context, frames * 80, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # fitting context: no warning
        gen.prompt_rows("Go", 1, context, 800, strict=True)


def test_text_longer_than_the_budget(gen):
    with pytest.raises(ValueError, match="too long"):
        gen.prompt_rows("word " * 300, 0, [], max_audio_length_ms=(2048 - 1000) * 80)


# ------------------------------------------------------------------ generation

def test_seed_reproducible_and_streaming_equals_one_shot(gen32):
    kw = dict(text="Hello.", speaker=0, context=[Segment(1, "Hi", tone(0.2), SR)],
              max_audio_length_ms=640, progress=False)
    one = gen32.generate(seed=3, **kw)
    assert one.shape == (8 * SPF,) and one.dtype == torch.float32
    assert torch.equal(one, gen32.generate(seed=3, **kw)), "same seed, same audio"
    assert not torch.equal(one, gen32.generate(seed=4, **kw))
    chunks = list(gen32.generate_stream(seed=3, chunk_frames=3, **kw))
    assert [c.shape[0] for c in chunks] == [3 * SPF, 3 * SPF, 2 * SPF]
    assert torch.allclose(torch.cat(chunks), one, atol=1e-4, rtol=0)


def test_stream_checks_arguments_before_the_first_next(gen):
    with pytest.raises(ValueError, match="chunk_frames"):
        gen.generate_stream("Hi", 0, chunk_frames=0)
    with pytest.raises(ValueError, match="max_audio_length_ms"):
        gen.generate_stream("Hi", 0, max_audio_length_ms=0)


def test_new_generation_stops_a_half_read_stream(gen):
    kw = dict(max_audio_length_ms=400, progress=False)
    stream = gen.generate_stream("Hi", 0, seed=1, chunk_frames=1, **kw)
    next(stream)
    again = gen.generate("Hi", 0, seed=1, **kw)               # must neither hang nor mix caches
    stream.close()
    assert torch.equal(again, gen.generate("Hi", 0, seed=1, **kw))


def test_watermark_hook_is_applied(gen):
    kw = dict(max_audio_length_ms=240, seed=0, progress=False)
    plain = gen.generate("Hi", 0, **kw)
    calls = []
    gen.watermark = lambda audio, rate: calls.append(rate) or audio * 0.5
    try:
        assert torch.equal(gen.generate("Hi", 0, **kw), plain * 0.5) and calls == [SR]
        chunks = list(gen.generate_stream("Hi", 0, chunk_frames=1, **kw))
        assert len(calls) == 1 + 3, "streams mark every chunk"
        assert torch.allclose(torch.cat(chunks), plain * 0.5, atol=1e-4)
        gen.watermark = lambda audio, rate: audio[:-1]
        with pytest.raises(ValueError, match="watermark hook"):
            gen.generate("Hi", 0, **kw)
    finally:
        gen.watermark = None


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(max_audio_length_ms=0), ValueError, "positive"),
    (dict(max_audio_length_ms=-80), ValueError, "positive"),
    (dict(max_audio_length_ms=float("nan")), ValueError, "positive"),
    (dict(max_audio_length_ms=50), ValueError, "one frame"),
    (dict(max_audio_length_ms="10s"), TypeError, "number"),
    (dict(text=" "), ValueError, "empty"),
    (dict(speaker=12), ValueError, "0..9"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(topk=0), ValueError, "topk"),
    (dict(seed="1"), TypeError, "seed"),
    (dict(context=Segment(0, "Hi")), TypeError, "wrap"),
    (dict(context=[("Hi", 0)]), TypeError, r"context\[0\]"),
    (dict(runaway_guard="on"), TypeError, "RunawayGuard"),
])
def test_generate_bad_input(gen, kwargs, error, words):
    args = dict(text="Hello.", speaker=0, max_audio_length_ms=160, progress=False) | kwargs
    with pytest.raises(error, match=words):
        gen.generate(**args)


def test_generate_conversation_grows_the_context(gen):
    prompt = Segment(0, "Hi", tone(0.2), SR)
    kw = dict(max_audio_length_ms=160, progress=False)
    turns = gen.generate_conversation([(0, "One."), (1, "Two.")], [prompt], seed=5, **kw)
    assert [(t.speaker, t.text, t.label) for t in turns] == [(0, "One.", "turn 0"),
                                                              (1, "Two.", "turn 1")]
    second = gen.generate("Two.", 1, [prompt, turns[0]], seed=6, **kw)
    assert torch.equal(turns[1].audio, second)


def test_load_generator_makes_one_mode_decision(monkeypatch):
    seen = {}
    model = csm_nb.tiny_model(device="cpu")
    monkeypatch.setattr(csm_nb.loading.weights, "load_model", lambda mode, device, dtype: (model, "real"))
    monkeypatch.setattr(csm_nb.loading.tokenizer, "load_tokenizer",
                        lambda mode: seen.setdefault("tokenizer", mode) and csm_nb.tiny_tokenizer())
    real_codec = csm_nb.audio.mimi_weights.load_codec

    def fake_codec(mode, device):
        seen["codec"] = mode
        return real_codec("tiny", device)
    monkeypatch.setattr(csm_nb.audio.mimi_weights, "load_codec", fake_codec)
    gen = load_generator("auto")
    assert gen.mode == "real" and seen == {"tokenizer": "real", "codec": "real"}


# ------------------------------------------------------------------ runaway guard

def test_guard_rules_on_crafted_levels_and_codes():
    guard = RunawayGuard(silent_frames=3, silence_db=-50.0, repeated_frames=None)
    frames = [torch.arange(K) + i for i in range(5)]            # all different
    assert not guard.should_stop([-10, -60, -60], frames[:3])
    assert guard.should_stop([-10, -60, -60, -60], frames[:4])
    assert not guard.should_stop([-60, -60, -10], frames[:3])
    frozen = RunawayGuard(silent_frames=None, repeated_frames=3)
    same = torch.full((K,), 7)
    assert not frozen.should_stop([0] * 3, [frames[0], same, same])
    assert frozen.should_stop([0] * 4, [frames[0], same, same, same])
    with pytest.raises(ValueError, match="silent_frames"):
        RunawayGuard(silent_frames=0)


def test_frame_levels_db():
    audio = torch.cat([torch.full((SPF,), 0.1), torch.zeros(SPF), torch.ones(SPF // 2)])
    levels = frame_levels_db(audio, SPF)
    assert len(levels) == 2 and levels[0] == pytest.approx(-20.0) and levels[1] == -200.0


class _AmplitudeCodec:
    """Stub Mimi: frame f decodes to 1920 samples of amplitude codes[0, f] / 2048."""

    sample_rate, samples_per_frame, num_codebooks, codebook_size, mode = SR, SPF, K, 2048, "stub"

    def stream(self):
        return types.SimpleNamespace(
            decode=lambda codes: (codes[0].double() / 2048).repeat_interleave(SPF).float())


@pytest.mark.parametrize("chunk_frames", [1, 3, 10])
def test_guard_stops_a_crafted_silent_tail(gen, chunk_frames):
    stub = Generator(gen.model, gen.tokenizer, _AmplitudeCodec())
    loud = [torch.full((K,), 1024)] * 5
    quiet = [torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(1, K) + i])
             for i in range(30)]                                # code 0 = silence, not EOS
    guard = RunawayGuard(silent_frames=4, silence_db=-40.0, repeated_frames=None)
    audio = torch.cat(list(stub.decode_frames(iter(loud + quiet), chunk_frames, guard)))
    assert audio.shape == ((5 + 4) * SPF,), "stops right after the 4th quiet frame"
    unguarded = torch.cat(list(stub.decode_frames(iter(loud + quiet), chunk_frames)))
    assert unguarded.shape == (35 * SPF,)
    eos = torch.zeros(K, dtype=torch.long)
    ended = torch.cat(list(stub.decode_frames(iter(loud + [eos] + loud), chunk_frames)))
    assert ended.shape == (5 * SPF,), "the all-zero frame ends the audio"


def test_guard_through_generate_and_stream(gen):
    always = RunawayGuard(silent_frames=3, silence_db=1000.0, repeated_frames=None)
    kw = dict(max_audio_length_ms=800, seed=2, progress=False)
    guarded = gen.generate("Hi", 0, runaway_guard=always, **kw)
    assert guarded.shape == (3 * SPF,)
    full = gen.generate("Hi", 0, **kw)
    assert torch.allclose(guarded, full[: 3 * SPF], atol=1e-4)
    chunks = list(gen.generate_stream("Hi", 0, runaway_guard=always, chunk_frames=2, **kw))
    assert [c.shape[0] for c in chunks] == [2 * SPF, SPF]


# ------------------------------------------------------------------ notebook helpers

def test_viz_figures_for_the_notebook(gen):
    from matplotlib.figure import Figure

    from csm_nb.teach import conversation as viz
    context = _three_segments()
    trimmed = gen.context_budget("Go", 1, context, (2048 - 20) * 80)
    assert not trimmed.fits and trimmed.first_kept == 3
    figures = [viz.plot_conversation_timeline(context + [Segment(1, "text only")]),
               viz.plot_spectrograms({"a": tone(0.3), "b": tone(0.3, freq=440.0)}),
               viz.plot_context_budget({"fits": gen.context_budget("Go", 1, context),
                                        "trimmed": trimmed}),
               viz.plot_stream_timing([(0.5, 2 * SPF), (0.9, 2 * SPF)]),
               viz.plot_frame_levels([-20.0, -70.0, -200.0], -60.0, stop=3)]
    assert all(isinstance(f, Figure) for f in figures)
    assert len(figures[0].axes[0].get_yticklabels()) == 2      # one lane per speaker


def test_conversation_builder_headless(gen):
    from csm_nb.teach import conversation as widgets
    prompt = Segment(0, "Hi", tone(0.2), SR)
    box = widgets.conversation_builder(gen, [prompt], turns=[(1, "One.")],
                                       max_audio_length_ms=160, progress=False)
    assert [(t.speaker, t.text) for t in box.turns] == [(1, "One.")]
    seg = box.add_turn(0, "Two.")
    assert seg.audio.shape == (2 * SPF,) and box.context == [prompt] + box.turns
    assert torch.equal(seg.audio, gen.generate("Two.", 0, [prompt, box.turns[0]],
                                               max_audio_length_ms=160, seed=1,
                                               progress=False))


def test_exercise_checkers(gen, capsys):
    from csm_nb.teach import conversation as ex
    assert ex.check_speaker_prefix("[1]Nice to meet you.")
    assert not ex.check_speaker_prefix("[1] Nice to meet you.")
    assert not ex.check_speaker_prefix(None)
    assert ex.check_segment_rows(51) and not ex.check_segment_rows(50)
    assert ex.check_context_room(1818) and not ex.check_context_room(2048 - 200)
    assert "spaces" in capsys.readouterr().out

    def pack(gen, text, speaker, context):
        parts = []
        for seg in context:
            parts += [csm_nb.text_rows(gen.tokenizer, seg.text, seg.speaker),
                      csm_nb.audio_rows(gen.encode(seg))]
        parts.append(csm_nb.text_rows(gen.tokenizer, text, speaker))
        return torch.cat([t for t, _ in parts]), torch.cat([m for _, m in parts])

    def forgot_end_row(gen, text, speaker, context):
        tokens, mask = pack(gen, text, speaker, context)
        return tokens[:-1], mask[:-1]

    assert ex.check_pack_prompt(pack, gen)
    assert not ex.check_pack_prompt(forgot_end_row, gen)
    assert not ex.check_pack_prompt(lambda *a: None, gen)
    assert not ex.check_pack_prompt(lambda *a: 1 / 0, gen)


def test_load_generator_reads_the_mode_env_at_call_time(monkeypatch):
    monkeypatch.setenv("CSM_NB_MODE", "tiny")
    asked = []
    monkeypatch.setattr(csm_nb.loading.weights, "load_model",
                        lambda mode, device, dtype: asked.append(mode) or (
                            csm_nb.tiny_model(device="cpu"), "tiny"))
    assert load_generator().mode == "tiny"
    assert asked == ["tiny"], "$CSM_NB_MODE is read once, then passed on"
    with pytest.raises(ValueError, match="not a mode"):
        load_generator("fast")
