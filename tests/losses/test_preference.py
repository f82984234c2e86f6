"""The token-weighted core and the DPO family / SimPO / OSPO against float64 loop references."""

import pytest
import torch
import torch.nn.functional as F
from loss_inputs import grads, loop_count, loop_mean, loop_sum, neg_log_sigmoid, response_mask, token_weights

from mmalign.losses import (dpo_loss, ipo_loss, logps_from_logits, mask_dpo_loss, ospo_loss, rpo_loss, sft_loss,
                            simpo_loss, token_shares, weighted_mean, weighted_sum)

REF_ARGS = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected", "chosen_mask", "rejected_mask")


def args(pair, names=REF_ARGS, dtype=torch.float64):
    return [pair[n].to(dtype) for n in names]


def close(a, b, dtype=torch.float64):
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(a.double(), b.double(), **tol)


# ---------------------------------------------------------------- core

@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_sum_and_mean_match_loops(gen, pair, weighted):
    v, m = pair["policy_chosen"], pair["chosen_mask"].clone()
    m[-1] = 0  # a row with no response token: sum 0, mean 0 (not NaN)
    w = pair["chosen_weights"] if weighted else None
    close(weighted_sum(v, m, w), loop_sum(v, m, w))
    close(weighted_mean(v, m, w), loop_mean(v, m, w))
    close(weighted_sum(v, m.bool(), w), loop_sum(v, m, w))  # bool masks too


def test_token_shares_average_over_tokens_not_rows(pair):
    v, m, w = pair["policy_chosen"], pair["chosen_mask"], pair["chosen_weights"]
    shares = token_shares(v, m, w)
    close(shares.mean(), loop_sum(v, m, w).sum() / loop_count(m, w).sum())
    close(shares, loop_sum(v, m, w) * v.shape[0] / loop_count(m, w).sum())


def test_sft_loss_is_token_mean_nll_like_hf_cross_entropy(gen):
    logits = torch.randn(3, 7, 13, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 13, (3, 7), generator=gen)
    labels[0, :3] = -100
    labels[2, 5:] = -100
    mask = labels != -100
    out = sft_loss(logps_from_logits(logits, labels), mask)
    close(out.loss, F.cross_entropy(logits.reshape(-1, 13), labels.reshape(-1), ignore_index=-100))
    close(out.per_example.mean(), out.loss)


def test_sft_loss_weighted(pair):
    lp, m, w = pair["policy_chosen"], pair["chosen_mask"], pair["chosen_weights"]
    close(sft_loss(lp, m, w).loss, -loop_sum(lp, m, w).sum() / loop_count(m, w).sum())


# ---------------------------------------------------------------- DPO family

def ref_dpo(pc, pr, rc, rr, cm, rm, beta, cw=None, rw=None, eps=0.0):
    z = beta * (loop_sum(pc - rc, cm, cw) - loop_sum(pr - rr, rm, rw))
    return (1 - eps) * neg_log_sigmoid(z) + eps * neg_log_sigmoid(-z)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_dpo_matches_reference(pair, dtype, weighted, label_smoothing):
    w = args(pair, ("chosen_weights", "rejected_weights"), dtype) if weighted else [None, None]
    out = dpo_loss(*args(pair, dtype=dtype), beta=0.3, chosen_weights=w[0], rejected_weights=w[1],
                   label_smoothing=label_smoothing)
    ref = ref_dpo(*args(pair), 0.3, *(x if x is None else x.double() for x in w), label_smoothing)
    close(out.per_example, ref, dtype)
    close(out.loss, ref.mean(), dtype)
    hw = 0.3 * loop_sum(pair["policy_chosen"] - pair["ref_chosen"], pair["chosen_mask"], w[0])
    hl = 0.3 * loop_sum(pair["policy_rejected"] - pair["ref_rejected"], pair["rejected_mask"], w[1])
    close(out.metrics["rewards/margin"], (hw - hl).mean(), dtype)
    close(out.metrics["rewards/accuracy"], (hw > hl).double().mean(), dtype)


def test_dpo_gradients_match_reference(pair):
    inputs = [pair[n] for n in ("policy_chosen", "policy_rejected")]
    w = (pair["chosen_weights"], pair["rejected_weights"])
    out = dpo_loss(*args(pair), beta=0.5, chosen_weights=w[0], rejected_weights=w[1], label_smoothing=0.2)
    ref = ref_dpo(*args(pair), 0.5, *w, eps=0.2).mean()
    for g, r in zip(grads(out.loss, inputs), grads(ref, inputs)):
        close(g, r)


def test_ipo_matches_reference(pair):
    pc, pr, rc, rr, cm, rm = args(pair)
    out = ipo_loss(pc, pr, rc, rr, cm, rm, beta=0.2)
    ref = (loop_mean(pc - rc, cm) - loop_mean(pr - rr, rm) - 1 / (2 * 0.2)) ** 2
    close(out.per_example, ref)
    cw, rw = pair["chosen_weights"], pair["rejected_weights"]
    out = ipo_loss(pc, pr, rc, rr, cm, rm, beta=0.2, chosen_weights=cw, rejected_weights=rw)
    ref = (loop_mean(pc - rc, cm, cw) - loop_mean(pr - rr, rm, rw) - 1 / (2 * 0.2)) ** 2
    close(out.per_example, ref)
    for g, r in zip(grads(out.loss, [pc, pr]), grads(ref.mean(), [pc, pr])):
        close(g, r)


