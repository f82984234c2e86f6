"""DPO / IPO / RPO / SimPO against TRL's own loss code, fed the same per-token log-probs.

TRL 1.x computes the DPO loss inline in `DPOTrainer._compute_loss(model, inputs)`; we run that
method on a stand-in trainer (the attributes it reads) with a stand-in model that returns our
per-token log-probs as TRL's fused LM head would (0 where the label is -100), and precomputed
reference log-probs. SimPO and label-smoothed (conservative) DPO live in TRL's
CPOTrainer.cpo_loss, which takes per-sequence log-probs and is called the same way.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from loss_inputs import grads, response_mask

from mmalign.losses import dpo_loss, ipo_loss, rpo_loss, simpo_loss

dpo_trainer = pytest.importorskip("trl.trainer.dpo_trainer")
B, L = 4, 12  # pairs, sequence length (T = L - 1 after the shift)


def batch(seed=0):
    """Per-token log-probs [2B, L-1] (chosen rows then rejected) and TRL-style completion masks
    [2B, L] (position 0 is prompt, so the shifted mask keeps every completion token)."""
    gen = torch.Generator().manual_seed(seed)
    shifted = torch.cat([response_mask(gen, B, L - 1), response_mask(gen, B, L - 1)])
    completion_mask = torch.cat([torch.zeros(2 * B, 1, dtype=torch.float64), shifted], 1)
    policy = (-torch.rand(2 * B, L - 1, generator=gen, dtype=torch.float64) * shifted).requires_grad_()
    ref = -torch.rand(2 * B, L - 1, generator=gen, dtype=torch.float64) * shifted
    return policy, ref, shifted, completion_mask


def trl_dpo(policy, ref, completion_mask, loss_types, loss_weights=None, beta=0.1):
    """TRL's DPOTrainer._compute_loss on a stand-in trainer and model."""
    n, length = completion_mask.shape

    def model(**kwargs):
        assert kwargs["fused_lm_head"]
        zeros = torch.zeros(n, length - 1, dtype=torch.float64)
        return SimpleNamespace(log_probs=policy, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    accel = SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)
    stub = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=accel, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=loss_types,
        loss_weights=loss_weights or [1.0] * len(loss_types), beta=beta, label_smoothing=0.0, use_weighting=False,
        _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1, args=SimpleNamespace())
    ref_chosen, ref_rejected = ref.sum(1).chunk(2)
    inputs = {"input_ids": torch.zeros(n, length, dtype=torch.long), "attention_mask": torch.ones(n, length),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    loss = dpo_trainer.DPOTrainer._compute_loss(stub, model, inputs, return_outputs=False)
    return loss, {k: v[0] for k, v in stub._metrics["train"].items()}


def ours(fn, policy, ref, mask, **kw):
    pc, pr = policy.chunk(2)
    rc, rr = ref.chunk(2)
    cm, rm = mask.chunk(2)
    return fn(pc, pr, rc, rr, cm, rm, **kw)


def assert_same_loss_and_grad(out_loss, trl_loss, policy, mask):
    """Same loss, same gradient on the scored tokens (TRL sums every position of its fused
    head's output, which is 0, and so constant, off the completion: compare on the mask only)."""
    torch.testing.assert_close(out_loss, trl_loss, rtol=1e-10, atol=1e-12)
    for g, r in zip(grads(out_loss, [policy]), grads(trl_loss, [policy])):
        torch.testing.assert_close(g * mask, r * mask, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_dpo_equals_trl_sigmoid(seed):
    policy, ref, mask, completion_mask = batch(seed)
    out = ours(dpo_loss, policy, ref, mask, beta=0.1)
    theirs, metrics = trl_dpo(policy, ref, completion_mask, ["sigmoid"], beta=0.1)
    assert_same_loss_and_grad(out.loss, theirs, policy, mask)
    for ours_key, trl_key in [("rewards/chosen", "rewards/chosen"), ("rewards/rejected", "rewards/rejected"),
                              ("rewards/margin", "rewards/margins"), ("rewards/accuracy", "rewards/accuracies"),
                              ("logps/chosen", "logps/chosen")]:
        assert out.metrics[ours_key].item() == pytest.approx(metrics[trl_key], rel=1e-9, abs=1e-12)


def test_ipo_equals_trl_ipo():
    policy, ref, mask, completion_mask = batch(2)
    out = ours(ipo_loss, policy, ref, mask, beta=0.3)
    theirs, _ = trl_dpo(policy, ref, completion_mask, ["ipo"], beta=0.3)
    assert_same_loss_and_grad(out.loss, theirs, policy, mask)


def test_rpo_equals_trl_sigmoid_plus_sft():
    policy, ref, mask, completion_mask = batch(3)
    out = ours(rpo_loss, policy, ref, mask, beta=0.1, alpha=0.6)
    theirs, _ = trl_dpo(policy, ref, completion_mask, ["sigmoid", "sft"], [1.0, 0.6], beta=0.1)
    assert_same_loss_and_grad(out.loss, theirs, policy, mask)


def cpo_loss(loss_type, beta, chosen, rejected, label_smoothing=0.0, simpo_gamma=0.0):
    cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    stub = SimpleNamespace(alpha=0.0, loss_type=loss_type, beta=beta, label_smoothing=label_smoothing,
                           simpo_gamma=simpo_gamma, accelerator=SimpleNamespace(device="cpu"))
    losses, _, _ = cpo.CPOTrainer.cpo_loss(stub, chosen, rejected)
    return losses.mean()


def test_label_smoothed_dpo_equals_trl_conservative_sigmoid():
    """TRL 1.x's DPO "sigmoid" ignores label_smoothing; its CPO "sigmoid" keeps the cDPO form.
    Fed the summed log-ratios in place of log-probs, it is label-smoothed DPO."""
    policy, ref, mask, _ = batch(4)
    out = ours(dpo_loss, policy, ref, mask, beta=0.2, label_smoothing=0.15)
    h_w, h_l = (policy - ref).sum(1).chunk(2)
    assert_same_loss_and_grad(out.loss, cpo_loss("sigmoid", 0.2, h_w, h_l, label_smoothing=0.15), policy, mask)


def test_simpo_equals_trl_cpo_simpo():
    policy, _, mask, _ = batch(5)
    pc, pr = policy.chunk(2)
    cm, rm = mask.chunk(2)
    out = simpo_loss(pc, pr, cm, rm, beta=2.0, gamma=0.5)
    avg_w, avg_l = (pc * cm).sum(1) / cm.sum(1), (pr * rm).sum(1) / rm.sum(1)  # TRL's average_log_prob
    assert_same_loss_and_grad(out.loss, cpo_loss("simpo", 2.0, avg_w, avg_l, simpo_gamma=0.5), policy, mask)
