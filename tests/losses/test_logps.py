"""Chunked per-token log-probs and KL against the full-vocabulary computation in float64."""

import pytest
import torch

from mmalign.losses import logps_from_logits, token_kl, token_logps

B, T, H, V = 3, 10, 6, 97  # V appears in no other dimension: a saved [.., V] tensor is logits


def setup(seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=gen, dtype=dtype).requires_grad_()
    head = torch.nn.Linear(H, V, bias=True).to(dtype)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 2)  # spread logits: log-probs far from uniform
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[0, :4] = -100  # prompt
    labels[1, 7:] = -100  # padding
    labels[2, :] = -100  # a row with nothing scored
    return hidden, head, labels


def loop_logps(hidden, head, labels, temperature=1.0):
    """float64, one position at a time: log(exp(z_y) / sum_v exp(z_v))."""
    w, b = head.weight.double(), head.bias.double()
    out = torch.zeros(labels.shape, dtype=torch.float64)
    for i in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[i, t] != -100:
                z = (w @ hidden[i, t].double() + b) / temperature
                out[i, t] = z[labels[i, t]] - torch.log(torch.exp(z - z.max()).sum()) - z.max()
    return out


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 512])
def test_token_logps_equals_full_logits(chunk_size):
    hidden, head, labels = setup()
    out = token_logps(hidden, labels, head, chunk_size=chunk_size)
    assert out.dtype == torch.float32 and out.shape == (B, T)
    torch.testing.assert_close(out, logps_from_logits(head(hidden), labels), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.double(), loop_logps(hidden, head, labels), rtol=1e-5, atol=1e-5)
    assert (out[labels == -100] == 0).all()


def test_token_logps_temperature():
    hidden, head, labels = setup(1)
    out = token_logps(hidden, labels, head, chunk_size=4, temperature=0.7)
    torch.testing.assert_close(out.double(), loop_logps(hidden, head, labels, 0.7), rtol=1e-5, atol=1e-5)


def test_token_logps_gradients_match_float64_full_softmax():
    hidden, head, labels = setup(2)
    weights = torch.rand(B, T, generator=torch.Generator().manual_seed(3))
    out = token_logps(hidden, labels, head, chunk_size=3)
    g_hidden, g_w, g_b = torch.autograd.grad((out * weights).sum(), [hidden, head.weight, head.bias])
    h64 = hidden.detach().double().requires_grad_()
    w64, b64 = head.weight.detach().double().requires_grad_(), head.bias.detach().double().requires_grad_()
    logits = h64 @ w64.T + b64
    safe = labels.clamp(min=0)
    ref = (logits.gather(-1, safe[..., None])[..., 0] - torch.log(torch.exp(logits).sum(-1))) * (labels != -100)
    r_hidden, r_w, r_b = torch.autograd.grad((ref * weights.double()).sum(), [h64, w64, b64])
    for g, r in [(g_hidden, r_hidden), (g_w, r_w), (g_b, r_b)]:
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-5)
    assert (g_hidden[2] == 0).all()  # nothing scored in row 2, no gradient


def test_token_logps_without_grad_and_in_bf16():
    hidden, head, labels = setup(4)
    with torch.no_grad():
        plain = token_logps(hidden, labels, head, chunk_size=5)
    torch.testing.assert_close(plain, logps_from_logits(head(hidden), labels), rtol=1e-5, atol=1e-5)
    out = token_logps(hidden.bfloat16(), labels, head.bfloat16(), chunk_size=5)
    assert out.dtype == torch.float32  # logits upcast before logsumexp
    torch.testing.assert_close(out, plain.detach(), rtol=0.05, atol=0.5)


def test_token_logps_all_masked_batch_still_backpropagates():
    hidden, head, _ = setup(5)
    out = token_logps(hidden, torch.full((B, T), -100), head, chunk_size=4)
    assert (out == 0).all()
    (g,) = torch.autograd.grad(out.sum(), [hidden])
    assert (g == 0).all()


class RecordingHead(torch.nn.Module):
    """Wraps a head and records the shape of every input it is called on."""

    def __init__(self, head):
        super().__init__()
        self.head, self.shapes = head, []

    def forward(self, h):
        self.shapes.append(tuple(h.shape))
        return self.head(h)


def saved_shapes(fn):
    """Shapes of every tensor autograd keeps for backward while running fn()."""
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, shapes


