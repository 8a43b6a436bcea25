"""Notebook 03 (Conversation: segments, speakers and context): the lesson the notebook imports.

`from csm_nb.teach import conversation as lesson` once, then `lesson.<name>`. Its parts:

    conversation_rows    the speaker prefix, the packed prompt (figure, `pack` exercise) and
                         the context budget (sections 2-4, 7)
    conversation_voices  speaker colours, the timeline, which voice a line sounds like, the
                         conversation widget (sections 5-6, 10)
    conversation_stream  streaming, the stream decoder exercise, the runaway guard (8-9)
    toy_corpus           the toy corpus and its voice meter (shared with notebook 05)

plus the end-of-notebook quiz (below, a `recall_quiz.Quiz`) and the players and spectrograms
from `common`.
"""

from __future__ import annotations

from .common import Solutions, audio, players, plot_spectrograms
from .conversation_rows import SOLUTIONS as _ROWS
from .conversation_rows import (check_context_room, check_pack_prompt, check_segment_rows,
                                check_speaker_prefix, plot_context_budget, plot_prompt_layout,
                                row_kinds)
from .conversation_stream import SOLUTIONS as _STREAM
from .conversation_stream import check_stream_decoder, plot_frame_levels, plot_stream_timing
from .conversation_voices import (conversation_builder, plot_conversation_timeline,
                                  plot_voice_match, speaker_colour)
from .recall_quiz import Question, Quiz
from .toy_corpus import VoiceMeter, toy_corpus

__all__ = [
    "QUIZ", "VoiceMeter", "audio", "check_context_room", "check_pack_prompt", "check_quiz",
    "check_segment_rows", "check_speaker_prefix", "check_stream_decoder",
    "conversation_builder", "hint", "players", "plot_context_budget",
    "plot_conversation_timeline", "plot_frame_levels", "plot_prompt_layout",
    "plot_spectrograms", "plot_stream_timing", "plot_voice_match", "row_kinds", "show_quiz",
    "solution", "speaker_colour", "toy_corpus",
]

QUIZ = Quiz("conversation.quiz", [
    Question(
        "The same line, the same speaker id [0] and the same seed, once after voice A's prompt "
        "and once after voice B's. Why do the two sound different?",
        {"a": "the speaker id selects a voice", "b": "the model continues the voice it hears "
         "in the context audio", "c": "the seed changes with the context"},
        "b", "The id is only the text prefix '[0]'; the voice comes from the context's audio.",
        {"a": "both lines had the same id [0]; the id is only text in front of the words.",
         "c": "the seed was the same; only the context differed."}),
    Question(
        "The toy model follows voices A-F from a prompt, but not the held-out voice H. Why?",
        {"a": "it learned six voices, a few synthetic speakers: it recognises which of those "
         "a context is in, it never learned to copy a new one", "b": "H's prompt is too short",
         "c": "H was given the wrong speaker id"},
        "a", "Copying any voice takes many speakers in training (CSM-1B: about a million "
        "hours); six voices teach six voices.",
        {"b": "H's prompt is as long as the others, and they work.",
         "c": "the id never picks a voice, for any voice."}),
    Question(
        "What decides how soon a streamed line is first heard?",
        {"a": "the length of the whole line", "b": "only the codec", "c": "prefilling the "
         "prompt, generating chunk_frames frames, and one codec call"},
        "c", "A stream plays its first chunk as soon as those frames are decoded; the rest of "
        "the line is still being generated.",
        {"a": "that is when one-shot generate() returns; a stream starts earlier.",
         "b": "the codec decodes a chunk quickly; the prefill and the frames come first."}),
    Question(
        "A conversation has grown past the backbone's window. What does the generator do by "
        "default?",
        {"a": "raises an error", "b": "drops the oldest whole segments, with a warning "
         "naming them", "c": "cuts the new line short"},
        "b", "strict=True raises instead; the new line's cap is never cut silently.",
        {"a": "only with strict=True.", "c": "the new line's frames are reserved first."}),
    Question(
        "In tiny mode (random weights) the lines run to their cap. Why?",
        {"a": "a random model almost never emits the all-zero stop frame", "b": "tiny models "
         "are slow", "c": "the cap is also a minimum"},
        "a", "A line ends at the stop frame or at the cap; trained models (toy, real) stop "
        "by themselves.",
        {"b": "speed changes how long you wait, not how long the line is.",
         "c": "the cap is only a maximum: the toy model's lines end well before it."}),
])


show_quiz, check_quiz = QUIZ.show, QUIZ.check      # check_quiz({1: "a", ...})

SOLUTIONS = Solutions(_ROWS, _STREAM)
QUIZ.register(SOLUTIONS, hint="Sections 6 (questions 1 and 2), 8 (3), 7 (4) and 1 (5).")
solution = SOLUTIONS.show
hint = SOLUTIONS.hint
