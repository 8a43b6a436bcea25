"""Training CSM: the two-part loss, conversation batches, and a plain PyTorch loop.

CSM learns from conversations laid out exactly as at inference (reference doc sec. 4): each
turn is its text rows, its audio frame rows and an all-zero end-of-audio row. Every audio row
is a target, predicted from the row before it:

    codebook 0     backbone hidden state of row t  -> codebook0_head -> code 0 of row t+1
    codebooks 1..  depth decoder over [h_t, emb(code 0), ..., emb(code K-2)] -> codes 1..K-1

loss = cross-entropy of codebook 0 + mean cross-entropy of codebooks 1..K-1 (as transformers'
CsmForConditionalGeneration). The backbone runs once per batch; the depth decoder runs once
per frame, which is costly for CSM-1B, so its authors train it on a random 1/16 of the frames
(`decoder_fraction=1/16`) while codebook 0 learns from all of them.

Nothing here is specific to tiny models: `train` takes the device and autocast dtype, so the
same loop fine-tunes CSM-1B on a GPU. Shapes: B batch, S rows, C = K + 1 columns, K codebooks,
N target frames, D backbone width, V audio bins.
"""

from __future__ import annotations

import csv
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

from ..core.config import CSMConfig, LlamaConfig
from ..core.model import CSM
from ..core.rows import audio_rows, text_rows

AUDIO_SPECIAL_IDS = 3      # CSM-1B has 2048 Mimi codes + 3 ids; the toy CSM keeps the habit


def toy_csm_config(num_codebooks: int = 8, codebook_size: int = 128, width: int = 128,
                   layers: int = 2, decoder_width: int = 64, decoder_layers: int = 2,
                   max_seq_len: int = 512) -> CSMConfig:
    """A CSM small enough to train on a laptop CPU in a minute or two, for a toy codec's codes.

    Same structure as CSM-1B (4 query heads per kv head, SwiGLU 4x, a depth decoder with one
    position per codebook), ~1,000x narrower; the text vocabulary stays Llama-3's so the
    tokenizers fit. audio_vocab_size = the codec's codebook size + 3, like 2051 = 2048 + 3."""
    def llama(layers: int, width: int, max_seq_len: int) -> LlamaConfig:
        heads = max(4, width // 16)              # 16-wide heads, 4 query heads per kv head
        return LlamaConfig(num_layers=layers, num_heads=heads, num_kv_heads=heads // 4,
                           embed_dim=width, intermediate_dim=4 * width, max_seq_len=max_seq_len)

    backbone = llama(layers, width, max_seq_len)
    decoder = llama(decoder_layers, decoder_width, num_codebooks)
    return CSMConfig(backbone=backbone, decoder=decoder, num_codebooks=num_codebooks,
                     audio_vocab_size=codebook_size + AUDIO_SPECIAL_IDS)


# ---- the two-voice dataset (package data: csm_nb/data/two_voices) ------------------------


@dataclass
class Utterance:
    file: str
    voice: int            # 0 = voice "A", 1 = voice "B", ...: who speaks, not a speaker id
    text: str
    audio: torch.Tensor   # float32 [T] at the file's rate (24 kHz for the shipped set)


def load_dataset(folder: str | Path | None = None):
    """(utterances, sample rate) from a folder with transcripts.tsv (file, voice, text) and
    its wav files; default: the two-voice set shipped with the package."""
    from .. import data
    from ..audio.signal import load_audio

    folder = data.path("two_voices") if folder is None else Path(folder)
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


# ---- conversations as rows ------------------------------------------------------------

@dataclass
class Turn:
    """One turn of a conversation: who speaks, the words, and their codes [K, F] (None for
    the turn the model is asked to say)."""

    speaker: int
    text: str
    codes: torch.Tensor | None = None


def conversation_rows(tokenizer, turns: list[Turn], num_codebooks: int):
    """Turns -> (tokens [S, K+1] int64, mask [S, K+1] bool): per turn its text rows, then,
    if it has codes, its frame rows and the all-zero end-of-audio row."""
    if not turns:
        raise ValueError("turns is empty; give at least one Turn(speaker, text, codes)")
    parts = []
    for turn in turns:
        parts.append(text_rows(tokenizer, turn.text, turn.speaker, num_codebooks))
        if turn.codes is not None:
            parts.append(audio_rows(turn.codes, num_codebooks))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


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
                tokenizer, [Turn(speaker, texts[i], codes[i]) for i in clips], K))
        yield pad_batch(rows)


