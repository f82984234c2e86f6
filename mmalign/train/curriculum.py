"""Orders in which a stage visits its records: shuffled, or easy-to-hard by `difficulty`.

Every order is a pure function of (difficulties, epochs, seed), so a resumed run skips
exactly the records it had seen and continues with the same ones.

- `shuffle`:    a seeded permutation per epoch.
- `ordered`:    ascending difficulty every epoch; ties broken by the epoch's permutation.
- `bucketed`:   `curriculum_buckets` equal-count buckets by difficulty, visited easy to hard;
                shuffled inside each bucket.
- `rising_cap`: competence-based sampling (Platanios et al. 2019): at progress p in [0, 1) of
                the stage, the competence is c(p) = min(1, sqrt(p (1 - c0^2) + c0^2)) and the next
                record is drawn uniformly from the easiest ceil(c(p) N) records (c0 =
                `curriculum_start`). Draws are with replacement; the stream has epochs x N items.

TEMPLE's stage-wise schedule (m = 16 -> 8 -> 4 -> 2, merge LoRA after each) is not a sampler:
it is one stage per strength, each reading only its records (`data.difficulty_min/max`).
"""

from __future__ import annotations

import math

import torch

ORDERS = ("shuffle", "ordered", "bucketed", "rising_cap")


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()


def _by_difficulty(difficulty: list[float], tiebreak: list[int]) -> list[int]:
    rank = {i: r for r, i in enumerate(tiebreak)}
    return sorted(range(len(difficulty)), key=lambda i: (difficulty[i], rank[i]))


def competence(progress: float, start: float) -> float:
    return min(1.0, math.sqrt(progress * (1 - start ** 2) + start ** 2))


def visit_order(difficulty: list[float], epochs: int, seed: int, order: str = "shuffle", buckets: int = 4,
                start: float = 0.25) -> list[int]:
    """Indices into the records, all epochs in one stream."""
    n = len(difficulty)
    if order not in ORDERS:
        raise ValueError(f"unknown curriculum {order!r}; known: {', '.join(ORDERS)}")
    if order == "rising_cap":
        easiest = _by_difficulty(difficulty, _permutation(n, seed, 0))
        g = torch.Generator().manual_seed(seed)
        total = epochs * n
        out = []
        for step in range(total):
            pool = max(1, math.ceil(competence(step / total, start) * n))
            out.append(easiest[int(torch.randint(pool, (1,), generator=g))])
        return out
    out = []
    for epoch in range(epochs):
        perm = _permutation(n, seed, epoch)
        if order == "shuffle":
            out += perm
        elif order == "ordered":
            out += _by_difficulty(difficulty, perm)
        else:  # bucketed
            ranked = _by_difficulty(difficulty, perm)
            bounds = [round(b * n / buckets) for b in range(buckets + 1)]
            for lo, hi in zip(bounds, bounds[1:]):
                members = set(ranked[lo:hi])
                out += [i for i in perm if i in members]
    return out


class OrderSampler(torch.utils.data.Sampler):
    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)
