"""Token layouts that encode each prompt once: the collate side, and index plans for the forward.

A preference batch is n prompts, each followed by k responses (chosen, rejected, ...). The
standard layout (`collate_sequences`) writes k full rows per prompt, video tokens included.
`pack_shared` writes each prompt ONCE, followed by all of its responses:

    row g:  [ prompt_g | response_g1 | response_g2 | pad ... ]      branch: 0 | 1 | 2 | -1

with the prompt's visual tensors once (so the vision tower runs once per video). Which
sequences share a prompt is known exactly at encode time: `RecordDataset.encode` hands the
same prompt dict to a record's chosen and rejected (OSPO's perturbed condition gets its own
dict, hence its own group); `group_by_prompt` groups by that identity.

The forward (`mmalign.models.shared_prompt`) runs that layout as written ("split" and
"mask" modes) or expanded ("varlen"); `plan_layout` below builds the index tensors for either:

- "mask" layout: the rows as written; a token sees earlier tokens of its own row that are
  prompt or its own response (`prefix_sharing_mask`; the "split" mode computes the same
  attention without a mask). Each response's positions restart where the prompt ended, so
  every response sees exactly what it would see alone: the results equal the two-pass forward.
- "varlen" (flash_attention_2/3, and padding-free packing in general): every (prompt,
  response) pair becomes its own sequence and all sequences are concatenated into ONE row
  with positions restarting at 0 per sequence, no padding, no mask. FlashAttention-2 turns the
  position restarts into cu_seqlens (`flash_attn_varlen_func`); on CPU, transformers' sdpa and
  eager paths turn the same restarts into a block-diagonal mask. The prompt's LLM tokens are
  computed once per response here (FA2 cannot express prefix sharing), but its vision
  features are still computed once and copied (`mm_encoder_outputs`).

Labels and token weights stay in the standard layout (`labels`, `weights.*`), so losses,
references and the trainer read the same [N, L] rows as before; `Plan.src` maps each scored
label to the hidden state that predicts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PREFIX = "packed."


def group_by_prompt(seqs) -> list[list[int]]:
    """Indices of `seqs` grouped by the prompt object they share, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(id(s.prompt), []).append(i)
    return list(groups.values())


def visual_items(prompt: dict) -> tuple[int, int]:
    """(images, videos) in one prompt's processor outputs: Qwen counts grids, LLaVA stacks items on dim 0."""
    def count(grid_key, pixel_key):
        if grid_key in prompt:
            return int(prompt[grid_key].shape[0])
        return int(prompt[pixel_key].shape[0]) if pixel_key in prompt else 0
    return count("image_grid_thw", "pixel_values"), count("video_grid_thw", "pixel_values_videos")


def pack_shared(seqs, pad_id: int) -> dict[str, torch.Tensor]:
    """Model inputs with each prompt once: keys `packed.*` (see the module docstring).

    packed.input_ids [G, L]; packed.branch [G, L] (0 prompt, j response j, -1 pad);
    packed.rows [G, K]: the standard-layout row of each group's j-th response (-1 none);
    packed.n_visual [G, 2]: images and videos of each group's prompt; packed.mm_token_type_ids
    [G, L] where the processor gives it; packed.<visual key>: each prompt's tensors once, in
    group order.
    """
    from mmalign.models.backbone import concat_visual, visual_keys

    groups = group_by_prompt(seqs)
    prompts = [seqs[g[0]].prompt for g in groups]
    length = max(p["input_ids"].shape[1] + sum(len(seqs[i].response_ids) for i in g) for p, g in zip(prompts, groups))
    n_groups, k = len(groups), max(len(g) for g in groups)
    ids = torch.full((n_groups, length), pad_id, dtype=torch.long)
    branch = torch.full((n_groups, length), -1, dtype=torch.long)
    rows = torch.full((n_groups, k), -1, dtype=torch.long)
    types = torch.zeros((n_groups, length), dtype=torch.long) if "mm_token_type_ids" in prompts[0] else None
    for g, (prompt, members) in enumerate(zip(prompts, groups)):
        p = prompt["input_ids"][0]
        end = len(p)
        ids[g, :end], branch[g, :end] = p, 0
        if types is not None:
            types[g, :end] = prompt["mm_token_type_ids"][0]
        for j, i in enumerate(members):
            r = torch.tensor(seqs[i].response_ids, dtype=torch.long)
            ids[g, end:end + len(r)], branch[g, end:end + len(r)] = r, j + 1
            rows[g, j] = i
            end += len(r)
    out = {"input_ids": ids, "branch": branch, "rows": rows,
           "n_visual": torch.tensor([visual_items(p) for p in prompts], dtype=torch.long).view(n_groups, 2)}
    if types is not None:
        out["mm_token_type_ids"] = types
    for key in dict.fromkeys(k for p in prompts for k in visual_keys(p)):  # prompts may differ in media
        out[key] = concat_visual([p[key] for p in prompts if key in p])
    return {PREFIX + k: v for k, v in out.items()}


