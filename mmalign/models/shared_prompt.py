"""Shared-prompt forward: a pair's prompt (video tokens included) encoded once, every response
scored against it, with the same per-token log-probs and gradients as one forward per response.

Why one packed row per prompt rather than a KV-cache split: it is one ordinary forward of the
backbone, so gradient checkpointing, LoRA, DDP/FSDP wrapping and autocast behave exactly as in
the two-pass forward, and gradients reach the prompt through plain attention (a cache split
keeps the cache in the graph and does not survive checkpointing). See `mmalign.models.packing`
for the layout; it runs three ways (`default_mode` picks by attention implementation):

- "split" (sdpa, the default): one row per prompt, [prompt | chosen | rejected]; attention
  (`shared_prefix_attention`) runs prompt + chosen as one causal block on sdpa's is_causal
  fast path, and each later response against the prompt's keys and its own (lower-right
  causal). No masked-out score is computed; on a 2.2k-token row a single masked sdpa call costs
  more than the two causal rows of the naive forward, so a plain mask would give the
  attention savings back.
- "mask" (eager, flex_attention, or asked for): the same row with a 4D prefix-sharing mask
  (eager: additive float; sdpa: bool; flex: a BlockMask, which skips masked blocks).
- "varlen" (flash_attention_2/3): padding-free, one row of [prompt|chosen][prompt|rejected]...
  with positions restarting per sequence, which transformers hands to flash_attn_varlen as
  cu_seqlens; the vision tower still runs once per prompt (features are copied through
  `mm_encoder_outputs`), the LLM runs the prompt once per response.

In every mode a response's positions continue from the end of the prompt, independently of
the other responses, so each token sees exactly what it sees in its own full sequence.

Positions per family: LLaVA (Llama/Qwen2 language models) takes 1D positions. Qwen2-VL and
Qwen2.5-VL take 3D multimodal rotary positions: one call of the model's own `get_rope_index`
per prompt (it knows the vision grids, the merge size and, for 2.5, the video's seconds per
grid) on [prompt | longest response] numbers the prompt and the text that follows it; every
response takes those continuation positions, exactly as in its own full sequence. (Text after
a video continues from transformers' text cursor, not from max(prompt positions) + 1: for a
slow video the temporal positions run past the cursor, and the two differ.)
"""

from __future__ import annotations

import torch

from mmalign.models import hf
from mmalign.models.backbone import base_model, family_of, language_model
from mmalign.models.packing import PREFIX, Plan, flex_block_mask, packed_visual, plan_layout, prefix_sharing_mask

IMAGE_KEYS = ("pixel_values", "pixel_attention_mask", "image_grid_thw", "image_sizes")
VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw")
SPLIT = "mmalign_shared_prefix"  # the attention implementation name "split" mode switches sdpa to
MODES = ("split", "mask", "varlen")


def attn_implementation(model) -> str:
    return hf.attn_implementation(language_model(model).config)


def cannot_share(model) -> str | None:
    """Why this backbone cannot run the shared-prompt layout, or None. Layers other than full
    attention (Qwen3.5's Gated DeltaNet linear attention, sliding windows) read a packed row as
    one sequence: the rejected response would see the chosen one through their recurrent state."""
    config = language_model(model).config
    kinds = sorted({t for t in (getattr(config, "layer_types", None) or []) if t != "full_attention"})
    if kinds:
        return f"its language model has {', '.join(kinds)} layers"
    if getattr(language_model(model), "has_sliding_layers", False):
        return "its language model has sliding-window layers"
    return None


def default_mode(model) -> str:
    """"split" on sdpa, "varlen" on FlashAttention (no prefix-sharing masks), else "mask"."""
    impl = attn_implementation(model)
    return "split" if impl in ("sdpa", SPLIT) else "varlen" if "flash" in impl else "mask"


