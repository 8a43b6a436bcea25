"""csm_nb.speech.prompts: the six demo prompts, real loading (faked hub), labelled stand-ins."""

import numpy as np
import pytest
import soundfile
import torch

import csm_nb.loading.hub
from csm_nb.speech import prompts
from csm_nb.speech.segment import Segment


def test_six_prompts_with_the_reference_transcripts():
    assert prompts.prompt_names() == ["conversational_a", "conversational_b", "read_speech_a",
                                      "read_speech_b", "read_speech_c", "read_speech_d"]
    p = prompts.PROMPTS
    assert p["read_speech_c"].transcript == ("All passed so quickly, there was so much going on "
                                             "around him, the Tree quite forgot to look to "
                                             "himself.")
    assert p["read_speech_d"].transcript.startswith("Suddenly I was back in the old days Before")
    assert p["read_speech_a"].transcript.endswith("with a stern and insidious look, confronted me.")
    assert p["read_speech_b"].transcript.endswith("could not keep from fingering the blue tassel.")
    # docs/csm-reference.md quotes how the two conversational transcripts start and end.
    a, b = p["conversational_a"].transcript, p["conversational_b"].transcript
    assert a.startswith("like revising for an exam I'd have to try and like keep up the momentum")
    assert a.endswith("Mondays I sort of start the day with this not like a panic but like a")
    assert b.startswith("like a super Mario level. Like it's very like high detail.")
    assert b.endswith("they get like this little bracelet and then you can go punching question "
                      "blocks around.")
    assert (len(a.split()), len(b.split())) == (96, 92)   # the doc's rough "~80" / "~95"
    assert {x.corpus for x in p.values()} == {"EdAcc", "LibriTTS-R"}
    assert p["read_speech_a"].filename == "prompts/read_speech_a.wav"


def test_unknown_prompt_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'read_speech_a'"):
        prompts.load_prompt("read_speach_a", mode="tiny")
    with pytest.raises(ValueError, match="the six are"):
        prompts.prompt_info("maya")
    with pytest.raises(TypeError):
        prompts.prompt_info(3)


def test_tiny_mode_gives_the_shipped_clip_labelled():
    seg = prompts.load_prompt("conversational_b", speaker=1, mode="tiny")
    assert isinstance(seg, Segment) and seg.speaker == 1
    assert "stand-in" in seg.label and seg.label.startswith("conversational_b")
    assert seg.text == prompts.STANDIN_TRANSCRIPT, "a stand-in carries its own transcript"
    assert seg.sample_rate == 24_000 and seg.duration == pytest.approx(4.68, abs=0.01)


def test_synthetic_stand_in_when_no_clip(tmp_path):
    seg = prompts.standin_prompt("read_speech_b", 0, path=tmp_path / "missing.wav")
    assert seg.label == "read_speech_b (stand-in: synthetic hum)"
    assert seg.audio.shape == (72_000,) and seg.audio.abs().max() <= 0.3 + 1e-6
    again = prompts.standin_prompt("read_speech_b", 0, path=tmp_path / "missing.wav")
    assert torch.equal(seg.audio, again.audio), "deterministic"


def _fake_hub(monkeypatch, tmp_path, rate, channels):
    t = np.arange(rate) / rate                                    # 1 s
    data = np.stack([0.2 * np.sin(2 * np.pi * 300 * t)] * channels, axis=1)
    path = tmp_path / "prompt.wav"
    soundfile.write(path, data, rate, subtype="PCM_16")
    asked = []
    monkeypatch.setattr(csm_nb.loading.hub, "hub_file",
                        lambda repo, name, **kw: asked.append((repo, name)) or str(path))
    return asked


@pytest.mark.parametrize("rate, channels", [(44_100, 1), (24_000, 2)])
def test_real_mode_loads_from_the_hub_resampled_to_24k(monkeypatch, tmp_path, rate, channels):
    asked = _fake_hub(monkeypatch, tmp_path, rate, channels)
    seg = prompts.load_prompt("read_speech_c", speaker=1, mode="real")
    assert asked == [("sesame/csm-1b", "prompts/read_speech_c.wav")]
    assert seg.text == prompts.PROMPTS["read_speech_c"].transcript
    assert seg.label == "read_speech_c" and seg.speaker == 1
    assert seg.sample_rate == 24_000 and seg.audio.shape == (24_000,)
    assert seg.audio.abs().max() == pytest.approx(0.2, abs=0.01)


def test_real_mode_offline_raises_and_auto_stands_in(monkeypatch, capsys):
    def offline(repo, name, **kw):
        raise OSError(f"{name} of {repo} is not in the local cache")
    monkeypatch.setattr(csm_nb.loading.hub, "hub_file", offline)
    with pytest.raises(OSError, match="local cache"):
        prompts.load_prompt("read_speech_a", mode="real")
    seg = prompts.load_prompt("read_speech_a", mode="auto")
    assert "stand-in" in seg.label
    assert "TINY MODE for the demo prompt read_speech_a" in capsys.readouterr().err
