"""Per-token log-probs of a batch under a backbone, without materialising [N, L, V] logits.

`TokenScorer` is the module the trainer hands to accelerate (so DDP/FSDP wrap the whole
computation); it runs the backbone up to its last hidden state and scores the labels in
sequence chunks through the LM head (`mmalign.losses.logps`).

A batch collated with `shared_prompt=True` (keys `packed.*`, see `mmalign.models.packing`)
runs each prompt once for all of its responses (`mmalign.models.shared_prompt`); the outputs
keep the standard layout, row for row, so losses and references do not see the difference.
"""

from __future__ import annotations

import torch
from torch import nn

from mmalign.losses.logps import token_kl, token_logps
from mmalign.models.backbone import base_model
from mmalign.models.packing import is_packed
from mmalign.models.shared_prompt import scored_hidden


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels" and not k.startswith("weights.")}


def last_hidden(model, batch: dict) -> torch.Tensor:
    """[N, L, H] final hidden states (after the final norm) of the backbone's language model."""
    inner = base_model(model)
    return inner.model(**model_inputs(batch), use_cache=False).last_hidden_state


def lm_head(model) -> nn.Module:
    return base_model(model).lm_head


class TokenScorer(nn.Module):
    """forward(batch) -> {"logps": [N, L-1]} aligned with `batch["labels"][:, 1:]`.

    With `kl_rows` and `ref_hidden` given, also returns {"kl": [n, L-1]}: the per-token
    KL(pi_ref || pi_theta) over the full vocabulary for the first `kl_rows` rows (RRPO's
    chosen responses), computed from the reference's hidden states in chunks.
    """

    def __init__(self, model: nn.Module, chunk_size: int = 512, packing: str | None = None,
                 temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.temperature = temperature  # GRPO scores under softmax(logits / T), the sampling distribution
        self.packing = packing  # shared-prompt batches: "split", "mask" or "varlen"; None = by attention implementation

    def forward(self, batch: dict, ref_hidden: torch.Tensor | None = None, ref_head: nn.Module | None = None,
                kl_rows: int = 0, return_hidden: bool = False) -> dict:
        if is_packed(batch):
            return self.forward_shared(batch, ref_hidden, ref_head, kl_rows, return_hidden)
        hidden = last_hidden(self.model, batch)[:, :-1]
        labels = batch["labels"][:, 1:]
        head = lm_head(self.model)
        out = {"logps": token_logps(hidden, labels, head, self.chunk_size, self.temperature)}
        if kl_rows:
            mask = labels[:kl_rows] != -100
            out["kl"] = token_kl(hidden[:kl_rows], ref_hidden[:kl_rows], head, ref_head, mask, self.chunk_size)
        if return_hidden:
            out["hidden"] = hidden
        return out

    def forward_shared(self, batch, ref_hidden, ref_head, kl_rows, return_hidden) -> dict:
        """The same outputs from a shared-prompt batch. Only scored positions have hidden states
        here: "hidden" is [N, L-1, H] with zeros where labels[:, 1:] == -100."""
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        h = scored_hidden(self.model, batch, batch["labels"], self.packing)  # [M, H], row-major over `mask`
        head = lm_head(self.model)
        lp = token_logps(h[None], labels[mask][None], head, self.chunk_size, self.temperature)[0]
        out = {"logps": lp.new_zeros(mask.shape).masked_scatter(mask, lp)}
        if kl_rows:
            n_kl = int(mask[:kl_rows].sum())
            kl = token_kl(h[None, :n_kl], ref_hidden[:kl_rows][mask[:kl_rows]][None], head, ref_head, None,
                          self.chunk_size)[0]
            out["kl"] = kl.new_zeros(mask[:kl_rows].shape).masked_scatter(mask[:kl_rows], kl)
        if return_hidden:
            out["hidden"] = h.new_zeros((*mask.shape, h.shape[-1])).masked_scatter(mask[..., None], h)
        return out
