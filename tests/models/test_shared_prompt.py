"""Shared-prompt forward (mmalign/models/shared_prompt.py) against the two-pass forward.

Every number is compared with the standard layout (one full sequence per response, the
vision tower run per sequence) on the same tiny backbone: per-token log-probs, the gradients
of the trainer's DPO loss with respect to every parameter (vision tower included), RRPO's
token-wise KL, and how many pixels the vision tower sees.
"""

import pytest
import torch
from pair_batches import batches, pair_sequences, tiny

from mmalign.config import LossConfig
from mmalign.models.backbone import base_model, language_model
from mmalign.models.packing import PREFIX
from mmalign.models.shared_prompt import SPLIT
from mmalign.methods import compute_loss
from mmalign.train.scoring import TokenScorer

TOL = dict(rtol=1e-5, atol=1e-5)
CASES = [("qwen2_5_vl", "video"), ("qwen2_5_vl", "image+video"), ("qwen2_vl", "video"), ("qwen3_vl", "video"),
         ("qwen3_vl", "image+video"), ("llava", "image"), ("llava_next_video", "video"), ("llava_onevision", "video"),
         ("llava_onevision", "image"), ("internvl", "video"), ("internvl", "image"),
         ("glm4v", "video"), ("glm4v", "image"), ("smolvlm", "video"), ("smolvlm", "image")]


def dpo_step(model, batch, ref_logps, mode=None):
    """(per-token log-probs, DPO loss, {param name: grad}) through the trainer's own loss path."""
    model.zero_grad(set_to_none=True)
    policy = TokenScorer(model, chunk_size=5, packing=mode)(batch)
    out = compute_loss("dpo", LossConfig(beta=0.5), batch, 2, policy, {"logps": ref_logps})
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return policy["logps"].detach(), out.loss.detach(), grads


@pytest.mark.parametrize("kind,media,mode", [(k, m, "split") for k, m in CASES] +
                         [("qwen2_5_vl", "image+video", "mask"), ("llava", "image", "mask"),
                          ("qwen3_vl", "video", "mask"), ("llava_onevision", "video", "mask"), ("internvl", "video", "mask"),
                          ("glm4v", "video", "mask"), ("smolvlm", "video", "mask")])
def test_logps_and_dpo_gradients_equal_two_pass(kind, media, mode):
    """split: the default on sdpa (prompt + first response causal, later responses against the
    prompt's keys); mask: one sdpa call with the prefix-sharing boolean mask."""
    model, _ = tiny(kind)
    std, shared = batches(kind, media)
    mask = std["labels"][:, 1:] != -100
    ref = torch.randn(mask.shape, generator=torch.Generator().manual_seed(1)) * mask
    lp_std, loss_std, g_std = dpo_step(model, std, ref)
    lp_sh, loss_sh, g_sh = dpo_step(model, shared, ref, mode)
    assert lp_sh.shape == lp_std.shape and (lp_sh[~mask] == 0).all()
    torch.testing.assert_close(lp_sh, lp_std, **TOL)
    torch.testing.assert_close(loss_sh, loss_std, **TOL)
    assert g_sh.keys() == g_std.keys() and any(v in n for v in ("visual", "vision_tower", "vision_model") for n in g_std)
    for name in g_std:
        torch.testing.assert_close(g_sh[name], g_std[name], **TOL, msg=lambda m: f"{name}: {m}")


