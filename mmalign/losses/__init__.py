"""The token-weighted loss layer: per-token log-probs (`logps`), preference losses
(`preference`) and GRPO (`grpo`), each a pure function of tensors returning `LossOutput`."""

from mmalign.losses.grpo import all_equal_groups, group_advantages, grpo_loss
from mmalign.losses.logps import logps_from_logits, token_kl, token_logps
from mmalign.losses.preference import (LossOutput, dpo_loss, ipo_loss, mask_dpo_loss, ospo_loss, rpo_loss,
                                       rrpo_loss, sft_loss, simpo_loss, token_shares, weighted_mean,
                                       weighted_sum)

__all__ = [
    "LossOutput", "weighted_sum", "weighted_mean", "token_shares",
    "sft_loss", "dpo_loss", "ipo_loss", "simpo_loss", "rpo_loss", "rrpo_loss", "mask_dpo_loss", "ospo_loss",
    "group_advantages", "grpo_loss", "all_equal_groups",
    "token_logps", "token_kl", "logps_from_logits",
]