@pytest.mark.parametrize("chunk_size", [2, 5])
def test_token_logps_never_builds_more_than_a_chunk_of_logits(chunk_size):
    hidden, head, labels = setup(6)
    rec = RecordingHead(head)
    out, kept = saved_shapes(lambda: token_logps(hidden, labels, rec, chunk_size=chunk_size))
    n_scored = int((labels != -100).sum())
    forward_calls = len(rec.shapes)
    assert forward_calls == -(-n_scored // chunk_size)
    assert all(len(s) == 2 and s[0] <= chunk_size for s in rec.shapes)  # [n <= chunk_size, H], never [B, T, H]
    assert not any(V in s for s in kept)  # backward keeps no logits: chunks are checkpointed
    out.sum().backward()
    assert len(rec.shapes) == 2 * forward_calls  # each chunk's logits recomputed once in backward
    assert all(s[0] <= chunk_size for s in rec.shapes)


def test_token_kl_never_keeps_logits_for_backward():
    hidden, head, labels = setup(7)
    rec = RecordingHead(head)
    out, kept = saved_shapes(lambda: token_kl(hidden, hidden.detach() + 0.1, rec, rec, labels != -100, chunk_size=3))
    assert all(s[0] <= 3 for s in rec.shapes)
    assert not any(V in s for s in kept)


# ---------------------------------------------------------------- KL

def full_kl(h_pol, h_ref, w_pol, w_ref, b_pol, b_ref):
    """float64 KL(p_ref || p_pol) per position from the full logits."""
    lp = torch.log_softmax(h_pol @ w_pol.T + b_pol, -1)
    lr = torch.log_softmax(h_ref @ w_ref.T + b_ref, -1)
    return (lr.exp() * (lr - lp)).sum(-1)


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_token_kl_equals_full_vocabulary_kl_and_its_gradient(chunk_size):
    hidden, head, labels = setup(8)
    _, ref_head, _ = setup(9)
    hidden_ref = (hidden.detach() + 0.3 * torch.randn(B, T, H, generator=torch.Generator().manual_seed(10)))
    mask = labels != -100
    out = token_kl(hidden, hidden_ref, head, ref_head, mask, chunk_size=chunk_size)
    p64 = [x.detach().double().requires_grad_() for x in (hidden, head.weight, head.bias)]
    ref = full_kl(p64[0], hidden_ref.double(), p64[1], ref_head.weight.double(), p64[2], ref_head.bias.double())
    ref = ref * mask
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert (out[~mask] == 0).all() and (out[mask] > 0).all()
    got = torch.autograd.grad(out.sum(), [hidden, head.weight, head.bias])
    want = torch.autograd.grad(ref.sum(), p64)
    for g, r in zip(got, want):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-5)


def test_token_kl_reference_side_has_no_gradient_even_with_a_shared_head():
    hidden, head, labels = setup(11)
    hidden_ref = (hidden.detach() + 0.5).requires_grad_()
    out = token_kl(hidden, hidden_ref, head, head, None, chunk_size=4)
    out.sum().backward()
    assert hidden_ref.grad is None
    # the head's gradient is the policy side's only: d/dW of -sum_v p_ref log p_theta
    with torch.no_grad():
        p_ref = torch.softmax(head(hidden_ref).double(), -1)
    w = head.weight.detach().double().requires_grad_()
    logp = torch.log_softmax(hidden.detach().double() @ w.T + head.bias.detach().double(), -1)
    (want,) = torch.autograd.grad(-(p_ref * logp).sum(), [w])
    torch.testing.assert_close(head.weight.grad.double(), want, rtol=1e-4, atol=1e-5)


def test_token_kl_is_zero_for_identical_models():
    hidden, head, _ = setup(12)
    out = token_kl(hidden, hidden.detach(), head, head, chunk_size=6)
    torch.testing.assert_close(out, torch.zeros(B, T), rtol=0, atol=1e-5)


def test_token_logps_matches_trl_chunked_logprob_kernel():
    """TRL 1.x scores completions with its own chunked kernel (fused_lm_head); same numbers."""
    kernels = pytest.importorskip("trl.kernels.chunked_logprob")
    hidden, head, labels = setup(13)
    mask = labels != -100
    ours = token_logps(hidden, labels, head, chunk_size=4)
    theirs = kernels.ChunkedLogProbFunction.apply(hidden[mask], head.weight, head.bias, labels[mask], 1.0, 16,
                                                  None, 1.0, ())[0]
    torch.testing.assert_close(ours[mask], theirs, rtol=1e-5, atol=1e-5)


def test_token_logps_second_backward_through_one_graph_is_refused():
    """The chunk's saved exp(logits) buffer becomes its gradient: a second backward must fail loudly."""
    hidden, head, labels = setup(4)
    out = token_logps(hidden, labels, head, chunk_size=4)
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        out.sum().backward()
