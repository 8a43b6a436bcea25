"""Training data: utterances on disk, and endless batches of conversations built as CSM sees
them (a context turn in one voice, then the target line) from segments and their codes."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..speech.segment import Segment, conversation_rows


@dataclass
class Utterance:
    file: str
    voice: int            # 0 = voice "A", 1 = voice "B", ...: who speaks, not a speaker id
    text: str
    audio: torch.Tensor   # float32 [T] at the file's rate (24 kHz for the shipped set)


def load_dataset(folder: str | Path | None = None):
    """(utterances, sample rate) from a folder with transcripts.tsv (file, voice, text) and
    its wav files; default: the two-voice set shipped with the package."""
    from .. import data as shipped
    from ..audio.signal import load_audio

    folder = shipped.path("two_voices") if folder is None else Path(folder)
    index = folder / "transcripts.tsv"
    if not index.is_file():
        raise FileNotFoundError(f"no {index}: pass a folder holding transcripts.tsv (file, "
                                "voice, text) and its wav files, or no folder for the shipped set")
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    names = sorted({r["voice"] for r in rows})
    data, rates = [], set()
    for r in rows:
        wav, rate = load_audio(folder / r["file"])                       # [C, T]
        rates.add(rate)
        data.append(Utterance(r["file"], names.index(r["voice"]), r["text"],
                              torch.from_numpy(wav.mean(0))))
    if len(rates) != 1:
        raise ValueError(f"{folder}: the clips have different sample rates {sorted(rates)}")
    return data, rates.pop()


def pad_batch(rows: list[tuple[torch.Tensor, torch.Tensor]]):
    """[(tokens [S_i, C], mask [S_i, C])] -> tokens, mask [B, max S, C], padded at the end
    with inactive rows (mask all False), which a causal model never lets earlier rows see."""
    if not rows:
        raise ValueError("rows is empty; give at least one (tokens, mask) pair")
    S = max(t.shape[0] for t, _ in rows)
    C = rows[0][0].shape[1]
    tokens = torch.zeros(len(rows), S, C, dtype=torch.int64)
    mask = torch.zeros(len(rows), S, C, dtype=torch.bool)
    for b, (t, m) in enumerate(rows):
        tokens[b, : t.shape[0]], mask[b, : m.shape[0]] = t, m
    return tokens, mask


def context_batches(tokenizer, voices: list[int], texts: list[str], codes: list[torch.Tensor],
                    batch_size: int, turns: int = 2, seed: int = 0,
                    random_speaker: bool = True) -> Iterator:
    """Endless batches of conversations of `turns` different clips, all in one voice. With
    `random_speaker`, the "[0]"/"[1]" label is drawn at random for each conversation, so only
    the audio of the earlier turns tells the model which voice comes next (as in CSM-1B,
    where the speaker id is just text). Yields (tokens, mask) [B, S, K+1]."""
    if not len(voices) == len(texts) == len(codes):
        raise ValueError(f"voices, texts and codes must be parallel lists; got lengths "
                         f"{len(voices)}, {len(texts)}, {len(codes)}")
    for name, value in (("batch_size", batch_size), ("turns", turns)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    by_voice: dict[int, list[int]] = {}
    for i, v in enumerate(voices):
        by_voice.setdefault(v, []).append(i)
    if any(len(ids) < turns for ids in by_voice.values()):
        raise ValueError(f"every voice needs at least turns={turns} clips, got "
                         f"{ {v: len(ids) for v, ids in by_voice.items()} }")
    K = codes[0].shape[0]
    g = torch.Generator().manual_seed(seed)
    while True:
        rows = []
        for last in torch.randint(len(codes), (batch_size,), generator=g).tolist():
            others = [i for i in by_voice[voices[last]] if i != last]
            order = torch.randperm(len(others), generator=g)[: turns - 1].tolist()
            clips = [others[i] for i in order] + [last]
            speaker = int(torch.randint(2, (1,), generator=g)) if random_speaker else \
                voices[last]
            rows.append(conversation_rows(
                tokenizer, [Segment(speaker, texts[i], codes=codes[i]) for i in clips], K))
        yield pad_batch(rows)
