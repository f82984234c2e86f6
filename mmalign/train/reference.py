"""The reference policy: a frozen copy, the policy with its LoRA adapters disabled, or
log-probs precomputed once and cached on disk.

Each kind is a callable `ref(batch, records, k, want_hidden) -> {"logps", ["hidden", "head"]}`
under no_grad. The precomputed kind stores each response's token log-probs in safetensors,
keyed by record id and a fingerprint of the reference weights, so a second run (or a resumed
one) reads them instead of running the reference model.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mmalign.train.scoring import TokenScorer, lm_head


def frozen_copy(model):
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


class ModelReference:
    """A frozen copy of the initial policy, or (`disable_adapters`) the policy itself with
    its LoRA adapters switched off: the same weights LoRA started from, at no memory cost."""

    def __init__(self, scorer: TokenScorer, disable_adapters: bool = False):
        self.scorer = scorer
        self.disable_adapters = disable_adapters

    @torch.no_grad()
    def __call__(self, batch, records=None, k=1, want_hidden=False) -> dict:
        ctx = self.scorer.model.disable_adapter() if self.disable_adapters else contextlib.nullcontext()
        with ctx:
            out = self.scorer(batch, return_hidden=want_hidden)
        if want_hidden:
            out["head"] = lm_head(self.scorer.model)
        return out


def model_fingerprint(model) -> str:
    """Cheap identity of a model's weights: config plus per-tensor float64 sums."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(repr(float(p.detach().double().sum())).encode())
    return h.hexdigest()[:16]


class PrecomputedReference:
    """Reference log-probs read from a cache filled by `fill(batches)` before training."""

    def __init__(self, path: Path):
        self.path = path
        self.table: dict[str, torch.Tensor] = load_file(str(path)) if path.exists() else {}

    @staticmethod
    def key(record_id: str, block: int) -> str:
        return f"{record_id}::{block}"

    def missing(self, records, k: int) -> bool:
        return any(self.key(r.id, b) not in self.table for r in records for b in range(k))

    def add(self, batch: dict, records, k: int, logps: torch.Tensor) -> None:
        mask = batch["labels"][:, 1:] != -100
        for row in range(logps.shape[0]):
            block, i = divmod(row, len(records))
            self.table[self.key(records[i].id, block)] = logps[row][mask[row]].float().cpu().contiguous()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_file(self.table, str(tmp))
        tmp.replace(self.path)

    def __call__(self, batch, records, k, want_hidden=False) -> dict:
        if want_hidden:
            raise ValueError("a precomputed reference has no hidden states: RRPO's token-wise KL needs "
                             "train.reference=copy or lora_disabled")
        mask = batch["labels"][:, 1:] != -100
        out = torch.zeros(mask.shape)
        for row in range(mask.shape[0]):
            block, i = divmod(row, len(records))
            out[row][mask[row]] = self.table[self.key(records[i].id, block)]
        return {"logps": out.to(batch["labels"].device)}
