"""Notebook 03's checkers (csm_nb.teach.conversation): right answers pass, wrong ones fail
kindly and name the likely mistake (a hint before the solution), an untouched cell is "not
answered yet"; every exercise has a hint, a worked solution and a right answer cell; the
figures and the voice meter work on the tiny generator and the shipped toy corpus."""

import json
from pathlib import Path

import pytest
import torch

import csm_nb
from csm_nb.speech.segment import Segment
from csm_nb.teach import conversation as lesson

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_conversation.ipynb"
EXERCISES = ("pack_prompt", "segment_rows", "context_room", "stream_decoder",
             "speaker_prefix", "quiz")
LINE = "I will see you tomorrow."


def verdict(capsys, ok, check, *args, **kwargs):
    """Run a checker, assert its return value, return what it printed."""
    assert check(*args, **kwargs) is ok
    return capsys.readouterr().out


def cells():
    return {c["metadata"].get("exercise"): "".join(c["source"])
            for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]}


def right_pack(gen, text, speaker, context):
    namespace = {"csm_nb": csm_nb, "torch": torch}
    exec(lesson.SOLUTIONS["pack_prompt"], namespace)
    return namespace["pack"](gen, text, speaker, context)


def stream_decoder(skip_end=False, no_tail=False, per_frame=False, new_stream=False):
    """The right stream decoder, or one with a given mistake."""
    def decode(codec, frames, chunk_frames):
        stream, pending = codec.stream(), []
        for frame in frames:
            if not frame.any() and not skip_end:
                break
            pending.append(frame)
            if len(pending) == (1 if per_frame else chunk_frames):
                yield (codec.stream() if new_stream else stream).decode(torch.stack(pending, 1))
                pending = []
        if pending and not no_tail:
            yield stream.decode(torch.stack(pending, 1))
    return decode


def test_the_notebook_cells_are_the_exercises_tested():
    found = cells()
    assert {f"conversation.{name}" for name in EXERCISES} <= set(found)
    assert "lesson.check_stream_decoder(stream_decode" in found["conversation.stream_decoder"]


@pytest.mark.parametrize("check, blank", [
    (lesson.check_segment_rows, None), (lesson.check_context_room, None),
    (lesson.check_speaker_prefix, None), (lesson.check_quiz, {1: None, 2: None})])
def test_blanks_are_not_answered_yet(capsys, check, blank):
    assert "Not answered yet" in verdict(capsys, None, check, blank)


def test_the_untouched_function_templates_are_not_answered_yet(capsys, gen):
    def pack(gen, text, speaker, context):
        ...

    def stream_decode(codec, frames, chunk_frames):
        ...
    assert "Not answered yet" in verdict(capsys, None, lesson.check_pack_prompt, pack, gen)
    out = verdict(capsys, None, lesson.check_stream_decoder, stream_decode, gen, LINE,
                  max_audio_length_ms=800)
    assert "Not answered yet" in out


def test_pack_prompt_accepts_the_generators_rows_and_names_mistakes(capsys, gen):
    assert "Correct" in verdict(capsys, True, lesson.check_pack_prompt, right_pack, gen)

    def default_width(gen, text, speaker, context):        # text_rows without num_codebooks
        parts = [csm_nb.text_rows(gen.tokenizer, text, speaker)]
        return parts[0]
    gen8 = csm_nb.load_generator("toy", device="cpu")
    out = verdict(capsys, False, lesson.check_pack_prompt, default_width, gen8)
    assert "num_codebooks" in out and out.index("lesson.hint(") < out.index("lesson.solution(")

    def no_context(gen, text, speaker, context):
        return right_pack(gen, text, speaker, [])
    assert "should have shape" in verdict(capsys, False, lesson.check_pack_prompt, no_context,
                                          gen)

    def crashes(gen, text, speaker, context):
        raise RuntimeError("boom")
    assert "RuntimeError: boom" in verdict(capsys, False, lesson.check_pack_prompt, crashes, gen)


