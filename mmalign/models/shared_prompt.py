"""Shared-prompt forward: a pair's prompt (video tokens included) encoded once, every response
scored against it, with the same per-token log-probs and gradients as one forward per response.

Why a packed row with a prefix-sharing mask rather than a KV-cache split: it is one ordinary
forward of the backbone, so gradient checkpointing, LoRA, DDP/FSDP wrapping and autocast
behave exactly as in the two-pass forward, and gradients reach the prompt through plain
attention (a cache split needs the cache kept in the graph and breaks with checkpointing).
The wasted work is one response attending (masked) over the other, a few percent of a
video-heavy row. See `mmalign.models.packing` for the layout and the two ways it runs:

- "mask" (eager, sdpa, flex_attention): one row per prompt, [prompt | chosen | rejected],
  a 4D mask (sdpa: bool; eager: additive float; flex: a BlockMask that skips the masked
  blocks) and explicit positions: each response's positions continue from the end of the
  prompt, independently of the other response.
- "varlen" (flash_attention_2/3): padding-free, one row of [prompt|chosen][prompt|rejected]...
  with positions restarting per sequence, which transformers hands to flash_attn_varlen as
  cu_seqlens; the vision tower still runs once per prompt (features are copied through
  `mm_encoder_outputs`), the LLM runs the prompt once per response.

Positions per family: LLaVA (Llama/Qwen2 language models) takes 1D positions. Qwen2-VL and
Qwen2.5-VL take 3D multimodal rotary positions: the prompt's are computed once by the model's
own `get_rope_index` (which knows the vision grids, the merge size and, for 2.5, the video's
seconds per grid), and a response's text positions continue from max(prompt positions) + 1 on
all three axes, exactly as `get_rope_index` would number them in the full sequence.
"""

from __future__ import annotations

import inspect

import torch

from mmalign.models.backbone import base_model, family_of
from mmalign.models.packing import PREFIX, Plan, flex_block_mask, packed_visual, plan_layout, prefix_sharing_mask

IMAGE_KEYS = ("pixel_values", "image_grid_thw", "image_sizes")
VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw")


def attn_implementation(model) -> str:
    inner = base_model(model)
    text = getattr(inner.config, "text_config", None) or inner.config
    return text._attn_implementation or inner.config._attn_implementation or "eager"


def default_mode(model) -> str:
    """"varlen" for FlashAttention (it cannot take a prefix-sharing mask), else "mask"."""
    return "varlen" if "flash" in attn_implementation(model) else "mask"


def scored_hidden(model, batch: dict, labels: torch.Tensor, mode: str | None = None) -> torch.Tensor:
    """[M, H] final hidden states (after the final norm) predicting each scored label.

    batch: a `pack_shared` batch (keys `packed.*`); labels: [N, L] in the standard layout.
    Row m is the hidden state that predicts the m-th True of `labels[:, 1:] != -100` in
    row-major order, so `token_logps(h[None], labels[:, 1:][mask][None], head)` gives the
    same numbers as the standard forward's log-probs at those positions.
    """
    inner = base_model(model)
    vlm = inner.model
    mode = mode or default_mode(model)
    impl = attn_implementation(model)
    if mode == "mask" and "flash" in impl:
        raise ValueError(f"attn_implementation={impl} cannot take a prefix-sharing mask: use mode='varlen'")
    if mode == "mask" and getattr(vlm.language_model, "has_sliding_layers", False):
        raise NotImplementedError("shared-prompt forward with sliding-window layers: set train.shared_prompt=false")
    plan = plan_layout(batch, labels, mode)
    device = batch[PREFIX + "input_ids"].device
    visual = packed_visual(batch)
    if family_of(model).name == "qwen":
        position_ids = qwen_positions(vlm, batch, plan).to(device)
        if mode == "varlen":  # the text row first: transformers reads sequence boundaries from it
            position_ids = torch.cat([plan.text_pos.to(device)[None], position_ids])
    else:
        position_ids = plan.text_pos.to(device)
    if mode == "mask":
        branch = plan.branch.to(device)
        if impl == "flex_attention":
            attention_mask = flex_block_mask(branch)
        elif impl == "eager":
            dtype = inner.dtype
            attention_mask = torch.zeros(branch.shape[0], 1, branch.shape[1], branch.shape[1], dtype=dtype,
                                         device=device).masked_fill(~prefix_sharing_mask(branch), torch.finfo(dtype).min)
        else:
            attention_mask = prefix_sharing_mask(branch)
        extra = visual
    else:
        attention_mask = None
        n_visual = batch[PREFIX + "n_visual"].tolist()
        extra = {"mm_encoder_outputs": vision_once(vlm, visual, n_visual, plan.copies)} if visual else {}
    hidden = vlm(input_ids=plan.input_ids.to(device), attention_mask=attention_mask, position_ids=position_ids,
                 use_cache=False, **extra).last_hidden_state
    return hidden.flatten(0, 1)[plan.src.to(device)]


