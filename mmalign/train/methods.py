"""Methods as data: which weights a method reads and which loss function it calls.

A batch of n records with k sequences each is laid out as k blocks of n rows
([chosen..., rejected..., chosen-under-perturbed-condition...]); `split_rows` cuts a
[k*n, T] tensor back into those blocks. Every method is per-token log-probs plus per-token
weights handed to one function of `mmalign.losses`.
"""

from __future__ import annotations

import torch

from mmalign.config import LossConfig
from mmalign.losses import (LossOutput, dpo_loss, ipo_loss, mask_dpo_loss, ospo_loss, rpo_loss, rrpo_loss,
                            simpo_loss, sft_loss)

KL_METHODS = ("rrpo",)


def split_rows(x: torch.Tensor | None, k: int):
    return (None,) * k if x is None else x.chunk(k, dim=0)


def method_weights(method: str, batch: dict, k: int):
    """Per-block token weights ([n, T] each) a method scores with; None = all ones."""
    name = {"rrpo": "weights.span", "mask_dpo": "weights.keep"}.get(method)
    w = batch.get(name)[:, 1:] if name else None
    return split_rows(w, k)


def compute_loss(method: str, cfg: LossConfig, batch: dict, k: int, policy: dict, ref: dict | None) -> LossOutput:
    """`policy` / `ref`: outputs of TokenScorer ("logps" [k*n, T], "kl" for RRPO)."""
    mask = (batch["labels"][:, 1:] != -100).float()
    lp = split_rows(policy["logps"], k)
    rl = split_rows(ref["logps"] if ref else None, k)
    m = split_rows(mask, k)
    w = method_weights(method, batch, k)
    if method == "sft":
        return sft_loss(lp[0], m[0])
    if method == "simpo":
        return simpo_loss(lp[0], lp[1], m[0], m[1], beta=cfg.beta, gamma=cfg.gamma)
    if method == "ospo":
        return ospo_loss(lp[0], lp[1], lp[2], m[0], m[1], m[2], beta_simpo=cfg.beta, beta_copo=cfg.beta_copo,
                         weights=tuple(cfg.ospo_weights))
    pair = (lp[0], lp[1], rl[0], rl[1])
    if method == "rrpo":
        return rrpo_loss(*pair, w[0], w[1], policy["kl"], m[0], beta=cfg.beta, alpha=cfg.alpha)
    if method == "dpo":
        return dpo_loss(*pair, m[0], m[1], beta=cfg.beta, label_smoothing=cfg.label_smoothing)
    if method == "ipo":
        return ipo_loss(*pair, m[0], m[1], beta=cfg.beta)
    if method == "rpo":
        return rpo_loss(*pair, m[0], m[1], beta=cfg.beta, alpha=cfg.alpha)
    if method == "mask_dpo":
        return mask_dpo_loss(*pair, m[0], m[1], beta=cfg.beta, chosen_weights=w[0], rejected_weights=w[1])
    raise ValueError(f"method {method!r} has no loss here (grpo runs its own recipe)")


def preference_margins(method: str, batch: dict, k: int, logps: torch.Tensor) -> torch.Tensor:
    """[n] weighted log p(chosen) - log p(rejected) with the method's weights: the
    reference-free preference the summary reports before and after training."""
    mask = (batch["labels"][:, 1:] != -100).float()
    lp, m, w = split_rows(logps, k), split_rows(mask, k), method_weights(method, batch, k)
    def total(i):
        return (lp[i] * m[i] * (w[i] if w[i] is not None else 1.0)).sum(-1)
    return total(0) - total(1)
