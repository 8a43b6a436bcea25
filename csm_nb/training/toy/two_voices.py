"""Regenerate csm_nb/data/two_voices/: short sentences, each spoken by two espeak-ng voices.

    apt-get install espeak-ng        # Debian's eSpeak NG (1.51 made the shipped files)
    python -m csm_nb.training.toy.two_voices

Every sentence is rendered by voice A (low, American) and voice B (high, British), the toy
corpus's voices A and B, so notebook 05 can show that the same words come out in the voice its
context asks for. Processing as every shipped clip (csm_nb.training.toy.espeak).
`transcripts.tsv` lists file, voice and text, one clip per line.
"""

from __future__ import annotations

import sys

from ... import data
from ...core.config import SAMPLE_RATE
from .corpus import VOICES
from .espeak import render, require_espeak, write_pcm16

NAMES = ("A", "B")

SENTENCES = [
    "Hello, how are you?",
    "The sun is warm.",
    "I like green apples.",
    "Please close the door.",
    "My cat sleeps all day.",
    "We meet at noon.",
    "The train is late.",
    "Thank you so much.",
    "It may rain tonight.",
    "Let us read a book.",
    "Where is my cup?",
    "Good night, sleep well.",
]


def main() -> int:
    require_espeak()
    out = data.path("two_voices")
    out.mkdir(exist_ok=True)
    lines, total = ["file\tvoice\ttext"], 0
    for voice in NAMES:
        args, _ = VOICES[voice]
        for i, text in enumerate(SENTENCES):
            name = f"{voice.lower()}_{i:02d}.wav"
            y = render(text, args)
            write_pcm16(out / name, y)
            lines.append(f"{name}\t{voice}\t{text}")
            total += y.size
    (out / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    size = sum(p.stat().st_size for p in out.glob("*.wav"))
    print(f"{len(lines) - 1} clips, {total / SAMPLE_RATE:.1f} s, {size / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
