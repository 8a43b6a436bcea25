#!/usr/bin/env bash
# Regenerate csm_nb/data/speech.wav: a short English sentence spoken by espeak-ng,
# 16-bit mono PCM at Mimi's 24 kHz, peak-normalised to -3 dBFS (about 4 s, ~200 KB).
# Needs the Debian packages espeak-ng and sox:  sudo apt-get install espeak-ng sox
# espeak-ng (and its voice data) is GPL-3.0-or-later; the audio it renders is ours
# (see csm_nb/data/README.md). Output is deterministic for a given espeak-ng version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$here/csm_nb/data/speech.wav"
text="Hello! Mimi turns my voice into codes, twelve and a half times a second."
rate=24000        # Mimi's sample rate (csm_nb.core.config.CSMConfig.sample_rate)
voice="en-us"     # espeak-ng voice; speed in words per minute below
speed=170

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "missing $tool: sudo apt-get install espeak-ng sox" >&2; exit 1; }
done
tmp="$(mktemp --suffix=.wav)"
trap 'rm -f "$tmp"' EXIT
espeak-ng -v "$voice" -s "$speed" -w "$tmp" "$text"     # 22050 Hz mono, 16-bit
# resample to 24 kHz (-D: no dither, -R: repeatable, so reruns give the same bytes), trim leading/trailing silence, normalise the peak to -3 dBFS
sox -R -D "$tmp" -r "$rate" -c 1 -b 16 "$out" silence 1 0.02 0.1% reverse silence 1 0.02 0.1% reverse norm -3
soxi "$out" | grep -E "Sample Rate|Duration|File Size"
