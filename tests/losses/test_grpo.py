"""GRPO: advantages by hand, the clipped loss against a float64 loop reference and TRL."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from loss_inputs import grads, response_mask

from mmalign.losses import all_equal_groups, group_advantages, grpo_loss


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0])
    a = 0.5 / (math.sqrt(0.5) + 1e-4)  # group {1, 0}: mean 0.5, unbiased std sqrt(0.5)
    torch.testing.assert_close(group_advantages(r, 2), torch.tensor([a, -a, -a, a, 0.0, 0.0]))
    torch.testing.assert_close(group_advantages(r, 2, scale_by_std=False), torch.tensor([.5, -.5, -.5, .5, 0., 0.]))
    b = 1 / (1 + 1e-4)  # group {1, 2, 3}: mean 2, unbiased std 1
    torch.testing.assert_close(group_advantages(torch.tensor([3.0, 1.0, 2.0]), 3), torch.tensor([b, -b, 0.0]))
    torch.testing.assert_close(group_advantages(torch.tensor([3.0, 1.0]), 1), torch.zeros(2))
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(5), 2)


def test_group_advantages_use_trl_std():
    utils = pytest.importorskip("trl.trainer.utils")
    r = torch.rand(24, generator=torch.Generator().manual_seed(0))
    g = r.view(-1, 4)
    want = (g - g.mean(1, keepdim=True)) / (utils.nanstd(g, dim=1, keepdim=True) + 1e-4)
    torch.testing.assert_close(group_advantages(r, 4), want.reshape(-1))


def test_all_equal_groups():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    assert all_equal_groups(r, 3).tolist() == [True, False, True]
    assert all_equal_groups(r, 1).all()


def rollout(seed=0, b=6, t=9):
    gen = torch.Generator().manual_seed(seed)
    mask = response_mask(gen, b, t)
    old = -torch.rand(b, t, generator=gen, dtype=torch.float64) * 2
    # ratios spread over [0.6, 1.5]: with eps 0.2 / 0.28 some tokens clip on each side
    logps = (old + torch.empty(b, t, dtype=torch.float64).uniform_(-0.5, 0.4, generator=gen)).requires_grad_()
    ref = old + torch.randn(b, t, generator=gen, dtype=torch.float64) * 0.2
    adv = torch.randn(b, generator=gen, dtype=torch.float64)
    return logps, old, ref, adv, mask


def loop_grpo(logps, old, ref, adv, mask, eps_low, eps_high, beta, loss_type):
    """float64, token by token, straight from the formula."""
    rows, total, count = [], 0.0, 0.0
    for i in range(logps.shape[0]):
        row, n = 0.0, 0.0
        for t in range(logps.shape[1]):
            if not mask[i, t]:
                continue
            ratio = torch.exp(logps[i, t] - old[i, t])
            clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
            loss = -torch.minimum(ratio * adv[i], clipped * adv[i])
            d = ref[i, t] - logps[i, t]
            loss = loss + beta * (torch.exp(d) - d - 1)
            row, n = row + loss, n + 1
        rows.append(row / n)
        total, count = total + row, count + n
    return torch.stack(rows).mean() if loss_type == "sequence" else total / count


@pytest.mark.parametrize("loss_type", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_matches_reference(loss_type, beta):
    logps, old, ref, adv, mask = rollout()
    out = grpo_loss(logps, old, ref, adv, mask, clip_eps=0.2, clip_eps_high=0.28, beta=beta, loss_type=loss_type)
    want = loop_grpo(logps, old, ref, adv, mask, 0.2, 0.28, beta, loss_type)
    torch.testing.assert_close(out.loss, want, rtol=1e-10, atol=1e-12)
    (g,) = grads(out.loss, [logps])
    (r,) = grads(want, [logps])
    torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    ratio = torch.exp(logps - old).detach()
    clipped = ((ratio < 0.8) & (adv[:, None] < 0)) | ((ratio > 1.28) & (adv[:, None] > 0))
    assert 0 < clipped[mask.bool()].sum() < mask.sum()  # the clip is active on some tokens, not all
    torch.testing.assert_close(out.metrics["clip_ratio"], clipped[mask.bool()].double().mean())
    assert ("kl" in out.metrics) == (beta > 0)


def test_grpo_on_policy_ratio_is_one_and_gradient_is_advantage_weighted():
    logps, _, _, adv, mask = rollout(1)
    out = grpo_loss(logps, None, None, adv, mask, beta=0.0, loss_type="token")
    (g,) = grads(out.loss, [logps])
    torch.testing.assert_close(g, -(adv[:, None] * mask) / mask.sum())


def trl_grpo_loss(logps, old, ref, adv, mask, eps_low, eps_high, beta, trl_loss_type, bias_correction=False):
    """TRL's GRPOTrainer._compute_loss run on a stand-in trainer whose model returns `logps`."""
    trainer_mod = pytest.importorskip("trl.trainer.grpo_trainer")
    accel = SimpleNamespace(reduce=lambda x, reduction="sum": x, gather=lambda x: x, num_processes=1)
    b, t = mask.shape
    stub = SimpleNamespace(
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        loss_type=trl_loss_type, epsilon_low=eps_low, epsilon_high=eps_high, use_vllm=False,
        args=SimpleNamespace(use_bias_correction_kl=bias_correction, delta=None, steps_per_generation=1),
        model=SimpleNamespace(training=True), max_completion_length=t,
        current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        _metrics={"train": defaultdict(list)}, accelerator=accel,
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None))
    inputs = {"prompt_ids": torch.zeros(b, 2, dtype=torch.long), "prompt_mask": torch.ones(b, 2),
              "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    return trainer_mod.GRPOTrainer._compute_loss(stub, None, inputs), stub._metrics["train"]


@pytest.mark.parametrize("loss_type, trl_loss_type", [("token", "bnpo"), ("sequence", "grpo"), ("dapo", "dapo"),
                                                      ("dr_grpo", "dr_grpo")])
@pytest.mark.parametrize("kl_estimator", ["k3", "k3_ratio"])
def test_grpo_loss_matches_trl(loss_type, trl_loss_type, kl_estimator):
    logps, old, ref, adv, mask = rollout(2)
    out = grpo_loss(logps, old, ref, adv, mask, clip_eps=0.2, clip_eps_high=0.28, beta=0.04, loss_type=loss_type,
                    kl_estimator=kl_estimator, normalizer=float(mask.sum()), max_completion_length=mask.shape[1])
    theirs, metrics = trl_grpo_loss(logps, old, ref, adv, mask, 0.2, 0.28, 0.04, trl_loss_type,
                                    bias_correction=kl_estimator == "k3_ratio")
    torch.testing.assert_close(out.loss, theirs, rtol=1e-10, atol=1e-12)
    for g, r in zip(grads(out.loss, [logps]), grads(theirs, [logps])):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    assert out.metrics["kl"].item() == pytest.approx(metrics["kl"][0], rel=1e-9)
    assert out.metrics["clip_ratio"].item() == pytest.approx(metrics["clip_ratio/region_mean"][0], rel=1e-9)


def test_k3_ratio_changes_the_kl_gradient_not_its_on_policy_value():
    """On-policy (ratio 1 in value) k3 x ratio has the same loss but a different gradient: the
    ratio's own derivative, k3 * d ratio, which is the bias correction."""
    logps, _, ref, adv, mask = rollout(3)
    plain = grpo_loss(logps, None, ref, adv, mask, beta=0.1, kl_estimator="k3")
    ratio = grpo_loss(logps, None, ref, adv, mask, beta=0.1, kl_estimator="k3_ratio")
    torch.testing.assert_close(plain.loss, ratio.loss)
    (g_plain,), (g_ratio,) = grads(plain.loss, [logps]), grads(ratio.loss, [logps])
    delta = (ref - logps).detach()
    k3 = torch.exp(delta) - delta - 1
    torch.testing.assert_close(g_ratio - g_plain, 0.1 * k3 * mask / mask.sum())


def test_dr_grpo_divides_by_the_longest_completion_allowed():
    logps, _, _, adv, mask = rollout(4)
    out = grpo_loss(logps, None, None, adv, mask, beta=0.0, loss_type="dr_grpo", max_completion_length=50)
    (g,) = grads(out.loss, [logps])
    torch.testing.assert_close(g, -(adv[:, None] * mask) / (mask.shape[0] * 50))
