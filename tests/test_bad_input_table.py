"""docs/bad-input.md is a contract: every row is called here and must fail as documented.

Each row of the table names a case id, an error type and a verbatim piece of the message.
`CASES` below maps each id to the call that makes it; the test runs the call and checks the
type and the message against the table (so the table cannot drift from the code), and that
table and `CASES` name exactly the same ids. CLI rows document `exit 2` and a piece of what
`python -m csm_nb` prints on stderr.
"""

from __future__ import annotations

import builtins
import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
import tokenizers
import torch

import csm_nb
from csm_nb.audio import signal as audio_io
from csm_nb.speech import prompts
from csm_nb.audio.mimi_weights import load_codec
from csm_nb.audio.signal import load_audio
from csm_nb.apps.cli import main
from csm_nb.speech.generator import Generator
from csm_nb.speech.segment import Segment
from csm_nb.speech.streaming import RunawayGuard
from helpers import micro_config, save_state

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
ROW = re.compile(r"^\|\s*`(?P<id>[a-z0-9-]+)`\s*\|")
SR = 24_000


def parse_table(text: str) -> list[dict]:
    """Rows of the bad-input table: id, function, input, error, message (pipes may be \\|)."""
    rows = []
    for line in text.splitlines():
        if not ROW.match(line):
            continue
        cells = [c.strip().replace("\\|", "|")
                 for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        assert len(cells) == 5, f"a table row needs 5 cells: {line}"
        ident, function, given, error, message = cells
        rows.append({"id": ident.strip("`"), "function": function, "input": given,
                     "error": error.strip("`"), "message": message.strip("`")})
    return rows


ROWS = parse_table(DOC.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ shared objects

def save_micro(folder: Path) -> Path:
    """Only model.safetensors (no config.json) of a micro CSM: 64 positions, 300 text ids."""
    save_state(folder / "model.safetensors",
               csm_nb.CSM(micro_config(max_seq_len=64, text_vocab_size=300)))
    return folder


@pytest.fixture
def env(gen, tmp_path, monkeypatch, capsys):
    """What a case may use: the tiny model, tokenizer, codec and generator (conftest's `gen`,
    fresh for each case), rows of "Hello.", a temp folder, monkeypatch and capsys."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))   # never a real cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CSM_NB_WEIGHTS", raising=False)
    monkeypatch.delenv("CSM_NB_MIMI", raising=False)
    return types.SimpleNamespace(model=gen.model, tok=gen.tokenizer, codec=gen.codec, gen=gen,
                                 rows=csm_nb.text_rows(gen.tokenizer, "Hello.", 0),
                                 tmp=tmp_path, mp=monkeypatch, capsys=capsys)


def gen_codes(e, tokens=None, mask=None, **kw):
    t, m = e.rows
    return csm_nb.generate_codes(e.model, t if tokens is None else tokens,
                                 m if mask is None else mask, **{"max_frames": 1, **kw})


def speak(e, **kw):
    args = dict(text="Hello.", speaker=0, max_audio_length_ms=80, progress=False) | kw
    return e.gen.generate(**args)


def cli(e, *argv):
    """Run the CLI in tiny mode; -> its exit code (argparse's SystemExit included)."""
    out = str(e.tmp / "out.wav")
    argv = [a.format(out=out, tmp=e.tmp) for a in argv] + ["--mode", "tiny", "--quiet"]
    try:
        code = main(argv)
    except SystemExit as done:
        code = done.code
    assert not Path(out).exists(), "a failed command must not write its output"
    return code


def state_dict(e) -> dict:
    return dict(e.model.state_dict())


def raise_from_hub(e, error):
    import huggingface_hub

    def download(*args, **kwargs):
        raise error
    e.mp.setattr(huggingface_hub, "hf_hub_download", download)
    return csm_nb.from_pretrained("sesame/csm-1b", device="cpu")


def gated(e):
    from huggingface_hub.errors import GatedRepoError
    return raise_from_hub(e, GatedRepoError("403 Client Error: access is restricted"))


def unreachable(e):
    import requests
    return raise_from_hub(e, requests.ConnectionError("Failed to resolve 'huggingface.co'"))


def truncated(e):
    folder = save_micro(e.tmp / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return csm_nb.from_pretrained(str(folder), device="cpu")


def wrong_size(e):
    return csm_nb.from_pretrained(str(save_micro(e.tmp / "m")), device="cpu")   # no config.json


def bad_config_json(e):
    folder = save_micro(e.tmp / "m")
    (folder / "config.json").write_text("{'hidden_size': 16,}")              # Python, not JSON
    return csm_nb.from_pretrained(str(folder), device="cpu")


def config_of_wrong_kind(e):
    folder = save_micro(e.tmp / "m")
    (folder / "config.json").write_text(json.dumps({"hidden_size": 16, "num_attention_heads": 3}))
    return csm_nb.from_pretrained(str(folder), device="cpu")


def cuda_missing(e):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    return csm_nb.tiny_model(device="cuda")


def file_with(e, name, data: bytes) -> str:
    path = e.tmp / name
    path.write_bytes(data)
    return str(path)


class ListTokenizer:
    """What a transformers tokenizer looks like to text_rows: encode() -> list of ids."""

    def encode(self, text):
        return [1, 2, 3]


class WrongCodec:
    sample_rate, num_codebooks, codebook_size, mode = SR, 8, 2048, "stub"


def wrong_watermark(e):
    e.gen.watermark = lambda audio, rate: audio[:-1]
    try:
        return speak(e, seed=0)
    finally:
        e.gen.watermark = None


def index_fill(t, column, value):
    return t.index_fill(1, torch.tensor([column]), value)


# ------------------------------------------------------------------ the cases

CASES = {
    # CSM, its config and its weights
    "csm-config-type": lambda e: csm_nb.CSM({"num_codebooks": 32}),
    "llama-config-heads": lambda e: csm_nb.LlamaConfig(1, 3, 1, 32, 64, 16),
    "csm-config-codebooks": lambda e: csm_nb.CSMConfig(
        backbone=csm_nb.CSMConfig.tiny().backbone, decoder=csm_nb.CSMConfig.tiny().decoder,
        num_codebooks=65),
    "state-dict-missing": lambda e: csm_nb.CSM(csm_nb.CSMConfig.tiny()).load_state_dict(
        {k: v for k, v in state_dict(e).items() if k != "audio_head"}),
    "state-dict-shape": lambda e: csm_nb.CSM(csm_nb.CSMConfig.tiny()).load_state_dict(
        state_dict(e) | {"projection.weight": torch.zeros(3, 3)}),
    "state-dict-list": lambda e: e.model.load_state_dict([1, 2]),
    "state-dict-numpy": lambda e: e.model.load_state_dict(
        state_dict(e) | {"projection.weight": np.zeros((64, 128), np.float32)}),
    "state-dict-transformers": lambda e: e.model.load_state_dict(
        {"backbone_model.norm.weight": torch.ones(4)}),
    "state-dict-cache-masks": lambda e: csm_nb.CSM(csm_nb.CSMConfig.tiny()).load_state_dict(
        state_dict(e) | {"backbone_causal_mask": torch.ones(2, 2, dtype=torch.bool)}),
    "forward-2d": lambda e: e.model(*e.rows),
    "forward-ids": lambda e: e.model(index_fill(e.rows[0], 32, 10 ** 6)[None], e.rows[1][None]),
    "forward-too-long": lambda e: e.model(torch.zeros(1, 2049, 33, dtype=torch.long),
                                          torch.ones(1, 2049, 33, dtype=torch.bool)),
    # generate_codes
    "gen-model-type": lambda e: csm_nb.generate_codes(torch.nn.Linear(2, 2), *e.rows),
    "gen-tokens-list": lambda e: gen_codes(e, tokens=e.rows[0].tolist()),
    "gen-tokens-columns": lambda e: gen_codes(e, e.rows[0][:, :32], e.rows[1][:, :32]),
    "gen-tokens-empty": lambda e: gen_codes(e, e.rows[0][:0], e.rows[1][:0]),
    "gen-tokens-float": lambda e: gen_codes(e, tokens=e.rows[0].float()),
    "gen-mask-long": lambda e: gen_codes(e, mask=e.rows[1].long()),
    "gen-shape-mismatch": lambda e: gen_codes(e, mask=e.rows[1][:-1]),
    "gen-audio-id": lambda e: gen_codes(e, tokens=index_fill(e.rows[0], 3, 2051)),
    "gen-text-id": lambda e: gen_codes(e, tokens=index_fill(e.rows[0], 32, 128_256)),
    "gen-mask-empty": lambda e: gen_codes(e, mask=torch.zeros_like(e.rows[1])),
    "gen-mask-gap": lambda e: gen_codes(e, mask=torch.cat(
        [e.rows[1][:2], torch.zeros_like(e.rows[1][:1]), e.rows[1][3:]])),
    "gen-max-frames-zero": lambda e: gen_codes(e, max_frames=0),
    "gen-max-frames-float": lambda e: gen_codes(e, max_frames=2.0),
    "gen-max-frames-window": lambda e: gen_codes(e, max_frames=2038),
    "gen-topk-zero": lambda e: gen_codes(e, topk=0),
    "gen-topk-float": lambda e: gen_codes(e, topk=2.5),
    "gen-temperature-negative": lambda e: gen_codes(e, temperature=-0.1),
    "gen-temperature-nan": lambda e: gen_codes(e, temperature=float("nan")),
    "gen-temperature-str": lambda e: gen_codes(e, temperature="hot"),
    "gen-generator": lambda e: gen_codes(e, generator=3),
    "gen-backend": lambda e: gen_codes(e, backend="fast"),
    # text_rows, audio_rows, tokenizers
    "text-empty": lambda e: csm_nb.text_rows(e.tok, "   ", 0),
    "text-not-str": lambda e: csm_nb.text_rows(e.tok, None, 0),
    "text-surrogate": lambda e: csm_nb.text_rows(e.tok, "Hi \ud83d", 0),
    "text-speaker": lambda e: csm_nb.text_rows(e.tok, "Hi", -1),
    "text-num-codebooks": lambda e: csm_nb.text_rows(e.tok, "Hi", 0, 0),
    "text-tokenizer-type": lambda e: csm_nb.text_rows("llama", "Hi", 0),
    "text-tokenizer-transformers": lambda e: csm_nb.text_rows(ListTokenizer(), "Hi", 0),
    "audio-rows-list": lambda e: csm_nb.audio_rows([[1, 2]]),
    "audio-rows-1d": lambda e: csm_nb.audio_rows(torch.zeros(32, dtype=torch.long)),
    "audio-rows-float": lambda e: csm_nb.audio_rows(torch.zeros(32, 3)),
    "audio-rows-uint64": lambda e: csm_nb.audio_rows(torch.zeros(32, 3, dtype=torch.uint64)),
    "audio-rows-negative": lambda e: csm_nb.audio_rows(torch.full((32, 3), -1)),
    "tokenizer-offline": lambda e: csm_nb.load_tokenizer(mode="real"),
    "tokenizer-not-llama": lambda e: csm_nb.loading.tokenizer.with_csm_template(
        tokenizers.Tokenizer(tokenizers.models.BPE())),
    # Codec
    "codec-mode": lambda e: load_codec("huge"),
    "codec-dtype": lambda e: load_codec("tiny", dtype=torch.int32),
    "codec-tiny-source": lambda e: load_codec("tiny", source=e.tmp),
    "codec-pickle": lambda e: load_codec("real", device="cpu",
                                           source=file_with(e, "mimi.pt", b"pickle")),
    "codec-missing": lambda e: load_codec("real", device="cpu",
                                            source=e.tmp / "nope.safetensors"),
    "codec-offline": lambda e: load_codec("real", device="cpu"),
    "encode-empty": lambda e: e.codec.encode(np.zeros(0, np.float32), SR),
    "encode-nan": lambda e: e.codec.encode(np.array([0.1, np.nan, 0.2], np.float32), SR),
    "encode-channels": lambda e: e.codec.encode(np.zeros((3, 100), np.float32), SR),
    "encode-no-channels": lambda e: e.codec.encode(np.zeros((0, 100), np.float32), SR),
    "encode-transposed": lambda e: e.codec.encode(np.zeros((100, 2), np.float32), SR),
    "encode-list": lambda e: e.codec.encode([0.0, 0.1], SR),
    "encode-int64": lambda e: e.codec.encode(torch.zeros(10, dtype=torch.int64), SR),
    "encode-bool": lambda e: e.codec.encode(np.zeros(10, bool), SR),
    "encode-big-endian": lambda e: e.codec.encode(np.zeros(10, ">f4"), SR),
    "encode-rate-zero": lambda e: e.codec.encode(np.zeros(10, np.float32), 0),
    "encode-rate-inf": lambda e: e.codec.encode(np.zeros(10, np.float32), float("inf")),
    "encode-rate-str": lambda e: e.codec.encode(np.zeros(10, np.float32), "24000"),
    "encode-rate-khz": lambda e: e.codec.encode(np.zeros(10, np.float32), 24),
    "encode-rate-typo": lambda e: e.codec.encode(np.zeros(10, np.float32), 24_001),
    "decode-float": lambda e: e.codec.decode(torch.zeros(32, 3)),
    "decode-range": lambda e: e.codec.decode(torch.full((32, 3), 2048)),
    "decode-shape": lambda e: e.codec.decode(torch.zeros(3, 33, dtype=torch.long).T),
    "decode-empty-batch": lambda e: e.codec.decode(torch.zeros(0, 32, 3, dtype=torch.long)),
    "decode-uint16": lambda e: e.codec.decode(torch.zeros(32, 3, dtype=torch.uint16)),
    "decode-levels-count": lambda e: e.codec.decode(torch.zeros(32, 2, dtype=torch.long), 0),
    "decode-levels-set": lambda e: e.codec.decode_levels(torch.zeros(32, 2, dtype=torch.long),
                                                         []),
    "decode-stream-batch": lambda e: e.codec.decode_stream(
        torch.zeros(2, 32, 2, dtype=torch.long)),
    "stream-chunk-frames": lambda e: e.codec.encode_stream(np.zeros(10, np.float32), SR, 0),
    "load-audio-missing": lambda e: load_audio(e.tmp / "nope.wav"),
    "load-audio-garbage": lambda e: load_audio(file_with(e, "x.wav", b"not audio" * 20)),
    # WAV files
    "write-wav-nan": lambda e: audio_io.write_wav(e.tmp / "x.wav", torch.tensor([float("nan")]),
                                                  SR),
    "write-wav-stereo": lambda e: audio_io.write_wav(e.tmp / "x.wav", torch.zeros(2, 10), SR),
    "write-wav-rate": lambda e: audio_io.write_wav(e.tmp / "x.wav", torch.zeros(10), 0),
    "write-wav-folder": lambda e: audio_io.write_wav(e.tmp / "nope" / "x.wav", torch.zeros(10),
                                                     SR),
    "read-wav-garbage": lambda e: audio_io.read_wav(file_with(e, "x.wav", b"RIFF0000" * 8)),
    # Segment
    "segment-speaker-range": lambda e: Segment(10, "Hi"),
    "segment-speaker-type": lambda e: Segment("A", "Hi"),
    "segment-text-empty": lambda e: Segment(0, " \n"),
    "segment-text-surrogate": lambda e: Segment(0, "\udc00"),
    "segment-stereo": lambda e: Segment(0, "Hi", torch.zeros(2, 4800)),
    "segment-int16": lambda e: Segment(0, "Hi", torch.zeros(10, dtype=torch.int16)),
    "segment-numpy-object": lambda e: Segment(0, "Hi", np.array([None, 0.1])),
    "segment-nan": lambda e: Segment(0, "Hi", torch.tensor([0.0, float("nan")])),
    "segment-empty": lambda e: Segment(0, "Hi", torch.zeros(0)),
    "segment-rate-none": lambda e: Segment(0, "Hi", torch.zeros(10), None),
    "segment-rate-inf": lambda e: Segment(0, "Hi", torch.zeros(10), float("inf")),
    "segment-rate-fraction": lambda e: Segment(0, "Hi", torch.zeros(10), 22_050.5),
    # Generator
    "generator-model-type": lambda e: Generator("csm", e.tok, e.codec),
    "generator-codec-mismatch": lambda e: Generator(e.model, e.tok, WrongCodec()),
    "generate-ms-zero": lambda e: speak(e, max_audio_length_ms=0),
    "generate-ms-short": lambda e: speak(e, max_audio_length_ms=50),
    "generate-ms-str": lambda e: speak(e, max_audio_length_ms="10s"),
    "generate-text-empty": lambda e: speak(e, text=" "),
    "generate-speaker": lambda e: speak(e, speaker=12),
    "generate-temperature": lambda e: speak(e, temperature=-1.0),
    "generate-topk": lambda e: speak(e, topk=0),
    "generate-seed-type": lambda e: speak(e, seed="1"),
    "generate-seed-huge": lambda e: speak(e, seed=2 ** 64),
    "generate-context-segment": lambda e: speak(e, context=Segment(0, "Hi")),
    "generate-context-item": lambda e: speak(e, context=[("Hi", 0)]),
    "generate-guard-type": lambda e: speak(e, runaway_guard="on"),
    "generate-guard-frames": lambda e: RunawayGuard(silent_frames=0),
    "generate-text-too-long": lambda e: speak(e, text="word " * 300,
                                              max_audio_length_ms=(2048 - 1000) * 80),
    "generate-strict": lambda e: speak(e, context=[Segment(0, "Hi", torch.zeros(4 * 1920))],
                                       max_audio_length_ms=(2048 - 20) * 80, strict=True),
    "generate-watermark": wrong_watermark,
    "stream-chunk-frames-gen": lambda e: e.gen.generate_stream("Hi", 0, chunk_frames=0),
    "conversation-turn": lambda e: e.gen.generate_conversation([("Hi",)]),
    "conversation-late-turn": lambda e: e.gen.generate_conversation([(0, "Hi"), (12, "Yo")]),
    # Weights: from_pretrained, modes, devices
    "fp-source-type": lambda e: csm_nb.from_pretrained(123),
    "fp-not-a-source": lambda e: csm_nb.from_pretrained("./no/such/folder", device="cpu"),
    "fp-no-weights": lambda e: csm_nb.from_pretrained(str(e.tmp), device="cpu"),
    "fp-offline": lambda e: csm_nb.from_pretrained("sesame/csm-1b", device="cpu"),
    "fp-gated": gated,
    "fp-unreachable": unreachable,
    "fp-truncated": truncated,
    "fp-wrong-size": wrong_size,
    "fp-config-not-json": bad_config_json,
    "fp-config-wrong": config_of_wrong_kind,
    "mode-unknown": lambda e: csm_nb.load_model(mode="fast"),
    "mode-env-unknown": lambda e: (e.mp.setenv("CSM_NB_MODE", "turbo"), csm_nb.load_model()),
    "device-unknown": lambda e: csm_nb.tiny_model(device="gpu0"),
    "device-no-cuda": cuda_missing,
    "dtype-unknown": lambda e: csm_nb.tiny_model(device="cpu", dtype=torch.int8),
    "prompt-unknown": lambda e: prompts.prompt_info("read_speech_x"),
    "prompt-type": lambda e: prompts.prompt_info(3),
    # The command line
    "cli-text-empty": lambda e: cli(e, "say", "  ", "-o", "{out}"),
    "cli-speaker": lambda e: cli(e, "say", "Hi", "--speaker", "11", "-o", "{out}"),
    "cli-max-ms": lambda e: cli(e, "say", "Hi", "--max-ms", "0", "-o", "{out}"),
    "cli-prompt-name": lambda e: cli(e, "say", "Hi", "--prompt", "nope", "-o", "{out}"),
    "cli-prompt-file": lambda e: cli(e, "say", "Hi", "--prompt", "missing.wav | words",
                                     "-o", "{out}"),
    "cli-output-folder": lambda e: cli(e, "say", "Hi", "-o", "{tmp}/no/such/x.wav"),
    "cli-output-is-folder": lambda e: cli(e, "say", "Hi", "-o", "{tmp}"),
    "cli-device": lambda e: cli(e, "say", "Hi", "--device", "gpu0", "-o", "{out}"),
    "cli-mode": lambda e: cli(e, "say", "Hi", "-o", "{out}", "--mode", "fast"),
    "cli-script-missing": lambda e: cli(e, "conversation", "{tmp}/missing.txt", "-o", "{out}"),
    "cli-script-folder": lambda e: cli(e, "conversation", "{tmp}", "-o", "{out}"),
    "cli-script-binary": lambda e: cli(e, "conversation",
                                       file_with(e, "s.txt", b"A: caf\xe9\n"), "-o", "{out}"),
    "cli-script-line": lambda e: cli(e, "conversation", file_with(e, "s.txt", b"A: hi\nB hello"),
                                     "-o", "{out}"),
    "cli-script-speaker": lambda e: cli(e, "conversation", file_with(e, "s.txt", b"K: hello"),
                                        "-o", "{out}"),
    "cli-script-empty": lambda e: cli(e, "conversation", file_with(e, "s.txt", b"# nothing\n"),
                                      "-o", "{out}"),
    "cli-prompt-option": lambda e: cli(e, "conversation", file_with(e, "s.txt", b"A: hi"),
                                       "--prompt", "A:x", "-o", "{out}"),
}


# ------------------------------------------------------------------ the contract

def test_table_and_cases_name_the_same_ids():
    ids = [row["id"] for row in ROWS]
    assert len(ids) == len(set(ids)), "duplicate ids in docs/bad-input.md"
    assert set(ids) == set(CASES), (f"only in the doc: {sorted(set(ids) - set(CASES))}; "
                                    f"only here: {sorted(set(CASES) - set(ids))}")
    assert len(ids) >= 30


def _error_type(name: str):
    if name.startswith("exit "):
        return None
    return getattr(csm_nb, name, None) or getattr(builtins, name, None) or getattr(torch, name)


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_documented_case(row, env):
    case = CASES[row["id"]]
    expected = _error_type(row["error"])
    if expected is None:                                   # a CLI row: exit code + stderr
        assert cli_code(row) == case(env)
        assert row["message"] in env.capsys.readouterr().err
        return
    with pytest.raises(Exception) as raised:
        case(env)
    assert type(raised.value) is expected, (
        f"{row['id']}: documented {row['error']}, raised {type(raised.value).__name__}: "
        f"{raised.value}")
    assert row["message"] in str(raised.value), f"{row['id']}: got {raised.value}"


def cli_code(row) -> int:
    return int(row["error"].split()[1])