def shared_prefix_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                            shared_prefix=None, **kwargs):
    """sdpa over a shared-prompt row without computing a masked-out score.

    query [B, H, T, D], key/value [B, Hkv, T, D]; `shared_prefix`, one (prompt length,
    [(start, length) of each response]) per row. The prompt and the response right after it
    form one causal block (sdpa's is_causal fast path); each further response attends to the
    prompt's keys and its own, causally (lower-right). Padding gets zeros. Without
    `shared_prefix` (any other forward of the model) this is transformers' sdpa, unchanged.
    Returns [B, T, H, D] as transformers' attention functions do.
    """
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    repeat_kv, sdpa_attention_forward = hf.sdpa_internals()

    if shared_prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    n_rep = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    rows = []
    for b, (plen, responses) in enumerate(shared_prefix):
        q, k, v = query[b], key[b], value[b]
        end = responses[0][0] + responses[0][1]
        pieces = [sdpa(q[:, :end], k[:, :end], v[:, :end], is_causal=True, scale=scaling, dropout_p=dropout)]
        for start, n in responses[1:]:
            kk, vv = (torch.cat([x[:, :plen], x[:, start:start + n]], 1) for x in (k, v))
            causal = torch.ones(n, plen + n, dtype=torch.bool, device=q.device).tril(plen)
            pieces.append(sdpa(q[:, start:start + n], kk, vv, attn_mask=causal, scale=scaling, dropout_p=dropout))
            end = start + n
        if end < q.shape[1]:
            pieces.append(q.new_zeros(q.shape[0], q.shape[1] - end, q.shape[2]))
        rows.append(torch.cat(pieces, 1))
    return torch.stack(rows).transpose(1, 2).contiguous(), None


def use_split_attention(model) -> None:
    """Register `shared_prefix_attention` with transformers (once) and switch this language
    model from sdpa to it. The switch stays (it must: gradient checkpointing replays layers in
    backward, after this forward returned) and changes nothing for other forwards, which carry
    no `shared_prefix` and get plain sdpa and sdpa's masks."""
    hf.register_attention(SPLIT, shared_prefix_attention)
    config = language_model(model).config
    if hf.attn_implementation(config) not in ("sdpa", SPLIT):
        raise ValueError(f"split attention runs on sdpa, not {hf.attn_implementation(config)}: "
                         "use mode='mask' or 'varlen'")
    hf.set_attn_implementation(config, SPLIT)


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
    if mode not in MODES:
        raise ValueError(f"unknown shared-prompt mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "mask" and "flash" in impl:
        raise ValueError(f"attn_implementation={impl} cannot take a prefix-sharing mask: use mode='varlen'")
    blocker = cannot_share(model)
    if blocker:  # the trainer falls back before it gets here (stage.shared_prompt_or_fallback)
        raise NotImplementedError(f"shared-prompt forward: {blocker}; set train.shared_prompt=false")
    plan = plan_layout(batch, labels, "varlen" if mode == "varlen" else "mask")
    device = batch[PREFIX + "input_ids"].device
    visual = packed_visual(batch)
    if not family_of(model).mixed_media and "pixel_values" in visual and "pixel_values_videos" in visual:
        raise NotImplementedError(f"{base_model(model).config.model_type}: a batch with both images and videos "
                                  "cannot share prompts; set train.shared_prompt=false")
    if family_of(model).mrope:
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
            allowed = prefix_sharing_mask(branch)
            attention_mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
                ~allowed, torch.finfo(dtype).min)
        else:
            attention_mask = prefix_sharing_mask(branch)
        extra = visual
    else:
        attention_mask = None
        n_visual = batch[PREFIX + "n_visual"].tolist()
        copies = plan.copies if mode == "varlen" else list(range(len(n_visual)))
        # the vision tower outside the LLM forward: it must not see the `shared_prefix` argument
        extra = {hf.MM_ENCODER_OUTPUTS: vision_once(vlm, visual, n_visual, copies)} if visual else {}
    if mode == "split":
        use_split_attention(model)
        responses = {}
        for seg in plan.segments:
            if seg.branch > 0:
                responses.setdefault(seg.row, []).append((seg.start, seg.length))
        extra["shared_prefix"] = [(seg.length, responses[seg.row]) for seg in plan.segments if seg.branch == 0]
        # a 4D mask goes through transformers' mask builders untouched; empty, it fails loudly if anything reads it
        attention_mask = torch.ones(plan.input_ids.shape[0], 1, 0, 0, dtype=torch.bool, device=device)
    hidden = vlm(input_ids=plan.input_ids.to(device), attention_mask=attention_mask, position_ids=position_ids,
                 use_cache=False, **extra).last_hidden_state
    return hidden.flatten(0, 1)[plan.src.to(device)]


