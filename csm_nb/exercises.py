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

from .config import CSMConfig

_CFG = CSMConfig.csm_1b()
_BINS = 2048                                  # Mimi's codebook size
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

    from .generator import Segment
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
