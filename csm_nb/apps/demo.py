"""The official demo, ours: a Gradio app like the `sesame/csm-1b` Space, on `csm_nb`.

    python -m csm_nb demo                    # http://127.0.0.1:7860
    python -m csm_nb.apps.demo --share             # the same, plus a public link (Colab)
    csm_nb.apps.demo.launch(share=True)            # from a notebook cell

Pick a voice prompt for speakers A and B (one of the six official ones, or your own clip
with its transcript), type a conversation one line per turn (A, B, A, ...), and hear it:
each line is spoken with both prompts and every earlier line as context, as the Space does.

The page only collects and shows: checking what was typed and uploaded happens in the plain
functions below (tested without a browser), and everything the model does goes through
`csm_nb.speech.generator` and `csm_nb.speech.prompts`. Gradio is the optional `[demo]` extra: it is imported
inside functions, so `import csm_nb.apps.demo` is cheap and needs no Gradio; nothing loads or
touches the network until `launch`/`main` (or the first click when `build_app` got no
generator).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from ..audio.signal import to_pcm16
from ..core.config import FRAME_MS
from ..loading.modes import MODES, WHAT, decide_mode, resolve_mode
from ..speech.budget import ContextTrimmed
from ..speech.prompts import load_prompt, prompt_info, prompt_names
from ..speech.segment import Segment
from . import USER_ERRORS

MAX_CHARS = 2000          # the Space refuses conversation + both transcripts at >= 2000 chars
MAX_TURNS = 20            # the Space's text area has 20 lines; the page has one player per turn
MAX_SECONDS = 30.0        # the Space's cap per line (max_audio_length_ms=30_000)
# Per mode, the slider's start: toy lines are short sentences; tiny models only make noise.
DEFAULT_SECONDS = {"real": 10.0, "toy": 4.0, "tiny": 2.0}
MAX_SEED = 2**32 - 1 - MAX_TURNS   # turn i uses seed + i
SPEAKERS = "AB"           # speaker ids 0 and 1, as in the Space
DEFAULT_PROMPTS = ("conversational_a", "conversational_b")     # the Space's


def default_prompts(mode: str) -> tuple[str, str]:
    """Speakers A and B's voices when the page opens: the Space's, or in toy mode (whose
    dropdown lists the toy voices) the two that stand in for them."""
    return ("toy_A", "toy_B") if mode == "toy" else DEFAULT_PROMPTS
DEFAULT_CONVERSATION = "\n".join([    # the Space's example
    "Hey how are you doing.", "Pretty good, pretty good.",
    "I'm great, so happy to be speaking to you.", "Me too, this is some cool stuff huh?",
    "Yeah, I've been reading more about speech generation, and it really seems like context "
    "is important.", "Definitely."])


# ------------------------------------------------------------------ checking the request

def parse_conversation(text: str) -> list[tuple[int, str]]:
    """One turn per non-blank line, speakers alternating from A: -> [(speaker, line), ...]."""
    if not isinstance(text, str):
        raise TypeError(f"the conversation must be text, got {type(text).__name__}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("The conversation is empty: type one line per turn (speaker A, then "
                         "B, then A, ...) and press Generate.")
    if len(lines) > MAX_TURNS:
        raise ValueError(f"The conversation has {len(lines)} lines; this demo speaks at most "
                         f"{MAX_TURNS} turns. Remove {len(lines) - MAX_TURNS} line(s).")
    return [(i % len(SPEAKERS), line) for i, line in enumerate(lines)]


def check_max_seconds(seconds) -> float:
    """The per-turn cap the slider starts at: one frame (0.08 s) up to the Space's 30 s."""
    low = FRAME_MS / 1000
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            low <= seconds <= MAX_SECONDS):
        raise ValueError(f"max_seconds={seconds!r} must be a number of seconds from {low} (one "
                         f"frame) to {MAX_SECONDS} (the official demo's cap per line)")
    return float(seconds)


def parse_seed(text: str | None) -> int | None:
    """The seed box: blank -> None (a fresh draw each time), else a whole number."""
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_SEED:
        raise ValueError(f"Seed {text!r} is not a whole number from 0 to {MAX_SEED}; type e.g. "
                         "42, or leave it blank for a fresh draw each time.")
    return int(text)


def transcript_for(choice: str, upload: str | None, transcript: str | None) -> str:
    """What the speaker's prompt says: the upload's transcript, else the official prompt's."""
    return (transcript or "") if upload else prompt_info(choice).transcript


