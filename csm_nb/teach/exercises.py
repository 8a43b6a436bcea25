"""Checkers for the notebooks' "your turn" cells.

Each `check_xxx(answer)` prints a friendly verdict and returns True or False. A wrong answer
never raises; a placeholder (`None` or `...`) just says "not answered yet", so notebooks run
top to bottom with the blanks unfilled. Only an answer of the wrong kind (a string where a
number is asked, ...) raises TypeError. `solution(name)` prints a worked answer.

Sections, one per notebook: 01 codec. Later notebooks append their own sections below.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from ..core.config import MIMI_CODEBOOK_SIZE, CSMConfig

_CFG = CSMConfig.csm_1b()
_BINS = MIMI_CODEBOOK_SIZE
_BITS = int(math.log2(_BINS))                 # 11 bits per code
_SOLUTIONS: dict[str, str] = {}


def _verdict(ok: bool, good: str, bad: str) -> bool:
    print(("Correct! " + good) if ok else ("Not yet. " + bad))
    return ok


def _unanswered(answer) -> bool:
    if answer is None or answer is Ellipsis:
        print("Not answered yet: replace the None (or ...) with your answer and run the cell.")
        return True
    return False


def _number(name: str, answer) -> float:
    if isinstance(answer, bool) or not isinstance(answer, (Real, np.number)):
        if isinstance(answer, np.ndarray) and answer.size == 1:
            return float(answer)
        try:                                  # a 0-d / 1-element torch tensor
            return float(answer.item())
        except (AttributeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected a number, got {type(answer).__name__} "
                            f"{answer!r}") from None
    return float(answer)


def solution(name: str) -> None:
    """Print the worked solution of an exercise, e.g. solution("bitrate")."""
    if name not in _SOLUTIONS:
        raise ValueError(f"no exercise named {name!r}; known: {', '.join(sorted(_SOLUTIONS))}")
    print(_SOLUTIONS[name])


# ------------------------------------------------------------------- 01 codec

def check_bitrate(answer, num_codebooks: int = _CFG.num_codebooks) -> bool:
    """Mimi's bitrate in bits per second with `num_codebooks` levels (4400 for 32)."""
    if _unanswered(answer):
        return False
    value = _number("bitrate", answer)
    right = _CFG.frame_rate * num_codebooks * _BITS
    if math.isclose(value, right, rel_tol=1e-3):
        return _verdict(True, f"{_CFG.frame_rate} frames/s x {num_codebooks} codes x {_BITS} "
                        f"bits = {right:g} bit/s ({right / 1000:g} kbps).", "")
    if math.isclose(value * 1000, right, rel_tol=1e-3):
        hint = "that is the right number in kbps; the question asks bits per second."
    elif math.isclose(value, _CFG.frame_rate * num_codebooks * _BINS, rel_tol=1e-3):
        hint = f"a code is one of {_BINS} values, which takes log2({_BINS}) = {_BITS} bits."
    elif math.isclose(value, _CFG.frame_rate * num_codebooks, rel_tol=1e-3):
        hint = "that counts codes per second; how many bits does each code take?"
    else:
        hint = "multiply frames per second, codebooks per frame and bits per code."
    return _verdict(False, "", f"{value:g} bit/s: {hint}")


_SOLUTIONS["bitrate"] = (
    "12.5 frames per second x 32 codes per frame x log2(2048) = 11 bits per code\n"
    "= 4400 bit/s = 4.4 kbps (1.1 kbps with 8 codebooks). 16-bit PCM at 24 kHz is 384 kbps:\n"
    "Mimi is ~87 times smaller.")


def check_num_frames(answer, seconds: float = 3.0) -> bool:
    """How many Mimi frames a clip of `seconds` gives: ceil(seconds * 24000 / 1920)."""
    if _unanswered(answer):
        return False
    value = _number("num_frames", answer)
    samples = round(seconds * _CFG.sample_rate)
    right = math.ceil(samples / _CFG.samples_per_frame)
    if value == right:
        return _verdict(True, f"{samples} samples / {_CFG.samples_per_frame} per frame = "
                        f"{samples / _CFG.samples_per_frame:g}, rounded up to {right}: Mimi "
                        "pads the last partial frame with silence.", "")
    if value == math.floor(samples / _CFG.samples_per_frame):
        hint = "close: a partial last frame still becomes a whole frame (round up)."
    elif value == samples / _CFG.samples_per_frame:
        hint = "frames come in whole numbers; what happens to the partial last one?"
    else:
        hint = (f"one frame is {_CFG.samples_per_frame} samples "
                f"({_CFG.frame_ms:g} ms) at {_CFG.sample_rate} Hz.")
    return _verdict(False, "", f"{value:g} frames: {hint}")


_SOLUTIONS["num_frames"] = (
    "3 s x 24000 Hz = 72000 samples; 72000 / 1920 = 37.5 frames; Mimi right-pads the last\n"
    "partial frame, so F = ceil(37.5) = 38 (and decode returns 38 x 1920 = 72960 samples).")


def rvq_toy_problem() -> dict:
    """A 2-D vector and two 4-entry codebooks for doing RVQ by hand."""
    return {
        "x": np.array([2.3, 0.9]),
        "codebooks": [np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]),
                      np.array([[0.5, 0.0], [0.0, 0.5], [-0.5, 0.0], [0.0, -0.5]])],
    }


def rvq_encode_reference(x, codebooks) -> list[int]:
    """Residual VQ: at each level take the nearest centroid to what is left, subtract it."""
    residual, codes = np.asarray(x, dtype=float), []
    for book in codebooks:
        book = np.asarray(book, dtype=float)
        codes.append(int(np.argmin(((book - residual) ** 2).sum(axis=1))))
        residual = residual - book[codes[-1]]
    return codes


def _code_list(name: str, answer) -> list[int]:
    try:
        codes = [int(c) for c in np.asarray(answer).reshape(-1)]
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a list of integer codes like [1, 0], got "
                        f"{type(answer).__name__} {answer!r}") from None
    return codes


