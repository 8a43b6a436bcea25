"""Does the toy CSM say the right words, in the voice its context gives? Closed-set tests.

    make toy-eval                        # the full table: needs the rendered corpus
                                         # (make toy-corpus), ~8 min on one core
    python benchmarks/eval_toy.py --lines 7 --refs benchmarks/toy_eval/refs_ci.safetensors
                                         # 7 lines per group without the corpus (the test), ~20 s
    python benchmarks/eval_toy.py --model results/toy/model/tune2/toy_csm.safetensors

No offline speech recogniser can read espeak-ng speech (pocketsphinx: 91% WER), so
intelligibility is measured by identification: the generated line is compared, by dynamic
time warping (DTW) over log-mel spectrograms, with espeak-ng's renderings of candidate
sentences in the same voice, and counts as identified when the truth is the nearest.

For each line (a sentence and a voice; the context is that voice's prompt clip, as a user of
toy mode would give it) and each group (training sentences, held-out sentences in training
voices, held-out sentences in the held-out voice):

  standard   the truth vs 19 other evaluation sentences of its group and voice: top-1 (chance 5%)
  one-word   the truth vs 19 variants that each differ from it by ONE content word: top-1
             (chance 5%) and pairwise, the share of variants the output is closer to the
             truth than to (chance 50%)
  voice      the output is closer to the sentence rendered in the context's voice than to the
             same sentence in each other voice (all 7 voices; chance 1/7)
  stop       the line ended with the model's own all-zero frame within 1.5x the true length
  length     generated frames / true frames (mean)

Systems: the trained model, a random model of the same size (the chance baseline: it has the
same prompt, it just never learned), and the codec round trip of the truth (the ceiling: what
a perfect CSM would give through this codec). Generation is csm_nb's generate_codes, greedy
(topk=1) by default, or sampled at CSM's defaults (temperature 0.9, top-k 50) with --sampling.

Features: content tests use log-mel with each band's mean over the utterance removed (so the
voice's spectral tilt and loudness do not decide which sentence is nearest); the voice test
uses the log-mel as is (the envelope and harmonics are the voice). A content-free alternative
for the voice (distance of mean log-mel spectra) was tried and is weaker: the codec ceiling
drops to 95% on it, so DTW against the same sentence in every voice is kept.

Inputs: the evaluation items (benchmarks/toy_eval/items.json, written by the corpus maker:
for each line its truth, 19 other sentences, 19 one-word variants, its sentence in every
voice), the codes, codec and prompts (default: the shipped ones) and espeak-ng's renderings
as log-mel, from the corpus WAVs or from a file written by --export-refs
(benchmarks/toy_eval/refs_ci.safetensors: the first 7 lines per group, what the test runs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csm_nb.audio.signal import write_wav  # noqa: E402
from csm_nb.audio.toy_codec import ToyCodec  # noqa: E402
from csm_nb.core.config import SAMPLE_RATE  # noqa: E402
from csm_nb.core.generate import generate_codes  # noqa: E402
from csm_nb.loading.tokenizer import tiny_tokenizer  # noqa: E402
from csm_nb.loading.weights import tiny_model, toy_model  # noqa: E402
from csm_nb.speech.segment import Segment, conversation_rows  # noqa: E402
from csm_nb.training.toy.codes import (CODEC_FILE, ToyCorpus, one_thread,  # noqa: E402
                                       read_manifest, read_wav)

ITEMS = ROOT / "benchmarks" / "toy_eval" / "items.json"
ABOUT = ("benchmarks/eval_toy.py on the shipped toy CSM: 20 lines per training voice from its "
         "training sentences (train), 20 unseen sentences per training voice (heldout), 40 unseen "
         "sentences in the held-out voice H given only as context (heldout_voice). standard: "
         "identified among the truth and 19 other sentences by DTW over log-mel (chance 5%); "
         "one_word: among the truth and 19 one-word variants (chance 5%); pairwise: share of "
         "one-word variants the output is closer to the truth than to (chance 50%); voice: "
         "closer to the context voice's renderings than to the other voices' (chance 1 in 7); "
         "stopped: ended by the model's own stop frame within 1.5x the true length; length: "
         "generated / true length.")
CORPUS = ROOT / "results" / "toy" / "corpus"
MEL_BANDS = 40                  # enough for formants; DTW cost grows with it
MEL_FMIN, MEL_FMAX = 50.0, 8000.0   # speech band (espeak-ng renders up to 11 kHz)
HOP = 240                       # 10 ms at 24 kHz
N_FFT = 1024
DYNAMIC_RANGE_DB = 60.0         # quieter than the utterance's peak minus this = floor
MAX_LENGTH_FACTOR = 1.5         # the stop test's limit: 1.5x the true number of frames
SAMPLING = {"temperature": 0.9, "topk": 50}     # CSM's defaults
GROUPS = ("train", "heldout", "heldout_voice")
REF_STEPS_PER_DB = 4            # exported references: uint8 in quarter-dB steps (60 dB = 240)
PEAKS = "__peaks__"             # their tensor of per-clip peaks (dB)


# ---- features and DTW ---------------------------------------------------------------------

class Features:
    """Log-mel of 24 kHz audio: [frames, MEL_BANDS] in dB, floored DYNAMIC_RANGE_DB below
    the peak. content(): each band's mean removed; voice(): as is."""

    def __init__(self):
        import torchaudio.functional as AF
        self.fbank = AF.melscale_fbanks(N_FFT // 2 + 1, MEL_FMIN, MEL_FMAX, MEL_BANDS,
                                        SAMPLE_RATE, norm="slaney", mel_scale="slaney")
        self.window = torch.hann_window(N_FFT)

    def log_mel(self, audio: torch.Tensor) -> np.ndarray:
        spec = torch.stft(audio.float(), N_FFT, HOP, window=self.window, return_complex=True)
        mel = (self.fbank.T @ spec.abs().pow(2)).clamp(min=1e-10)
        db = 10 * torch.log10(mel)
        return db.clamp(min=float(db.max()) - DYNAMIC_RANGE_DB).T.numpy().astype(np.float64)

    @staticmethod
    def content(db: np.ndarray) -> np.ndarray:
        return db - db.mean(axis=0, keepdims=True)