def is_packed(batch: dict) -> bool:
    return PREFIX + "input_ids" in batch


def packed_visual(batch: dict) -> dict[str, torch.Tensor]:
    """The visual tensors of a packed batch under the processor's names."""
    from mmalign.models.backbone import TEXT_KEYS

    skip = {"input_ids", "branch", "rows", "n_visual", *TEXT_KEYS}
    return {k[len(PREFIX):]: v for k, v in batch.items() if k.startswith(PREFIX) and k[len(PREFIX):] not in skip}


# ---------------------------------------------------------------- index plans for the forward

@dataclass
class Segment:
    """A run of tokens of one group in the forward layout: its prompt (branch 0) or a response."""
    group: int
    branch: int
    row: int       # row in the forward layout
    start: int     # first position in that row
    length: int
    offset: int    # 1D position of its first token (0 for a prompt, the prompt length for a response)


@dataclass
class Plan:
    mode: str                  # "mask" or "varlen"
    input_ids: torch.Tensor    # [B, T] forward layout
    text_pos: torch.Tensor     # [B, T] 1D positions (restarting per sequence in varlen)
    branch: torch.Tensor       # [B, T] 0 prompt, j response, -1 pad (mask mode; all >= 0 in varlen)
    segments: list[Segment]
    src: torch.Tensor          # [M] flat index (row * T + t) of the hidden state predicting each scored label
    copies: list[int]          # varlen: group of each sequence, in row order (vision features are repeated so)


def _spans(branch_row: torch.Tensor) -> dict[int, tuple[int, int]]:
    """branch value -> (start, length) in one packed row (each branch is one contiguous run)."""
    values, counts = torch.unique_consecutive(branch_row, return_counts=True)
    spans, start = {}, 0
    for v, c in zip(values.tolist(), counts.tolist()):
        if v in spans:
            raise ValueError(f"branch {v} is not contiguous in a packed row")
        spans[v] = (start, c)
        start += c
    return spans


