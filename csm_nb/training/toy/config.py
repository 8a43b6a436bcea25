"""The toy CSM: CSM-1B's structure, about 1,000x narrower, for a toy codec's codes."""

from __future__ import annotations

from ...core.config import AUDIO_SPECIAL_IDS, CSMConfig, LlamaConfig


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
