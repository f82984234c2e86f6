"""RRPO against a float64 loop reference of the official code's formula, and its DPO limit."""

import torch
from loss_inputs import grads, loop_sum, neg_log_sigmoid

from mmalign.losses import dpo_loss, rrpo_loss


def spans(gen, mask):
    """Random sub-spans of the response: the phrases that differ."""
    return mask * (torch.rand(mask.shape, generator=gen, dtype=torch.float64) > 0.6)


def test_rrpo_matches_reference(gen, pair):
    pc, pr, rc, rr = (pair[n] for n in ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected"))
    cm = pair["chosen_mask"]
    cs, rs = spans(gen, cm), spans(gen, pair["rejected_mask"])
    kl = (torch.rand(cm.shape, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    out = rrpo_loss(pc, pr, rc, rr, cs, rs, kl, cm, beta=0.5, alpha=0.05)
    # official code: phrase margins summed, -logsigmoid(beta * margin) + alpha * sum of KL over the
    # whole chosen response; no length normalisation
    s_w, s_l = loop_sum(pc - rc, cs), loop_sum(pr - rr, rs)
    tkl = loop_sum(kl, cm)
    ref = neg_log_sigmoid(0.5 * (s_w - s_l)) + 0.05 * tkl
    torch.testing.assert_close(out.per_example, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.metrics["kl"], tkl.mean().detach())
    torch.testing.assert_close(out.metrics["rewards/chosen"], 0.5 * s_w.mean().detach())
    inputs = [pc, pr, kl]
    for g, r in zip(grads(out.loss, inputs), grads(ref.mean(), inputs)):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_rrpo_with_whole_response_spans_and_no_kl_is_dpo(gen, pair):
    names = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")
    cm, rm = pair["chosen_mask"], pair["rejected_mask"]
    kl = torch.rand(cm.shape, generator=gen, dtype=torch.float64)
    rrpo = rrpo_loss(*(pair[n] for n in names), cm, rm, kl, cm, beta=0.1, alpha=0.0)
    dpo = dpo_loss(*(pair[n] for n in names), cm, rm, beta=0.1)
    torch.testing.assert_close(rrpo.per_example, dpo.per_example, rtol=0, atol=0)


def test_rrpo_kl_term_counts_every_chosen_token_unnormalised(gen, pair):
    """alpha * TKL adds the plain sum of the per-token KL, whatever the spans."""
    names = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")
    cm, rm = pair["chosen_mask"], pair["rejected_mask"]
    kl = torch.full(cm.shape, 0.25, dtype=torch.float64)
    base = rrpo_loss(*(pair[n] for n in names), cm, rm, kl * 0, cm, alpha=2.0)
    with_kl = rrpo_loss(*(pair[n] for n in names), cm, rm, kl, cm, alpha=2.0)
    torch.testing.assert_close(with_kl.per_example - base.per_example, 2.0 * 0.25 * cm.sum(-1))