def test_stream_decoder_accepts_the_right_one_and_names_each_mistake(capsys, gen):
    kw = dict(max_audio_length_ms=1_200, chunk_frames=4)
    assert "Correct" in verdict(capsys, True, lesson.check_stream_decoder, stream_decoder(),
                                gen, LINE, **kw)
    for mistake, words in (("skip_end", "after the all-zero end frame"),
                           ("no_tail", "never decoded"),
                           ("per_frame", "every frame alone")):
        out = verdict(capsys, False, lesson.check_stream_decoder,
                      stream_decoder(**{mistake: True}), gen, LINE, **kw)
        assert words in out, (mistake, out)


def test_a_new_stream_per_chunk_breaks_mimi_and_the_checker_says_why(capsys, gen):
    out = verdict(capsys, False, lesson.check_stream_decoder, stream_decoder(new_stream=True),
                  gen, LINE, max_audio_length_ms=1_200, chunk_frames=4)
    assert "One codec.stream() for the whole line" in out


@pytest.mark.parametrize("check, right, wrong, words", [
    (lesson.check_segment_rows, 51, 50, "one short"),
    (lesson.check_context_room, 1818, 2018, "frames the model may generate"),
    (lesson.check_context_room, 1817, 2018, "frames the model may generate"),   # official
    (lesson.check_speaker_prefix, "[1]Nice to meet you.", "[1] Nice to meet you.", "spaces")])
def test_numeric_and_text_answers(capsys, check, right, wrong, words):
    assert "Correct" in verdict(capsys, True, check, right)
    out = verdict(capsys, False, check, wrong)
    assert words in out and out.index("lesson.hint(") < out.index("lesson.solution(")


def test_quiz(capsys):
    right = QUIZ_RIGHT = lesson.QUIZ.right_answers()
    assert verdict(capsys, True, lesson.check_quiz, right)
    out = verdict(capsys, False, lesson.check_quiz, {**QUIZ_RIGHT, 1: "a"})
    assert "1: not a" in out and "the id is only text" in out
    out = verdict(capsys, False, lesson.check_quiz, {**right, 2: None})
    assert "2: not answered yet" in out
    assert len(set(right.values())) > 1, "not every answer the same letter"
    lesson.show_quiz()
    assert "5. " in capsys.readouterr().out



def test_the_figures_draw_on_the_tiny_generator(gen):
    rate = gen.sample_rate
    voice = torch.sin(torch.arange(rate // 2) * 0.05) * 0.3
    context = [Segment(0, "Hi there.", voice, rate, label="a prompt"),
               Segment(1, "Hey.", voice, rate)]
    fig = lesson.plot_prompt_layout(gen, LINE, 0, context, 1_200)
    assert fig.axes and len(fig.axes[0].patches) > 20
    tokens, mask = gen.segment_rows(context[0])
    kinds = lesson.row_kinds(tokens, mask, gen.config.num_codebooks)
    assert kinds.count("end") == 1 and kinds[0] == "text" and kinds[-1] == "end"


def test_the_voice_meter_tells_the_toy_prompts_apart():
    from csm_nb.speech.prompts import load_prompt
    codec = csm_nb.load_codec(mode="toy")
    meter = lesson.VoiceMeter()
    hits = [meter.closest(codec.encode(load_prompt(f"toy_{v}").audio, codec.sample_rate)) == v
            for v in "ABCDEFH"]
    assert sum(hits) >= 6, hits
    scores = meter.scores(codec.encode(load_prompt("toy_A").audio, codec.sample_rate))
    fig = lesson.plot_voice_match({"prompt A": scores}, {"prompt A": "A"})
    assert fig.axes
    with pytest.raises(ValueError, match="no frame"):
        meter.scores(torch.zeros(8, 0, dtype=torch.long))


def test_the_toy_corpus_reads_as_shipped():
    corpus = lesson.toy_corpus()
    assert len(corpus) == len(corpus.clips) and corpus.voices() == list("ABCDEFH")
    i = corpus.where("heldout", "A")[0]
    assert corpus.codes(i).shape == (8, corpus.clips[i].frames)
    assert 300 < len(corpus.vocabulary()) < 500 and "the" in corpus.vocabulary()
    with pytest.raises(ValueError, match="outside"):
        corpus.codes(len(corpus))
