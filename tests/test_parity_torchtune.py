"""csm_nb vs the official layout (torchtune 0.6.1's llama3_2 + the official frame loop)."""

import pytest
import torch

import csm_nb
from csm_nb.reference.weights import parity_config, randomize_
from helpers import fresh_model, mixed_prompt

official = pytest.importorskip("csm_nb.reference.official")

FRAMES = 12


def _pair(cfg, seed=0):
    ref = official.OfficialCSM(cfg)
    randomize_(dict(ref.state_dict()), seed)
    ours = csm_nb.CSM(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), ours.eval()


@pytest.fixture(scope="module")
def official_pair():
    return _pair(parity_config())


@pytest.fixture
def models(official_pair):
    """Built once per file (seconds); each test gets both without KV caches."""
    from torchtune.modules.common_utils import delete_kv_caches
    ref, ours = official_pair
    for part in (ref.backbone, ref.decoder):
        if part.caches_are_setup():
            delete_kv_caches(part)
    return ref, fresh_model(ours)


def test_state_dict_keys_match_official_layout(models):
    ref, ours = models
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(ref_sd) == list(our_sd) or set(ref_sd) == set(our_sd)
    assert {k: v.shape for k, v in ref_sd.items()} == {k: v.shape for k, v in our_sd.items()}


def test_greedy_codes_and_logits_equal(models, prompt):
    ref, ours = models
    ref_logits, our_logits = [], []
    ref_codes = ref.generate(*prompt, max_frames=FRAMES, topk=1, logits_out=ref_logits)
    ours_codes = csm_nb.generate_codes(
        ours, *prompt, max_frames=FRAMES, topk=1, trace_logits=True,
        on_frame=lambda info: our_logits.append(info.logits[0]))
    assert ours_codes.shape == ref_codes.shape == (32, FRAMES)
    assert torch.equal(ours_codes, ref_codes)
    ref_all = torch.stack(ref_logits).view(FRAMES, 32, -1)        # [F, K, V]
    our_all = torch.stack(our_logits)                              # [F, K, V]
    c0 = (ref_all[:, 0] - our_all[:, 0]).abs().max().item()
    depth = (ref_all[:, 1:] - our_all[:, 1:]).abs().max().item()
    print(f"\ntorchtune parity: {FRAMES} frames equal; max |logit diff| codebook 0 {c0:.2e}, "
          f"depth decoder {depth:.2e}")
    assert c0 <= 1e-5 and depth <= 1e-5


@pytest.mark.fullsize
def test_full_size_official_layout_parity(tokenizer):
    """The real sizes (1.55B parameters, fp32): both models share the same weight storage."""
    cfg = csm_nb.CSMConfig.csm_1b()
    torch.manual_seed(0)
    ref = official.OfficialCSM(cfg).eval()
    sd = ref.state_dict()
    randomize_(dict(sd), seed=1)
    with torch.device("meta"):
        ours = csm_nb.CSM(cfg)
    ours.load_state_dict(sd, strict=True, assign=True)   # shares storage: no second copy
    ours.init_buffers()
    ours.eval()
    assert ours.num_parameters == 1_552_791_552
    tokens, mask = mixed_prompt(tokenizer)
    ref_codes = ref.generate(tokens, mask, max_frames=FRAMES, topk=1)
    ours_codes = csm_nb.generate_codes(ours, tokens, mask, max_frames=FRAMES, topk=1)
    assert torch.equal(ours_codes, ref_codes)
