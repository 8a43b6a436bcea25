"""csm_nb.training: conversation rows, the CSM loss (checked against the inference path), the
loop, and a model trained here that says its one training utterance back, code for code."""

import math

import pytest
import torch

import csm_nb
from csm_nb import data as csm_nb_data
from csm_nb import training as T
from csm_nb.core.config import AUDIO_SPECIAL_IDS
from csm_nb.speech.segment import Segment, conversation_rows

ASSETS = csm_nb_data.FOLDER
K, BINS = 4, 16                    # a 4-level toy codec with 16 codes per level
V = BINS + AUDIO_SPECIAL_IDS


def small_config(**overrides):
    sizes = dict(num_codebooks=K, codebook_size=BINS, width=32, layers=1, decoder_width=32,
                 decoder_layers=1, max_seq_len=64) | overrides
    return T.toy_csm_config(**sizes)


def small_model(seed=0, **overrides):
    return csm_nb.tiny_model(small_config(**overrides), device="cpu", dtype=torch.float32,
                             seed=seed)


def random_codes(frames, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, BINS, (K, frames), generator=g)    # never the all-zero frame


@pytest.fixture
def batch(tokenizer):
    rows = [conversation_rows(tokenizer, [Segment(0, "Hi there.", codes=random_codes(5, 1)),
                                            Segment(0, "Yes.", codes=random_codes(3, 2))], K),
            conversation_rows(tokenizer, [Segment(1, "Ok", codes=random_codes(4, 3))], K)]
    return T.pad_batch(rows)


def test_conversation_rows_layout(tokenizer):
    codes = random_codes(3, 0)
    tokens, mask = conversation_rows(tokenizer, [Segment(0, "Hi", codes=codes), Segment(1, "Yo")], K)
    text = len("[0]Hi") + 2                                    # BOS + bytes + EOS
    assert tokens.shape == mask.shape == (text + 3 + 1 + text, K + 1)
    assert mask[:text, K].all() and not mask[:text, :K].any()  # text rows
    assert torch.equal(tokens[text:text + 3, :K], codes.T)     # frame rows
    assert mask[text:text + 4, :K].all() and not mask[text:text + 4, K].any()
    assert not tokens[text + 3].any()                          # the all-zero end row
    assert tokens[text + 4, K] == 128_000                      # the next turn's BOS


def test_pad_batch(batch):
    tokens, mask = batch
    assert tokens.shape == mask.shape and tokens.shape[0] == 2 and tokens.shape[2] == K + 1
    short = mask[1].any(-1)
    assert short.sum() < tokens.shape[1] and not short[short.sum():].any()  # padded at the end


def test_loss_of_an_untrained_model_is_chance(batch):
    loss = T.csm_loss(small_model(), *batch)
    assert loss.frames == (5 + 1) + (3 + 1) + (4 + 1)         # frames and end rows only
    assert abs(loss.codebook0.item() - math.log(V)) < 0.05
    assert abs(loss.decoder.item() - math.log(V)) < 0.05
    assert torch.equal(loss.total, loss.codebook0 + loss.decoder)


def test_loss_equals_the_inference_path(tokenizer):
    """Teacher-forced log-probabilities from the cached step functions generate_codes uses."""
    model = small_model(seed=3)
    codes = random_codes(4, 5)
    tokens, mask = conversation_rows(tokenizer, [Segment(0, "Hey", codes=codes)], K)
    loss = T.csm_loss(model, tokens[None], mask[None])
    model.setup_caches(1)
    nll0, nll_dec, frames = 0.0, 0.0, 0
    with torch.no_grad():
        for t in range(tokens.shape[0] - 1):
            if not mask[t + 1, :K].all():
                continue                                       # the next row is text
            target = tokens[t + 1, :K]
            last_h = model.backbone_step(tokens[None, : t + 1], mask[None, : t + 1],
                                         torch.arange(t + 1))  # [1, D]
            nll0 -= model.codebook0_logits(last_h).log_softmax(-1)[0, target[0]]
            inputs = torch.stack([last_h, model.embed_audio(0, target[:1])], 1)  # [1, 2, D]
            start = 0
            for i in range(1, K):
                logits = model.decoder_step(inputs, start, i)
                nll_dec -= logits.log_softmax(-1)[0, target[i]]
                start += inputs.shape[1]
                inputs = model.embed_audio(i, target[i:i + 1]).unsqueeze(1)     # [1, 1, D]
            frames += 1
    assert frames == loss.frames == 4 + 1
    assert torch.allclose(loss.codebook0, nll0 / frames, atol=1e-5)
    assert torch.allclose(loss.decoder, nll_dec / (frames * (K - 1)), atol=1e-5)