def plan_layout(batch: dict, labels: torch.Tensor, mode: str) -> Plan:
    """Index plan for running a `pack_shared` batch in `mode` ("mask" or "varlen").

    `labels` [N, L] is the standard layout; `src` lists, for every label != -100 of
    labels[:, 1:] in row-major order, the flat position of the forward-layout hidden state that
    predicts it: the last prompt token for a response's first token, else the previous
    response token. Built on the CPU from small integer tensors.
    """
    ids = batch[PREFIX + "input_ids"].cpu()
    branch = batch[PREFIX + "branch"].cpu()
    rows = batch[PREFIX + "rows"].cpu().tolist()
    spans = [_spans(b) for b in branch]
    by_row: dict[int, tuple[int, int]] = {}  # standard row -> (group, branch)
    for g, members in enumerate(rows):
        for j, r in enumerate(members):
            if r >= 0:
                by_row[r] = (g, j + 1)
    if sorted(by_row) != list(range(labels.shape[0])):
        raise ValueError(f"packed batch covers rows {sorted(by_row)}, labels have {labels.shape[0]}")
    scored = (labels[:, 1:] != -100).sum(1).tolist()

    segments, copies = [], []
    if mode == "mask":
        width = ids.shape[1]
        out_ids, text_pos, out_branch = ids, torch.zeros_like(ids), branch
        for g, sp in enumerate(spans):
            plen = sp[0][1]
            for b, (start, n) in sorted(sp.items()):
                if b >= 0:
                    offset = 0 if b == 0 else plen
                    segments.append(Segment(g, b, g, start, n, offset))
                    text_pos[g, start:start + n] = torch.arange(offset, offset + n)
        first = {(s.group, s.branch): s for s in segments}
        prompt_of = {(g, b): first[(g, 0)] for (g, b) in first}
    elif mode == "varlen":
        take, pos, seg_branch, cursor = [], [], [], 0
        prompt_of, first = {}, {}
        for g, sp in enumerate(spans):
            pstart, plen = sp[0]
            for b in sorted(v for v in sp if v > 0):
                rstart, rlen = sp[b]
                prompt = Segment(g, 0, 0, cursor, plen, 0)
                resp = Segment(g, b, 0, cursor + plen, rlen, plen)
                segments += [prompt, resp]
                prompt_of[(g, b)], first[(g, b)] = prompt, resp
                copies.append(g)
                take += [torch.arange(pstart, pstart + plen) + g * ids.shape[1],
                         torch.arange(rstart, rstart + rlen) + g * ids.shape[1]]
                pos.append(torch.arange(plen + rlen))
                seg_branch.append(torch.full((plen + rlen,), b))
                cursor += plen + rlen
        width = cursor
        out_ids = ids.reshape(-1)[torch.cat(take)][None]
        text_pos, out_branch = torch.cat(pos)[None], torch.cat(seg_branch)[None]
    else:
        raise ValueError(f"unknown packing mode {mode!r}")

    src, labels = [], labels.cpu()
    for r in range(labels.shape[0]):
        key = by_row[r]
        resp, prompt = first[key], prompt_of[key]
        # the scored tokens' places in the response: all of it, or a conversation's answers
        at = (labels[r] != -100).nonzero()[:, 0] - prompt.length
        if not len(at) or at.min() < 0 or at.max() >= resp.length:
            raise ValueError(f"row {r}: {scored[r]} scored labels do not lie in its {resp.length}-token response "
                             "in the packed batch")
        last_prompt = prompt.row * width + prompt.start + prompt.length - 1
        src.append(torch.where(at == 0, last_prompt, resp.row * width + resp.start + at - 1))
    return Plan(mode, out_ids, text_pos, out_branch, segments, torch.cat(src), copies)


def prefix_sharing_mask(branch: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool, True = may attend: key at or before the query, in its row, and either
    prompt (branch 0) or the query's own response. Padding (-1) sees only itself (no empty rows)."""
    q, k = branch[:, :, None], branch[:, None, :]
    n = branch.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=branch.device).tril()
    mask = causal & (k >= 0) & ((k == 0) | (k == q))
    return (mask | torch.eye(n, dtype=torch.bool, device=branch.device))[:, None]


def flex_block_mask(branch: torch.Tensor):
    """The same rule as a FlexAttention BlockMask (attn_implementation="flex_attention"):
    fully masked blocks, e.g. a rejected response's view of the chosen one, are skipped."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        bq, bk = branch[b, q_idx], branch[b, kv_idx]
        return (kv_idx == q_idx) | ((kv_idx <= q_idx) & (bk >= 0) & ((bk == 0) | (bk == bq)))

    n = branch.shape[1]
    return create_block_mask(mask_mod, B=branch.shape[0], H=None, Q_LEN=n, KV_LEN=n, device=branch.device)
