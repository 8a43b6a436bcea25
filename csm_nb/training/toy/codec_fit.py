"""Fit the toy codec on the toy corpus, then encode the corpus into compact codes.

    make toy-codes        # python -m csm_nb.training.toy.codec_fit --corpus results/toy/corpus
                          #   --codec csm_nb/data/toy/toy_codec.safetensors --out results/toy/codes
    python -m csm_nb.training.toy.codec_fit [--levels 8] [--centroids 128]   # fit a new one

The codec is csm_nb's ToyCodec (RVQ over 80 ms log-mel frames, Griffin-Lim back): Mimi's
frame rate (12.5 Hz, 1920 samples per frame at 24 kHz) and residual levels, so every lesson
about Mimi's codes holds for it. It is fitted on training-voice clips only (a sample of
FIT_CLIPS_PER_VOICE per voice): the held-out voice is encoded by a codec that never heard it,
as Mimi encodes voices it never heard.

Levels x centroids: 8 x 128, the toy default of notebook 05. Measured (a one-off script: fit on
100 clips per voice, round trip through Griffin-Lim, mean log-mel distance on 21 held-out
clips of all 7 voices): 8 x 128 gives 7.18 / 6.29 / 5.53 / 4.88 dB from 1 / 2 / 4 / 8 levels,
8 x 256 gives 6.62 / 5.81 / 5.17 / 4.62 dB: 0.26 dB better at 8 levels for twice the fit time
and twice the classes every codebook head must tell apart. Griffin-Lim's own phasiness
dominates what one hears at either size, so the cheaper shape wins; 8 levels keep Mimi's
"coarse first, then finer" structure visible (1, 2, 4, 8 levels audibly refine).

With --codec, the fit is skipped: the saved codec is copied to --out and encodes the corpus
(how a bigger training set gets the same codes for the clips it shares with a smaller one, and
how `make toy-codes` reproduces the shipped codes with the shipped codec). The shipped codec was
fitted by this file without --codec (178 s on one core).

Writes to --out: toy_codec.safetensors, toy_codes.safetensors + toy_codes.tsv (every clip the
model trains or is evaluated on: roles train, heldout, heldout_voice, prompt) and
codec_report.json (fit time, sizes, round-trip quality), and copies the corpus's eval.json,
voices.tsv and corpus.json beside them (the evaluation items and the corpus's provenance).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from ...audio.metrics import mel_distance
from ...audio.toy_codec import ToyCodec
from .codes import CODEC_FILE, one_thread, read_manifest, read_wav, save_codes

CORPUS, OUT = "results/toy/corpus", "results/toy/codes"
SEED = 0
LEVELS = 8                      # residual levels (Mimi: 32; CSM-1B's decoder fills 31)
CENTROIDS = 128                 # per level (Mimi: 2048); why: see the docstring
FIT_CLIPS_PER_VOICE = 150       # ~5 min of speech per training voice: k-means on ~90k
                                # frame vectors (4 framings each): ~3 min, ~0.5 GB
SHIFTS = 4                      # each clip also read 1/4, 2/4, 3/4 of a frame later
KMEANS_ITERS = 12
QUALITY_CLIPS_PER_VOICE = 5     # round trips (Griffin-Lim) scored per voice
ENCODED_ROLES = ("train", "heldout", "heldout_voice", "prompt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=CORPUS, help=f"the rendered corpus (default: {CORPUS})")
    ap.add_argument("--out", default=OUT, help=f"where codec and codes go (default: {OUT})")
    ap.add_argument("--levels", type=int, default=LEVELS)
    ap.add_argument("--centroids", type=int, default=CENTROIDS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--codec", default=None, help="a saved toy_codec.safetensors: encode with "
                    "it instead of fitting one (--levels/--centroids/--seed then unused)")
    args = ap.parse_args()
    one_thread()
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(corpus)
    for name in ("eval.json", "voices.tsv", "corpus.json"):      # small: they travel along
        shutil.copyfile(corpus / name, out / name)

    codec_path = out / CODEC_FILE
    if args.codec:
        fit_s, fit_clips = None, 0
        if Path(args.codec).resolve() != codec_path.resolve():
            shutil.copyfile(args.codec, codec_path)
        print(f"encoding with {args.codec} (no fit)", flush=True)
    else:
        rng = random.Random(args.seed)
        by_voice: dict[str, list[dict]] = {}
        for r in rows:
            if r["role"] == "train":
                by_voice.setdefault(r["voice"], []).append(r)
        fit_rows = [r for v in sorted(by_voice)
                    for r in rng.sample(by_voice[v], FIT_CLIPS_PER_VOICE)]
        clips = [read_wav(corpus / r["file"]) for r in fit_rows]
        t0 = time.perf_counter()
        codec = ToyCodec().fit(clips, num_codebooks=args.levels, codebook_size=args.centroids,
                               seed=args.seed, shifts=SHIFTS, kmeans_iters=KMEANS_ITERS)
        fit_s, fit_clips = time.perf_counter() - t0, len(clips)
        print(f"fitted in {fit_s:.0f} s on {fit_clips} clips: {codec}", flush=True)
        codec.save(codec_path)
    codec = ToyCodec.load(codec_path)                   # what ships: float16 centroids

    t0 = time.perf_counter()
    encoded = [r for r in rows if r["role"] in ENCODED_ROLES]
    codes = [codec.encode(read_wav(corpus / r["file"]), codec.sample_rate) for r in encoded]
    encode_s = time.perf_counter() - t0
    save_codes(encoded, codes, out)
    zero_frames = sum(int((c == 0).all(0).sum()) for c in codes)
    if zero_frames:
        raise RuntimeError(f"{zero_frames} encoded frames are all zeros: CSM would read them "
                           "as end of audio")

    # Round-trip quality on held-out sentences, per voice (the held-out voice included).
    quality = {}
    levels = sorted({1, 2, 4, codec.num_codebooks})
    for v in sorted({r["voice"] for r in rows}):
        picks = [r for r in rows if r["voice"] == v and r["role"] in ("heldout", "heldout_voice")]
        scores = {n: [] for n in levels}
        for r in picks[:QUALITY_CLIPS_PER_VOICE]:
            x = read_wav(corpus / r["file"])
            c = codec.encode(x, codec.sample_rate)
            for n in levels:
                scores[n].append(mel_distance(x, codec.decode(c, n)[: x.shape[0]]))
        quality[v] = {n: round(sum(s) / len(s), 2) for n, s in scores.items()}
    sizes = {p.name: p.stat().st_size for p in sorted(out.glob("toy_code*"))}
    report = {"levels": codec.num_codebooks, "centroids": codec.codebook_size,
              "codec": args.codec or "fitted here", "fit_clips": fit_clips,
              "fit_seconds": None if fit_s is None else round(fit_s, 1),
              "encode_seconds": round(encode_s, 1),
              "encoded_clips": len(codes), "frames": sum(c.shape[1] for c in codes),
              "bitrate_kbps": round(codec.bitrate() / 1000, 2),
              "mel_distance_db_by_voice_and_levels": quality, "bytes": sizes}
    (out / "codec_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
