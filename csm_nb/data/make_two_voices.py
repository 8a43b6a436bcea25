"""Regenerate csm_nb/data/two_voices/: short sentences, each spoken by two espeak-ng voices.

    sudo apt-get install espeak-ng        # Debian's eSpeak NG (1.51 made the shipped files)
    python csm_nb/data/make_two_voices.py

Every sentence is rendered by voice A (low, American) and voice B (high, British), so the
notebook can show that the same words come out in the voice its context asks for. Each clip
is resampled to 24 kHz (CSM's rate), trimmed of leading/trailing silence, peak-normalised and
written as 16-bit mono PCM with the standard library's `wave` (same bytes on every rerun with
the same espeak-ng). `transcripts.tsv` lists file, voice and text, one clip per line.

eSpeak NG is GPL-3.0-or-later; we only run it. The audio it renders is this project's own
(see two_voices/README.md).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import wave
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

OUT = Path(__file__).resolve().parent / "two_voices"
SAMPLE_RATE = 24_000            # CSM's (and Mimi's) rate: csm_nb.CSMConfig.sample_rate
PEAK_DBFS = -3.0                # peak level after normalisation
SILENCE_DB = -40.0              # below this (relative to the peak) counts as silence
MARGIN_S = 0.03                 # silence kept before and after the speech

# name -> espeak-ng arguments: voice+variant, pitch (0-99), speed (words per minute)
VOICES = {
    "A": ["-v", "en-us+m3", "-p", "25", "-s", "165"],
    "B": ["-v", "en-gb+f4", "-p", "80", "-s", "180"],
}

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


def speak(text: str, args: list[str]) -> tuple[np.ndarray, int]:
    """espeak-ng's WAV on stdout -> (float64 samples, rate)."""
    raw = subprocess.run(["espeak-ng", *args, "--stdout", text], check=True,
                         capture_output=True).stdout
    with wave.open(io.BytesIO(raw)) as f:
        rate, n = f.getframerate(), f.getnframes()
        # espeak-ng streams to stdout before it knows the length: trust the bytes, not n
        pcm = np.frombuffer(f.readframes(n if n > 0 else 1 << 30), dtype="<i2")
    return pcm.astype(np.float64) / 2 ** 15, rate


def to_24k_trimmed(x: np.ndarray, rate: int) -> np.ndarray:
    g = gcd(SAMPLE_RATE, rate)
    y = resample_poly(x, SAMPLE_RATE // g, rate // g)         # 22050 -> 24000 = x 160/147
    loud = np.flatnonzero(np.abs(y) > np.abs(y).max() * 10 ** (SILENCE_DB / 20))
    margin = round(MARGIN_S * SAMPLE_RATE)
    y = y[max(loud[0] - margin, 0): loud[-1] + margin + 1]
    return y * (10 ** (PEAK_DBFS / 20) / np.abs(y).max())


def write_wav(path: Path, y: np.ndarray) -> None:
    pcm = np.round(np.clip(y, -1, 1) * (2 ** 15 - 1)).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.tobytes())


def main() -> int:
    if shutil.which("espeak-ng") is None:
        print("missing espeak-ng: sudo apt-get install espeak-ng", file=sys.stderr)
        return 1
    OUT.mkdir(exist_ok=True)
    lines, total = ["file\tvoice\ttext"], 0
    for voice, args in VOICES.items():
        for i, text in enumerate(SENTENCES):
            name = f"{voice.lower()}_{i:02d}.wav"
            y = to_24k_trimmed(*speak(text, args))
            write_wav(OUT / name, y)
            lines.append(f"{name}\t{voice}\t{text}")
            total += y.size
    (OUT / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    size = sum(p.stat().st_size for p in OUT.glob("*.wav"))
    print(f"{len(lines) - 1} clips, {total / SAMPLE_RATE:.1f} s, {size / 1e6:.2f} MB in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