# ---- the loss ---------------------------------------------------------------------------

class CSMLoss(NamedTuple):
    total: torch.Tensor          # codebook0 + decoder: what is minimised
    codebook0: torch.Tensor      # cross-entropy of codebook 0 (backbone), nats per frame
    decoder: torch.Tensor        # mean cross-entropy of codebooks 1..K-1 (depth decoder)
    codebook0_accuracy: float    # fraction of target frames whose code 0 is the argmax
    frames: int                  # target frames in the batch


def csm_loss(model: CSM, tokens: torch.Tensor, mask: torch.Tensor,
             decoder_fraction: float = 1.0, generator: torch.Generator | None = None) -> CSMLoss:
    """The CSM training loss of a batch of conversations, tokens/mask [B, S, K+1]."""
    cfg = model.config
    K, V = cfg.num_codebooks, cfg.audio_vocab_size
    _check_batch(cfg, tokens, mask)
    if not 0 < decoder_fraction <= 1:
        raise ValueError(f"decoder_fraction={decoder_fraction} must be in (0, 1]; CSM's "
                         "authors use 1/16")
    h = model(tokens[:, :-1], mask[:, :-1])                            # [B, S-1, D]
    is_frame = mask[:, 1:, :K].all(-1)                                 # [B, S-1] next row audio
    h, codes = h[is_frame], tokens[:, 1:, :K][is_frame]                # [N, D], [N, K]
    N = codes.shape[0]
    if N == 0:
        raise ValueError("the batch has no audio frame to learn from: every sequence needs "
                         "a turn with codes (build rows with conversation_rows)")
    logits0 = model.codebook0_head(h).float()                          # [N, V]
    loss0 = F.cross_entropy(logits0, codes[:, 0])
    accuracy = float((logits0.argmax(-1) == codes[:, 0]).float().mean())
    if decoder_fraction < 1:     # the 1/16 trick: the decoder sees a random subset of frames
        n = max(1, round(N * decoder_fraction))
        pick = torch.randperm(N, generator=generator)[:n].to(codes.device)
        h, codes = h[pick], codes[pick]
    offsets = model.codebook_offsets[: K - 1]
    inputs = torch.cat([h[:, None], model.audio_embeddings(codes[:, :-1] + offsets)], 1)  # [n,K,D]
    logits = model.decoder_forward(inputs).float()                     # [n, K-1, V]
    loss_dec = F.cross_entropy(logits.reshape(-1, V), codes[:, 1:].reshape(-1))
    return CSMLoss(loss0 + loss_dec, loss0, loss_dec, accuracy, N)


