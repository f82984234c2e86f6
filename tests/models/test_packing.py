"""Packed layouts (mmalign/models/packing.py): each prompt once, and padding-free rows.

The layout tests are model-free: for every scored label, the tokens its predicting position
can attend to (by the prefix-sharing mask, or by the position restarts that FlashAttention
varlen and transformers' sdpa block mask read) must be exactly the standard sequence before
that label, at positions 0, 1, 2, ... The model tests run the padding-free layout on CPU
(sdpa, block mask built by transformers from the position ids) against the unpacked forward.
"""

import pytest
import torch
from pair_batches import batches, tiny

from mmalign.config import LossConfig
from mmalign.data.collate import Sequence, collate_sequences
from mmalign.models.backbone import base_model
from mmalign.models.packing import PREFIX, plan_layout, prefix_sharing_mask
from mmalign.methods import compute_loss
from mmalign.train.scoring import TokenScorer

TOL = dict(rtol=1e-5, atol=1e-5)


def toy_sequences():
    """Three records; the third has a third response on its own (perturbed) prompt."""
    def prompt(ids, n_images):
        return {"input_ids": torch.tensor([ids]), "pixel_values": torch.full((n_images, 2), float(ids[0]))}
    p1, p2, p3, p3b = prompt([11, 12, 13, 14], 1), prompt([21, 22], 2), prompt([31, 32, 33], 1), prompt([41], 1)
    chosen = [Sequence(p1, [1, 2, 3]), Sequence(p2, [4]), Sequence(p3, [5, 6])]
    rejected = [Sequence(p1, [7]), Sequence(p2, [8, 9, 10, 11, 12]), Sequence(p3, [13, 14])]
    return chosen + rejected + [Sequence(p3b, [15, 16])]


def test_pack_shared_layout():
    seqs = toy_sequences()
    b = collate_sequences(seqs, pad_id=0, shared_prompt=True)
    assert b[PREFIX + "input_ids"].tolist() == [[11, 12, 13, 14, 1, 2, 3, 7], [21, 22, 4, 8, 9, 10, 11, 12],
                                                [31, 32, 33, 5, 6, 13, 14, 0], [41, 15, 16, 0, 0, 0, 0, 0]]
    assert b[PREFIX + "branch"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert b[PREFIX + "branch"][3].tolist() == [0, 1, 1, -1, -1, -1, -1, -1]
    assert b[PREFIX + "rows"].tolist() == [[0, 3], [1, 4], [2, 5], [6, -1]]
    assert b[PREFIX + "n_visual"].tolist() == [[1, 0], [2, 0], [1, 0], [1, 0]]
    assert b[PREFIX + "pixel_values"][:, 0].tolist() == [11, 21, 21, 31, 41]  # each prompt's images once
    torch.testing.assert_close(b["labels"], collate_sequences(seqs, pad_id=0)["labels"])


@pytest.mark.parametrize("mode", ["mask", "varlen"])
def test_every_label_sees_exactly_its_own_sequence(mode):
    seqs = toy_sequences()
    std, shared = collate_sequences(seqs, pad_id=0), collate_sequences(seqs, pad_id=0, shared_prompt=True)
    plan = plan_layout(shared, std["labels"], mode)
    ids, width = plan.input_ids, plan.input_ids.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    if mode == "mask":
        visible = prefix_sharing_mask(plan.branch)[:, 0]
    else:  # a sequence starts where the position restarts at 0: what FA2 varlen / sdpa's block mask read
        assert ids.shape[0] == 1 and (plan.input_ids != 0).all()  # one row, no padding
        doc = (plan.text_pos == 0).cumsum(-1)
        visible = causal & (doc[:, :, None] == doc[:, None, :])
    mask = std["labels"][:, 1:] != -100
    assert len(plan.src) == int(mask.sum())
    for m, (r, c) in enumerate(mask.nonzero().tolist()):
        b, t = divmod(int(plan.src[m]), width)
        seen = visible[b, t].nonzero().flatten()
        assert ids[b, seen].tolist() == std["input_ids"][r, :c + 1].tolist(), (r, c)
        assert plan.text_pos[b, seen].tolist() == list(range(c + 1)), (r, c)


def test_plan_rejects_a_batch_that_does_not_match_its_labels():
    seqs = toy_sequences()
    shared = collate_sequences(seqs, pad_id=0, shared_prompt=True)
    labels = collate_sequences(seqs[:1] + [Sequence(seqs[1].prompt, [4, 4])] + seqs[2:], pad_id=0)["labels"]
    with pytest.raises(ValueError, match="row 1"):
        plan_layout(shared, labels, "mask")


@pytest.mark.parametrize("kind,media", [("qwen2_5_vl", "image+video"), ("qwen2_vl", "image"), ("llava", "image"),
                                        ("llava_next_video", "video"), ("qwen3_vl", "video"), ("llava_onevision", "video"),
                                        ("internvl", "video"), ("glm4v", "video"), ("smolvlm", "video")])
def test_padding_free_packed_logps_equal_unpacked(kind, media):
    model, _ = tiny(kind)
    std, shared = batches(kind, media, n=3)
    with torch.no_grad():
        expected = TokenScorer(model)(std)["logps"]
        got = TokenScorer(model, chunk_size=7, packing="varlen")(shared)["logps"]
    torch.testing.assert_close(got, expected, **TOL)


def test_padding_free_dpo_gradients_and_vision_once():
    model, _ = tiny("qwen2_5_vl")
    std, shared = batches("qwen2_5_vl", "image+video")
    mask = std["labels"][:, 1:] != -100
    ref = torch.randn(mask.shape, generator=torch.Generator().manual_seed(2)) * mask
    seen = []
    hook = base_model(model).model.visual.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    grads = []
    try:
        for batch, packing in ((std, None), (shared, "varlen")):
            model.zero_grad(set_to_none=True)
            seen.clear()
            policy = TokenScorer(model, chunk_size=7, packing=packing)(batch)
            compute_loss("dpo", LossConfig(beta=0.5), batch, 2, policy, {"logps": ref}).loss.backward()
            grads.append(({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, sum(seen)))
    finally:
        hook.remove()
        model.zero_grad(set_to_none=True)
    (g_std, rows_std), (g_packed, rows_packed) = grads
    assert rows_packed * 2 == rows_std  # vision features computed once per prompt, copied per sequence
    assert g_packed.keys() == g_std.keys()
    for name in g_std:
        torch.testing.assert_close(g_packed[name], g_std[name], **TOL, msg=lambda m: f"{name}: {m}")


def test_flex_block_mask_is_the_prefix_sharing_mask():
    """The BlockMask for attn_implementation="flex_attention" (GPU) against the dense mask,
    through flex_attention's eager reference path (compiled CPU flex is not what this checks)."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    from mmalign.models.packing import flex_block_mask

    branch = torch.tensor([[0] * 20 + [1] * 10 + [2] * 7 + [-1] * 19, [0] * 30 + [1] * 5 + [2] * 21])
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, branch.shape[1], 8, generator=gen) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=prefix_sharing_mask(branch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = flex_attention(q, k, v, block_mask=flex_block_mask(branch))
    torch.testing.assert_close(got, expected, **TOL)