def check_rvq_codes(answer) -> bool:
    """The two RVQ codes of rvq_toy_problem()'s x, e.g. [i0, i1]."""
    if _unanswered(answer):
        return False
    codes = _code_list("codes", answer)
    toy = rvq_toy_problem()
    right = rvq_encode_reference(toy["x"], toy["codebooks"])
    if codes == right:
        approx = sum(b[c] for b, c in zip(toy["codebooks"], right))
        return _verdict(True, f"codes {right}: x = {toy['x'].tolist()} is approximated by "
                        f"{approx.tolist()}; level 1 refined what level 0 left over.", "")
    naive = [int(np.argmin(((np.asarray(b) - toy["x"]) ** 2).sum(axis=1)))
             for b in toy["codebooks"]]
    if len(codes) != len(right):
        hint = f"give one code per codebook ({len(right)} in all)."
    elif codes[0] != right[0]:
        hint = "level 0: which centroid of codebook 0 is closest to x?"
    elif codes == naive:
        hint = "level 1 must quantise the residual x - codebook0[i0], not x itself."
    else:
        hint = "level 1: compute the residual x - codebook0[i0], then its nearest centroid."
    return _verdict(False, "", f"{codes}: {hint}")


_SOLUTIONS["rvq_codes"] = (
    "x = (2.3, 0.9). Level 0: distances to (0,0), (2,0), (0,2), (2,2) -> nearest is (2,0),\n"
    "code 1. Residual = (0.3, 0.9). Level 1: nearest of (0.5,0), (0,0.5), (-0.5,0), (0,-0.5)\n"
    "is (0,0.5), code 1. Codes [1, 1]; approximation (2.0, 0.5), error (0.3, 0.4).")


def check_rvq_encoder(fn) -> bool:
    """Your `rvq_encode(x, codebooks) -> list of codes`, tried on random problems."""
    if _unanswered(fn):
        return False
    if not callable(fn):
        raise TypeError(f"rvq_encode: expected a function, got {type(fn).__name__}")
    rng = np.random.default_rng(0)
    for trial in range(5):
        dim, size, levels = 2 + trial, 8, 3
        books = [rng.normal(size=(size, dim)) * 0.5 ** level for level in range(levels)]
        x = rng.normal(size=dim)
        right = rvq_encode_reference(x, books)
        try:   # the student's code may fail or return junk: report it, never crash the cell
            result = fn(x, books)
            if result is None:
                return _verdict(False, "", "your function returned None; return the list of "
                                "codes, one per codebook.")
            got = _code_list("rvq_encode(...)", result)
        except Exception as err:
            return _verdict(False, "", f"your function raised {type(err).__name__}: {err}")
        if got != right:
            return _verdict(False, "", f"on a {dim}-D problem with {levels} levels you gave "
                            f"{got}, RVQ gives {right}. Subtract each chosen centroid "
                            "before the next level.")
    return _verdict(True, "your encoder matches RVQ on 5 random problems.", "")


_SOLUTIONS["rvq_encoder"] = (
    "def rvq_encode(x, codebooks):\n"
    "    residual, codes = np.asarray(x, float), []\n"
    "    for book in codebooks:\n"
    "        i = int(np.argmin(((book - residual) ** 2).sum(axis=1)))\n"
    "        codes.append(i)\n"
    "        residual = residual - book[i]\n"
    "    return codes")


def check_keep_one_level(answer) -> bool:
    """If you could keep one codebook to preserve *what* is said, which index?"""
    if _unanswered(answer):
        return False
    value = _number("level", answer)
    if value == 0:
        return _verdict(True, "codebook 0 is the semantic level: Mimi distils a speech model "
                        "(WavLM) into it, so it follows the words; levels 1-31 add voice, "
                        "timbre and detail. CSM's backbone predicts codebook 0 first for "
                        "this reason.", "")
    hint = ("RVQ levels refine coarse to fine, and Mimi trains one level to carry the "
            "content: which one is it?")
    return _verdict(False, "", f"codebook {value:g}: {hint}")


_SOLUTIONS["keep_one_level"] = (
    "Codebook 0. Mimi's quantizer is split: one semantic codebook trained to match WavLM\n"
    "features (the words), and 31 acoustic codebooks for everything else (voice, room,\n"
    "detail). Decoding codebook 0 alone keeps the rhythm and content, not the voice.")


# ------------------------------------------------------------------- 03 conversation

def check_speaker_prefix(answer, speaker: int = 1, text: str = "Nice to meet you.") -> bool:
    """The exact string CSM tokenizes for `speaker` saying `text`: "[1]Nice to meet you."."""
    if _unanswered(answer):
        return False
    if not isinstance(answer, str):
        raise TypeError(f"prefix: expected a str, got {type(answer).__name__} {answer!r}")
    right = f"[{speaker}]{text}"
    if answer == right:
        return _verdict(True, f"{right!r}: the speaker id is just text in front of the words, "
                        "tokenized in one call (and wrapped in BOS ... EOS).", "")
    if answer.replace(" ", "") == right.replace(" ", ""):
        hint = "mind the spaces: no space after the closing bracket (a space changes the tokens)."
    elif str(speaker) not in answer:
        hint = f"the speaker id {speaker} belongs in square brackets at the start."
    elif text not in answer:
        hint = f"keep the words exactly as given: {text!r}."
    else:
        hint = "square brackets around the id, then the words: '[id]words'."
    return _verdict(False, "", f"{answer!r}: {hint}")


_SOLUTIONS["speaker_prefix"] = (
    "f'[{speaker}]{text}' -> '[1]Nice to meet you.' The tokenizer then adds BOS and EOS:\n"
    "<|begin_of_text|>[1]Nice to meet you.<|end_of_text|>. The id does not pick a voice:\n"
    "it is only text; the voice comes from the context audio.")


