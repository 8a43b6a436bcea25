"""The text tokenizer: Llama-3.2's BPE with CSM's BOS+EOS template, or a tiny offline one.

Real mode reads `tokenizer.json` (from $CSM_NB_WEIGHTS, the gated checkpoint repo, or the
ungated mirror) with the `tokenizers` library; tiny mode builds a byte-level tokenizer with the
same special ids offline. Either way `tokenizer.encode("[0]Hello").ids` starts with BOS and ends
with EOS, as the official code's template makes it.
"""

from __future__ import annotations

import os

from .. import env
from ..core.config import CSMConfig
from .modes import CSM_REPO, resolve_mode

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
BOS_ID, EOS_ID = 128_000, 128_001
BYTE_IDS = 256                                # the byte tokenizer's ids 0..255 are bytes
TOKENIZER_MIRROR = "unsloth/Llama-3.2-1B"     # ungated copy of the same tokenizer

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

    Id b (0..BYTE_IDS-1) is byte b; ids up to BOS_ID are unused fillers; BOS_ID, EOS_ID and the rest
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
    """The text tokenizer: `toy` and `tiny` build the byte tokenizer offline; `real` loads
    Llama-3.2's tokenizer.json.

    source: a local folder or file, or a hub repo id (default: $CSM_NB_WEIGHTS, else the
    checkpoint repo, which ships the Llama-3.2 tokenizer, else the ungated mirror).
    """
    from tokenizers import Tokenizer

    mode = resolve_mode(mode)
    if mode in ("toy", "tiny"):
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
        from .modes import banner
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
    from .hub import hub_file
    return hub_file(source, "tokenizer.json", token=token)
