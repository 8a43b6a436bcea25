"""A toy codec with Mimi's shape, learned in seconds: RVQ over log-mel frames, Griffin-Lim back.

Mimi is a neural network trained on a vast speech corpus. This codec has no network at all, yet
it has the same *interface*: 24 kHz audio in, a [K, F] grid of integer codes out at 12.5 frames
per second (one frame = 1920 samples = 80 ms), K residual levels, any prefix of levels decodes.

    encode: audio -> log-mel spectrogram (10 ms hops) -> stack the 8 hops of each 80 ms frame
            into one vector -> residual VQ: level 0 picks the nearest of N centroids, level 1
            the nearest to what is left over, ... -> K codes per frame
    decode: codes -> sum of the chosen centroids -> log-mel -> linear spectrogram (pseudo-
            inverse of the mel filters) -> Griffin-Lim (librosa) finds a phase -> audio

`ToyCodec().fit(clips)` learns the centroids with k-means, level by level, on the clips' frames
(and on copies shifted by fractions of a frame, so it sees more than one framing of each sound).
It is deterministic for a given seed. It copies what it has heard well and anything else
roughly: a lesson in why Mimi needs its training data.

Shapes: T samples, F frames, K levels, N centroids per level, D = hops x mels per frame vector.
"""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import torch

from .signal import prepare_audio
from ..core.config import FRAME_RATE, SAMPLE_RATE, CSMConfig



_PEAK_LIMIT = 10 ** (-1 / 20)      # -1 dBFS: the loudest sample a decoded clip may have


@contextlib.contextmanager
def _one_thread():
    """k-means and encoding are many small ops: on a busy 2-core machine, handing each one to
    two threads costs far more than it saves (measured: 1.7 s vs 15 s for one fit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding then Lloyd iterations: x [M, D] -> centroids [k, D].

    Squared distances are |x|^2 - 2 x.c + |c|^2 (one matmul), much faster than x - c on a CPU.
    """
    x2 = (x * x).sum(1)                                                    # [M]
    first = int(torch.randint(x.shape[0], (1,), generator=generator))
    chosen = [first]
    d = (x2 - 2 * x @ x[first] + x2[first]).clamp(min=0)                   # [M] to nearest
    for _ in range(1, k):
        # k-means++: a new seed far from the others is likelier. If every point already sits
        # on a seed (fewer distinct points than k), any point will do.
        weights = d if bool(d.sum() > 0) else torch.ones_like(d)
        i = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(i)
        d = torch.minimum(d, (x2 - 2 * x @ x[i] + x2[i]).clamp(min=0))
    centroids = x[chosen].clone()                                          # [k, D]
    for _ in range(iters):
        assign = nearest(x, centroids)                                     # [M]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of each row: x [M, D], centroids [N, D] -> [M]."""
    return ((centroids * centroids).sum(1) - 2 * x @ centroids.T).argmin(1)


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")