def check_segment_rows(answer, seconds: float = 3.0, text_tokens: int = 12) -> bool:
    """Rows one context segment costs: its text rows (incl. BOS/EOS), one per frame, +1."""
    if _unanswered(answer):
        return False
    value = _number("rows", answer)
    frames = math.ceil(round(seconds * _CFG.sample_rate) / _CFG.samples_per_frame)
    right = text_tokens + frames + 1
    if value == right:
        return _verdict(True, f"{text_tokens} text rows + {frames} audio frames (ceil of "
                        f"{seconds:g} s x {_CFG.frame_rate:g}) + 1 all-zero end-of-audio row "
                        f"= {right}.", "")
    if value == right - 1:
        hint = ("one short: after the audio frames comes one all-zero row that marks the end "
                "of the segment's audio (or did you round the frames down?).")
    elif value == frames + 1 or value == frames:
        hint = "the segment's text rows are in the prompt too."
    elif value > 10 * right:
        hint = f"count frames, not samples: one row per {_CFG.frame_ms:g} ms frame."
    else:
        hint = (f"text rows + frames ({_CFG.frame_rate:g} per second, partial frames round up) "
                "+ the end-of-audio row.")
    return _verdict(False, "", f"{value:g} rows: {hint}")


_SOLUTIONS["segment_rows"] = (
    "text: 12 rows (BOS, the tokens of '[0]...', EOS); audio: 3.0 s x 12.5 frames/s = 37.5,\n"
    "Mimi pads the last partial frame, so 38 rows; then 1 all-zero end-of-audio row:\n"
    "12 + 38 + 1 = 51 rows.")


def check_context_room(answer, max_audio_length_ms: float = 10_000, text_rows: int = 20,
                       max_seq_len: int = _CFG.max_seq_len) -> bool:
    """Rows left for context when the new line has `text_rows` rows and may last
    `max_audio_length_ms` (2048 - 20 - 125 = 1903 for the defaults)."""
    if _unanswered(answer):
        return False
    value = _number("rows", answer)
    frames = int(max_audio_length_ms / _CFG.frame_ms)
    right = max_seq_len - text_rows - frames
    if value == right:
        return _verdict(True, f"{max_seq_len} - {text_rows} text rows - {frames} frames "
                        f"({max_audio_length_ms:g} ms / {_CFG.frame_ms:g} ms) = {right} rows, "
                        f"about {right / _CFG.frame_rate:.0f} s of context audio if it were "
                        "all audio.", "")
    if value == max_seq_len - frames:
        hint = "the new line's own text rows take room too."
    elif value == max_seq_len - text_rows:
        hint = "the frames the model may generate need rows as well: each 80 ms is one row."
    elif value == max_seq_len - text_rows - max_audio_length_ms:
        hint = "convert milliseconds to frames first (one frame = 80 ms)."
    else:
        hint = f"start from {max_seq_len} and subtract what the new line needs."
    return _verdict(False, "", f"{value:g} rows: {hint}")


_SOLUTIONS["context_room"] = (
    "10 s of new audio = 10000 / 80 = 125 frames, each a row; the line's text takes 20 rows;\n"
    "2048 - 20 - 125 = 1903 rows remain for context (the official code requires one row\n"
    "fewer). At 12.5 rows per second that is ~152 s of context audio, less the text rows.")


