"""Text and audio as frame rows: what the backbone reads, and the one check of them.

A row has C = K + 1 columns: K Mimi codebooks, then one text token. A text row activates
only the text column; an audio row only the K codebook columns. A segment's rows are its
text rows (BOS, the tokens of "[speaker]text", EOS), its audio frames, and one all-zero
audio row that marks the end of its audio.
"""

from __future__ import annotations

import torch

from .config import CSMConfig

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


def turn_rows(tokenizer, text: str, speaker: int, codes: torch.Tensor | None = None,
              num_codebooks: int = _DEFAULT_K):
    """Rows of one conversation turn: its text rows, then (when it has audio codes [K, F])
    its frame rows and the end-of-audio row. The unit every prompt and training example is
    packed from: (tokens [S, K+1], mask [S, K+1])."""
    tokens, mask = text_rows(tokenizer, text, speaker, num_codebooks)
    if codes is None:
        return tokens, mask
    audio, audio_mask = audio_rows(codes, num_codebooks)
    return torch.cat([tokens, audio]), torch.cat([mask, audio_mask])


# ---- the one check of rows ------------------------------------------------------------------

def check_rows(cfg: CSMConfig, tokens, mask, where: str) -> None:
    """Rows as the model reads them, checked before any lookup (an IndexError deep inside an
    embedding names nothing). where: "generate_codes" takes [S, C] or [B, S, C]; anything
    else ("CSM.forward", "csm_loss") takes batches [B, S, C]. One host sync for the id ranges.
    """
    C, K = cfg.num_columns, cfg.num_codebooks
    batched_only = where != "generate_codes"
    for name, t in (("tokens", tokens), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}; build rows "
                            "with csm_nb.text_rows / csm_nb.audio_rows")
        if t.dim() not in ((3,) if batched_only else (2, 3)) or t.shape[-1] != C or 0 in t.shape:
            expected = (f"{where} takes [B, S, {C}] with B, S >= 1 (add a batch axis with "
                        "tokens[None])" if batched_only else
                        f"expected [S, {C}] or [B, S, {C}] with B, S >= 1 ({K} codebook "
                        "columns + 1 text column)")
            raise ValueError(f"{name} has shape {tuple(t.shape)}; {expected}")
        if t.is_meta:
            raise ValueError(f"{name} is a meta tensor (a shape without values); build rows "
                             "with csm_nb.text_rows / csm_nb.audio_rows")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens must be int64 ids, got dtype {tokens.dtype}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    if tokens.shape != mask.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and mask {tuple(mask.shape)} must have "
                         "the same shape")
    if tokens.shape[-2] > cfg.max_seq_len:
        raise ValueError(f"tokens has {tokens.shape[-2]} rows; the model sees at most "
                         f"{cfg.max_seq_len} (config.max_seq_len)")
    V = cfg.audio_vocab_size
    audio, text = tokens[..., :K], tokens[..., K]
    bad_audio, bad_text = (audio < 0) | (audio >= V), (text < 0) | (text >= cfg.text_vocab_size)
    if bool(bad_audio.any() | bad_text.any()):               # the one host sync
        if bool(bad_audio.any()):
            raise ValueError(f"tokens: audio columns 0..{K - 1} hold ids outside 0..{V - 1} "
                             f"(min {int(audio.min())}, max {int(audio.max())}); audio codes "
                             "come from the codec and unused columns must be 0 (a codec whose "
                             "codebook size does not match config.audio_vocab_size?)")
        raise ValueError(f"tokens: text column {K} holds ids outside "
                         f"0..{cfg.text_vocab_size - 1} (min {int(text.min())}, max "
                         f"{int(text.max())}); use the model's tokenizer (csm_nb.load_tokenizer)")
