"""csm_nb: Sesame's CSM-1B in plain PyTorch, for learning how it makes speech.

Importing this package reads no environment variable, loads no weights and touches no
network; everything that does is a function call.
"""

from . import data
from .audio.mimi import Codec, CodecStream, MimiUnavailable
from .audio.mimi_weights import load_codec
from .audio.signal import load_audio
from .core.config import CSMConfig, LlamaConfig
from .core.generate import STOP, FrameInfo, generate_codes
from .core.model import CSM
from .core.rows import audio_rows, text_rows
from .loading.tokenizer import load_tokenizer, tiny_tokenizer
from .core.sampling import sample_topk
from .loading.modes import notebook_mode
from .loading.weights import from_pretrained, load_model, tiny_model
from .speech.budget import ContextBudget
from .speech.generator import Generator, load_generator
from .speech.segment import Segment
from .speech.streaming import RunawayGuard

CSM.from_pretrained = staticmethod(from_pretrained)

__all__ = [
    "CSM", "CSMConfig", "Codec", "CodecStream", "ContextBudget", "FrameInfo", "Generator",
    "LlamaConfig", "MimiUnavailable", "RunawayGuard", "STOP", "Segment", "audio_rows", "data",
    "from_pretrained", "generate_codes", "load_audio", "load_codec", "load_generator",
    "load_model", "load_tokenizer", "notebook_mode", "sample_topk", "text_rows", "tiny_model",
    "tiny_tokenizer",
]