def check_pack_prompt(fn, gen) -> bool:
    """Your `pack(gen, text, speaker, context) -> (tokens, mask)` against gen.prompt_rows."""
    import torch

    from ..speech.segment import Segment
    if _unanswered(fn):
        return False
    if not callable(fn):
        raise TypeError(f"pack: expected a function, got {type(fn).__name__}")
    rate = gen.sample_rate
    voice = torch.sin(torch.arange(rate // 4) * 0.05) * 0.3
    cases = [("Hello.", 0, []),
             ("Yes!", 1, [Segment(0, "Hi there.", voice, rate), Segment(1, "Hey.", voice, rate)])]
    for text, speaker, context in cases:
        want, want_mask, _ = gen.prompt_rows(text, speaker, context)
        try:   # the student's code may fail or return junk: report it, never crash the cell
            got = fn(gen, text, speaker, context)
            if got is None:
                print("Not answered yet: your pack(...) returns None; build the rows and "
                      "return (tokens, mask).")
                return False
            tokens, mask = got
        except Exception as err:
            return _verdict(False, "", f"pack raised or returned something odd "
                            f"({type(err).__name__}: {err}); return (tokens, mask).")
        where = f"with {len(context)} context segment(s)"
        if not isinstance(tokens, torch.Tensor) or tokens.shape != want.shape:
            return _verdict(False, "", f"{where}: tokens should have shape "
                            f"{tuple(want.shape)}, got {tuple(getattr(tokens, 'shape', ()))}. "
                            "Each segment: text rows, audio rows (with the end row); then the "
                            "new line's text rows.")
        if not torch.equal(tokens, want) or not torch.equal(mask, want_mask):
            row = int((tokens != want).any(dim=1).nonzero()[0]) if not torch.equal(
                tokens, want) else int((mask != want_mask).any(dim=1).nonzero()[0])
            return _verdict(False, "", f"{where}: right shape, but row {row} differs. Order: "
                            "segment text, segment audio, ..., new line's text.")
    return _verdict(True, "your packing matches the generator's rows exactly.", "")


_SOLUTIONS["pack_prompt"] = (
    "def pack(gen, text, speaker, context):\n"
    "    parts = []\n"
    "    for seg in context:\n"
    "        parts.append(csm_nb.text_rows(gen.tokenizer, seg.text, seg.speaker))\n"
    "        parts.append(csm_nb.audio_rows(gen.encode(seg)))   # frames + the all-zero row\n"
    "    parts.append(csm_nb.text_rows(gen.tokenizer, text, speaker))\n"
    "    return torch.cat([t for t, _ in parts]), torch.cat([m for _, m in parts])")


# ------------------------------------------------------------------- 02 backbone

_SAMPLER_DRAWS = 30_000           # draws per case: a correct sampler lands within ~0.007 TV
_SAMPLER_TV = 0.025               # total-variation distance a sampler may be off by
_SAMPLER_BINS = 8                 # a toy vocabulary: every bin gets thousands of draws
_SAMPLER_CASES = ((1.0, _SAMPLER_BINS), (0.5, 5), (2.0, 3), (0.9, 1))   # (temperature, topk)


def _sampler_logits():
    """Evenly spaced logits in a shuffled order: no ties, and every mistake shows."""
    import torch
    g = torch.Generator().manual_seed(0)
    return torch.linspace(3.0, -3.0, _SAMPLER_BINS)[torch.randperm(_SAMPLER_BINS, generator=g)]


def _sampler_hint(freq, logits, temperature, topk) -> str:
    """Name the likeliest mistake: the distribution the student's draws look like."""
    from ..core.sampling import filtered_probs
    suspects = {
        "the temperature is not applied: divide the logits by it":
            filtered_probs(logits, 1.0, topk),
        "logits are multiplied by the temperature; divide them instead":
            filtered_probs(logits * temperature ** 2, temperature, topk),
        "top-k is not applied: keep only the k largest logits":
            filtered_probs(logits, temperature, _SAMPLER_BINS),
        "your draws ignore the probabilities (uniform over the kept codes)":
            (filtered_probs(logits, temperature, topk) > 0).float() / topk,
    }
    name, p = min(suspects.items(), key=lambda kv: float((freq - kv[1]).abs().sum()))
    if 0.5 * float((freq - p).abs().sum()) < _SAMPLER_TV:
        return f"it looks like {name}."
    return ("compute softmax(logits / temperature) over the top-k logits only, then draw "
            "from it with the generator.")


def check_sampler(fn) -> bool:
    """Your `sample(logits [B, V], temperature, topk, generator) -> ids [B]`, checked against
    csm_nb.core.sampling: same support, same distribution (30k draws), greedy at topk=1, and
    reproducible with a fixed torch.Generator."""
    if _unanswered(fn):
        return False
    if not callable(fn):
        raise TypeError(f"sample: expected a function, got {type(fn).__name__}")
    import torch

    from ..core.sampling import filtered_probs, sample_topk
    logits = _sampler_logits()
    batch = logits.expand(_SAMPLER_DRAWS, _SAMPLER_BINS)                   # [N, V]
    identical = True
    for temperature, topk in _SAMPLER_CASES:
        case = f"temperature={temperature:g}, topk={topk}"
        try:   # the student's code may fail or return junk: report it, never crash the cell
            ids, again = (fn(batch.clone(), temperature, topk,
                             torch.Generator().manual_seed(1)) for _ in range(2))
        except Exception as err:
            return _verdict(False, "", f"with {case} your function raised "
                            f"{type(err).__name__}: {err}")
        if ids is None:
            return _verdict(False, "", "your function returned None; return the ids, one per "
                            "row of logits (a tensor of shape [B]).")
        ids, again = torch.as_tensor(ids), torch.as_tensor(again)
        if ids.shape != (_SAMPLER_DRAWS,) or ids.dtype.is_floating_point:
            return _verdict(False, "", f"with {case}: expected {_SAMPLER_DRAWS} integer ids "
                            f"(one per row of logits [{_SAMPLER_DRAWS}, {_SAMPLER_BINS}]), got "
                            f"{ids.dtype} of shape {tuple(ids.shape)}.")
        ids, again = ids.long().reshape(-1), again.long().reshape(-1)
        if not torch.equal(ids, again):
            return _verdict(False, "", f"with {case}, the same seed gave different draws: "
                            "draw with the `generator` argument (torch.multinomial(..., "
                            "generator=generator) or .exponential_(generator=generator)).")
        if topk == 1 and not bool((ids == logits.argmax()).all()):
            return _verdict(False, "", "with topk=1 every draw must be the largest logit "
                            "(greedy), whatever the temperature.")
        allowed = filtered_probs(logits, temperature, topk) > 0
        if (ids < 0).any() or (ids >= _SAMPLER_BINS).any() or not bool(allowed[ids].all()):
            return _verdict(False, "", f"with {case} you drew codes outside the {topk} "
                            "largest logits; top-k keeps only those.")
        freq = torch.bincount(ids, minlength=_SAMPLER_BINS).float() / _SAMPLER_DRAWS
        p = filtered_probs(logits, temperature, topk)
        tv = 0.5 * float((freq - p).abs().sum())
        if tv > _SAMPLER_TV:
            return _verdict(False, "", f"with {case} your draws' frequencies are "
                            f"{tv:.3f} (total variation) away from the right distribution: "
                            + _sampler_hint(freq, logits, temperature, topk))
        reference = sample_topk(batch, temperature, topk,
                                generator=torch.Generator().manual_seed(1))
        identical &= torch.equal(ids, reference)
    how = ("draw for draw identical to csm_nb.core.sampling (the exponential race, which is also "
           "how torch.multinomial draws one sample)" if identical
           else "a different way of drawing than csm_nb.core.sampling, with the same distribution")
    return _verdict(True, f"right support, right distribution, greedy at topk=1, reproducible "
                    f"with a seed: {how}.", "")


_SOLUTIONS["sampler"] = (
    "def sample(logits, temperature, topk, generator):\n"
    "    logits = logits / temperature\n"
    "    kth = torch.topk(logits, topk, dim=-1).values[..., -1:]          # k-th largest\n"
    "    logits = logits.masked_fill(logits < kth, float('-inf'))        # drop the rest\n"
    "    probs = torch.softmax(logits, dim=-1)\n"
    "    return torch.multinomial(probs, 1, generator=generator)[:, 0]\n"
    "# For one sample, torch.multinomial draws E ~ Exp(1) and returns argmax(probs / E).\n"
    "# csm_nb.core.sampling does the same on the logits, argmax(logits - log E), with no softmax:\n"
    "# the same draws from the same generator (see its docstring).")


def _first_bad_row(got, want) -> int:
    return int((got != want).reshape(got.shape[0], -1).any(dim=1).nonzero()[0])


def check_build_rows(fn, tokenizer, num_codebooks: int = _CFG.num_codebooks) -> bool:
    """Your `segment_rows(tokenizer, text, speaker, codes [K, F]) -> (tokens, mask)` for one
    context segment (text rows, audio rows, the end row), against text_rows + audio_rows."""
    if _unanswered(fn):
        return False
    if not callable(fn):
        raise TypeError(f"segment_rows: expected a function, got {type(fn).__name__}")
    import torch

    from ..core.rows import audio_rows, text_rows
    K, C = num_codebooks, num_codebooks + 1
    g = torch.Generator().manual_seed(0)
    cases = [("Hi there.", 0, torch.randint(0, _BINS, (K, 3), generator=g)),
             ("Yes!", 1, torch.randint(0, _BINS, (K, 1), generator=g))]
    for text, speaker, codes in cases:
        t_rows, t_mask = text_rows(tokenizer, text, speaker, K)
        a_rows, a_mask = audio_rows(codes, K)
        want, want_mask = torch.cat([t_rows, a_rows]), torch.cat([t_mask, a_mask])
        where = f"for speaker {speaker} saying {text!r} with {codes.shape[1]} frame(s)"
        try:   # the student's code may fail or return junk: report it, never crash the cell
            got = fn(tokenizer, text, speaker, codes.clone())
            if got is None:
                print("Not answered yet: your function returns None; return (tokens, mask).")
                return False
            tokens, mask = got
        except Exception as err:
            return _verdict(False, "", f"{where} your function raised or returned something "
                            f"odd ({type(err).__name__}: {err}); return (tokens, mask).")
        if not isinstance(tokens, torch.Tensor) or not isinstance(mask, torch.Tensor):
            return _verdict(False, "", "return two torch tensors: (tokens, mask).")
        if tokens.shape != want.shape or mask.shape != want.shape:
            n_text = t_rows.shape[0]
            if tokens.dim() == 2 and tokens.shape[1] != C:
                hint = f"every row has {C} columns: {K} codebooks, then the text column."
            elif tokens.shape[0] == want.shape[0] - 1:
                hint = "one row short: the audio ends with one all-zero end-of-audio row."
            elif tokens.shape[0] == want.shape[0] - 2:
                hint = ("two rows short: the text starts with BOS and ends with EOS "
                        "(tokenizer.encode adds both), or is the end row missing?")
            else:
                hint = (f"expected {n_text} text rows (BOS, the tokens of "
                        f"'[{speaker}]{text}' with no space after ']', EOS) + "
                        f"{codes.shape[1]} frame rows + 1 end row.")
            return _verdict(False, "", f"{where}: shape {tuple(tokens.shape)}, expected "
                            f"{tuple(want.shape)}. {hint}")
        if tokens.dtype != torch.int64 or mask.dtype != torch.bool:
            return _verdict(False, "", f"tokens must be int64 and mask bool; got "
                            f"{tokens.dtype} and {mask.dtype}.")
        if not torch.equal(tokens, want):
            row = _first_bad_row(tokens, want)
            if row < t_rows.shape[0]:
                hint = (f"row {row} is a text row: zeros, with the token id in column {K}; "
                        f"tokenize '[{speaker}]{text}' in one call (no space after ']').")
            elif row < want.shape[0] - 1:
                hint = (f"row {row} is audio frame {row - t_rows.shape[0]}: its {K} codes "
                        f"are codes[:, f] (one column of the [K, F] grid), text column 0.")
            else:
                hint = "the last row is the end-of-audio row: all zeros."
            return _verdict(False, "", f"{where}: {hint}")
        if not torch.equal(mask, want_mask):
            row = _first_bad_row(mask, want_mask)
            kind = "text" if row < t_rows.shape[0] else "audio"
            hint = (f"only column {K} is active in a text row" if kind == "text" else
                    f"columns 0..{K - 1} are active in an audio row (the end row too), "
                    f"column {K} is not")
            return _verdict(False, "", f"{where}: the ids are right, the mask of row {row} "
                            f"is not: {hint}.")
    return _verdict(True, "your rows equal text_rows + audio_rows exactly, end row included.",
                    "")


_SOLUTIONS["build_rows"] = (
    "def segment_rows(tokenizer, text, speaker, codes):\n"
    "    K, F = codes.shape\n"
    "    ids = tokenizer.encode(f'[{speaker}]{text}').ids          # BOS ... EOS\n"
    "    S = len(ids) + F + 1                                       # + the end row\n"
    "    tokens = torch.zeros(S, K + 1, dtype=torch.int64)\n"
    "    mask = torch.zeros(S, K + 1, dtype=torch.bool)\n"
    "    tokens[:len(ids), K] = torch.tensor(ids)\n"
    "    mask[:len(ids), K] = True\n"
    "    tokens[len(ids):len(ids) + F, :K] = codes.T                # frame f -> one row\n"
    "    mask[len(ids):, :K] = True                                 # the end row too\n"
    "    return tokens, mask")


def _relative_error(got, want) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-12))