def _check_batch(cfg: CSMConfig, tokens, mask) -> None:
    C = cfg.num_columns
    for name, t in (("tokens", tokens), ("mask", mask)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[-1] != C or t.shape[1] < 2:
            raise ValueError(f"{name} must be a tensor [B, S, {C}] with S >= 2, got "
                             f"{getattr(t, 'shape', type(t).__name__)}; use pad_batch")
    if tokens.shape != mask.shape or mask.dtype != torch.bool:
        raise ValueError(f"tokens {tuple(tokens.shape)} and a bool mask of the same shape are "
                         f"needed, got mask {tuple(mask.shape)} {mask.dtype}")
    if tokens.shape[1] > cfg.max_seq_len:
        raise ValueError(f"sequences of {tokens.shape[1]} rows exceed the model's "
                         f"{cfg.max_seq_len}; use shorter conversations")
    audio = tokens[..., : cfg.num_codebooks]
    if bool((audio < 0).any() | (audio >= cfg.audio_vocab_size).any()):
        raise ValueError(f"audio codes must lie in 0..{cfg.audio_vocab_size - 1}, got "
                         f"{int(audio.min())}..{int(audio.max())}: the codec and the model's "
                         "audio_vocab_size disagree")


# ---- the loop ---------------------------------------------------------------------------

@dataclass
class History:
    """Per step: the losses, codebook-0 accuracy (teacher forced), learning rate, seconds."""

    step: list[int] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    codebook0: list[float] = field(default_factory=list)
    decoder: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def summary(self, last: int = 10) -> str:
        if not self.step:
            return "no steps yet"

        def mean(xs):
            return sum(xs[-last:]) / len(xs[-last:])
        return (f"{self.step[-1] + 1} steps in {self.seconds[-1]:.0f} s; mean of the last "
                f"{min(last, len(self))}: loss {mean(self.total):.3f} = codebook 0 "
                f"{mean(self.codebook0):.3f} + decoder {mean(self.decoder):.3f}; codebook-0 "
                f"accuracy {mean(self.accuracy):.0%}")


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of `lr`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def train(model: CSM, batches, steps: int, lr: float = 3e-3, warmup: int = 20,
          weight_decay: float = 0.0, grad_clip: float = 1.0, decoder_fraction: float = 1.0,
          freeze: tuple[str, ...] = (), device=None, dtype: torch.dtype | None = None,
          seed: int = 0, optimizer: torch.optim.Optimizer | None = None,
          progress: bool = True) -> History:
    """Train `model` for `steps` batches with AdamW; returns the History.

    batches: one (tokens, mask) pair (trained on again and again) or an iterable of them.
    freeze: names (or name prefixes) of parameters to leave as they are, e.g.
    ("text_embeddings",): CSM-1B's 262 M-parameter text table, or a toy's 16 M rows of which
    it reads a few dozen. device: where to train (default: the model's). dtype: autocast dtype
    of the forward pass (e.g. torch.bfloat16 on a GPU; None = no autocast).
    """
    from tqdm.auto import tqdm

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive int")
    stream = _batch_stream(batches)
    freeze = (freeze,) if isinstance(freeze, str) else tuple(freeze)
    names = dict(model.named_parameters())
    frozen = [n for n in names if n.startswith(tuple(freeze))]
    unknown = [f for f in freeze if not any(n.startswith(f) for n in names)]
    if unknown:
        raise ValueError(f"freeze={unknown} matches no parameter; names start with "
                         f"{sorted({n.split('.')[0] for n in names})}")
    device = torch.device(device) if device is not None else model.codebook0_head.weight.device
    trainable = [p for n, p in names.items() if n not in frozen and p.requires_grad]
    was_trainable = {n: p.requires_grad for n, p in names.items()}
    for n in frozen:
        names[n].requires_grad_(False)
    model.to(device).train()
    # fused: one kernel for the whole update instead of ~10 per tensor (CPU and CUDA have it).
    optimizer = optimizer or torch.optim.AdamW(
        trainable, lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay,
        fused=device.type in ("cpu", "cuda") or None)
    generator = torch.Generator().manual_seed(seed)
    history, start = History(), time.perf_counter()
    bar = tqdm(range(steps), desc="training", disable=not progress)
    try:
        for step in bar:
            tokens, mask = next(stream)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, lr, warmup)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = csm_loss(model, tokens.to(device), mask.to(device), decoder_fraction,
                                generator)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
            optimizer.step()
            _record(history, step, loss, optimizer.param_groups[0]["lr"],
                    time.perf_counter() - start)
            bar.set_postfix(loss=f"{history.total[-1]:.3f}", c0=f"{history.codebook0[-1]:.3f}")
    finally:
        bar.close()
        for n, p in names.items():
            p.requires_grad_(was_trainable[n])
        model.eval()
    return history


def _batch_stream(batches) -> Iterator:
    """Checked at once (before the model is touched); then batch after batch."""
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        return itertools.repeat(batches)      # one fixed batch, again and again
    if not isinstance(batches, Iterable):
        raise TypeError(f"batches must be a (tokens, mask) pair or an iterable of them, got "
                        f"{type(batches).__name__}")

    def stream():
        yield from batches
        raise ValueError("batches ran out before `steps` were done; pass an endless iterator "
                         "(e.g. context_batches) or fewer steps")
    return stream()


def _record(history: History, step: int, loss: CSMLoss, lr: float, seconds: float) -> None:
    history.step.append(step)
    history.total.append(loss.total.item())
    history.codebook0.append(loss.codebook0.item())
    history.decoder.append(loss.decoder.item())
    history.accuracy.append(loss.codebook0_accuracy)
    history.lr.append(lr)
    history.seconds.append(seconds)


def code_match(generated: torch.Tensor, target: torch.Tensor) -> dict:
    """How close generated codes [K, F'] come to the target [K, F], frame by frame: the
    fraction of the target's frames whose code 0 (and whose whole frame) is equal."""
    F_common = min(generated.shape[1], target.shape[1])
    g, t = generated[:, :F_common].cpu(), target[:, :F_common].cpu()
    frames = max(target.shape[1], 1)
    return {"codebook0": float((g[0] == t[0]).sum()) / frames,
            "all_codebooks": float((g == t).all(0).sum()) / frames,
            "frames": (generated.shape[1], target.shape[1])}