def qwen_positions(vlm, batch: dict, plan: Plan) -> torch.Tensor:
    """[3, B, T] multimodal rotary positions of the forward layout (0 on padding).

    Per group, ONE call of the model's own `get_rope_index` on [prompt | its longest response]:
    the prompt's positions, and the text positions that continue it, which every response
    takes from the start (a response is a text run after the prompt's last text token, numbered
    as transformers numbers it, whose convention is not max(prompt) + 1 for slow videos)."""
    ids = batch[PREFIX + "input_ids"]
    types = batch[PREFIX + "mm_token_type_ids"]
    n_visual = batch[PREFIX + "n_visual"].tolist()
    per_item = {"image_grid_thw": 0, "video_grid_thw": 1, "second_per_grid_ts": 1}
    starts = [[0, 0]]
    for n_img, n_vid in n_visual:
        starts.append([starts[-1][0] + n_img, starts[-1][1] + n_vid])
    prompts = {s.group: s for s in plan.segments if s.branch == 0}
    longest = {}
    for s in plan.segments:
        if s.branch > 0 and s.length > longest.get(s.group, (0, None))[0]:
            longest[s.group] = (s.length, s)
    rope = {}
    for g, prompt in prompts.items():
        grids = {key: batch[PREFIX + key][starts[g][m]:starts[g + 1][m]]
                 for key, m in per_item.items() if PREFIX + key in batch and n_visual[g][m]}
        n, resp = longest[g]
        row = (resp.row, slice(resp.start, resp.start + n))  # the response's ids in the forward layout
        seq = torch.cat([ids[g, :prompt.length], plan.input_ids.to(ids.device)[row]])[None]
        tt = torch.cat([types[g, :prompt.length], torch.zeros(n, dtype=types.dtype, device=types.device)])[None]
        rope[g] = hf.rope_index(vlm, seq, tt, grids)[:, 0]
    out = torch.zeros((3, *plan.input_ids.shape), dtype=torch.long, device=ids.device)
    for seg in plan.segments:
        pos, plen = rope[seg.group], prompts[seg.group].length
        first = 0 if seg.branch == 0 else plen
        out[:, seg.row, seg.start:seg.start + seg.length] = pos[:, first:first + seg.length]
    return out



def vision_once(vlm, visual: dict, n_visual: list[list[int]], copies: list[int]) -> dict:
    """Vision features of each prompt's media computed once, then listed once per sequence
    that repeats the prompt (`copies`: the group of each sequence), as `mm_encoder_outputs`."""
    out = {}
    for m, (name, keys) in enumerate((("image", IMAGE_KEYS), ("video", VIDEO_KEYS))):
        if keys[0] not in visual:
            continue
        res = hf.vision_features(getattr(vlm, f"get_{name}_features"), {k: visual[k] for k in keys if k in visual})
        counts = [n[m] for n in n_visual]
        first = [sum(counts[:g]) for g in range(len(counts))]
        order = [first[g] + i for g in copies for i in range(counts[g])]
        feats = res.pooler_output
        res.pooler_output = feats[torch.tensor(order, device=feats.device)] if torch.is_tensor(feats) \
            else tuple(feats[i] for i in order)
        deepstack = getattr(res, "deepstack_features", None)
        if deepstack is not None:  # Qwen3-VL: per DeepStack layer, the features of each item, reordered alike
            res.deepstack_features = [tuple(layer[i] for i in order) for layer in deepstack]
        out[name] = res
    return out