def check_length(conversation: str, transcript_a: str, transcript_b: str) -> int:
    """The Space's limit: conversation + both prompt transcripts (stripped) under 2000 chars."""
    total = len(conversation.strip() + transcript_a.strip() + transcript_b.strip())
    if total >= MAX_CHARS:
        raise ValueError(f"Prompts and conversation too long: {total} characters (the "
                         f"conversation plus both prompt transcripts) must stay under "
                         f"{MAX_CHARS}. Shorten the conversation or pick shorter prompts "
                         "(read_speech_c is the shortest).")
    return total


def read_upload(path: str, transcript: str | None, speaker: int) -> Segment:
    """A speaker's own clip as a prompt Segment; readable errors for anything unusable."""
    from ..audio.signal import load_audio

    who, name = f"Speaker {SPEAKERS[speaker]}", Path(path).name
    try:
        wav, rate = load_audio(path)                                   # [C, T]
    except Exception as err:          # soundfile raises its own error types for non-audio
        raise ValueError(f"{who}: the uploaded file {name!r} is not audio this app can read "
                         f"(WAV, FLAC, OGG or MP3): {err}") from None
    if not (transcript or "").strip():
        raise ValueError(f"{who}: you uploaded {name!r}; type what it says in the transcript "
                         "box (CSM needs the exact words of a prompt).")
    try:
        return Segment(speaker, transcript.strip(), wav.mean(axis=0), rate, label=name)
    except ValueError as err:
        raise ValueError(f"{who}: the uploaded file {name!r} cannot be a prompt: {err}"
                         ) from None


# ------------------------------------------------------------------ speaking