def qwen_positions(vlm, batch: dict, plan: Plan) -> torch.Tensor:
    """[3, B, T] multimodal rotary positions of the forward layout (0 on padding)."""
    ids = batch[PREFIX + "input_ids"]
    types = batch[PREFIX + "mm_token_type_ids"]
    n_visual = batch[PREFIX + "n_visual"].tolist()
    per_item = {"image_grid_thw": 0, "video_grid_thw": 1, "second_per_grid_ts": 1}
    starts = [[0, 0]]
    for n_img, n_vid in n_visual:
        starts.append([starts[-1][0] + n_img, starts[-1][1] + n_vid])
    rope = {}
    for seg in plan.segments:
        g = seg.group
        if seg.branch != 0 or g in rope:
            continue
        grids = {}
        for key, m in per_item.items():
            if PREFIX + key in batch and n_visual[g][m]:
                grids[key] = batch[PREFIX + key][starts[g][m]:starts[g + 1][m]]
        plen = seg.length
        rope[g] = vlm.get_rope_index(input_ids=ids[g:g + 1, :plen], mm_token_type_ids=types[g:g + 1, :plen],
                                     attention_mask=None, **grids)
    out = torch.zeros((3, *plan.input_ids.shape), dtype=torch.long, device=ids.device)
    for seg in plan.segments:
        pos, delta = rope[seg.group]
        span = slice(seg.start, seg.start + seg.length)
        if seg.branch == 0:
            out[:, seg.row, span] = pos[:, 0]
        else:  # text after the prompt: the same index on all three axes, continuing from max + 1
            out[:, seg.row, span] = torch.arange(seg.offset, seg.offset + seg.length, device=ids.device) + delta[0]
    return out


def _call_with(fn, tensors: dict):
    params = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in tensors.items() if k in params}, return_dict=True)


def vision_once(vlm, visual: dict, n_visual: list[list[int]], copies: list[int]) -> dict:
    """Vision features of each prompt's media computed once, then listed once per sequence
    that repeats the prompt (`copies`: the group of each sequence), as `mm_encoder_outputs`."""
    out = {}
    for m, (name, keys) in enumerate((("image", IMAGE_KEYS), ("video", VIDEO_KEYS))):
        if keys[0] not in visual:
            continue
        res = _call_with(getattr(vlm, f"get_{name}_features"), {k: visual[k] for k in keys if k in visual})
        counts = [n[m] for n in n_visual]
        first = [sum(counts[:g]) for g in range(len(counts))]
        order = [first[g] + i for g in copies for i in range(counts[g])]
        feats = res.pooler_output
        res.pooler_output = feats[torch.tensor(order, device=feats.device)] if torch.is_tensor(feats) \
            else tuple(feats[i] for i in order)
        out[name] = res
    return out