def check_embed_rows(fn, model, tokens, mask) -> bool:
    """Your `embed(model, tokens [S, C], mask [S, C]) -> [S, D]`, against model.embed_rows."""
    if _unanswered(fn):
        return False
    if not callable(fn):
        raise TypeError(f"embed: expected a function, got {type(fn).__name__}")
    import torch
    device = model.codebook0_head.weight.device
    tokens, mask = tokens.to(device), mask.to(device)
    with torch.no_grad():
        want = model.embed_rows(tokens[None], mask[None])[0]                   # [S, D]
        try:   # the student's code may fail or return junk: report it, never crash the cell
            got = fn(model, tokens.clone(), mask.clone())
        except Exception as err:
            return _verdict(False, "", f"your function raised {type(err).__name__}: {err}")
        if got is None:
            print("Not answered yet: your function returns None; return the [S, D] sums.")
            return False
        got = torch.as_tensor(got).to(device)
        if got.shape != want.shape:
            return _verdict(False, "", f"expected shape {tuple(want.shape)} (one "
                            f"{want.shape[-1]}-wide vector per row), got {tuple(got.shape)}.")
        # Sums of 32 embeddings in another order differ by rounding: far less in fp32.
        tol = 1e-5 if want.dtype == torch.float32 else 2e-2
        err = _relative_error(got, want)
        if err <= tol:
            return _verdict(True, f"your sums equal model.embed_rows (relative error "
                            f"{err:.1e}).", "")
        K, V = model.config.num_codebooks, model.config.audio_vocab_size
        audio = model.audio_embeddings.weight
        text = model.text_embeddings.weight[tokens[:, K]]                      # [S, D]
        no_offset = audio[tokens[:, :K]]                                       # [S, K, D]
        with_offset = audio[tokens[:, :K] + torch.arange(K, device=device) * V]
        keep = mask[..., None].to(want.dtype)
        suspects = {
            "codebook k's ids index rows k * V + code of the shared table: add the offsets":
                (torch.cat([no_offset, text[:, None]], 1) * keep).sum(1),
            "masked-out columns must not count: multiply by the mask before summing":
                torch.cat([with_offset, text[:, None]], 1).sum(1),
        }
        for hint, guess in suspects.items():
            if _relative_error(got, guess) <= tol:
                return _verdict(False, "", hint + ".")
    return _verdict(False, "", f"relative error {err:.2f}: look up every column (codebook k "
                    f"at code + k x {V} in audio_embeddings, column {K} in text_embeddings), "
                    "multiply by the mask, sum over the columns.")


