"""mmalign.methods: one record per method, the papers' defaults, and every reader of them."""

import math

import pytest
import torch

from mmalign.config import ConfigError, LossConfig, build_config, stages_of
from mmalign.methods import METHODS, compute_loss

# Written out here, independently of mmalign.methods: each method's paper / official code.
PAPER_DEFAULTS = {
    "sft": {},
    "dpo": {"beta": 0.1, "label_smoothing": 0.0},
    "ipo": {"beta": 0.1},
    "simpo": {"beta": 2.0, "gamma": 0.5},
    "rpo": {"beta": 0.1, "alpha": 1.0, "label_smoothing": 0.0},
    "rrpo": {"beta": 0.1, "alpha": 0.01},
    "mask_dpo": {"beta": 0.1},
    "ospo": {"beta": 3.0, "gamma": 1.5, "beta_copo": 5.0, "gamma_copo": 2.5, "ospo_weights": [0.8, 0.5, 1.5]},
    "grpo": {},
}


@pytest.mark.parametrize("name", sorted(PAPER_DEFAULTS))
def test_an_empty_loss_section_runs_the_papers_defaults(name):
    (_, cfg), = stages_of(build_config({"method": name, "loss": {}}))
    resolved = {k: v for k, v in vars(cfg.loss).items() if v is not None}
    assert resolved == PAPER_DEFAULTS[name]


def test_every_method_has_a_record_and_only_those():
    assert set(METHODS) == set(PAPER_DEFAULTS)


def test_set_keys_win_and_derived_defaults_follow_them():
    (_, cfg), = stages_of(build_config({"method": "ospo", "loss": {"beta": 4.0}}))
    assert (cfg.loss.beta, cfg.loss.gamma, cfg.loss.gamma_copo) == (4.0, 2.0, 2.5)


def test_a_key_the_method_does_not_read_is_refused():
    with pytest.raises(ConfigError, match=r"loss\.gamma: method dpo does not read it \(it reads beta, label_smoothing\)"):
        build_config({"method": "dpo", "loss": {"gamma": 1.0}})
    with pytest.raises(ConfigError, match=r"stages\[0\]\.loss\.beta: method sft does not read it"):
        build_config({"stages": [{"method": "sft", "loss": {"beta": 0.2}}, {"method": "dpo"}]})


def test_a_top_level_loss_key_reaches_the_stages_that_read_it():
    cfg = build_config({"loss": {"alpha": 0.05}, "stages": [{"method": "sft"}, {"method": "rrpo"}]})
    (_, sft), (_, rrpo) = stages_of(cfg)
    assert sft.loss.alpha is None and (rrpo.loss.beta, rrpo.loss.alpha) == (0.1, 0.05)
    with pytest.raises(ConfigError, match=r"loss\.gamma: no stage's method reads it"):
        build_config({"loss": {"gamma": 1.0}, "stages": [{"method": "sft"}, {"method": "rrpo"}]})


def _pair(seed=0, n=3, t=6):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(2 * n, t, generator=g, dtype=torch.float64) * 3
    labels = torch.ones(2 * n, t + 1, dtype=torch.long)
    labels[:, :2] = -100
    return lp, labels


def test_simpo_without_a_loss_section_is_simpo_at_beta_2_gamma_half():
    """The loss that runs for `method: simpo` with no `loss:` (the old config trained it with
    the DPO family's beta 0.1): -log sigmoid(2 (l_w - l_l) - 0.5), written out in float64."""
    lp, labels = _pair()
    out = compute_loss("simpo", LossConfig(), {"labels": labels}, 2, {"logps": lp}, None)
    mask = (labels[:, 1:] != -100).double()
    mean = (lp * mask).sum(-1) / mask.sum(-1)
    want = torch.tensor([-math.log(1 / (1 + math.exp(-(2.0 * float(mean[i] - mean[i + 3]) - 0.5)))) for i in range(3)])
    torch.testing.assert_close(out.loss, want.mean().to(out.loss.dtype))


def test_rpo_without_a_loss_section_weighs_the_nll_by_one():
    lp, labels = _pair(1)
    ref = lp.detach() - 0.1
    out = compute_loss("rpo", LossConfig(), {"labels": labels}, 2, {"logps": lp}, {"logps": ref})
    dpo = compute_loss("dpo", LossConfig(), {"labels": labels}, 2, {"logps": lp}, {"logps": ref})
    mask = (labels[:, 1:] != -100).double()
    nll = -(lp[:3] * mask[:3]).sum() / mask[:3].sum()
    torch.testing.assert_close(out.loss, dpo.loss + 1.0 * nll)