class ToyCodec:
    """Audio <-> [K, F] codes like `csm_nb.audio.mimi.Codec`: `ToyCodec().fit(clips)`."""

    mode = "toy"
    num_semantic = 0     # no level is trained to carry the words: all levels are "acoustic"

    def __init__(self, config: CSMConfig | None = None, n_mels: int = 80,
                 hops_per_frame: int = 8, griffin_lim_iters: int = 32):
        """An empty codec with the config's frame layout; `fit` learns its codebooks."""
        self.sample_rate: int = config.sample_rate if config else SAMPLE_RATE             # 24000
        self.frame_rate: float = config.frame_rate if config else FRAME_RATE              # 12.5
        self.samples_per_frame: int = round(self.sample_rate / self.frame_rate)           # 1920
        for name, value in (("n_mels", n_mels), ("hops_per_frame", hops_per_frame),
                            ("griffin_lim_iters", griffin_lim_iters)):
            _check_positive(name, value)
        if self.samples_per_frame % hops_per_frame:
            raise ValueError(f"hops_per_frame={hops_per_frame} must divide the "
                             f"{self.samples_per_frame} samples of a frame (try 4 or 8)")
        self.hop = self.samples_per_frame // hops_per_frame     # 240 samples = 10 ms
        self.n_fft = 4 * self.hop                               # 40 ms windows
        self.n_mels, self.hops_per_frame = n_mels, hops_per_frame
        self.griffin_lim_iters = griffin_lim_iters
        import torchaudio.functional as AF
        self.mel_filters = AF.melscale_fbanks(                  # [n_fft/2 + 1, mels]
            self.n_fft // 2 + 1, 0.0, self.sample_rate / 2, n_mels, self.sample_rate,
            norm="slaney", mel_scale="slaney")
        self.mel_inverse = torch.linalg.pinv(self.mel_filters.T)  # [n_fft/2 + 1, mels]
        # Set by fit():
        self.codebooks: torch.Tensor | None = None               # [K, N, D]
        self.num_codebooks: int = 0
        self.codebook_size: int = 0
        self.floor_db: float = -math.inf                         # quietest level kept
        self.seed: int = 0

    # ---- the Codec interface -------------------------------------------------------------

    def __repr__(self) -> str:
        if self.codebooks is None:
            return f"ToyCodec(not fitted; {self.frame_rate} Hz, {self.samples_per_frame} samples)"
        return (f"ToyCodec({self.num_codebooks} levels x {self.codebook_size} centroids of "
                f"{self.codebooks.shape[2]} numbers ({self.hops_per_frame} x {self.n_mels}-mel "
                f"hops) at {self.frame_rate} Hz, {self.samples_per_frame} samples per frame)")

    def num_frames(self, num_samples: int) -> int:
        """F = ceil(T / 1920), as Mimi: the last partial frame is padded with silence."""
        return math.ceil(num_samples / self.samples_per_frame)

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Bits per second: frame rate x levels x log2(centroids)."""
        n = self._levels(num_codebooks)
        return self.frame_rate * n * math.log2(self.codebook_size)

    def encode(self, wav, sample_rate: int) -> torch.Tensor:
        """wav: [T] or [C, T], any rate -> int64 codes [K, F]."""
        with _one_thread():
            return self.quantize(self.features(wav, sample_rate))

    def decode(self, codes, num_codebooks: int | None = None) -> torch.Tensor:
        """codes [K, F] (or [B, K, F]) -> float32 audio [F * 1920] (or [B, F * 1920]),
        from levels 0..n-1 only when num_codebooks=n."""
        codes = self._check_codes(codes)
        if codes.dim() == 3:
            return torch.stack([self.decode(c, num_codebooks) for c in codes])
        return self.features_to_audio(self.dequantize(codes, num_codebooks))

    def stream(self, num_codebooks: int | None = None) -> "ToyCodecStream":
        """Chunk-by-chunk decoding, as Codec.stream: each chunk is decoded on its own (Griffin-
        Lim has no state to carry), so chunk edges can click; the lengths are exact."""
        self._levels(num_codebooks)
        return ToyCodecStream(self, num_codebooks)

    # ---- saving and loading ----------------------------------------------------------------

    _SETTINGS = ("n_mels", "hops_per_frame", "griffin_lim_iters", "num_codebooks",
                 "codebook_size", "floor_db", "seed", "sample_rate", "frame_rate")

    def save(self, path, dtype: torch.dtype = torch.float16) -> None:
        """Centroids as safetensors (float16 keeps them to ~0.03 dB, far below the codec's own
        error) with the settings that rebuild the codec as metadata. Never a pickle."""
        from safetensors.torch import save_file
        self._check_fitted()
        meta = {k: json.dumps(getattr(self, k)) for k in self._SETTINGS}
        save_file({"codebooks": self.codebooks.to(dtype).contiguous()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path) -> ToyCodec:
        """A codec saved by `save`."""
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            meta = {k: json.loads(v) for k, v in f.metadata().items()}
            books = f.get_tensor("codebooks").float()
        codec = cls(n_mels=meta["n_mels"], hops_per_frame=meta["hops_per_frame"],
                    griffin_lim_iters=meta["griffin_lim_iters"])
        if (codec.sample_rate, codec.frame_rate) != (meta["sample_rate"], meta["frame_rate"]):
            raise ValueError(f"{path}: a codec for {meta['sample_rate']} Hz at "
                             f"{meta['frame_rate']} frames/s; this csm_nb uses "
                             f"{codec.sample_rate} Hz at {codec.frame_rate}")
        codec.codebooks = books
        codec.num_codebooks, codec.codebook_size = books.shape[0], books.shape[1]
        codec.floor_db, codec.seed = meta["floor_db"], meta["seed"]
        return codec

    # ---- the two halves ------------------------------------------------------------------

    def features(self, wav, sample_rate: int, shift: int = 0) -> torch.Tensor:
        """Audio -> frame vectors [F, hops x mels]: log-mel in dB, floored at `floor_db`.

        Vector f holds the 8 spectra (10 ms apart) of samples f*1920 .. (f+1)*1920, one after
        the other. shift: skip this many samples first (fit uses it to see other framings)."""
        return self._frame_vectors(wav, sample_rate, shift).clamp(min=self.floor_db)

    def quantize(self, features: torch.Tensor, num_codebooks: int | None = None):
        """Residual VQ: frame vectors [F, D] -> codes [K, F]."""
        self._check_fitted()
        residual, codes = features.float().clamp(min=self.floor_db), []
        for book in self.codebooks[: self._levels(num_codebooks)]:           # [N, D]
            code = nearest(residual, book)                                  # [F]
            codes.append(code)
            residual = residual - book[code]
        return torch.stack(codes).long()                                    # [K, F]

    def dequantize(self, codes: torch.Tensor, num_codebooks: int | None = None):
        """Codes [K, F] -> frame vectors [F, D]: the sum of each level's chosen centroid."""
        codes = self._check_codes(codes)[: self._levels(num_codebooks)]
        levels = torch.arange(codes.shape[0])[:, None]                       # [n, 1]
        return self.codebooks[levels, codes].sum(0)                          # [F, D]

    def features_to_audio(self, features: torch.Tensor) -> torch.Tensor:
        """Frame vectors [F, D] -> audio [F * 1920] with librosa's Griffin-Lim."""
        import librosa
        F = features.shape[0]
        if F == 0:
            return torch.zeros(0)
        db = features.reshape(F * self.hops_per_frame, self.n_mels).T        # [mels, F*hops]
        # At the floor means "silence": give it no energy at all rather than a faint hiss.
        power = torch.where(db > self.floor_db + 1.0, 10.0 ** (db / 10), 0.0)
        power = torch.cat([power, power[:, -1:]], dim=1)   # a centred STFT has one more hop
        magnitude = (self.mel_inverse @ power).clamp(min=0).sqrt()           # [freqs, hops+1]
        audio = librosa.griffinlim(magnitude.numpy(), n_iter=self.griffin_lim_iters,
                                   hop_length=self.hop, n_fft=self.n_fft,
                                   length=F * self.samples_per_frame, random_state=self.seed)
        audio = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        # Griffin-Lim only guesses a phase; its waves can add up above full scale where the
        # original did not (seen: peaks of 3.4), and players clip that. Scale such a clip down.
        peak = float(audio.abs().max())
        return audio * (_PEAK_LIMIT / peak) if peak > _PEAK_LIMIT else audio

    def quantization_error(self, wav, sample_rate: int, levels) -> list[float]:
        """RMS error in dB of the frame vectors decoded from the first n levels, per n."""
        f = self.features(wav, sample_rate)
        codes = self.quantize(f)
        return [float((self.dequantize(codes, n) - f).pow(2).mean().sqrt()) for n in levels]

    # ---- learning the centroids ---------------------------------------------------------

    def fit(self, clips, sample_rate: int | None = None, num_codebooks: int = 8,
            codebook_size: int = 128, seed: int = 0, shifts: int = 4, kmeans_iters: int = 10,
            dynamic_range_db: float = 80.0) -> ToyCodec:
        """Learn K levels of N centroids from a list of clips (1-D audio at `sample_rate`,
        default 24 kHz); returns self. Level 0 is k-means on the frame vectors, level k is
        k-means on what levels 0..k-1 left over. Each clip is also read starting 1/shifts,
        2/shifts, ... of a frame later. Everything quieter than the loudest frame vector
        value minus `dynamic_range_db` counts as silence."""
        sample_rate = sample_rate or self.sample_rate
        if isinstance(clips, (torch.Tensor, np.ndarray)) and clips.ndim == 1:
            clips = [clips]
        if not isinstance(clips, (list, tuple)) or not clips:
            raise TypeError(f"clips must be a non-empty list of 1-D audio arrays, got "
                            f"{type(clips).__name__}")
        for name, value in (("num_codebooks", num_codebooks), ("codebook_size", codebook_size),
                            ("shifts", shifts), ("kmeans_iters", kmeans_iters)):
            _check_positive(name, value)
        if codebook_size < 2:
            raise ValueError(f"codebook_size={codebook_size} must be >= 2: one code must stay "
                             "free for CSM's end-of-audio frame (see _avoid_stop_frame)")
        step = self.samples_per_frame // shifts
        with _one_thread():
            x = torch.cat([self._frame_vectors(c, sample_rate, shift=s * step)
                           for c in clips for s in range(shifts)])          # [M, D]
            if x.shape[0] < codebook_size:
                raise ValueError(f"the clips give {x.shape[0]} frame vectors, fewer than "
                                 f"codebook_size={codebook_size}: give more audio or a "
                                 "smaller codebook_size")
            floor_db = float(x.max()) - dynamic_range_db
            residual = x.clamp(min=floor_db)
            generator = torch.Generator().manual_seed(seed)
            books = []
            for _ in range(num_codebooks):
                book = kmeans(residual, codebook_size, kmeans_iters, generator)  # [N, D]
                residual = residual - book[nearest(residual, book)]
                books.append(book)
            # Only now, with nothing left to fail, does the codec change.
            self.codebooks = torch.stack(books)                             # [K, N, D]
            self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
            self.floor_db, self.seed = floor_db, seed
            self._avoid_stop_frame(x)
        return self

    def _avoid_stop_frame(self, x: torch.Tensor) -> None:
        """CSM reads an all-zero frame as "end of audio". Silence is common and identical in
        every clip, so k-means may well give it code 0 at every level; relabel the last level
        (swapping two centroids changes nothing else) so no training frame is all zeros."""
        codes = self.quantize(x)                                            # [K, M]
        zero_prefix = (codes[:-1] == 0).all(0)
        used = set(codes[-1, zero_prefix].tolist())
        if 0 in used:
            free = min(set(range(self.codebook_size)) - used)
            last = self.codebooks[-1]
            last[[0, free]] = last[[free, 0]]

    # ---- input checks ---------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if self.codebooks is None:
            raise RuntimeError("this ToyCodec has no codebooks yet: call "
                               "codec.fit(clips) first (a list of 1-D 24 kHz clips)")

    def _levels(self, n) -> int:
        self._check_fitted()
        if n is None:
            return self.num_codebooks
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.num_codebooks:
            raise ValueError(f"num_codebooks={n!r} must be an int in 1..{self.num_codebooks}")
        return n

    def _check_codes(self, codes) -> torch.Tensor:
        self._check_fitted()
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"codes must be a torch.Tensor [K, F], got {type(codes).__name__}")
        if codes.dim() not in (2, 3) or codes.shape[-2] > self.num_codebooks:
            raise ValueError(f"codes has shape {tuple(codes.shape)}; expected [K, F] or "
                             f"[B, K, F] with K <= {self.num_codebooks}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be integer ids, got dtype {codes.dtype}")
        if codes.numel() and bool((codes < 0).any() | (codes >= self.codebook_size).any()):
            raise ValueError(f"codes hold ids outside 0..{self.codebook_size - 1} (min "
                             f"{int(codes.min())}, max {int(codes.max())}); a CSM trained on "
                             "this codec can emit its few extra ids: clamp or drop them")
        return codes.long().cpu()

    def _frame_vectors(self, wav, sample_rate: int, shift: int = 0) -> torch.Tensor:
        """Audio -> unfloored frame vectors [F, hops x mels]."""
        x = prepare_audio(wav, sample_rate, self.sample_rate)[shift:]       # [T]
        F = self.num_frames(x.shape[0])
        x = torch.nn.functional.pad(x, (0, F * self.samples_per_frame - x.shape[0]))
        mel = self._log_mel(x)[: F * self.hops_per_frame]                    # [F*hops, mels]
        return mel.reshape(F, -1)                                           # [F, D]

    def _log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """[T] -> [hops, mels] log-mel power in dB (centred STFT, Hann window)."""
        window = torch.hann_window(self.n_fft)
        spec = torch.stft(x, self.n_fft, self.hop, window=window, return_complex=True)
        mel = self.mel_filters.T @ spec.abs().pow(2)                          # [mels, hops]
        return (10 * torch.log10(mel.clamp(min=1e-10))).T


class ToyCodecStream:
    """What a stream of frames needs from a codec: decode(codes [K, f]) -> audio [f * 1920]."""

    def __init__(self, codec: ToyCodec, num_codebooks: int | None = None):
        self.codec, self.num_codebooks = codec, num_codebooks

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(codes, self.num_codebooks)
