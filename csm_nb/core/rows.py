"""Text and audio as frame rows, and the Llama-3.2 tokenizer with CSM's BOS+EOS template.

A row has C = K + 1 columns: K Mimi codebooks, then one text token. A text row activates
only the text column; an audio row only the K codebook columns. A segment's rows are its
text rows (BOS, the tokens of "[speaker]text", EOS), its audio frames, and one all-zero
audio row that marks the end of its audio.
"""

from __future__ import annotations

import os

import torch

from .. import env
from .config import CSMConfig
from ..loading.modes import CSM_REPO, resolve_mode

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
BOS_ID, EOS_ID = 128_000, 128_001
TOKENIZER_MIRROR = "unsloth/Llama-3.2-1B"     # ungated copy of the same tokenizer
_DEFAULT_K = CSMConfig.num_codebooks          # 32, from the config's field default
_CODE_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def speaker_text(text: str, speaker: int) -> str:
    """The string CSM is trained on: "[0]Hello" (no space after the bracket)."""
    return f"[{speaker}]{text}"


def check_unicode(text: str, name: str = "text") -> None:
    """Refuse lone surrogates (a "\\ud83d" left from a half-copied emoji): no tokenizer can
    encode them, and the error they raise deep inside `tokenizers` names nothing."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{name} holds {text[err.start:err.end]!r} at index {err.start}, which "
                         "is not valid Unicode (half of an emoji's surrogate pair?); retype or "
                         "delete that character") from None


def _check_text(text, speaker) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"text={text!r} is empty; give the words to speak")
    check_unicode(text)
    if isinstance(speaker, bool) or not isinstance(speaker, int) or speaker < 0:
        raise ValueError(f"speaker={speaker!r} must be an int >= 0 (it only becomes the "
                         "text prefix \"[speaker]\"; CSM was trained with 0 and 1)")


def text_rows(tokenizer, text: str, speaker: int, num_codebooks: int = _DEFAULT_K):
    """Rows for the text of one turn: (tokens [S, K+1] int64, mask [S, K+1] bool)."""
    _check_text(text, speaker)
    if isinstance(num_codebooks, bool) or not isinstance(num_codebooks, int):
        raise TypeError(f"num_codebooks must be an int (the model's config.num_codebooks), got "
                        f"{type(num_codebooks).__name__} {num_codebooks!r}")
    if num_codebooks < 1:
        raise ValueError(f"num_codebooks={num_codebooks} must be >= 1 (CSM-1B has 32: "
                         "config.num_codebooks)")
    if isinstance(tokenizer, (str, bytes)) or not hasattr(tokenizer, "encode"):
        raise TypeError(f"tokenizer must be a tokenizers.Tokenizer (csm_nb.load_tokenizer), got "
                        f"{type(tokenizer).__name__}")
    ids = getattr(tokenizer.encode(speaker_text(text, speaker)), "ids", None)
    if ids is None:        # e.g. a transformers tokenizer: encode() returns a plain list
        raise TypeError(f"tokenizer must be a tokenizers.Tokenizer (csm_nb.load_tokenizer), got "
                        f"{type(tokenizer).__name__}, whose encode() has no .ids")
    tokens = torch.zeros(len(ids), num_codebooks + 1, dtype=torch.int64)
    mask = torch.zeros(len(ids), num_codebooks + 1, dtype=torch.bool)
    tokens[:, num_codebooks] = torch.tensor(ids, dtype=torch.int64)
    mask[:, num_codebooks] = True
    return tokens, mask


def audio_rows(codes: torch.Tensor, num_codebooks: int | None = None):
    """Rows for audio codes [K, F]: F frame rows + the all-zero end-of-audio row.

    Returns (tokens [F+1, K+1] int64, mask [F+1, K+1] bool).
    """
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor [K, F], got {type(codes).__name__}")
    if num_codebooks is not None and (isinstance(num_codebooks, bool)
                                      or not isinstance(num_codebooks, int)):
        raise TypeError(f"num_codebooks must be an int or None, got "
                        f"{type(num_codebooks).__name__} {num_codebooks!r}")
    K = num_codebooks or (codes.shape[0] if codes.dim() else 0)
    if codes.dim() != 2 or codes.shape[0] != K or K < 1:
        raise ValueError(f"codes has shape {tuple(codes.shape)}; expected [{K or 'K'}, F] "
                         "(codebooks first, as Codec.encode returns)")
    if codes.dtype not in _CODE_DTYPES:        # torch cannot compare uint16..64 or complex
        raise TypeError(f"codes must be integer ids, got dtype {codes.dtype}; pass "
                        "codes.long()")
    if codes.numel() and bool((codes < 0).any()):
        raise ValueError(f"codes must be >= 0, got min {int(codes.min())}")
    F = codes.shape[1]
    tokens = torch.zeros(F + 1, K + 1, dtype=torch.int64)
    tokens[:F, :K] = codes.T.to(torch.int64).cpu()      # frame f -> row f; last row stays 0
    mask = torch.zeros(F + 1, K + 1, dtype=torch.bool)
    mask[:, :K] = True
    return tokens, mask


# ---- tokenizers ---------------------------------------------------------------------------

def with_csm_template(tokenizer):
    """Make every encode wrap the text in BOS ... EOS, as the official generator does."""
    from tokenizers.processors import TemplateProcessing

    bos_id, eos_id = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    if bos_id is None or eos_id is None:
        raise ValueError(f"the tokenizer has no {BOS} / {EOS} tokens; it is not a Llama-3 "
                         f"tokenizer (use the one in {CSM_REPO} or {TOKENIZER_MIRROR})")
    tokenizer.post_processor = TemplateProcessing(
        single=f"{BOS}:0 $A:0 {EOS}:0",
        pair=f"{BOS}:0 $A:0 {EOS}:0 {BOS}:1 $B:1 {EOS}:1",
        special_tokens=[(BOS, bos_id), (EOS, eos_id)])
    return tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """Byte-level BPE's map from bytes to printable characters (GPT-2's scheme)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def tiny_tokenizer(vocab_size: int = CSMConfig.text_vocab_size):
    """A byte-level tokenizer with Llama-3's special ids, built without any download.

    Id b (0..255) is byte b; ids up to BOS_ID are unused fillers; BOS_ID, EOS_ID and the rest
    of the 256 specials sit where Llama-3 has them. So "[0]Hi" -> 128000, 91, 48, 93, 72,
    105, 128001: the same rows and template as the real tokenizer, only with more tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if vocab_size <= EOS_ID:
        raise ValueError(f"vocab_size={vocab_size} must exceed {EOS_ID} to hold Llama-3's "
                         "special ids")
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    vocab.update({f"<|filler_{i}|>": i for i in range(256, BOS_ID)})
    specials = [BOS, EOS] + [f"<|reserved_special_token_{i}|>"
                             for i in range(vocab_size - BOS_ID - 2)]
    vocab.update({tok: BOS_ID + i for i, tok in enumerate(specials)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials[:2])
    return with_csm_template(tok)


def load_tokenizer(source: str | None = None, mode: str | None = None, token=None):
    """The text tokenizer: `tiny` builds one offline; `real` loads tokenizer.json.

    source: a local folder or file, or a hub repo id (default: $CSM_NB_WEIGHTS, else the
    checkpoint repo, which ships the Llama-3.2 tokenizer, else the ungated mirror).
    """
    from tokenizers import Tokenizer

    mode = resolve_mode(mode)
    if mode == "tiny":
        return tiny_tokenizer()
    source = source or env.text(env.WEIGHTS)
    candidates = [source] if source else [CSM_REPO, TOKENIZER_MIRROR]
    errors = []
    for candidate in candidates:
        try:
            path = _tokenizer_file(candidate, token)
            return with_csm_template(Tokenizer.from_file(path))
        except (OSError, ValueError) as err:
            errors.append(f"{candidate}: {err}")
    if mode == "auto":
        from ..loading.modes import banner
        banner("the tokenizer", "; ".join(errors))
        return tiny_tokenizer()
    raise OSError("could not load the Llama-3.2 tokenizer. " + " | ".join(errors) +
                  f" Fix: accept the terms of {CSM_REPO} on huggingface.co and log in "
                  f"(`huggingface-cli login` or $HF_TOKEN), use the ungated mirror "
                  f"{TOKENIZER_MIRROR}, or pass a local folder holding tokenizer.json")


def _tokenizer_file(source: str, token) -> str:
    if os.path.isdir(source):
        path = os.path.join(source, "tokenizer.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no tokenizer.json in the folder {source}")
        return path
    if os.path.isfile(source):
        return source
    from ..loading.weights import hub_file
    return hub_file(source, "tokenizer.json", token=token)