def test_decoder_fraction_trains_the_decoder_on_a_subset(batch, monkeypatch):
    model = small_model()
    seen = []
    forward = model.decoder_forward
    monkeypatch.setattr(model, "decoder_forward", lambda x: seen.append(x.shape) or forward(x))
    full = T.csm_loss(model, *batch)
    part = T.csm_loss(model, *batch, decoder_fraction=1 / 4,
                      generator=torch.Generator().manual_seed(0))
    assert seen == [(15, K, 32), (round(15 / 4), K, 32)]
    assert torch.equal(full.codebook0, part.codebook0)        # codebook 0 sees every frame
    assert not torch.equal(full.decoder, part.decoder)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(batch):
    model = small_model()
    before = T.csm_loss(model, *batch).total.item()
    history = T.train(model, batch, steps=5, lr=1e-2, warmup=1, progress=False)
    after = T.csm_loss(model, *batch).total.item()
    assert after < 0.8 * before, (before, after)
    assert len(history) == 5 and history.step == list(range(5))
    assert history.lr == [T.lr_at(s, 5, 1e-2, 1) for s in range(5)]
    assert history.seconds == sorted(history.seconds)
    assert not model.training


def test_a_trained_model_says_its_training_utterance(tokenizer):
    codes = random_codes(6, 7)
    turn = conversation_rows(tokenizer, [Segment(0, "Hello.", codes=codes)], K)
    model = small_model()
    history = T.train(model, T.pad_batch([turn]), steps=120, lr=1e-2, warmup=10,
                      progress=False)
    assert history.total[-1] < 0.05, history.summary()
    prompt = csm_nb.text_rows(tokenizer, "Hello.", 0, K)
    generated = csm_nb.generate_codes(model, *prompt, max_frames=20, topk=1)
    assert torch.equal(generated, codes)                       # and it stopped by itself
    assert T.code_match(generated, codes) == {"codebook0": 1.0, "all_codebooks": 1.0,
                                              "frames": (6, 6)}


def test_freeze_keeps_parameters_and_restores_flags(batch):
    model = small_model()
    table = model.text_embeddings.weight.detach().clone()
    head = model.codebook0_head.weight.detach().clone()
    T.train(model, batch, steps=2, warmup=1, freeze=("text_embeddings",), progress=False)
    assert torch.equal(model.text_embeddings.weight, table)
    assert not torch.equal(model.codebook0_head.weight, head)
    assert all(p.requires_grad for p in model.parameters())


def test_context_batches(tokenizer):
    voices, texts = [0, 0, 0, 1, 1, 1], ["a", "b", "c", "a", "b", "c"]
    codes = [random_codes(2 + i, i) for i in range(6)]
    first = next(T.context_batches(tokenizer, voices, texts, codes, 4, turns=3, seed=0))
    again = next(T.context_batches(tokenizer, voices, texts, codes, 4, turns=3, seed=0))
    assert torch.equal(first[0], again[0]) and first[0].shape[0] == 4
    tokens, mask = next(T.context_batches(tokenizer, voices, texts, codes, 8, seed=1,
                                          random_speaker=False))
    for b in range(8):                    # both turns from one voice, labelled with it
        frames = tokens[b][mask[b, :, :K].all(-1) & tokens[b, :, :K].any(-1), :K]
        owners = {i for i, c in enumerate(codes) for f in frames
                  if any(torch.equal(f, col) for col in c.T)}
        speaker = int(tokens[b, 2, K]) - ord("0")              # rows: BOS, "[", digit, ...
        assert {voices[i] for i in owners} == {speaker}


def test_load_dataset():
    data, rate = T.load_dataset(ASSETS / "two_voices")
    assert rate == 24_000 and len(data) >= 24
    texts = [sorted(u.text for u in data if u.voice == v) for v in (0, 1)]
    assert texts[0] == texts[1] and len(texts[0]) >= 12        # every sentence in both voices
    assert all(u.audio.dtype == torch.float32 and u.audio.dim() == 1 for u in data)
    size = sum(p.stat().st_size for p in (ASSETS / "two_voices").iterdir())
    assert size < 2_000_000


def test_code_match():
    target = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    generated = torch.tensor([[1, 2, 9], [5, 0, 7]])
    assert T.code_match(generated, target) == {"codebook0": 0.5, "all_codebooks": 0.25,
                                               "frames": (3, 4)}


