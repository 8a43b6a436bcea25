"""One reading of the environment (csm_nb.env), and what `auto` decides from it.

`auto` must never send a student without a token into an error: on a GPU machine with no
Hugging Face token, offline, or with a token whose owner has not accepted the terms, it falls
back to the offline mode with a banner that names the missing piece. CUDA's presence is faked.
"""

import huggingface_hub
import huggingface_hub.constants
import pytest
import torch

import csm_nb
from csm_nb import env
from csm_nb.loading import modes
from csm_nb.loading import weights as hub


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("On", True),
    ("0", False), ("false", False), ("No", False), ("OFF", False), ("", False), ("  ", False),
])
def test_one_truth_table_for_every_flag(monkeypatch, raw, expected):
    for name in (env.HF_OFFLINE, env.CUDA_GRAPHS):
        monkeypatch.setenv(name, raw)
        assert env.flag(name, default=not expected) is expected
    monkeypatch.setenv(env.HF_OFFLINE, raw)
    assert env.hub_offline() is expected


def test_unset_flags_take_their_default_and_nonsense_is_refused(monkeypatch):
    monkeypatch.delenv(env.CUDA_GRAPHS, raising=False)
    assert env.flag(env.CUDA_GRAPHS, True) is True and env.flag(env.CUDA_GRAPHS, False) is False
    monkeypatch.setenv(env.HF_OFFLINE, "maybe")
    with pytest.raises(ValueError, match=r"\$HF_HUB_OFFLINE='maybe' is not an on/off value; set "
                                         "it to one of 1/true/yes/on"):
        env.hub_offline()


def test_every_reader_uses_the_same_table(monkeypatch):
    """The places that once parsed these variables their own way now agree."""
    from csm_nb.core.frame_loop import default_backend
    monkeypatch.setenv(env.CUDA_GRAPHS, "off")
    assert default_backend(torch.device("cuda")) == "eager"
    monkeypatch.setenv(env.CUDA_GRAPHS, "yes")
    assert default_backend(torch.device("cuda")) == "graph"
    assert default_backend(torch.device("cpu")) == "eager"
    monkeypatch.setenv(env.HF_OFFLINE, "false")          # once "offline" to one reader
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(env.WEIGHTS, raising=False)
    monkeypatch.setenv(env.HF_CACHE, "/nonexistent-cache")
    ok, reason = modes.real_weights_reason()
    assert not ok and reason.startswith("no GPU"), reason


def test_text_values_are_stripped_and_blank_means_unset(monkeypatch):
    monkeypatch.setenv(env.WEIGHTS, "  /some/folder \n")
    assert env.text(env.WEIGHTS) == "/some/folder"
    monkeypatch.setenv(env.WEIGHTS, "   ")
    assert env.text(env.WEIGHTS) is None


# ------------------------------------------------------------------ auto on a (faked) GPU

@pytest.fixture
def gpu_machine(monkeypatch, tmp_path):
    """A GPU machine online, with no weights anywhere local and no token (yet)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in (env.WEIGHTS, env.MODE, env.HF_OFFLINE, "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(env.HF_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "token"))

    def no_network(*args, **kwargs):
        raise AssertionError("auto reached for the network")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    return tmp_path


def test_no_token_on_a_gpu_means_the_offline_mode_with_how_to_log_in(gpu_machine, capsys):
    mode, reason = modes.decide_mode("auto")
    assert mode == modes.OFFLINE_MODE
    assert reason.startswith("no Hugging Face token: sesame/csm-1b is gated")
    assert "https://huggingface.co/sesame/csm-1b" in reason and "Secrets" in reason
    assert csm_nb.notebook_mode() == modes.OFFLINE_MODE
    assert "no Hugging Face token" in capsys.readouterr().out
    model, used = hub.load_model("auto", device="cpu")       # no download tried (see fixture)
    assert used == modes.OFFLINE_MODE and isinstance(model, csm_nb.CSM)
    assert "no Hugging Face token" in capsys.readouterr().err      # the banner


def test_offline_on_a_gpu_says_offline(gpu_machine, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    monkeypatch.setenv(env.HF_OFFLINE, "1")
    mode, reason = modes.decide_mode(None)
    assert mode == modes.OFFLINE_MODE and reason.startswith("offline: $HF_HUB_OFFLINE is set")


def test_a_token_file_counts_like_hf_token(gpu_machine):
    (gpu_machine / "token").write_text("hf_fake_from_login\n")
    mode, reason = modes.decide_mode("auto")
    assert mode == "real" and "a GPU and a Hugging Face token" in reason


def test_terms_not_accepted_fall_back_while_loading_with_the_hub_s_reason(gpu_machine,
                                                                          monkeypatch, capsys):
    from huggingface_hub.errors import GatedRepoError

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert modes.decide_mode("auto")[0] == "real"           # nothing local says otherwise

    def gated(repo_id, filename, **kwargs):
        raise GatedRepoError("403 Client Error: access to model sesame/csm-1b is restricted")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    model, used = hub.load_model("auto", device="cpu")
    assert used == modes.OFFLINE_MODE
    banner = capsys.readouterr().err
    assert "is gated and this machine has no access: accept the terms at" in banner
    with pytest.raises(OSError, match="accept the terms"):
        hub.load_model("real", device="cpu")                 # asked for real: an error, no fallback


def test_the_app_decides_like_the_notebooks(gpu_machine):
    from csm_nb.apps import demo as app
    demo = app.Demo(mode=None)
    assert (demo.mode, demo.reason) == modes.decide_mode(None)
    assert demo.load_mode == "auto"
