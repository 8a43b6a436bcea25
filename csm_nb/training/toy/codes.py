"""The toy corpus on disk: the rendered WAVs' manifest, and the codes every recipe step reads.

    results/toy/corpus/manifest.tsv   one line per rendered clip (corpus.py writes it; WAVs
                                      beside it, ~6 GB, never committed)
    toy_codes.safetensors             every encoded clip's codes, int16, end to end [K, sum F]
                                      + the offsets [N+1] (tensors only, never a pickle)
    toy_codes.tsv                     one line per clip, same order: clip, role, voice,
                                      frames, text

Only codes ship (csm_nb/data/toy/), never hours of WAV: a clip is heard by decoding its codes
with the toy codec. Roles: `train` (what the toy CSM learned from), `heldout` (sentences it
never heard, in its training voices), `heldout_voice` (voice H, never heard in training) and
`prompt` (the voice prompts' clips).
"""

from __future__ import annotations

import csv
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ... import data
from ...core.config import FRAME_RATE, SAMPLE_RATE

CODES_FILE, INDEX_FILE = "toy_codes.safetensors", "toy_codes.tsv"
CODEC_FILE = "toy_codec.safetensors"            # the codec that made them, beside them


def one_thread() -> None:
    """Toy models are small: one thread per process (the machine is shared; see
    csm_nb.audio.toy_codec._one_thread for why a second thread costs more than it saves)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


# ---- the rendered corpus (WAVs) -------------------------------------------------------------

def read_manifest(corpus: Path) -> list[dict]:
    path = Path(corpus) / "manifest.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: render the corpus first with "
                                "`make toy-corpus` (needs espeak-ng)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_wav(path: Path) -> torch.Tensor:
    """A corpus clip -> float32 [T] in [-1, 1] at 24 kHz (16-bit mono PCM, as written)."""
    from ...audio import signal
    wav, rate = signal.read_wav(path)                             # [T] mono, [C, T] else
    if rate != SAMPLE_RATE or wav.dim() != 1:
        raise ValueError(f"{path}: {'mono' if wav.dim() == 1 else 'not mono'} at {rate} Hz; "
                         f"the toy corpus is mono at {SAMPLE_RATE} Hz")
    return wav


# ---- codes ----------------------------------------------------------------------------------

def save_codes(rows: list[dict], codes: list[torch.Tensor], folder: Path) -> None:
    """All clips' codes [K, F_i] end to end as int16 [K, sum F] + offsets, and the TSV."""
    from safetensors.torch import save_file
    lengths = [c.shape[1] for c in codes]
    offsets = torch.tensor([0] + lengths).cumsum(0)
    flat = torch.cat(codes, dim=1)
    if int(flat.max()) > torch.iinfo(torch.int16).max:
        raise ValueError("codes do not fit int16")
    save_file({"codes": flat.to(torch.int16).contiguous(), "offsets": offsets},
              str(Path(folder) / CODES_FILE))
    with open(Path(folder) / INDEX_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE)
        w.writerow(["clip", "role", "voice", "frames", "text"])
        for r, n in zip(rows, lengths):
            w.writerow([r["clip"], r["role"], r["voice"], n, r["text"]])


@dataclass(frozen=True)
class Clip:
    clip: str          # "tr00000"
    role: str          # train / heldout / heldout_voice / prompt
    voice: str         # "A" .. "F", "H"
    frames: int
    text: str


class ToyCorpus:
    """A folder's toy codes (default: the shipped ones): `clips` (the index) and
    `codes(i)` / `codes_of(clip)` -> int64 [K, F]."""

    def __init__(self, folder: str | Path | None = None):
        from safetensors.torch import load_file
        self.folder = Path(folder) if folder is not None else data.path("toy")
        index, codes = self.folder / INDEX_FILE, self.folder / CODES_FILE
        for path in (index, codes):
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist: give a folder written by "
                                        "`make toy-codes` (or none, for the shipped codes)")
        with open(index, newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            self.clips = [Clip(r["clip"], r["role"], r["voice"], int(r["frames"]), r["text"])
                          for r in rows]
        tensors = load_file(str(codes))
        self._codes, self._offsets = tensors["codes"], tensors["offsets"]     # [K, all], [N+1]
        if self._offsets.numel() != len(self.clips) + 1:
            raise ValueError(f"{codes} holds {self._offsets.numel() - 1} clips but {index} "
                             f"lists {len(self.clips)}: a broken install? Reinstall csm_nb.")
        self._index = {c.clip: i for i, c in enumerate(self.clips)}

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        return (f"ToyCorpus({len(self)} clips, {self._codes.shape[1]:,} frames = "
                f"{self.hours():.1f} h, voices {''.join(self.voices())})")

    def codes(self, i: int) -> torch.Tensor:
        """Clip i's codes, int64 [K, F]."""
        if not 0 <= i < len(self):
            raise ValueError(f"clip index {i} is outside 0..{len(self) - 1}")
        return self._codes[:, self._offsets[i]:self._offsets[i + 1]].long()

    def codes_of(self, clip: str) -> torch.Tensor:
        """The codes of the clip named `clip` ("tr00000"), int64 [K, F]."""
        if clip not in self._index:
            raise KeyError(f"no clip named {clip!r} in {self.folder}")
        return self.codes(self._index[clip])

    def where(self, role: str | None = None, voice: str | None = None) -> list[int]:
        """Indices of the clips with this role and/or voice."""
        return [i for i, c in enumerate(self.clips)
                if (role is None or c.role == role) and (voice is None or c.voice == voice)]

    def voices(self) -> list[str]:
        return sorted({c.voice for c in self.clips})

    def hours(self, role: str | None = None) -> float:
        frames = (self._codes.shape[1] if role is None
                  else sum(self.clips[i].frames for i in self.where(role)))
        return frames / FRAME_RATE / 3600

    def vocabulary(self, role: str = "train") -> list[str]:
        """The words of the sentences with this role, sorted, lower case."""
        words = set()
        for c in self.clips:
            if c.role == role:
                words.update(re.findall(r"[a-z']+", c.text.lower()))
        return sorted(words)


@functools.cache
def toy_corpus() -> ToyCorpus:
    """The shipped corpus, read once per process."""
    return ToyCorpus()
