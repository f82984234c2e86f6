"""Random per-token inputs for the loss tests (fixtures in conftest.py): float64, with a
prompt / response / padding layout in the masks, random token weights, and garbage (NaN)
where nothing is scored."""

import torch

B, T = 5, 11


def response_mask(gen: torch.Generator, b: int = B, t: int = T, empty_row: bool = False) -> torch.Tensor:
    """[b, t] float 0/1: each row is prompt zeros, a response of >= 1 ones, then padding zeros."""
    mask = torch.zeros(b, t, dtype=torch.float64)
    for i in range(b):
        start = int(torch.randint(0, t // 2, (1,), generator=gen))
        stop = int(torch.randint(start + 1, t + 1, (1,), generator=gen))
        mask[i, start:stop] = 1
    if empty_row:
        mask[-1] = 0
    return mask


def token_weights(gen: torch.Generator, b: int = B, t: int = T) -> torch.Tensor:
    """[b, t] floats in [0, 2), about a fifth of them exactly 0 (dropped tokens)."""
    w = 2 * torch.rand(b, t, generator=gen, dtype=torch.float64)
    return w * (torch.rand(b, t, generator=gen, dtype=torch.float64) > 0.2)


def random_logps(gen: torch.Generator, mask: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """[b, t] negative log-probs, NaN off the mask (padding must never leak into a loss)."""
    lp = -scale * torch.rand(mask.shape, generator=gen, dtype=torch.float64) - 0.05
    return lp.masked_fill(mask == 0, float("nan")).requires_grad_()


def grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d inputs with NaN (padding) entries set to 0 for comparison."""
    return [g.nan_to_num(0.0) for g in torch.autograd.grad(loss, inputs)]


# Independent float64 references: plain loops over positions, nothing from mmalign.

def loop_sum(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] -> [B]: sum of w * v over the positions with m == 1 and w != 0."""
    rows = []
    for b in range(values.shape[0]):
        total = torch.zeros((), dtype=torch.float64)
        for t in range(values.shape[1]):
            w = 1.0 if weights is None else weights[b, t].double()
            if mask[b, t] and w != 0:
                total = total + w * values[b, t].double()
        rows.append(total)
    return torch.stack(rows)


def loop_count(mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] -> [B]: sum of the weights of the kept positions."""
    ones = torch.ones(mask.shape, dtype=torch.float64)
    return loop_sum(ones, mask, weights)


def loop_mean(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] -> [B]: weighted mean over kept positions; 0 for a row that keeps nothing."""
    count = loop_count(mask, weights)
    return torch.stack([s / c if c != 0 else s * 0 for s, c in zip(loop_sum(values, mask, weights), count)])


def neg_log_sigmoid(z: torch.Tensor) -> torch.Tensor:
    return -torch.log(1 / (1 + torch.exp(-z)))