_SOLUTIONS["embed_rows"] = (
    "def embed(model, tokens, mask):\n"
    "    K, V = model.config.num_codebooks, model.config.audio_vocab_size\n"
    "    offsets = torch.arange(K, device=tokens.device) * V          # 0, 2051, 4102, ...\n"
    "    audio = model.audio_embeddings.weight[tokens[:, :K] + offsets]   # [S, K, D]\n"
    "    text = model.text_embeddings.weight[tokens[:, K]]                # [S, D]\n"
    "    columns = torch.cat([audio, text[:, None]], dim=1)               # [S, K+1, D]\n"
    "    return (columns * mask[..., None]).sum(dim=1)                    # [S, D]")


def context_seconds(generation_seconds: float, new_text_rows: int, num_segments: int,
                    segment_text_rows: int, max_seq_len: int = _CFG.max_seq_len) -> float:
    """Seconds of context audio that fit beside a line that may last `generation_seconds`:
    every row not taken by the new line (its text, its frames) or by the segments' text
    and end rows is one frame of context audio."""
    frames = int(generation_seconds * 1000 / _CFG.frame_ms)        # as the official code
    rows = max_seq_len - frames - new_text_rows - num_segments * (segment_text_rows + 1)
    return max(rows, 0) / _CFG.frame_rate


def check_context_seconds(answer, generation_seconds: float = 10.0, new_text_rows: int = 20,
                          num_segments: int = 2, segment_text_rows: int = 15) -> bool:
    """Seconds of context audio that fit in the backbone's rows when the new line has
    `new_text_rows` text rows and may last `generation_seconds`, and the context is
    `num_segments` segments of `segment_text_rows` text rows each (2048 rows, 12.5 frames/s)."""
    if _unanswered(answer):
        return False
    value = _number("seconds", answer)
    fr, L = _CFG.frame_rate, _CFG.max_seq_len
    frames = int(generation_seconds * 1000 / _CFG.frame_ms)
    args = (generation_seconds, new_text_rows, num_segments, segment_text_rows)
    right = context_seconds(*args)
    close = 0.5 / fr                                           # half a frame

    def near(x):
        return abs(value - x) <= close

    if near(right) or near(right - 1 / fr):      # the official check is strict (one row fewer)
        rows = round(right * fr)
        return _verdict(True, f"{L} rows - {frames} frames for the new line - {new_text_rows} "
                        f"of its text rows - {num_segments} x ({segment_text_rows} text + 1 end) "
                        f"= {rows} rows of audio frames = {rows} / {fr:g} = {right:.2f} s.", "")
    if near(right * fr) or near(right * fr - 1):
        hint = f"that is the number of rows; each second of audio takes {fr:g} rows."
    elif near(right + frames / fr):
        hint = "the frames the new line may generate take rows too (one per 80 ms)."
    elif near(right + num_segments / fr):
        hint = "each segment's audio ends with one all-zero end row."
    elif near(right + num_segments * segment_text_rows / fr):
        hint = "each context segment's own text rows come before its audio."
    elif near(right + new_text_rows / fr):
        hint = "the new line's text rows are in the prompt too."
    elif value < 0 or value > L / fr:
        hint = f"the whole window is {L} rows = {L / fr:g} s of audio at most."
    else:
        hint = (f"start from {L} rows, subtract everything that is not context audio, and "
                f"divide by {fr:g} rows per second.")
    return _verdict(False, "", f"{value:g} s: {hint}")


_SOLUTIONS["context_seconds"] = (
    "The new line may last 10 s = 10000 / 80 = 125 frames, one row each, plus its 20 text\n"
    "rows. Each of the 2 context segments costs its 15 text rows and 1 end row beside its\n"
    "audio. 2048 - 125 - 20 - 2 x 16 = 1871 rows of audio frames; at 12.5 rows per second\n"
    "that is 1871 / 12.5 = 149.68 s (149.6 s with the official strict check).")


# ------------------------------------------------------------------- 04 fast generation

_L4_GB_S = 300.0                # NVIDIA L4 (a common cloud GPU, Colab's paid tier): GB/s
_HALF_BYTES = 2                 # bytes per parameter in fp16 / bf16
_RESET_SYNCS = 4                # official decoder.reset_caches(): four .item() reads per frame
_STOP_SYNCS = 1                 # official stop test: `if torch.all(sample == 0)` once per frame


def llama_params(cfg) -> int:
    """Parameters of one csm_nb Llama (a `LlamaConfig`): per layer q/k/v/o projections, the
    SwiGLU MLP and two norms, plus the final norm."""
    D, hidden, kv = cfg.embed_dim, cfg.intermediate_dim, cfg.num_kv_heads * cfg.head_dim
    attention = D * D + 2 * D * kv + D * D          # q, k, v, output_proj
    mlp = 3 * D * hidden                            # w1, w2, w3
    return cfg.num_layers * (attention + mlp + 2 * D) + D


def params_per_frame(config: CSMConfig | None = None) -> int:
    """Parameters one frame reads at batch 1 (4.553 G for CSM-1B): the backbone and the
    codebook-0 head once, then for each of the K-1 depth steps the whole decoder, the
    projection and one [d, V] slice of audio_head. Embedding tables are read a row at a time
    and barely count."""
    c = config or _CFG
    once, per_step = _frame_params(c)
    return once + (c.num_codebooks - 1) * per_step