def _dtw_python(cost: np.ndarray) -> float:
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return acc[n, m]


try:                            # numba (a librosa dependency): ~1000x faster than the loop
    from numba import njit
    _dtw_acc = njit(cache=True)(_dtw_python)
except ImportError:             # pragma: no cover
    _dtw_acc = _dtw_python


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean frame distance along the best monotonic alignment of a and b
    (accumulated cost / (len a + len b), so long and short candidates compare fairly)."""
    cost = np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :]
                              - 2 * a @ b.T, 0.0))
    return float(_dtw_acc(cost)) / (a.shape[0] + b.shape[0])


class References:
    """Features of espeak-ng's renderings, by clip id: computed from the corpus WAVs (and
    kept), or read from a file written by export() (what a test can ship instead of WAVs)."""

    def __init__(self, features: Features, corpus: Path | None, path: Path | None = None):
        self.features, self.corpus, self.db = features, corpus, {}
        self.files = {}
        if corpus is not None and (corpus / "manifest.tsv").is_file():
            self.files = {r["clip"]: corpus / r["file"] for r in read_manifest(corpus)}
        if path is not None and path.is_file():
            self.db = self.load(path)

    def __getitem__(self, clip: str) -> np.ndarray:
        if clip not in self.db:
            if clip not in self.files:
                raise KeyError(f"no rendering of {clip}: give --corpus (the WAVs) or --refs")
            self.db[clip] = self.features.log_mel(read_wav(self.files[clip]))
        return self.db[clip]

    def audio(self, clip: str) -> torch.Tensor:
        return read_wav(self.files[clip])

    def export(self, clips: set[str], path: Path) -> None:
        """uint8 log-mel, 1/REF_STEPS_PER_DB dB steps above each clip's floor (its peak minus
        DYNAMIC_RANGE_DB): a quarter of float32's size, rounding far below DTW's margins."""
        from safetensors.numpy import save_file
        clips = sorted(clips)
        peaks = np.array([self[c].max() for c in clips])
        tensors = {c: np.round((self[c] - (p - DYNAMIC_RANGE_DB)) * REF_STEPS_PER_DB)
                   .astype(np.uint8) for c, p in zip(clips, peaks)}
        save_file({**tensors, PEAKS: peaks}, str(path), metadata={"clips": json.dumps(clips)})

    @staticmethod
    def load(path: Path) -> dict[str, np.ndarray]:
        from safetensors import safe_open
        with safe_open(str(path), "np") as f:
            clips = json.loads(f.metadata()["clips"])
            peaks = f.get_tensor(PEAKS)
            return {c: f.get_tensor(c).astype(np.float64) / REF_STEPS_PER_DB
                    + (p - DYNAMIC_RANGE_DB) for c, p in zip(clips, peaks)}


# ---- one line -----------------------------------------------------------------------------

def score_line(db: np.ndarray, item: dict, refs: References) -> dict:
    """The identification and voice tests of one generated line (its log-mel `db`)."""
    content = Features.content(db)

    def distances(clips):
        return [dtw_distance(content, Features.content(refs[c])) for c in clips]

    truth = distances([item["clip"]])[0]
    others = distances(item["others"])
    variants = distances(item["variants"])
    voice = {v: dtw_distance(db, refs[c]) for v, c in item["voices"].items()}
    return {"standard": truth < min(others), "one_word": truth < min(variants),
            "pairwise": sum(truth < d for d in variants) / len(variants),
            "voice": min(voice, key=voice.get) == item["voice"],
            "nearest_voice": min(voice, key=voice.get)}


def select(items: dict, lines: int | None) -> dict:
    """The first `lines` items of each group, spread over its voices (round robin), so a
    small subset still covers every voice."""
    if lines is None:
        return items
    out = {}
    for group, group_items in items.items():
        by_voice: dict[str, list] = {}
        for it in group_items:
            by_voice.setdefault(it["voice"], []).append(it)
        order = [it for row in zip(*by_voice.values()) for it in row]
        out[group] = order[:lines]
    return out


class Speaker:
    """Generates a line after the voice's prompt turn, as a toy-mode user would."""

    def __init__(self, model, codec, prompts: dict, sampling: bool, seed: int):
        self.model, self.codec, self.prompts = model, codec, prompts
        self.tok = tiny_tokenizer()
        self.kwargs = dict(SAMPLING) if sampling else {"topk": 1}
        self.seed = seed

    def __call__(self, text: str, voice: str, true_frames: int, index: int):
        prompt_text, prompt_codes = self.prompts[voice]
        speaker = index % 2                 # "[0]" or "[1]": the label carries no voice
        K = self.model.config.num_codebooks
        tokens, mask = conversation_rows(
            self.tok, [Segment(speaker, prompt_text, codes=prompt_codes), Segment(speaker, text)],
            K)
        max_frames = math.ceil(MAX_LENGTH_FACTOR * true_frames)
        g = torch.Generator().manual_seed(self.seed + index)
        codes = generate_codes(self.model, tokens, mask, max_frames=max_frames,
                               generator=g, **self.kwargs)
        stopped = codes.shape[1] < max_frames
        spare = int((codes >= self.codec.codebook_size).sum())   # CSM's 3 extra ids
        codes = codes.clamp(max=self.codec.codebook_size - 1)
        audio = self.codec.decode(codes) if codes.shape[1] else torch.zeros(HOP * 4)
        return audio, {"frames": codes.shape[1], "stopped": stopped, "spare_ids": spare}