def test_lr_schedule():
    assert T.lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert T.lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert T.lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)


def test_bad_input(batch, tokenizer, tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match="steps"):
        T.train(model, batch, steps=0)
    with pytest.raises(ValueError, match="matches no parameter"):
        T.train(model, batch, steps=1, freeze=("text_embedding_table",))
    with pytest.raises(ValueError, match="decoder_fraction"):
        T.csm_loss(model, *batch, decoder_fraction=0)
    with pytest.raises(ValueError, match="ran out"):
        T.train(model, iter([batch]), steps=2, progress=False)
    with pytest.raises(TypeError, match="batches"):
        T.train(model, 3, steps=1)
    tokens, mask = batch
    with pytest.raises(ValueError, match="audio codes"):
        T.csm_loss(model, tokens.clone().fill_(V), mask)
    with pytest.raises(ValueError, match=r"\[B, S, 5\]"):
        T.csm_loss(model, tokens[0], mask[0])
    text_only = T.pad_batch([csm_nb.text_rows(tokenizer, "Hi", 0, K)])
    with pytest.raises(ValueError, match="no audio frame"):
        T.csm_loss(model, *text_only)
    with pytest.raises(ValueError, match="at least turns=3"):
        next(T.context_batches(tokenizer, [0, 0], ["a", "b"], [random_codes(2, 0)] * 2, 2,
                               turns=3))
    with pytest.raises(FileNotFoundError, match="transcripts.tsv"):
        T.load_dataset(tmp_path)


def test_notebook05_figures(batch):
    from csm_nb.teach import codec, training as viz
    history = T.train(small_model(), batch, steps=3, warmup=1, progress=False)
    fig = viz.plot_training(history, chance=math.log(V))
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4      # 3 losses + chance
    tokens, mask = batch
    fig = viz.plot_loss_targets(tokens[0], mask[0], K)
    (markers,) = [line for line in fig.axes[0].lines if line.get_marker() == "^"]
    assert len(markers.get_xdata()) == (5 + 1) + (3 + 1)
    target = random_codes(4, 0)
    fig = viz.plot_code_match(target[:, :3], target)
    assert "75%" in fig.axes[0].get_title()
    fig = codec.plot_codec_comparison({"a": ([1, 2], [3.0, 2.0], 0.1), "b": ([1, 2], [4.0, 1.0], 0.2)})
    assert len(fig.axes[1].lines) == 2


def test_notebook05_exercises(capsys):
    from csm_nb.teach import training as E
    assert E.check_chance_loss(None, 131) is None
    assert E.check_chance_loss(math.log(131), 131) is True
    assert E.check_chance_loss(math.log2(131), 131) is False
    assert "bits" in capsys.readouterr().out
    assert E.check_target_rows(13 + 1 + 15 + 1, 13, 15) is True
    assert E.check_target_rows(28, 13, 15) is False
    assert "end" in capsys.readouterr().out
    assert E.check_voice_source("b") is True and E.check_voice_source("(A)") is False
    with pytest.raises(TypeError):
        E.check_voice_source(2)
    for name in ("chance_loss", "target_rows", "voice_source"):
        E.solution(name)


def test_autocast_keeps_fp32_weights(batch):
    """dtype= is autocast (as for CSM-1B on a GPU); CPU bf16 autocast runs the same code."""
    model = small_model()
    history = T.train(model, batch, steps=2, warmup=1, dtype=torch.bfloat16, progress=False)
    assert all(math.isfinite(x) for x in history.total)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_last_turn_only_learns_the_frames_after_the_last_text_row(tokenizer):
    """Two turns of 5 and 3 frames: all 5 + 1 + 3 + 1 audio rows are targets (each turn ends
    with its all-zero row), or only the last turn's 3 + 1; padding changes neither."""
    model = csm_nb.CSM(T.toy_csm_config(num_codebooks=K, codebook_size=BINS))
    rows = conversation_rows(tokenizer, [Segment(0, "Hi there.", codes=random_codes(5, 1)),
                                         Segment(0, "Yes.", codes=random_codes(3, 2))], K)
    short = conversation_rows(tokenizer, [Segment(1, "Ok", codes=random_codes(2, 3))], K)
    tokens, mask = T.pad_batch([rows, short])
    assert T.csm_loss(model, tokens, mask).frames == 10 + 3
    assert T.csm_loss(model, tokens, mask, last_turn_only=True).frames == 4 + 3
