"""The token-weighted preference losses: pure functions of per-token tensors.

Conventions (all losses):
  per-token tensors are [B, T] and already aligned: logps[b, t] = log p(label[b, t] | prefix);
  `*_mask` is the response mask (bool or 0/1), `*_weights` optional per-token floats (None = 1);
  the sequence quantity is h(y) = sum_t m_t w_t (lp_t - lr_t) (`weighted_sum`), or its
  length-normalised form sum_t m_t w_t v_t / sum_t m_t w_t (`weighted_mean`).
Every loss returns `LossOutput` with `loss == per_example.mean()`; for token-level averages
(SFT, RPO's NLL) `per_example` holds each row's share of the batch sum, scaled by B.
Rewards logged as in TRL: beta * h(y) with the loss's own log-ratio (or log-prob when
reference-free); "rewards/accuracy" is the fraction of pairs with a positive margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass
class LossOutput:
    loss: Tensor  # scalar, mean of per_example, differentiable
    per_example: Tensor  # [B] per-example losses, differentiable
    metrics: dict[str, Tensor]  # detached scalar tensors for logging

    @classmethod
    def of(cls, per_example: Tensor, metrics: dict[str, Tensor]) -> LossOutput:
        """loss = per_example.mean(); metrics detached."""
        return cls(per_example.mean(), per_example, {k: v.detach() for k, v in metrics.items()})


# ---------------------------------------------------------------- the token-weighted core

def _coef(mask: Tensor, weights: Tensor | None, like: Tensor) -> Tensor:
    """m_t * w_t in the dtype of `like`."""
    coef = mask.to(like.dtype)
    return coef if weights is None else coef * weights.to(like.dtype)


def _nonzero(den: Tensor) -> Tensor:
    # An empty row (no token kept) divides by 1 and so contributes 0, not NaN.
    return den.masked_fill(den == 0, 1)


def weighted_sum(values: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """[B, T] -> [B]: sum_t m_t w_t v_t.

    Positions with m_t w_t == 0 are zeroed before the product, so padding holding inf/NaN
    (e.g. log-probs of pad tokens) never leaks into the sum or its gradient.
    """
    coef = _coef(mask, weights, values)
    return (values.masked_fill(coef == 0, 0) * coef).sum(-1)


def weighted_mean(values: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """[B, T] -> [B]: sum_t m_t w_t v_t / sum_t m_t w_t (0 for a row with no weight)."""
    return weighted_sum(values, mask, weights) / _nonzero(_coef(mask, weights, values).sum(-1))


def token_shares(values: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """[B, T] -> [B] per-row shares of the batch token mean, so that shares.mean() equals
    sum_{b,t} m w v / sum_{b,t} m w (HF cross-entropy averaging: every token counts the same,
    long responses weigh more than short ones)."""
    total = _coef(mask, weights, values).sum()
    return weighted_sum(values, mask, weights) * values.shape[0] / _nonzero(total)


def _bradley_terry(z: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """-(1 - eps) log sigmoid(z) - eps log sigmoid(-z): the logistic preference loss, with
    conservative label smoothing eps (cDPO; TRL's CPO "sigmoid", TRL < 1.0's DPO "sigmoid")."""
    loss = -F.logsigmoid(z)
    return loss if label_smoothing == 0 else (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-z)


def _reward_metrics(chosen: Tensor, rejected: Tensor) -> dict[str, Tensor]:
    margin = chosen - rejected
    return {"rewards/chosen": chosen.mean(), "rewards/rejected": rejected.mean(),
            "rewards/margin": margin.mean(), "rewards/accuracy": (margin > 0).to(margin.dtype).mean()}


# ---------------------------------------------------------------- losses

def sft_loss(logps: Tensor, mask: Tensor, weights: Tensor | None = None) -> LossOutput:
    """Token-level NLL: -sum_{b,t} m w lp / sum_{b,t} m w (as HF's cross-entropy: a batch
    mean over tokens, not over sequences). logps, mask, weights: [B, T]."""
    per_example = token_shares(-logps, mask, weights)
    return LossOutput.of(per_example, {"nll": per_example.mean()})


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             chosen_mask: Tensor, rejected_mask: Tensor, beta: float = 0.1,
             chosen_weights: Tensor | None = None, rejected_weights: Tensor | None = None,
             label_smoothing: float = 0.0) -> LossOutput:
    """DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290), token-weighted.

        h(y)  = sum_t m_t w_t (lp_t - lr_t)
        z     = beta * (h(y_w) - h(y_l))
        loss  = -(1 - eps) log sigmoid(z) - eps log sigmoid(-z)      (eps = label_smoothing)

    With w = 1 and eps = 0 this is TRL's DPOTrainer loss_type="sigmoid" (sums of completion
    log-probs). eps > 0 is conservative DPO (cDPO), the label smoothing of TRL's pre-1.0
    "sigmoid" loss; TRL 1.x's "sigmoid" ignores label_smoothing. All per-token inputs [B, T].
    Rewards: beta * h.
    """
    h_w = weighted_sum(policy_chosen - ref_chosen, chosen_mask, chosen_weights)
    h_l = weighted_sum(policy_rejected - ref_rejected, rejected_mask, rejected_weights)
    per_example = _bradley_terry(beta * (h_w - h_l), label_smoothing)
    return LossOutput.of(per_example, {
        **_reward_metrics(beta * h_w, beta * h_l),
        "logps/chosen": weighted_sum(policy_chosen, chosen_mask, chosen_weights).mean(),
        "logps/rejected": weighted_sum(policy_rejected, rejected_mask, rejected_weights).mean()})


def ipo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             chosen_mask: Tensor, rejected_mask: Tensor, beta: float = 0.1,
             chosen_weights: Tensor | None = None, rejected_weights: Tensor | None = None) -> LossOutput:
    """IPO (Azar et al. 2023, https://arxiv.org/abs/2310.12036, Eq. 17), length-averaged:

        a(y) = sum_t m_t w_t (lp_t - lr_t) / sum_t m_t w_t
        loss = (a(y_w) - a(y_l) - 1 / (2 beta))^2

    As TRL's loss_type="ipo" (which divides the summed log-ratios by the completion length;
    confirmed with the IPO authors per TRL's comment). Rewards: beta * h (sums), as TRL logs.
    """
    a_w = weighted_mean(policy_chosen - ref_chosen, chosen_mask, chosen_weights)
    a_l = weighted_mean(policy_rejected - ref_rejected, rejected_mask, rejected_weights)
    per_example = (a_w - a_l - 1 / (2 * beta)) ** 2
    h_w = weighted_sum(policy_chosen - ref_chosen, chosen_mask, chosen_weights)
    h_l = weighted_sum(policy_rejected - ref_rejected, rejected_mask, rejected_weights)
    return LossOutput.of(per_example, _reward_metrics(beta * h_w, beta * h_l))


def simpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, chosen_mask: Tensor, rejected_mask: Tensor,
               beta: float = 2.0, gamma: float = 0.5, chosen_weights: Tensor | None = None,
               rejected_weights: Tensor | None = None) -> LossOutput:
    """SimPO (Meng et al. 2024, https://arxiv.org/abs/2405.14734), reference-free:

        l(y) = sum_t m_t w_t lp_t / sum_t m_t w_t
        loss = -log sigmoid(beta (l(y_w) - l(y_l)) - gamma)

    gamma is the margin itself (TRL's CPO "simpo" writes beta * (delta - simpo_gamma / beta),
    the same number). Rewards: beta * l(y).
    """
    l_w = weighted_mean(policy_chosen, chosen_mask, chosen_weights)
    l_l = weighted_mean(policy_rejected, rejected_mask, rejected_weights)
    per_example = _bradley_terry(beta * (l_w - l_l) - gamma)
    return LossOutput.of(per_example, {**_reward_metrics(beta * l_w, beta * l_l),
                                 "logps/chosen": l_w.mean(), "logps/rejected": l_l.mean()})


def rpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             chosen_mask: Tensor, rejected_mask: Tensor, beta: float = 0.1, alpha: float = 1.0,
             chosen_weights: Tensor | None = None, rejected_weights: Tensor | None = None,
             label_smoothing: float = 0.0) -> LossOutput:
    """RPO (Pang et al. 2024, https://arxiv.org/abs/2404.19733): DPO + alpha * NLL(y_w).

        loss = dpo_loss + alpha * (-sum_{b,t} m lp_w / sum_{b,t} m)

    The NLL is averaged over all chosen tokens of the batch and unweighted, as TRL's
    rpo_alpha / loss_type=["sigmoid", "sft"] and ms-swift's DPO (TEMPLE's default, alpha 1).
    """
    dpo = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_mask, rejected_mask,
                   beta, chosen_weights, rejected_weights, label_smoothing)
    nll = sft_loss(policy_chosen, chosen_mask)
    return LossOutput.of(dpo.per_example + alpha * nll.per_example, {**dpo.metrics, "nll": nll.loss})


def rrpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
              chosen_span_mask: Tensor, rejected_span_mask: Tensor, chosen_token_kl: Tensor,
              chosen_mask: Tensor, beta: float = 0.1, alpha: float = 0.01) -> LossOutput:
    """RRPO (Sarkar & Etemad 2025, https://arxiv.org/abs/2504.12083; official code
    github.com/pritamqu/RRPO, llava/losses.py, whose signs we follow):

        u    = sum_{t in chosen spans} (lp_t - lr_t) - sum_{t in rejected spans} (lp_t - lr_t)
        TKL  = sum_{t in chosen response} KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))
        loss = -log sigmoid(beta u) + alpha TKL          (batch mean, no length normalisation)

    chosen/rejected_span_mask: [B, T] marks (or weights) the tokens of the differing phrases;
    they are expected to lie inside the response. chosen_token_kl: [B, T] per-token KL (from
    `token_kl`); chosen_mask: [B, T] the whole chosen response. Summing per phrase pair and
    then over pairs, as the official code does, gives the same u.
    Rewards: beta * span sums, as the official code logs them.
    """
    s_w = weighted_sum(policy_chosen - ref_chosen, chosen_span_mask)
    s_l = weighted_sum(policy_rejected - ref_rejected, rejected_span_mask)
    tkl = weighted_sum(chosen_token_kl, chosen_mask)
    per_example = _bradley_terry(beta * (s_w - s_l)) + alpha * tkl
    return LossOutput.of(per_example, {**_reward_metrics(beta * s_w, beta * s_l), "kl": tkl.mean()})


def mask_dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
                  chosen_mask: Tensor, rejected_mask: Tensor, beta: float = 0.1,
                  chosen_weights: Tensor | None = None, rejected_weights: Tensor | None = None) -> LossOutput:
    """Mask-DPO (Gu et al. 2025, https://arxiv.org/abs/2503.02846; official code
    github.com/open-compass/ANAH): sentence-level factuality masks on DPO.

        S(y) = sum_t m_t k_t lp_t,  S_ref(y) = sum_t m_t k_t lr_t
        z    = (S(y_w) - S(y_l)) - (S_ref(y_w) - S_ref(y_l));   loss = -log sigmoid(beta z)

    k = the keep-masks (chosen: its factual sentences; rejected: its hallucinated ones; tokens
    outside every labelled sentence kept on both sides), the SAME mask on policy and reference.
    That is exactly `dpo_loss` with k as the token weights, which is what this calls.
    """
    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_mask, rejected_mask,
                    beta, chosen_weights, rejected_weights)


def ospo_loss(policy_chosen: Tensor, policy_rejected: Tensor, policy_chosen_perturbed: Tensor,
              chosen_mask: Tensor, rejected_mask: Tensor, perturbed_mask: Tensor,
              beta_simpo: float = 3.0, beta_copo: float = 5.0, gamma_simpo: float | None = None,
              gamma_copo: float | None = None, weights: tuple[float, float, float] = (0.8, 0.5, 1.5),
              chosen_weights: Tensor | None = None, rejected_weights: Tensor | None = None,
              perturbed_weights: Tensor | None = None) -> LossOutput:
    """OSPO (2025; official code github.com/KU-AGI/OSPO, ospo/wrapper/train*.py), reference-free.

        l(y|c)  = sum_t m_t w_t lp_t / sum_t m_t w_t       (weighted mean; w = 1 + a * object mask
                                                          in their later version)
        L_SimPO = -log sigmoid(b1 (l(y_w|x) - l(y_l|x)) - g1)
        L_CoPO  = -log sigmoid(b2 (l(y_w|x) - l(y_w|x~)) - g2)   (same chosen response, original
                                                                  vs perturbed condition x~)
        L_SFT   = token-level NLL of y_w (unweighted, as their CrossEntropyLoss)
        loss    = 0.8 L_SimPO + 0.5 L_CoPO + 1.5 L_SFT,   g = 0.5 b by default (gamma_beta_ratio)

    policy_chosen_perturbed, perturbed_mask, perturbed_weights: [B, T'] the chosen response
    scored under the perturbed condition.
    """
    g1 = 0.5 * beta_simpo if gamma_simpo is None else gamma_simpo
    g2 = 0.5 * beta_copo if gamma_copo is None else gamma_copo
    simpo = simpo_loss(policy_chosen, policy_rejected, chosen_mask, rejected_mask, beta_simpo, g1,
                       chosen_weights, rejected_weights)
    copo = simpo_loss(policy_chosen, policy_chosen_perturbed, chosen_mask, perturbed_mask, beta_copo, g2,
                      chosen_weights, perturbed_weights)
    sft = sft_loss(policy_chosen, chosen_mask)
    w_simpo, w_copo, w_sft = weights
    per_example = w_simpo * simpo.per_example + w_copo * copo.per_example + w_sft * sft.per_example
    return LossOutput.of(per_example, {
        **simpo.metrics, "loss/simpo": simpo.loss, "loss/copo": copo.loss, "nll": sft.loss,
        "copo/margin": copo.metrics["rewards/margin"], "copo/accuracy": copo.metrics["rewards/accuracy"]})