def test_shared_layout_writes_each_prompt_once():
    std, shared = batches("qwen2_5_vl", "image+video")
    n_prompt = int((shared[PREFIX + "branch"] == 0).sum())
    assert shared[PREFIX + "input_ids"].shape[0] == 2  # one row per record, both responses in it
    assert int(std["attention_mask"].sum()) - n_prompt * 2 == int((shared[PREFIX + "branch"] > 0).sum())
    for key in ("pixel_values", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        assert shared[PREFIX + key].shape[0] * 2 == std[key].shape[0]
    assert not any(k in shared for k in ("input_ids", "pixel_values", "pixel_values_videos"))


@pytest.mark.parametrize("kind,media,tower", [("qwen2_5_vl", "image+video", "visual"),
                                              ("llava", "image", "vision_tower"),
                                              ("llava_next_video", "video", "vision_tower"),
                                              ("smolvlm", "video", "vision_model")])
def test_vision_tower_runs_once_per_prompt(kind, media, tower):
    model, _ = tiny(kind)
    seen = []
    hook = getattr(base_model(model).model, tower).register_forward_hook(  # SmolVLM passes pixels by keyword
        lambda m, args, kwargs, out: seen.append((args[0] if args else kwargs["pixel_values"]).shape[0]),
        with_kwargs=True)
    try:
        std, shared = batches(kind, media)
        with torch.no_grad():
            TokenScorer(model)(std)
            n_std, seen[:] = sum(seen), []
            TokenScorer(model)(shared)
    finally:
        hook.remove()
    assert sum(seen) * 2 == n_std  # pixel rows (patches, images or frames) through the tower: half


def test_eager_attention_takes_the_additive_mask():
    model, _ = tiny("qwen2_5_vl")
    std, shared = batches("qwen2_5_vl", "video")
    with torch.no_grad():
        expected = TokenScorer(model)(std)["logps"]
        model.set_attn_implementation("eager")
        try:
            got = TokenScorer(model)(shared)["logps"]
        finally:
            model.set_attn_implementation("sdpa")
    torch.testing.assert_close(got, expected, **TOL)


def test_token_kl_and_hidden_equal_two_pass():
    """RRPO's path: the reference returns hidden states, the policy computes KL from them."""
    model, _ = tiny("qwen2_5_vl")
    std, shared = batches("qwen2_5_vl", "video")
    mask = std["labels"][:, 1:] != -100
    head = base_model(model).lm_head
    outs = []
    for batch in (std, shared):
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            ref = TokenScorer(model)(batch, return_hidden=True)
        # a reference that differs from the policy: its hidden states shifted
        ref_hidden = ref["hidden"] + 0.3 * torch.sin(torch.arange(ref["hidden"].numel()).view_as(ref["hidden"]))
        out = TokenScorer(model, chunk_size=3)(batch, ref_hidden=ref_hidden, ref_head=head, kl_rows=2)
        out["kl"].sum().backward()
        grad = base_model(model).lm_head.weight.grad.clone()
        outs.append((ref["hidden"][mask], out["kl"].detach(), grad))
    model.zero_grad(set_to_none=True)
    (h_std, kl_std, g_std), (h_sh, kl_sh, g_sh) = outs
    torch.testing.assert_close(h_sh, h_std, **TOL)
    assert kl_sh.shape == (2, mask.shape[1]) and (kl_std[mask[:2]] > 0).all()
    torch.testing.assert_close(kl_sh, kl_std, **TOL)
    torch.testing.assert_close(g_sh, g_std, **TOL)


def test_a_third_sequence_on_another_prompt_gets_its_own_group():
    """OSPO: chosen under the original and under a perturbed video (a different prompt)."""
    kind = "qwen2_5_vl"
    model, processor = tiny(kind)
    seqs = pair_sequences(kind, "video")
    other = pair_sequences(kind, "video", n=3)[2]  # record 2's prompt: another clip
    from mmalign.data.collate import Sequence, collate_sequences

    seqs = seqs + [Sequence(other.prompt, seqs[0].response_ids), Sequence(other.prompt, seqs[1].response_ids)]
    pad = processor.tokenizer.pad_token_id
    std, shared = collate_sequences(seqs, pad), collate_sequences(seqs, pad, shared_prompt=True)
    assert shared[PREFIX + "rows"].tolist() == [[0, 2], [1, 3], [4, 5]]
    config = language_model(model).config
    config._attn_implementation = "sdpa"
    with torch.no_grad():
        torch.testing.assert_close(TokenScorer(model)(shared)["logps"], TokenScorer(model)(std)["logps"], **TOL)
    assert config._attn_implementation == SPLIT  # the default on sdpa


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen3_vl", "glm4v", "internvl", "llava_onevision", "smolvlm"])
def test_gradient_checkpointing_replays_the_split_attention(kind):
    """Checkpointed layers rerun in backward, after the forward returned: the split layout
    must travel with the layer's arguments."""
    model, _ = tiny(kind)
    std, shared = batches(kind, "video")
    mask = std["labels"][:, 1:] != -100
    ref = torch.zeros(mask.shape)
    _, _, g_std = dpo_step(model, std, ref)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    try:
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
        _, _, g_sh = dpo_step(model, shared, ref, "split")
    finally:
        model.activation_checkpointing_disable()
    for name in g_std:
        torch.testing.assert_close(g_sh[name], g_std[name], **TOL, msg=lambda m: f"{name}: {m}")


def test_split_attention_leaves_other_forwards_unchanged():
    """Once a model is switched to the split attention, a forward without the shared layout
    (the standard batch, generation) is transformers' sdpa, bit for bit."""
    from mmalign.models.shared_prompt import use_split_attention

    model, _ = tiny("llava")
    std, _ = batches("llava", "image")
    config = language_model(model).config
    config._attn_implementation = "sdpa"
    with torch.no_grad():
        before = TokenScorer(model)(std)["logps"]
        use_split_attention(model)
        assert config._attn_implementation == SPLIT
        after = TokenScorer(model)(std)["logps"]
    assert torch.equal(before, after)


@pytest.mark.parametrize("mode", ["split", "varlen"])
def test_smolvlm_batch_of_an_image_record_and_a_video_record(mode):
    """SmolVLM stacks a prompt's images / frames as [1, N, C, H, W]: an image prompt (N = 1) and
    an 8-frame video prompt in one batch are zero-padded to N = 8 (`concat_visual`), and the
    model drops the padding images: both layouts equal each record scored alone."""
    from mmalign.data.collate import collate_sequences

    model, processor = tiny("smolvlm")
    pad = processor.tokenizer.pad_token_id
    (ci, ri), (cv, rv) = pair_sequences("smolvlm", "image", 1), pair_sequences("smolvlm", "video", 1)
    seqs = [ci, cv, ri, rv]
    std, shared = collate_sequences(seqs, pad), collate_sequences(seqs, pad, shared_prompt=True)
    assert std["pixel_values"].shape[:2] == (4, 8) and shared[PREFIX + "pixel_values"].shape[:2] == (2, 8)
    with torch.no_grad():
        alone = [TokenScorer(model)(collate_sequences([s], pad))["logps"][0] for s in seqs]
        for got in (TokenScorer(model)(std)["logps"], TokenScorer(model, packing=mode)(shared)["logps"]):
            for row, expected in zip(got, alone):
                n = expected.shape[0]
                torch.testing.assert_close(row[:n], expected, **TOL)
                assert (row[n:] == 0).all()
