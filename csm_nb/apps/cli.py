"""The command line: `python -m csm_nb say|conversation|demo ...` (also installed as `csm-nb`).

    python -m csm_nb say "Hello there." --speaker 0 -o hello.wav
    python -m csm_nb say "Hello there." --prompt read_speech_a -o hello.wav
    python -m csm_nb conversation script.txt -o talk.wav

A conversation script has one turn per line, `A:`/`B:` (or `0:`/`1:`, up to J/9) then the
words. Optional prompt lines give a speaker a voice: a demo prompt name, or a WAV file and
its transcript separated by `|`. Blank lines and `#` comments are skipped:

    prompt A: conversational_a
    prompt B: my_voice.wav | What my voice says in that file.
    A: Hey, how are you doing?
    B: Pretty good, pretty good.

Without a prompt a speaker has no voice to follow. CSM-1B copes (it picks one); the toy model
learned every line after a voice's turn, so in toy mode such a speaker gets a toy voice
(speaker 0 toy_A, 1 toy_B, ...) and stderr says which.

The WAV (mono, 16-bit, 24 kHz) is written atomically: nothing at the output path until the
whole file is ready; an error or Ctrl-C leaves no partial file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..loading.modes import MODES
from ..speech.segment import MAX_SPEAKER, Segment, check_speaker, max_frames
from . import USER_ERRORS

_SPEAKER_LETTERS = "ABCDEFGHIJ"[: MAX_SPEAKER + 1]
_TURN = re.compile(r"^\s*([A-Za-z]|\d+)\s*:(.*)$")
_PROMPT = re.compile(r"^\s*prompt\s+([A-Za-z]|\d+)\s*:(.*)$", re.IGNORECASE)


@dataclass
class Script:
    turns: list[tuple[int, str]] = field(default_factory=list)
    prompts: dict[int, str] = field(default_factory=dict)      # speaker -> prompt spec


def parse_speaker(token: str, where: str) -> int:
    """"A" / "b" / "0" -> 0, 1, 0 ...; ValueError naming `where` otherwise."""
    if token.isdigit():
        speaker = int(token)
    elif len(token) == 1 and token.upper() in _SPEAKER_LETTERS:
        speaker = _SPEAKER_LETTERS.index(token.upper())
    else:
        raise ValueError(f"{where}: speaker {token!r} is not A-{_SPEAKER_LETTERS[-1]} or "
                         f"0-{MAX_SPEAKER}")
    try:
        return check_speaker(speaker)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def parse_script(text: str, source: str = "script") -> Script:
    """Turns and prompts of a conversation script; errors say the line number."""
    script = Script()
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source} line {number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PROMPT.match(line)
        if match:
            speaker = parse_speaker(match.group(1), where)
            spec = match.group(2).strip()
            if not spec:
                raise ValueError(f"{where}: the prompt line names no prompt; write e.g. "
                                 "'prompt A: conversational_a' or 'prompt A: voice.wav | words'")
            if speaker in script.prompts:
                raise ValueError(f"{where}: speaker {speaker} already has a prompt")
            check_prompt_spec(spec, where)
            script.prompts[speaker] = spec
            continue
        match = _TURN.match(line)
        if not match:
            raise ValueError(f"{where}: {line.strip()[:40]!r} is not a turn; start it with a "
                             "speaker and a colon, e.g. 'A: Hello there.'")
        speaker = parse_speaker(match.group(1), where)
        words = match.group(2).strip()
        if not words:
            raise ValueError(f"{where}: speaker {match.group(1)} says nothing; add the words "
                             "after the colon")
        script.turns.append((speaker, words))
    if not script.turns:
        raise ValueError(f"{source} has no turns; write one per line, e.g. 'A: Hello there.'")
    return script


def check_prompt_spec(spec: str, where: str) -> None:
    """A demo prompt name, or 'file.wav | transcript' with the file present."""
    from ..speech.prompts import prompt_info
    if "|" not in spec:
        try:
            prompt_info(spec)
        except ValueError as err:
            raise ValueError(f"{where}: {err} Or give 'file.wav | its transcript'.") from None
        return
    path, transcript = (part.strip() for part in spec.split("|", 1))
    if not Path(path).is_file():
        raise ValueError(f"{where}: prompt audio {path!r} does not exist")
    if not transcript:
        raise ValueError(f"{where}: prompt audio {path!r} needs its transcript after '|'")


def load_prompt_spec(spec: str, speaker: int, mode: str) -> Segment:
    if "|" not in spec:
        from ..speech.prompts import load_prompt
        return load_prompt(spec, speaker, mode=mode)
    from ..audio.signal import load_audio
    path, transcript = (part.strip() for part in spec.split("|", 1))
    wav, rate = load_audio(path)                                  # [C, T]
    return Segment(speaker, transcript, wav.mean(axis=0), rate, label=Path(path).name)


def _check_output(path: Path) -> None:
    """Fail before minutes of generation, not after."""
    if path.is_dir():
        raise ValueError(f"-o {path} is a folder; give a file name like out.wav")
    if not path.parent.is_dir():
        raise ValueError(f"-o {path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"-o {path}: the folder {path.parent} is not writable; pick another")


def _generation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, required=True, help="the WAV to write")
    parser.add_argument("--max-ms", type=float, default=10_000,
                        help="longest audio per line, in ms (default 10000)")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--topk", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None, help="reproducible sampling")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="weights: real, toy (shipped, speaks offline), tiny (random) or auto "
                             "(default: $CSM_NB_MODE, "
                             "else auto)")
    parser.add_argument("--device", default=None, help="e.g. cuda or cpu (default: best)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csm_nb",
                                     description="\n\n".join(__doc__.split("\n\n")[:2]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    say = sub.add_parser("say", help="speak one line")
    say.add_argument("text")
    say.add_argument("--speaker", type=int, default=0, help=f"0..{MAX_SPEAKER} (default 0)")
    say.add_argument("--prompt", default=None,
                     help="a voice: a demo prompt name or 'file.wav | its transcript'")
    _generation_args(say)
    talk = sub.add_parser("conversation", help="speak a script, turn by turn, with context",
                          description="\n\n".join(__doc__.split("\n\n")[2:4]),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    talk.add_argument("script", type=Path)
    talk.add_argument("--prompt", action="append", default=[], metavar="SPEAKER=SPEC",
                      help="e.g. A=conversational_a (overrides the script's prompt lines)")
    _generation_args(talk)
    demo = sub.add_parser("demo", help="the Gradio demo (needs the [demo] extra)")
    demo.add_argument("args", nargs=argparse.REMAINDER, help="passed to csm_nb.apps.demo")
    return parser


def _say(args) -> None:
    check_speaker(args.speaker, "--speaker")
    Segment(args.speaker, args.text)              # checks the text before loading anything
    if args.prompt:
        check_prompt_spec(args.prompt, "--prompt")
    gen = _load(args)
    spec = args.prompt or _toy_default(gen.mode, args.speaker)
    context = [load_prompt_spec(spec, args.speaker, gen.mode)] if spec else []
    audio = gen.generate(args.text, args.speaker, context, args.max_ms, args.temperature,
                         args.topk, args.seed, progress=not args.quiet)
    _write(args.output, audio, gen.sample_rate)


def _conversation(args) -> None:
    if not args.script.is_file():
        what = "is a folder, not a file" if args.script.is_dir() else "does not exist"
        raise ValueError(f"script {args.script} {what}")
    try:                                  # read as text, never run: a script is data
        text = args.script.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"script {args.script} is not UTF-8 text ({err}); save it as plain "
                         "UTF-8 text") from None
    script = parse_script(text, str(args.script))
    for item in args.prompt:
        if "=" not in item:
            raise ValueError(f"--prompt {item!r}: write SPEAKER=SPEC, e.g. A=conversational_a")
        who, spec = (part.strip() for part in item.split("=", 1))
        speaker = parse_speaker(who, f"--prompt {item!r}")
        check_prompt_spec(spec, f"--prompt {item!r}")
        script.prompts[speaker] = spec
    gen = _load(args)
    for speaker in sorted({speaker for speaker, _ in script.turns} - set(script.prompts)):
        voice = _toy_default(gen.mode, speaker)
        if voice:
            script.prompts[speaker] = voice
    prompts = [load_prompt_spec(spec, s, gen.mode) for s, spec in sorted(script.prompts.items())]
    turns = gen.generate_conversation(script.turns, prompts, seed=args.seed,
                                      max_audio_length_ms=args.max_ms,
                                      temperature=args.temperature, topk=args.topk,
                                      progress=not args.quiet)
    import torch
    audio = torch.cat([torch.zeros(0)] + [t.audio for t in turns if t.audio is not None])
    _write(args.output, audio, gen.sample_rate)


def _toy_default(mode: str, speaker: int) -> str | None:
    """In toy mode a speaker without a prompt gets a toy voice (and the user is told)."""
    if mode != "toy":
        return None
    from ..speech.prompts import default_toy_voice
    voice = default_toy_voice(speaker)
    print(f"toy mode: speaker {speaker} has no prompt, so it speaks in {voice} (the toy model "
          "learned every line after a voice's turn; choose one with --prompt)", file=sys.stderr)
    return voice


def _load(args):
    from ..speech.generator import load_generator
    _check_output(args.output)
    max_frames(args.max_ms)
    return load_generator(args.mode, device=args.device)


def _write(path: Path, audio, sample_rate: int) -> None:
    from ..audio.signal import write_wav
    write_wav(path, audio, sample_rate)
    print(f"wrote {path} ({audio.numel() / sample_rate:.2f} s at {sample_rate} Hz); not "
          "watermarked (see the conversation notebook)", file=sys.stderr)


def _demo(argv: list[str]) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("csm_nb demo needs Gradio: install the [demo] extra, e.g. "
              "pip install -e '.[demo]'", file=sys.stderr)
        return 1
    from . import demo as app  # imported only now: gradio is heavy
    return app.main(argv) or 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:          # the demo parses its own options (--share, --port, ...)
        return _demo(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        (_say if args.command == "say" else _conversation)(args)
    except USER_ERRORS as err:
        print(f"csm_nb {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"csm_nb {args.command}: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