class Demo:
    """The app's state: one generator (loaded once), the prompt cache, the run counter."""

    def __init__(self, generator=None, mode: str | None = None, device=None):
        self.generator, self.device = generator, device
        # `auto` stays auto when loading: if the hub then refuses (terms not accepted), the
        # generator falls back to the offline mode instead of failing the first click.
        self.load_mode = resolve_mode(mode)
        self.mode, self.reason = (generator.mode, "the generator given to the app"
                                  ) if generator is not None else decide_mode(mode)
        self._load_lock = threading.Lock()
        self._prompts: dict[tuple[str, int], Segment] = {}  # kept: Mimi codes cached per Segment
        self.runs = 0

    def get_generator(self):
        with self._load_lock:
            if self.generator is None:
                from ..speech.generator import load_generator
                self.generator = load_generator(self.load_mode, device=self.device)
                if self.generator.mode != self.mode:      # auto fell back while loading
                    self.mode, self.reason = self.generator.mode, "the real weights did not load"
            return self.generator

    def warm_up(self) -> None:
        """Load the generator and encode the default prompts now: the first click is quick."""
        gen = self.get_generator()
        for speaker, name in enumerate(default_prompts(self.mode)):
            try:
                gen.encode(self.voice(speaker, name, None, None))
            except OSError as err:     # e.g. the gated prompts without a token: a click will say
                print(f"csm_nb demo: prompt {name} not preloaded: {err}", file=sys.stderr)

    def voice(self, speaker: int, choice: str, upload: str | None, transcript: str | None):
        if upload:
            return read_upload(upload, transcript, speaker)
        key = (choice, speaker)
        if key not in self._prompts:
            self._prompts[key] = load_prompt(choice, speaker, mode=self.mode)
        return self._prompts[key]

    def speak(self, turns, prompts, max_seconds, temperature, topk, seed, on_progress=None):
        """Generator.conversation, turn by turn, with what the page shows: -> (turn Segments,
        notes for the page). on_progress(fraction, text) as frames arrive."""
        gen = self.get_generator()
        spoken, notes = [], []

        def progress(done, total):
            i = len(spoken)
            on_progress((i + done / total) / len(turns),
                        f"turn {i + 1} of {len(turns)} (speaker {SPEAKERS[turns[i][0]]})")
        lines = gen.conversation(turns, prompts, seed, max_audio_length_ms=round(
            float(max_seconds) * 1000), temperature=float(temperature), topk=int(topk),
            progress=progress if on_progress is not None else False)
        for i in range(len(turns)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                spoken.append(next(lines))
            for w in caught:      # a trimmed context or an empty turn goes on the page
                if issubclass(w.category, ContextTrimmed) or "produced no audio" in str(w.message):
                    notes.append(f"turn {i + 1}: {w.message}")
                else:             # the rest to the log
                    warnings.warn(w.message, w.category, stacklevel=2)
        return spoken, notes


def mode_banner(mode: str, reason: str) -> str:
    if mode == "real":
        return f"**Real weights** (sesame/csm-1b): {reason}."
    voices = {"toy": "the voices are the toy voices it was trained on",
              "tiny": "each official prompt is played by a toy voice, labelled"}[mode]
    return (f"**{mode.capitalize()} mode: {WHAT[mode]}.** Why: {reason}. Everything else works "
            f"as with the real weights; {voices}.")


def pcm(segment: Segment) -> tuple[int, np.ndarray] | None:
    """A turn for a Gradio player: (rate, int16 samples), or None when it has no audio."""
    return None if segment.audio is None else (segment.sample_rate, to_pcm16(segment.audio))


def summary(n: int, turns: list[Segment], prompts: list[Segment], seconds: float, mode: str,
            notes: list[str]) -> str:
    audio_s = sum(t.duration for t in turns)
    text = (f"**Conversation #{n} done**: {len(turns)} turn{'s' * (len(turns) != 1)}, "
            f"{audio_s:.2f} s of audio, made "
            f"in {seconds:.1f} s" + {"tiny": " (tiny mode: noise).", "toy": " (toy mode)."}.get(
                mode, ".") +
            " Voices: " + ", ".join(f"{SPEAKERS[p.speaker]} = {p.label}" for p in prompts) + ".")
    return "\n".join([text] + [f"- {note}" for note in notes])


def error_text(err: BaseException) -> str:
    return f"**Error:** {err}"


# ------------------------------------------------------------------ the page

# System fonts only: Gradio's default theme fetches Google Fonts, which an offline classroom
# machine (or CI) cannot reach.
_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
_MONO_FONTS = ["ui-monospace", "monospace"]
_INTRO = ("# CSM-1B: a conversation in two voices\nPick a voice prompt for speakers A and B "
          "(or record/upload your own clip with its transcript), write one line per turn, and "
          "press **Generate**. Each line is spoken with both prompts and every earlier line as "
          "context, like Sesame's [official demo](https://huggingface.co/spaces/sesame/csm-1b).")


def build_app(generator=None, mode: str | None = None, max_seconds: float | None = None):
    """The Gradio Blocks (not launched). generator: a csm_nb Generator, or None to load one on
    the first click (mode: real | toy | tiny | auto, decided now without loading anything)."""
    return _blocks(Demo(generator, mode), max_seconds)


def _blocks(demo: Demo, max_seconds: float | None):
    import gradio as gr

    step = FRAME_MS / 1000                                   # whole frames: 0.08 s
    seconds = DEFAULT_SECONDS[demo.mode] if max_seconds is None else max_seconds
    check_max_seconds(seconds)
    theme = gr.themes.Default(font=_FONTS, font_mono=_MONO_FONTS)
    with gr.Blocks(title="CSM-1B demo (csm_nb)", theme=theme, analytics_enabled=False) as app:
        gr.Markdown(_INTRO)
        gr.Markdown(mode_banner(demo.mode, demo.reason), elem_id="mode-banner")
        voices = []
        with gr.Row():
            for speaker, default in enumerate(default_prompts(demo.mode)):
                who = SPEAKERS[speaker]
                with gr.Column():
                    choice = gr.Dropdown(prompt_names(demo.mode), value=default, elem_id=f"prompt-{who}",
                                         label=f"Speaker {who}: voice prompt")
                    said = gr.Textbox(prompt_info(default).transcript, lines=3, max_lines=3,
                                      interactive=False, label="What the prompt says")
                    choice.change(lambda name: prompt_info(name).transcript, choice, said,
                                  queue=False, api_name=False)
                    with gr.Accordion(f"Or speaker {who}'s own clip (replaces the prompt)",
                                      open=False):
                        upload = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                          label="Your clip", elem_id=f"upload-{who}")
                        transcript = gr.Textbox(label="Its exact transcript", lines=2)
                voices += [choice, upload, transcript]
        conversation = gr.Textbox(DEFAULT_CONVERSATION, lines=6, max_lines=MAX_TURNS,
                                  elem_id="conversation",
                                  label=f"Conversation: one line per turn, speakers A, B, A, "
                                        f"... (at most {MAX_TURNS} turns)")
        with gr.Row():
            max_s = gr.Slider(step, MAX_SECONDS, seconds, step=step, elem_id="max-seconds",
                              label="Max seconds per turn")
            temperature = gr.Slider(0.0, 1.5, 0.9, step=0.05, label="Temperature")
            topk = gr.Slider(1, 200, 50, step=1, label="Top-k")
            seed = gr.Textbox("", placeholder="random", max_lines=1,
                              label="Seed (blank: random)")
        button = gr.Button("Generate conversation", variant="primary", elem_id="generate")
        status = gr.Markdown(elem_id="status")
        # The browser's own players: compact (up to 21 of them) and plain <audio> elements.
        plain = gr.WaveformOptions(show_recording_waveform=False)
        whole = gr.Audio(label="The whole conversation", interactive=False,
                         waveform_options=plain, elem_id="conversation-audio")
        players = [gr.Audio(label=f"Turn {i + 1}", interactive=False, visible=False,
                            waveform_options=plain, elem_id=f"turn-{i + 1}")
                   for i in range(MAX_TURNS)]

        def run(text, a_choice, a_upload, a_text, b_choice, b_upload, b_text, max_seconds,
                temperature, topk, seed, progress=gr.Progress()):
            hidden = [gr.update(value=None, visible=False)] * MAX_TURNS
            try:
                turns = parse_conversation(text)
                check_length(text, transcript_for(a_choice, a_upload, a_text),
                             transcript_for(b_choice, b_upload, b_text))
                seed = parse_seed(seed)
                progress(0, desc="preparing the voices")
                prompts = [demo.voice(0, a_choice, a_upload, a_text),
                           demo.voice(1, b_choice, b_upload, b_text)]
                start = time.perf_counter()
                spoken, notes = demo.speak(turns, prompts, max_seconds, temperature, topk, seed,
                                           lambda f, desc: progress(f, desc=desc))
            except USER_ERRORS as err:
                return [error_text(err), None, *hidden]
            except Exception as err:     # a bug: a short line here, the traceback in the log
                traceback.print_exc()
                return [error_text(f"generation failed ({type(err).__name__}: {err}); the "
                                   "console running the app has the details."), None, *hidden]
            demo.runs += 1
            audio = [pcm(t) for t in spoken if t.audio is not None]
            joined = (audio[0][0], np.concatenate([a for _, a in audio])) if audio else None
            shown = [gr.update(value=pcm(t), visible=True, label=f"Turn {i + 1}, speaker "
                               f"{SPEAKERS[t.speaker]}: {t.text[:60]}")
                     for i, t in enumerate(spoken)]
            return [summary(demo.runs, spoken, prompts, time.perf_counter() - start, demo.mode,
                            notes),
                    joined, *shown, *hidden[len(shown):]]

        # One run at a time: the button is disabled until it ends (trigger_mode="once" also
        # drops clicks while one is pending), and the queue runs one generation at a time
        # across all open pages.
        busy = button.click(lambda: gr.update(interactive=False, value="Generating..."),
                            None, button, queue=False, api_name=False, trigger_mode="once")
        job = busy.then(run, [conversation, *voices, max_s, temperature, topk, seed],
                        [status, whole, *players], concurrency_limit=1,
                        concurrency_id="generate", show_progress_on=whole, api_name="generate")
        job.then(lambda: gr.update(interactive=True, value="Generate conversation"), None,
                 button, queue=False, api_name=False)
    return app.queue(default_concurrency_limit=1)