def evaluate(system: str, items: dict, refs: References, corpus: ToyCorpus, speaker=None,
             codec=None, save_wavs: int = 0, wav_dir: Path | None = None) -> dict:
    """Per group: the mean of every test over its lines (and the per-line records)."""
    feats = refs.features
    results = {}
    for group, group_items in items.items():
        lines = []
        for i, item in enumerate(group_items):
            truth = corpus.codes_of(item["clip"])
            true_frames = truth.shape[1]
            if speaker is None:             # the ceiling: the truth through the codec
                audio = codec.decode(truth)
                info = {"frames": true_frames, "stopped": True, "spare_ids": 0}
            else:
                audio, info = speaker(item["text"], item["voice"], true_frames, i)
            line = score_line(feats.log_mel(audio), item, refs)
            line.update(info, length=info["frames"] / true_frames, clip=item["clip"])
            lines.append(line)
            if wav_dir is not None and i < save_wavs:
                write_wav(wav_dir / f"{system}_{group}_{item['clip']}.wav", audio,
                          SAMPLE_RATE)
        mean = {k: float(np.mean([ln[k] for ln in lines]))
                for k in ("standard", "one_word", "pairwise", "voice", "stopped", "length")}
        results[group] = {"lines": len(lines), **mean, "per_line": lines}
    return results