def _frame_params(c: CSMConfig) -> tuple[int, int]:
    """(read once per frame: backbone + codebook-0 head, read per depth step)."""
    D, d, V = c.backbone.embed_dim, c.decoder.embed_dim, c.audio_vocab_size
    return llama_params(c.backbone) + D * V, llama_params(c.decoder) + D * d + d * V


def check_floor_ms(answer, bandwidth_gb_s: float = _L4_GB_S, bytes_per_param: int = _HALF_BYTES,
                   config: CSMConfig | None = None) -> bool:
    """The bandwidth floor in ms per frame: bytes a frame must read / bytes per second.
    Defaults: CSM-1B in bf16 on an L4 (300 GB/s) -> 30.4 ms (30.6 ms with the KV cache)."""
    if _unanswered(answer):
        return False
    value = _number("floor_ms", answer)
    c = config or _CFG
    params = params_per_frame(c)
    right = params * bytes_per_param / (bandwidth_gb_s * 1e9) * 1000

    def near(x, tol=0.02):
        return math.isclose(value, x, rel_tol=tol)

    if near(right):
        return _verdict(True, f"{params / 1e9:.3f} G params x {bytes_per_param} bytes = "
                        f"{params * bytes_per_param / 1e9:.2f} GB per frame / {bandwidth_gb_s:g} "
                        f"GB/s = {right:.1f} ms: RTF {right / c.frame_ms:.2f} at best, whatever "
                        "the code does.", "")
    decoder_once = sum(_frame_params(c))                  # the depth decoder read only once
    if near(right / 1000):
        hint = "that is in seconds; the question asks milliseconds."
    elif near(right / bytes_per_param):
        hint = f"that counts parameters, not bytes: each takes {bytes_per_param} bytes."
    elif near(right * 2):
        hint = "bf16 / fp16 weights take 2 bytes each, not 4."
    elif near(right * 8):
        hint = "bandwidth is in bytes per second, not bits."
    elif near(decoder_once * bytes_per_param / (bandwidth_gb_s * 1e9) * 1000, 0.05):
        hint = (f"the depth decoder runs once per codebook 1..{c.num_codebooks - 1}, and "
                "reads all its weights every time.")
    else:
        hint = ("add the parameters a frame touches (backbone + codebook-0 head, then "
                f"{c.num_codebooks - 1} x (decoder + projection + one audio_head slice)), "
                "multiply by bytes per parameter, divide by the bandwidth.")
    return _verdict(False, "", f"{value:g} ms: {hint}")


_SOLUTIONS["floor_ms"] = (
    "Per frame: backbone 973.1 M + codebook0_head 4.2 M + 31 x (decoder 111.2 M + projection\n"
    "2.1 M + one audio_head slice 2.1 M) = 4.553 G parameters, x 2 bytes (bf16) = 9.11 GB.\n"
    "9.11 GB / 300 GB/s = 30.4 ms per 80 ms frame (30.6 ms with the 67 MB KV cache): RTF\n"
    "0.38 is the best an L4 can do at batch 1 (a T4 at 320 GB/s: 28.5 ms; an H100: 2.7 ms).")


def official_host_syncs(config: CSMConfig | None = None) -> int:
    """Blocking host syncs per frame in the official loop (145 for CSM-1B): torchtune's
    KVCache.update asserts on a device value in every attention call (the backbone's layers
    once, the decoder's layers K-1 times), plus the decoder cache reset and the stop test."""
    c = config or _CFG
    layer_calls = c.backbone.num_layers + (c.num_codebooks - 1) * c.decoder.num_layers
    return layer_calls + _RESET_SYNCS + _STOP_SYNCS


def check_host_syncs(answer, config: CSMConfig | None = None) -> bool:
    """How many host syncs one frame of the official loop makes (145 for CSM-1B)."""
    if _unanswered(answer):
        return False
    value = _number("host_syncs", answer)
    c = config or _CFG
    right = official_host_syncs(c)
    Lb, Ld, K = c.backbone.num_layers, c.decoder.num_layers, c.num_codebooks
    extra = _RESET_SYNCS + _STOP_SYNCS
    if value == right:
        return _verdict(True, f"{Lb} backbone layers + {K - 1} depth steps x {Ld} decoder layers "
                        f"+ {_RESET_SYNCS} reset reads + {_STOP_SYNCS} stop test = {right}: each "
                        "one drains the GPU queue before the CPU may go on.", "")
    if value == right - extra:
        hint = (f"that is the layer asserts; the decoder cache reset reads .item() "
                f"{_RESET_SYNCS} times and the stop test reads the frame once more.")
    elif value == Lb + Ld + extra:
        hint = f"the depth decoder runs once per codebook 1..{K - 1}, every frame."
    elif value == Lb + K * Ld + extra:
        hint = "codebook 0 comes from the backbone: the decoder runs K - 1 times, not K."
    elif value <= 1:
        hint = "that is csm_nb's loop; the question is about the official one."
    else:
        hint = ("count one sync per attention layer call (backbone layers once, decoder layers "
                "once per depth step), then the reset reads and the stop test.")
    return _verdict(False, "", f"{value:g} per frame: {hint}")


_SOLUTIONS["host_syncs"] = (
    "Per frame: the backbone's layers once, the decoder's layers once for each of codebooks\n"
    "1..31, each attention call asserting on a device value; plus decoder.reset_caches() (4\n"
    ".item() reads) and the stop test (1). CSM-1B: 16 + 31 x 4 + 5 = 145. A 28-layer backbone\n"
    "with an 8-layer decoder: 28 + 31 x 8 + 5 = 281. The GPU idles after every one of them.")


def first_audio_ms(prefill_ms: float, step_ms: float, chunk_frames: int,
                   decode_ms: float) -> float:
    """Time to first audio of a stream: the prefill, the first chunk's frames, one decode."""
    return prefill_ms + chunk_frames * step_ms + decode_ms


