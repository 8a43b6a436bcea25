"""csm_nb.speech.prompts: the six demo prompts, real loading (faked hub, local copy), the toy
voices that stand in for them offline."""

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
    with pytest.raises(ValueError, match="the six official ones are.*the toy voices: toy_A"):
        prompts.prompt_info("maya")
    with pytest.raises(TypeError):
        prompts.prompt_info(3)


@pytest.mark.parametrize("mode", ["tiny", "toy"])
def test_offline_each_official_prompt_is_played_by_its_own_toy_voice(mode):
    segs = {name: prompts.load_prompt(name, speaker=1, mode=mode) for name in prompts.PROMPTS}
    for name, seg in segs.items():
        voice = prompts.toy_voices()[f"toy_{prompts.STANDS_IN_FOR[name]}"]
        assert isinstance(seg, Segment) and seg.speaker == 1 and seg.sample_rate == 24_000
        assert seg.label == f"{name} (stand-in: toy voice {voice.voice}, {voice.description})"
        assert seg.text == voice.transcript, "a stand-in carries its own transcript"
        assert 1.0 < seg.duration < 3.0
    a, b = segs["conversational_a"].audio, segs["conversational_b"].audio
    assert a.shape != b.shape or not torch.equal(a, b), "two speakers, two different voices"


def test_toy_voices_by_name_in_any_mode():
    assert prompts.prompt_names("toy") == ["toy_A", "toy_B", "toy_C", "toy_D", "toy_E",
                                           "toy_F", "toy_H"]
    assert prompts.prompt_names("real") == list(prompts.PROMPTS)
    held_out = [v for v in prompts.toy_voices().values() if v.held_out]
    assert [v.name for v in held_out] == ["toy_H"]
    seg = prompts.load_prompt("toy_H", speaker=0, mode="real")      # no hub needed for it
    assert seg.label == "toy_H (American man, held out of training)"
    assert prompts.prompt_info("toy_H").transcript == seg.text


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
    assert seg.label.startswith("read_speech_a (stand-in: toy voice C")
    assert "TOY MODE for the demo prompt read_speech_a" in capsys.readouterr().err


def test_real_mode_reads_the_prompts_of_a_local_copy_first(monkeypatch, tmp_path):
    folder = tmp_path / "csm-1b"
    (folder / "prompts").mkdir(parents=True)
    t = np.arange(24_000) / 24_000
    soundfile.write(folder / "prompts" / "read_speech_b.wav", 0.1 * np.sin(2 * np.pi * 200 * t),
                    24_000, subtype="PCM_16")
    monkeypatch.setenv("CSM_NB_WEIGHTS", str(folder))

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked although the folder has the file")
    monkeypatch.setattr(csm_nb.loading.hub, "hub_file", no_hub)
    seg = prompts.load_prompt("read_speech_b", mode="real")
    assert seg.label == "read_speech_b" and seg.audio.shape == (24_000,)