def table(all_results: dict) -> str:
    cols = [("standard", "ident"), ("one_word", "1-word"), ("pairwise", "pairs"),
            ("voice", "voice"), ("stopped", "stop"), ("length", "length")]
    head = f"{'system':<16}{'group':<15}{'lines':>6}" + "".join(f"{c[1]:>8}" for c in cols)
    out = [head, "-" * len(head)]
    for system, results in all_results.items():
        for group, r in results.items():
            cells = "".join(f"{r[k]:>8.2f}" if k == "length" else f"{r[k]:>8.0%}"
                            for k, _ in cols)
            out.append(f"{system:<16}{group:<15}{r['lines']:>6}{cells}")
    out.append("chance: ident 5%, 1-word 5%, pairs 50%, voice 14% (1 of 7); ceiling = codec "
               "round trip of the truth (its stop and length are 100% and 1.00 by definition)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codes", default=None, help="folder with the codec, codes and prompts' "
                    "codes (default: the shipped csm_nb/data/toy)")
    ap.add_argument("--model", default=None, help="a toy CSM file (default: the shipped one)")
    ap.add_argument("--items", default=str(ITEMS), help="the evaluation items (eval.json)")
    ap.add_argument("--corpus", default=str(CORPUS), help="the rendered corpus (its WAVs)")
    ap.add_argument("--refs", default=None, help="reference features (instead of the WAVs)")
    ap.add_argument("--export-refs", default=None, help="write the references used here")
    ap.add_argument("--lines", type=int, default=None, help="lines per group (default: all)")
    ap.add_argument("--sampling", action="store_true", help="also sample (t=0.9, top-k 50)")
    ap.add_argument("--systems", default="trained,random,ceiling")
    ap.add_argument("--save-wavs", type=int, default=0, help="WAVs of the first N lines")
    ap.add_argument("--out", default=None, help="results JSON, every line (default: none)")
    ap.add_argument("--summary", default=None, help="the means only, as shipped beside the "
                    "model (csm_nb/data/toy/evaluation.json, which notebook 05 shows)")
    ap.add_argument("--name", default=None, help="the model's name in --summary")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    one_thread()
    corpus = ToyCorpus(args.codes)
    codec = ToyCodec.load(corpus.folder / CODEC_FILE)
    items = select(json.loads(Path(args.items).read_text()), args.lines)
    prompts = {c.voice: (c.text, corpus.codes(i))
               for i, c in enumerate(corpus.clips) if c.role == "prompt"}
    refs = References(Features(), Path(args.corpus), Path(args.refs) if args.refs else None)
    wav_dir = Path(args.out).with_suffix("") if args.save_wavs and args.out else None
    if args.save_wavs and wav_dir is None:
        raise ValueError("--save-wavs needs --out (the WAVs go beside the results)")
    if wav_dir:
        wav_dir.mkdir(parents=True, exist_ok=True)

    model = toy_model(device="cpu", dtype=torch.float32, path=args.model)
    systems = {}
    for name in args.systems.split(","):
        if name == "trained":
            systems["trained greedy"] = Speaker(model, codec, prompts, False, args.seed)
            if args.sampling:
                systems["trained t0.9k50"] = Speaker(model, codec, prompts, True, args.seed)
        elif name == "random":
            random_model = tiny_model(model.config, device="cpu", dtype=torch.float32,
                                      seed=args.seed)
            systems["random greedy"] = Speaker(random_model, codec, prompts, False, args.seed)
        elif name == "ceiling":
            systems["codec ceiling"] = None
        else:
            raise ValueError(f"--systems: unknown {name!r}; choose from trained, random, "
                             "ceiling")
    all_results, seconds = {}, {}
    for name, speaker in systems.items():
        t0 = time.perf_counter()
        all_results[name] = evaluate(name.replace(" ", "_"), items, refs, corpus, speaker,
                                     codec, args.save_wavs, wav_dir)
        seconds[name] = round(time.perf_counter() - t0, 1)
    print(table(all_results))
    print("seconds:", seconds)
    if args.export_refs:
        needed = {c for group in items.values() for it in group
                  for c in [it["clip"], *it["others"], *it["variants"], *it["voices"].values()]}
        refs.export(needed, Path(args.export_refs))
    report = {"model": args.model or "shipped", "seconds": seconds, "results": all_results}
    if args.out:
        Path(args.out).write_text(json.dumps(report) + "\n")
    if args.summary:
        means = {system: {group: {k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in r.items() if k != "per_line"}
                          for group, r in results.items()}
                 for system, results in all_results.items()}
        summary = {"about": ABOUT, "model": args.name or Path(args.model or "toy_csm").name,
                   "results": means}
        Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