def launch(share: bool = False, server_name: str | None = "127.0.0.1",
           server_port: int | None = None, mode: str | None = None, *, device=None,
           max_seconds: float | None = None, **kwargs):
    """Load the generator (real, toy or tiny, decided as the notebooks do), build the page and
    serve it; returns the Blocks (`.close()` stops it). share=True adds a public
    *.gradio.live link (Colab). Other keyword arguments go to gradio's Blocks.launch."""
    if max_seconds is not None:
        check_max_seconds(max_seconds)        # before minutes of loading, not after
    demo = Demo(mode=mode, device=device)
    demo.warm_up()                            # before serving, not on the first click
    app = _blocks(demo, max_seconds)
    kwargs.setdefault("ssr_mode", False)      # server-side rendering would need Node.js
    app.launch(share=share, server_name=server_name, server_port=server_port, **kwargs)
    return app


def main(argv=None) -> int:
    """`python -m csm_nb demo [--share] [--port N] ...`: serve the demo until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m csm_nb demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1; 0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=None, help="default: 7860 or the next free")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="weights (default: $CSM_NB_MODE, else auto)")
    parser.add_argument("--device", default=None, help="e.g. cuda or cpu (default: best)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="the slider's starting value (default: 10 real, 4 toy, 2 tiny)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv[1:] if argv[:1] == ["--"] else argv)   # `demo -- --port 1`
    try:
        launch(share=args.share, server_name=args.host, server_port=args.port, mode=args.mode,
               device=args.device, max_seconds=args.max_seconds)
    except USER_ERRORS as err:
        print(f"csm_nb demo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":          # python -m csm_nb.apps.demo --share: the same as `csm_nb demo`
    sys.exit(main())
