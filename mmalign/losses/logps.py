"""Per-token log-probabilities and per-token KL from hidden states, in chunks.

A video LLM's sequence is mostly prompt (thousands of vision tokens), and its vocabulary is
large (Qwen2.5: 152k), so the [B, T, V] float32 logits of one batch can outweigh the model.
Here the LM head runs only on the positions that are scored (label != -100, or `mask`), a
chunk of at most `chunk_size` such positions at a time; with grad enabled each chunk is
checkpointed, so backward recomputes one chunk's logits at a time instead of keeping all.
Peak extra memory is O(chunk_size * V), whatever the batch size and sequence length.

All outputs are [B, T] float32 (float64 when the inputs are), zero where not scored.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100

Head = Callable[[torch.Tensor], torch.Tensor]


def _chunked(fn: Callable[..., torch.Tensor], rows: list[torch.Tensor], mask: torch.Tensor,
             chunk_size: int) -> torch.Tensor:
    """Apply `fn` to the positions where `mask` is True, `chunk_size` positions at a time.

    rows: tensors [B, T, ...]; fn(*[n, ...] slices) -> [n] float. Returns [B, T] (fn's dtype)
    with fn's values at `mask` and 0 elsewhere. Each chunk is checkpointed when grad is on.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    flat = [r[mask] for r in rows]  # [M, ...]: only the scored positions reach the head
    n = flat[0].shape[0]
    outs = []
    # max(n, 1): an all-masked batch still runs one empty chunk, so the result stays
    # connected to the graph (backward gives zero grads instead of failing).
    for s in range(0, max(n, 1), chunk_size):
        piece = [f[s:s + chunk_size] for f in flat]
        if torch.is_grad_enabled():
            outs.append(checkpoint(fn, *piece, use_reentrant=False))
        else:
            outs.append(fn(*piece))
    values = torch.cat(outs)
    return values.new_zeros(mask.shape).masked_scatter(mask, values)


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits -> float32: bf16 keeps ~3 significant digits, too few for log-probs."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _label_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] as gather - logsumexp, at least float32. logits [..., V], labels [...]."""
    logits = _upcast(logits)
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


class _LabelLogps(torch.autograd.Function):
    """log softmax(z)[y] for one chunk of logits z [n, V] (float32 or wider) in ONE [n, V]
    buffer: z itself becomes exp(z - max) in place (z must be a fresh head output or a copy of
    it: nothing else may need it, and autograd raises if something saved it), is kept for
    backward, and there becomes the gradient g * (onehot(y) - softmax(z)), again in place.
    Autograd's logsumexp + gather would hold z, an exp buffer, a softmax and a scattered
    one-hot: 4.1 such buffers at peak against 1.0 here (benchmarks/logps_memory.py).
    Returns (log-probs [n], z's buffer, not differentiable)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor):
        picked = z.gather(-1, y[:, None])
        m = z.amax(-1, keepdim=True)
        e = z.sub_(m).exp_()
        s = e.sum(-1, keepdim=True)
        ctx.mark_dirty(z)
        ctx.mark_non_differentiable(e)
        ctx.save_for_backward(e, s, y)
        ctx.set_materialize_grads(False)  # else autograd builds a zero [n, V] gradient for `e`
        ctx.spent = False
        return (picked - m - s.log()).squeeze(-1), e

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor, _):
        if ctx.spent:  # the saved buffer became the gradient
            raise RuntimeError("token_logps: backward ran twice through the same graph (retain_graph is not supported)")
        ctx.spent = True
        if g is None:
            return None, None
        e, s, y = ctx.saved_tensors
        grad = e.div_(s).mul_(-g[:, None])
        return grad.scatter_add_(-1, y[:, None], g[:, None]), None


def token_logps(hidden: torch.Tensor, labels: torch.Tensor, head: Head, chunk_size: int = 512,
                temperature: float = 1.0) -> torch.Tensor:
    """Per-token log p(label | prefix) without materialising the [B, T, V] logits.

    hidden: [B, T, H] last hidden states (any dtype), already aligned with `labels`
    (hidden[:, t] predicts labels[:, t]); labels: [B, T] long, -100 = not scored;
    head: hidden [n, H] -> logits [n, V] (e.g. the model's lm_head);
    chunk_size: scored positions per head call (bounds memory at chunk_size * V floats);
    temperature: logits are divided by it (as at sampling time, e.g. for GRPO).
    Returns [B, T] float32 (float64 for float64 inputs), 0 where labels == -100.
    """
    mask = labels != IGNORE_INDEX

    def chunk(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = _upcast(head(h))
        return _LabelLogps.apply(z / temperature if temperature != 1.0 else z, y)[0]

    return _chunked(chunk, [hidden, labels], mask, chunk_size)


def token_kl(hidden_policy: torch.Tensor, hidden_ref: torch.Tensor, head_policy: Head, head_ref: Head,
             mask: torch.Tensor | None = None, chunk_size: int = 512) -> torch.Tensor:
    """Per-token KL(pi_ref || pi_theta) over the full vocabulary, in chunks.

    KL_t = sum_v p_ref(v) (log p_ref(v) - log p_theta(v)), both sides by log_softmax in float32
    or wider (never softmax-then-log, which underflows to -inf on the tail of a 150k vocabulary).
    hidden_policy, hidden_ref: [B, T, H]; mask: [B, T] (bool or 0/1), None = every position.
    The reference side carries no gradient (its hidden states are detached and its head runs
    under no_grad, even when it is the policy's own head). Returns [B, T], 0 off mask.
    """
    mask = torch.ones(hidden_policy.shape[:2], dtype=torch.bool, device=hidden_policy.device) \
        if mask is None else mask.bool()

    def chunk(hp: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = F.log_softmax(_upcast(head_ref(hr)), dim=-1)
        pol = F.log_softmax(_upcast(head_policy(hp)), dim=-1)
        return (ref.exp() * (ref - pol)).sum(-1)

    return _chunked(chunk, [hidden_policy, hidden_ref.detach()], mask, chunk_size)


def logps_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs from full logits [B, T, V] (already aligned with labels [B, T]).

    The plain reference for `token_logps`, and the path to use where logits already exist.
    Returns [B, T] (float32 or wider), 0 where labels == -100.
    """
    mask = labels != IGNORE_INDEX
    lp = _label_logps(logits, labels.masked_fill(~mask, 0))
    return lp.masked_fill(~mask, 0.0)