def check_first_audio_ms(answer, prefill_ms: float = 15.0, step_ms: float = 6.0,
                         chunk_frames: int = 4, decode_ms: float = 5.0) -> bool:
    """Time to first audio (ms) for a prefill of `prefill_ms`, `step_ms` per frame, chunks of
    `chunk_frames` frames and `decode_ms` per Mimi call (defaults: about an H100's)."""
    if _unanswered(answer):
        return False
    value = _number("first_audio_ms", answer)
    right = first_audio_ms(prefill_ms, step_ms, chunk_frames, decode_ms)

    def near(x):
        return math.isclose(value, x, rel_tol=1e-3, abs_tol=0.05)

    if near(right):
        return _verdict(True, f"{prefill_ms:g} ms prefill + {chunk_frames} x {step_ms:g} ms + "
                        f"{decode_ms:g} ms decode = {right:g} ms, for "
                        f"{chunk_frames * _CFG.frame_ms:g} ms of audio.", "")
    if near(right - prefill_ms):
        hint = "the whole prompt must be read (the prefill) before the first frame."
    elif near(right - decode_ms):
        hint = "codes are not audio yet: Mimi must decode the chunk."
    elif near(prefill_ms + step_ms + decode_ms):
        hint = f"the first chunk needs all of its {chunk_frames} frames."
    elif near(prefill_ms + chunk_frames * _CFG.frame_ms + decode_ms):
        hint = (f"{_CFG.frame_ms:g} ms is how much audio a frame holds, not how long it "
                "takes to compute.")
    else:
        hint = "add the prefill, the frames of one chunk, and one Mimi decode."
    return _verdict(False, "", f"{value:g} ms: {hint}")


_SOLUTIONS["first_audio_ms"] = (
    "15 ms prefill + 4 frames x 6 ms + 5 ms Mimi decode = 44 ms until 320 ms of audio is\n"
    "ready. Chunks of 1 frame: 15 + 6 + 5 = 26 ms, but 4x more Mimi calls per second of audio.")


# ------------------------------------------------------------------- 05 train a tiny CSM

def check_chance_loss(answer, num_bins: int) -> bool:
    """The codebook-0 loss of an untrained model that spreads its bets evenly over
    `num_bins` codes: ln(num_bins) nats."""
    if _unanswered(answer):
        return False
    value = _number("loss", answer)
    right = math.log(num_bins)
    if math.isclose(value, right, rel_tol=1e-2):
        return _verdict(True, f"-ln(1/{num_bins}) = ln {num_bins} = {right:.3f} nats. The "
                        "curve starts there; the total starts near twice that (codebook 0 + "
                        "the decoder's mean over the other codebooks).", "")
    if math.isclose(value, math.log2(num_bins), rel_tol=1e-2):
        hint = "that is in bits (log base 2); PyTorch's cross-entropy uses natural logs."
    elif math.isclose(value, 1 / num_bins, rel_tol=1e-2):
        hint = "that is the probability of the right code; the loss is minus its log."
    elif math.isclose(value, 2 * right, rel_tol=1e-2):
        hint = "that is the total (two parts); the question asks codebook 0 alone."
    else:
        hint = (f"a uniform guess gives the right code probability 1/{num_bins}; "
                "cross-entropy is -ln(probability of the right code).")
    return _verdict(False, "", f"{value:g}: {hint}")


_SOLUTIONS["chance_loss"] = (
    "Every code has probability 1/V, so the cross-entropy is -ln(1/V) = ln V nats per frame.\n"
    "For V = 131 (128 toy codes + 3 spare ids) that is ln 131 = 4.875.")


def check_target_rows(answer, context_frames: int, target_frames: int) -> bool:
    """How many rows of a two-turn conversation (context turn of `context_frames` frames,
    target turn of `target_frames`) are loss targets?"""
    if _unanswered(answer):
        return False
    value = _number("rows", answer)
    right = context_frames + 1 + target_frames + 1
    if value == right:
        return _verdict(True, f"({context_frames} + 1) + ({target_frames} + 1) = {right}: every "
                        "frame row and each turn's all-zero end row, which teaches the model "
                        "when to stop. Text rows are inputs only.", "")
    if value == context_frames + target_frames:
        hint = "the all-zero end-of-audio rows are targets too: how else would it learn to stop?"
    elif value == target_frames + 1 or value == target_frames:
        hint = "the context turn's frames are trained on as well, not only the last turn's."
    else:
        hint = "count the audio rows: frames and end rows, in both turns; text rows are inputs."
    return _verdict(False, "", f"{value:g}: {hint}")


_SOLUTIONS["target_rows"] = (
    "Targets are the audio rows: each turn's frames plus its all-zero end-of-audio row.\n"
    "Each is predicted from the hidden state of the row before it (the first frame from the\n"
    "last text row, EOS). So (F1 + 1) + (F2 + 1).")


_VOICE_CHOICES = {
    "a": "the speaker id in the text, [0] or [1]",
    "b": "the audio of the context turn",
    "c": "the words of the sentence",
}


def check_voice_source(answer) -> bool:
    """Multiple choice: what tells the trained toy CSM which voice to speak in?"""
    if _unanswered(answer):
        return False
    if not isinstance(answer, str):
        raise TypeError(f"answer: expected one of {sorted(_VOICE_CHOICES)} as a string, got "
                        f"{type(answer).__name__} {answer!r}")
    choice = answer.strip().lower().strip("()")
    if choice == "b":
        return _verdict(True, "we drew the [0]/[1] label at random for every training "
                        "conversation, and every sentence exists in both voices, so only the "
                        "context's audio says whose voice comes next. CSM-1B works the same "
                        "way: the speaker id is just text; context sets the voice.", "")
    hints = {"a": "during training the label was drawn at random for each conversation: it "
                  "says nothing about the voice.",
             "c": "every sentence was recorded in both voices: the words alone cannot decide."}
    return _verdict(False, "", hints.get(choice, f"pick one of {sorted(_VOICE_CHOICES)}."))


_SOLUTIONS["voice_source"] = (
    "(b) the context's audio. The training conversations paired each clip with another clip\n"
    "of the same voice and a random [0]/[1] label; the same words exist in both voices. The\n"
    "only evidence of the voice is the context turn's codes, and the model learned to read it.")