@pytest.mark.parametrize("weighted", [False, True])
def test_rpo_is_dpo_plus_token_level_chosen_nll(pair, weighted):
    pc, pr, rc, rr, cm, rm = args(pair)
    w = (pair["chosen_weights"], pair["rejected_weights"]) if weighted else (None, None)
    out = rpo_loss(pc, pr, rc, rr, cm, rm, beta=0.1, alpha=0.7, chosen_weights=w[0], rejected_weights=w[1])
    nll = -loop_sum(pc, cm).sum() / loop_count(cm).sum()  # unweighted: weights shape the preference only
    ref = ref_dpo(pc, pr, rc, rr, cm, rm, 0.1, *w).mean() + 0.7 * nll
    close(out.loss, ref)
    close(out.metrics["nll"], nll)
    for g, r in zip(grads(out.loss, [pc, pr]), grads(ref, [pc, pr])):
        close(g, r)


def test_mask_dpo_with_all_ones_masks_is_dpo(pair):
    ones = torch.ones_like(pair["chosen_mask"])
    mask_dpo = mask_dpo_loss(*args(pair), beta=0.1, chosen_weights=ones, rejected_weights=ones)
    dpo = dpo_loss(*args(pair), beta=0.1)
    close(mask_dpo.per_example, dpo.per_example)


def test_mask_dpo_masks_policy_and_reference_alike(gen, pair):
    pc, pr, rc, rr, cm, rm = args(pair)
    keep_w, keep_l = (torch.rand(cm.shape, generator=gen) > 0.4).double(), (torch.rand(cm.shape, generator=gen) > 0.6)
    out = mask_dpo_loss(pc, pr, rc, rr, cm, rm, beta=0.1, chosen_weights=keep_w, rejected_weights=keep_l)
    # Mask-DPO as written in the ANAH code: masked sums S, then z = (S_w - S_l) - (S_w^ref - S_l^ref)
    s_w, s_l = loop_sum(pc, cm * keep_w), loop_sum(pr, rm * keep_l)
    r_w, r_l = loop_sum(rc, cm * keep_w), loop_sum(rr, rm * keep_l)
    close(out.per_example, neg_log_sigmoid(0.1 * ((s_w - s_l) - (r_w - r_l))))


# ---------------------------------------------------------------- reference-free

def ref_simpo(pc, pr, cm, rm, beta, gamma, cw=None, rw=None):
    return neg_log_sigmoid(beta * (loop_mean(pc, cm, cw) - loop_mean(pr, rm, rw)) - gamma)


@pytest.mark.parametrize("weighted", [False, True])
def test_simpo_matches_reference(pair, weighted):
    pc, pr, cm, rm = args(pair, ("policy_chosen", "policy_rejected", "chosen_mask", "rejected_mask"))
    w = (pair["chosen_weights"], pair["rejected_weights"]) if weighted else (None, None)
    out = simpo_loss(pc, pr, cm, rm, beta=2.5, gamma=0.4, chosen_weights=w[0], rejected_weights=w[1])
    ref = ref_simpo(pc, pr, cm, rm, 2.5, 0.4, *w)
    close(out.per_example, ref)
    close(out.metrics["rewards/chosen"], 2.5 * loop_mean(pc, cm, w[0]).mean())
    for g, r in zip(grads(out.loss, [pc, pr]), grads(ref.mean(), [pc, pr])):
        close(g, r)


def test_ospo_matches_reference(gen, pair):
    from loss_inputs import random_logps
    pc, pr, cm, rm = args(pair, ("policy_chosen", "policy_rejected", "chosen_mask", "rejected_mask"))
    pm = response_mask(gen)
    pp = random_logps(gen, pm)
    cw, rw, pw = pair["chosen_weights"], pair["rejected_weights"], token_weights(gen)
    out = ospo_loss(pc, pr, pp, cm, rm, pm, chosen_weights=cw, rejected_weights=rw, perturbed_weights=pw)
    l_w, l_l, l_p = loop_mean(pc, cm, cw), loop_mean(pr, rm, rw), loop_mean(pp, pm, pw)
    simpo = neg_log_sigmoid(3.0 * (l_w - l_l) - 1.5)
    copo = neg_log_sigmoid(5.0 * (l_w - l_p) - 2.5)
    sft = -loop_sum(pc, cm).sum() / loop_count(cm).sum()
    ref = (0.8 * simpo + 0.5 * copo).mean() + 1.5 * sft
    close(out.loss, ref)
    close(out.metrics["loss/copo"], copo.mean())
    for g, r in zip(grads(out.loss, [pc, pr, pp]), grads(ref, [pc, pr, pp])):
        close(g, r)


# ---------------------------------------------------------------- contract

def test_every_loss_returns_mean_of_per_example_and_detached_scalar_metrics(pair):
    pc, pr, rc, rr, cm, rm = args(pair)
    outs = [dpo_loss(pc, pr, rc, rr, cm, rm), ipo_loss(pc, pr, rc, rr, cm, rm), rpo_loss(pc, pr, rc, rr, cm, rm),
            mask_dpo_loss(pc, pr, rc, rr, cm, rm), simpo_loss(pc, pr, cm, rm), ospo_loss(pc, pr, pr, cm, rm, rm),
            sft_loss(pc, cm)]
    for out in outs:
        assert out.per_example.shape == (pc.shape[0],) and out.per_example.requires_grad
        close(out.loss, out.per_example.mean())
        assert torch.isfinite(out.loss)
        assert all(v.dim() == 0 and not v.requires_grad for v in out.metrics.values())
    for out in outs[:-1]:
        assert {"rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"} <= out.metrics.keys()
