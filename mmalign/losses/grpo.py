"""GRPO (Shao et al. 2024, https://arxiv.org/abs/2402.03300): group-relative advantages and
the clipped policy-gradient loss with a k3 KL penalty, as pure functions of tensors.

Follows TRL's GRPOTrainer (TRL 1.16, trl/trainer/grpo_trainer.py, `_compute_loss`) term by
term: advantages (r - group mean) / (group std + 1e-4) with the unbiased std, two-sided ratio
clipping with optional DAPO-style clip_eps_high, KL k3 = exp(lr - lp) - (lr - lp) - 1 added
per token (or k3 x ratio, TRL's use_bias_correction_kl), and TRL's normalisers: "token" =
bnpo, "sequence" = grpo, "dapo" (tokens across processes, `normalizer`), "dr_grpo".

Where we differ from TRL, on purpose or by scope:
- defaults: loss_type "token" (TRL: "dapo") and kl "k3" (TRL: k3_ratio), the DeepSeekMath
  forms; both of TRL's are one setting away (grpo.loss_type, grpo.kl_estimator);
- TRL's other losses (cispo, sapo, vespo, luspo), sequence-level importance sampling, the
  delta clip, entropy masking and vLLM importance-sampling correction are not implemented;
- rewards scale per group only (TRL also offers "batch" scaling).
"""

from __future__ import annotations

import torch

from mmalign.losses.preference import LossOutput, token_shares, weighted_mean, weighted_sum

Tensor = torch.Tensor

LOSS_TYPES = ("token", "sequence", "dapo", "dr_grpo")
KL_ESTIMATORS = ("k3", "k3_ratio")


def _groups(rewards: Tensor, group_size: int) -> Tensor:
    """[N] -> [N / group_size, group_size]; rewards of one prompt's samples are contiguous."""
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def group_advantages(rewards: Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-4) -> Tensor:
    """[N] rewards, G = group_size consecutive samples per prompt -> [N] advantages.

        A_i = (r_i - mean_g r) / (std_g r + eps)     (scale_by_std, GRPO / TRL scale_rewards="group")
        A_i =  r_i - mean_g r                          (scale_by_std=False, HARMO / TRL "none")

    std is the unbiased (Bessel) std, TRL's `nanstd`; a group of one sample gets A = 0.
    """
    g = _groups(rewards, group_size)
    adv = g - g.mean(1, keepdim=True)
    if scale_by_std:
        std = g.std(1, keepdim=True) if group_size > 1 else torch.zeros_like(adv)
        adv = adv / (std + eps)
    return adv.reshape(-1)


def all_equal_groups(rewards: Tensor, group_size: int) -> Tensor:
    """[N] -> bool [N / group_size]: groups whose rewards are all equal (zero advantage, so
    no policy gradient; the trainer counts them)."""
    g = _groups(rewards, group_size)
    return (g == g[:, :1]).all(1)


def grpo_loss(logps: Tensor, old_logps: Tensor | None, ref_logps: Tensor | None, advantages: Tensor,
              mask: Tensor, clip_eps: float = 0.2, clip_eps_high: float | None = None, beta: float = 0.04,
              loss_type: str = "token", kl_estimator: str = "k3", normalizer: float | None = None,
              max_completion_length: int | None = None) -> LossOutput:
    """Clipped GRPO loss.

    logps, old_logps, ref_logps: [B, T] per-token log-probs under the policy, the policy that
    sampled (None = logps.detach(): a single update per generation, ratio 1), the reference
    (None or beta == 0: no KL term); advantages: [B] (or [B, T]); mask: [B, T] completion mask.

        ratio_t = exp(lp_t - lp_old_t)
        l_t     = -min(ratio_t A, clip(ratio_t, 1 - eps, 1 + eps_high) A) + beta k3_t
        k3_t    = exp(lr_t - lp_t) - (lr_t - lp_t) - 1            ("k3_ratio": k3_t * ratio_t)
        "token":    sum_{b,t} m l / sum_{b,t} m                   (TRL "bnpo")
        "sequence": mean_b (sum_t m l / sum_t m)                  (TRL "grpo")
        "dapo":     sum_{b,t} m l / normalizer                    (TRL "dapo": normalizer = the active
                                                                   tokens of all processes / processes)
        "dr_grpo":  sum_{b,t} m l / (B * max_completion_length)    (TRL "dr_grpo")

    Metrics: kl (token mean of k3), clip_ratio (tokens whose clipped side is active, TRL's
    region ratio) and its low/high parts, advantage_mean/std.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length")
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    old = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + (clip_eps if clip_eps_high is None else clip_eps_high))
    per_token = -torch.min(ratio * adv, clipped * adv)
    metrics = {}
    if beta != 0 and ref_logps is not None:
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        if kl_estimator == "k3_ratio":  # the importance-sampling correction of the KL gradient
            kl = kl * ratio
        per_token = per_token + beta * kl
        metrics["kl"] = token_shares(kl, mask).mean()
    if loss_type == "token":
        per_example = token_shares(per_token, mask)
    elif loss_type == "sequence":
        per_example = weighted_mean(per_token, mask)
    elif loss_type == "dapo":
        local = mask.sum() if normalizer is None else normalizer
        per_example = weighted_sum(per_token, mask) * mask.shape[0] / max(float(local), 1.0)
    else:
        per_example = weighted_sum(per_token, mask) / max_completion_length
    low = (ratio < clipped) & (adv < 0)  # ratio below 1 - eps with A < 0: the clip binds
    high = (ratio > clipped) & (adv > 0)
    metrics.update({
        "clip_ratio": token_shares((low | high).to(ratio.dtype), mask).mean(),
        "clip_ratio/low": token_shares(low.to(ratio.dtype), mask).mean(),
        "clip_ratio/high": token_shares(high.to(ratio.dtype), mask).mean(),
        "advantage_mean": advantages.mean(),
        "advantage_std": advantages.std() if advantages.numel() > 1 else torch.zeros_like(advantages.mean())})
    return LossOutput.of(per_example, metrics)
