"""The GRPO recipe (Shao et al. 2024, https://arxiv.org/abs/2402.03300): read it top to bottom.

`run_grpo_stage` is what `recipe.run_stage` runs for `method: grpo`. One step:

  1. prompts    train.batch_size records per process (data.curriculum order, epochs as one
                stream; a record whose media fails or whose prompt is too long is skipped
                and counted)
  2. vision     each prompt's video / images through the vision tower once; the features serve
                all G rollouts of the prompt
  3. rollouts   G = grpo.num_generations samples per prompt from the current policy
                (temperature, top_p, max_new_tokens), token ids kept; each scoring pass
                below runs a prompt once for its G completions (train.shared_prompt)
  4. rewards    the configured weighted terms (mmalign.rewards), each logged raw;
                advantages normalised within each group (grpo.scale_rewards: by the std too)
  5. flat       a group whose rewards are all equal has advantage 0; it is counted, and kept in
                the token normaliser and the KL term (grpo.flat_groups: keep, as TRL and
                DeepSeekMath) or dropped from the loss altogether (drop)
  6. fixed      log-probs of the rollout policy (when grpo.num_iterations > 1) and of the
                reference (when grpo.kl_beta > 0), once per step
  7. update     grpo.num_iterations optimizer steps on the same rollouts, each over
                micro-batches of grpo.micro_batch_size sequences, with `grpo_loss`; micro-batch
                losses are weighted so the total equals the whole-batch loss

Log-probs are those of the sampling distribution, softmax(logits / temperature), for the
policy, the rollout policy and the reference alike (as TRL does; top_p truncation and the
never-sampled vision placeholder tokens are not renormalised, also as TRL). train.max_steps
counts rollout steps; the schedule counts optimizer updates (steps x num_iterations).
Artefacts are those of `run_stage`: metrics.jsonl (one row per step), summary.json (mean
reward on held-out records before / after: greedy, and G samples as in training), final/,
checkpoints/ (train.save_every), plus reward_errors.jsonl (every sample a term failed on).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmalign.config import GrpoConfig, RunConfig
from mmalign.data.collate import Sequence, collate_sequences
from mmalign.data.encode import RecordDataset
from mmalign.data.prefetch import die_with_parent
from mmalign.data.records import RecordError, Skipped
from mmalign.data.video import MediaError
from mmalign.io import append_jsonl
from mmalign.losses import all_equal_groups, group_advantages, grpo_loss
from mmalign.models import hf
from mmalign.models.backbone import TEXT_KEYS, base_model, concat_visual, family_of
from mmalign.rewards import RewardSet, Sample
from mmalign.train.checkpoint import save_checkpoint
from mmalign.train.curriculum import OrderSampler
from mmalign.train.scoring import TokenScorer
from mmalign.train.stage import (end_of_step, eval_before, finish, load_policy, load_usable, make_accelerator,
                                optimizer_and_schedule, prepare_policy, record_order,
                                reduce_metrics, resume, shared_prompt_or_fallback, skip_summary)

# ---------------------------------------------------------------- the stage

def run_grpo_stage(cfg: RunConfig, stage_dir: Path, init_path: str | None, resume_asked: bool) -> dict:
    from accelerate.utils import set_seed

    t, g = cfg.train, cfg.grpo
    accelerator = make_accelerator(cfg, stage_dir)
    main = accelerator.is_main_process

    # -- rewards and data first: a misnamed reward or a bad file fails before the model loads
    rewards = RewardSet.from_config(g.rewards, g.fallback_reward)
    records, skipped = load_usable(cfg, "train_file")
    eval_records, _ = load_usable(cfg, "eval_file")
    eval_records = (eval_records or records)[:g.eval_records]

    # -- policy, reference
    model, processor = load_policy(cfg, accelerator, init_path)
    shared_prompt_or_fallback(cfg, model, accelerator, stage_dir)
    set_seed(t.seed)  # after loading: building a tiny preset reseeds the global RNG
    family = family_of(model)
    model, reference = prepare_policy(cfg, model, accelerator,
                                      lambda m: TokenScorer(m, t.logps_chunk_size, temperature=g.temperature))
    precomputed = takes_features(model)  # rollouts: the vision tower once per prompt, not per sample
    tok = processor.tokenizer
    pad_id = tok.pad_token_id
    eos_ids = stop_ids(model, tok, family.end_of_turn)

    # -- prompts, optimizer, schedule (one scheduler step per optimizer update)
    dataset = PromptDataset(records, processor, family, cfg)
    loader = torch.utils.data.DataLoader(dataset, batch_size=t.batch_size, collate_fn=as_list,
                                         sampler=OrderSampler(record_order(cfg, records, accelerator.num_processes)),
                                         num_workers=t.num_workers,
                                         worker_init_fn=die_with_parent)
    steps_total = t.max_steps or max(1, math.ceil(len(records) * t.epochs / (t.batch_size * accelerator.num_processes)))
    updates_total = steps_total * g.num_iterations
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = optimizer_and_schedule(cfg, params, updates_total)
    scorer = TokenScorer(model, t.logps_chunk_size, temperature=g.temperature)
    scorer, optimizer = accelerator.prepare(scorer, optimizer)
    loader = accelerator.prepare_data_loader(loader, device_placement=False)  # prompts stay on CPU until collated
    policy = accelerator.unwrap_model(scorer).model

    # -- resume
    state = {"step": 0, "micro": 0, "bad_steps": 0, "skipped": [asdict(s) for s in skipped],
             "reward_errors": 0, "groups_all_equal": 0}
    ckpt_dir = stage_dir / "checkpoints"
    state, latest = resume(stage_dir, resume_asked, accelerator, policy, optimizer, scheduler, state,
                           logs=("metrics.jsonl", "reward_errors.jsonl"))
    before = eval_before(stage_dir, latest, accelerator, lambda: evaluate(
        policy, PromptDataset(eval_records, processor, family, cfg), rewards, g, t.batch_size, pad_id, eos_ids,
        precomputed, accelerator, t.seed))

    # -- the loop: rollouts, rewards, advantages, num_iterations updates
    batches = rng_neutral(accelerator.skip_first_batches(loader, state["micro"]) if state["micro"] else loader)
    bar = tqdm(total=steps_total, initial=state["step"], desc="grpo", disable=not main)
    while state["step"] < steps_total:
        t0 = time.time()
        items = next(batches, None)
        if items is None:
            break
        state["micro"] += 1
        state["skipped"] += [asdict(s) for s in items if isinstance(s, Skipped)]
        prompts = [x for x in items if not isinstance(x, Skipped)]
        if not prompts:
            continue
        recs, inputs = [r for r, _ in prompts], [p for _, p in prompts]

        # 2-3. vision once per prompt; G samples per prompt
        policy.eval()
        feats = [encode_visual(policy, p, accelerator.device) for p in inputs] if precomputed else None
        ids, truncated = rollout(policy, inputs, feats, g, g.num_generations, pad_id, eos_ids, accelerator.device)
        policy.train()
        t_rollout = time.time() - t0

        # 4. rewards, advantages
        samples = make_samples(recs, g.num_generations, ids, truncated, tok)
        scored = rewards(samples, g.num_generations)
        adv = group_advantages(scored.total, g.num_generations, scale_by_std=g.scale_rewards)

        # 5. groups without signal: kept (advantage 0) or dropped
        keep, flat = signal_rows(scored.total, g.num_generations, drop_flat=g.flat_groups == "drop")
        state["groups_all_equal"] += int(flat.sum())
        state["reward_errors"] += len(scored.errors)

        # 6-7. fixed log-probs once, then the optimisation passes. With several processes, one
        # without signal still joins each update (with weight 0) so the gradient all-reduce meets.
        anywhere = global_count(accelerator, len(keep)) > 0
        scale = 1.0 if keep else 0.0
        if not keep and anywhere:
            keep = [0]
        chunks = micro_batches(keep, g.micro_batch_size)
        losses, norms, loss_metrics = [], [], []
        if chunks:
            # a group's completions share their prompt dict: the shared-prompt layout finds them by it
            seqs = [Sequence(inputs[i // g.num_generations], ids[i]) for i in range(len(samples))]
            batches_ = [scoring_batch(seqs, rows, pad_id, t.shared_prompt, accelerator.device) for rows in chunks]
            fixed = fixed_logps(scorer, reference, batches_, g.num_iterations > 1)
            tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches_)
            totals = {"tokens": tokens, "rows": len(keep), "scale": scale,
                      "dapo_normalizer": global_count(accelerator, tokens) / accelerator.num_processes}
            for _ in range(g.num_iterations):
                loss, norm, metrics = update(scorer, optimizer, scheduler, params, batches_, chunks, fixed, adv,
                                             totals, g, t.max_grad_norm, accelerator)
                losses.append(loss)
                norms.append(norm)
                loss_metrics.append(metrics)
        finite = all(math.isfinite(x) for x in losses + norms)
        state["bad_steps"] = 0 if finite else state["bad_steps"] + 1
        state["step"] += 1

        values = {"grad_norm": mean(norms), **scored.metrics(), "advantage_mean": float(adv.mean()),
                  "advantage_std": float(adv.std()) if adv.numel() > 1 else 0.0, **average(loss_metrics),
                  "completion_length": sum(s.num_tokens for s in samples) / len(samples),
                  "truncated": sum(truncated) / len(truncated),
                  "groups": int(flat.numel()), "groups_all_equal": int(flat.sum())}
        loss, values = reduce_metrics(accelerator, torch.tensor(mean(losses)), values)  # means over processes
        row = {"step": state["step"], "loss": float(loss), "lr": scheduler.get_last_lr()[0], **values,
               "skipped_records": len(state["skipped"]),
               "seconds": round(time.time() - t0, 3), "seconds/rollout": round(t_rollout, 3)}
        if not chunks:
            row["no_update"] = True
        if not finite:
            row["nonfinite_step_skipped"] = True
        if main:
            append_jsonl(stage_dir / "metrics.jsonl", row)
            for e in scored.errors:
                append_jsonl(stage_dir / "reward_errors.jsonl", {"step": state["step"], **e})
            accelerator.log(row, step=state["step"])
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward']:.3f}")
        end_of_step(t, state, finite and main, "the rewards",
                    lambda: save_checkpoint(ckpt_dir, policy, optimizer, scheduler, state))
    bar.close()

    # -- after: evaluate, save, summarise
    after = evaluate(policy, PromptDataset(eval_records, processor, family, cfg), rewards, g, t.batch_size,
                     pad_id, eos_ids, precomputed, accelerator, t.seed)
    summary = {"method": "grpo", "steps": state["step"], **skip_summary(records, skipped, state["skipped"]),
               "reward_errors": state["reward_errors"], "groups_all_equal": state["groups_all_equal"],
               "before": before, "after": after}
    accelerator.print("\n".join(f"grpo {k:<28} {before.get(k, float('nan')):>9.4f} -> {v:>9.4f}"
                                for k, v in after.items() if k != "n"))
    return finish(accelerator, stage_dir, scorer, policy, processor, summary)


# ---------------------------------------------------------------- prompts and vision

class PromptDataset(torch.utils.data.Dataset):
    """Record i -> (record, its prompt's batch-1 processor inputs), or a Skipped (media that
    does not load, a prompt with no room for max_new_tokens within data.max_length)."""

    def __init__(self, records, processor, family, cfg: RunConfig):
        self.encoder = RecordDataset(records, processor, family, "grpo", cfg.data, cfg.sampling)
        self.max_length, self.max_new_tokens = cfg.data.max_length, cfg.grpo.max_new_tokens

    def __len__(self):
        return len(self.encoder.records)

    def __getitem__(self, i):
        r = self.encoder.records[i]
        try:
            prompt = self.encoder.prompt(r)
            n = prompt["input_ids"].shape[1]
            if n + self.max_new_tokens > self.max_length:
                raise ValueError(f"{n} prompt tokens + grpo.max_new_tokens={self.max_new_tokens} > "
                                 f"data.max_length={self.max_length}")
        except (MediaError, ValueError) as e:
            if self.encoder.cfg.strict:
                raise RecordError(f"{r.source}: {e}") from e
            return Skipped(r.source, r.id, str(e))
        return r, prompt


def as_list(items):
    return items


def rng_neutral(loader):
    """Iterate `loader` without touching the global torch RNG (a fresh DataLoader iterator draws
    a seed on its first batch), so a resumed run samples the same rollouts as an unbroken one."""
    it = iter(loader)
    while True:
        state = torch.get_rng_state()
        item = next(it, None)
        torch.set_rng_state(state)
        if item is None:
            return
        yield item


def takes_features(model) -> bool:
    """Whether the backbone's forward accepts precomputed vision features (transformers'
    `mm_encoder_outputs`); otherwise pixels go in and the vision tower runs per sequence."""
    return hf.takes_encoder_outputs(base_model(model).model)


@torch.no_grad()
def encode_visual(model, prompt: dict, device) -> dict[str, dict]:
    """The prompt's media through the vision tower, once: {modality: {"pooled": features per item
    (a list) or all items' features (one tensor), as the family's getter gives them, "deepstack":
    [per DeepStack layer, [features per item]] or None (all but Qwen3-VL)}}."""
    inner = base_model(model).model
    out = {}
    for modality in ("image", "video"):
        fn = getattr(inner, f"get_{modality}_features", None)
        pixels = "pixel_values" if modality == "image" else "pixel_values_videos"
        if fn is None or pixels not in prompt:
            continue
        res = hf.vision_features(fn, {k: v.to(device) for k, v in prompt.items()})
        deepstack = getattr(res, "deepstack_features", None)
        pooled = res.pooler_output  # a tuple per item (Qwen, GLM) or one tensor (LLaVA, InternVL)
        out[modality] = {"pooled": pooled if torch.is_tensor(pooled) else list(pooled),
                         "deepstack": [list(layer) for layer in deepstack] if deepstack is not None else None}
    return out


def with_features(batch: dict, feats: list[dict]) -> dict:
    """Swap the batch's pixel tensors for its rows' precomputed features (rows in order), as
    transformers' `mm_encoder_outputs`."""
    batch = {k: v for k, v in batch.items() if not k.startswith("pixel_")}  # pixel_attention_mask too
    modalities = sorted({m for f in feats for m in f})
    encoded = {}
    for m in modalities:
        rows = [f[m] for f in feats if m in f]
        deepstack = None
        if rows[0]["deepstack"] is not None:
            deepstack = [tuple(x for r in rows for x in r["deepstack"][layer]) for layer in range(len(rows[0]["deepstack"]))]
        pooled = (torch.cat([r["pooled"] for r in rows]) if torch.is_tensor(rows[0]["pooled"]) else
                  [x for r in rows for x in r["pooled"]])
        encoded[m] = hf.encoder_outputs(pooled, deepstack)
    if encoded:
        batch[hf.MM_ENCODER_OUTPUTS] = encoded
    return batch


# ---------------------------------------------------------------- rollouts

def stop_ids(model, tokenizer, end_of_turn: str) -> list[int]:
    """The family's end-of-turn token plus the checkpoint's own eos ids."""
    ids = {tokenizer.convert_tokens_to_ids(end_of_turn)}
    eos = base_model(model).generation_config.eos_token_id
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return sorted(ids)


def vision_token_ids(model) -> list[int]:
    """Placeholder tokens of images and videos: never sampled (a placeholder in a completion
    would claim vision features that do not exist)."""
    config = base_model(model).config
    names = ("image_token_id", "video_token_id", "image_token_index", "video_token_index",
             "vision_start_token_id", "vision_end_token_id")
    return sorted({i for i in (getattr(config, n, None) for n in names) if isinstance(i, int) and i >= 0})


def generation_batch(prompts: list[dict], pad_id: int) -> dict:
    """Left-padded batch of batch-1 prompt inputs, one row each; media tensors concatenated in
    row order (a prompt repeated G times is G rows)."""
    length = max(p["input_ids"].shape[1] for p in prompts)
    batch = {}
    for key in prompts[0]:
        if key in TEXT_KEYS:
            fill = pad_id if key == "input_ids" else 0
            batch[key] = torch.cat([F.pad(p[key], (length - p[key].shape[1], 0), value=fill) for p in prompts])
        else:
            batch[key] = concat_visual([p[key] for p in prompts])
    return batch


@torch.no_grad()
def rollout(model, prompts: list[dict], feats: list[dict] | None, g: GrpoConfig, n: int, pad_id: int,
            eos_ids: list[int], device, greedy: bool = False) -> tuple[list[list[int]], list[bool]]:
    """`n` completions per prompt (rows grouped by prompt): token ids up to and including the
    first stop token, and whether max_new_tokens cut the completion first."""
    rows = [p for p in range(len(prompts)) for _ in range(n)]
    batch = {k: v.to(device) for k, v in generation_batch([prompts[p] for p in rows], pad_id).items()}
    if feats is not None:
        batch = with_features(batch, [feats[p] for p in rows])
    sampling = (dict(do_sample=False) if greedy else
                dict(do_sample=True, temperature=g.temperature, top_p=g.top_p, top_k=0))
    out = model.generate(**batch, max_new_tokens=g.max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_ids,
                         repetition_penalty=1.0, suppress_tokens=vision_token_ids(model), **sampling)
    ids, truncated = [], []
    for seq in out[:, batch["input_ids"].shape[1]:].tolist():
        stop = next((i for i, x in enumerate(seq) if x in eos_ids), None)
        ids.append(seq if stop is None else seq[:stop + 1])
        truncated.append(stop is None)
    return ids, truncated


def make_samples(records, n: int, ids: list[list[int]], truncated: list[bool], tokenizer) -> list[Sample]:
    """One Sample per completion (row i belongs to records[i // n]) for the reward terms."""
    return [record_sample(records[i // n], text, len(ids[i]), truncated[i])
            for i, text in enumerate(tokenizer.batch_decode(ids, skip_special_tokens=True))]


def record_sample(r, completion: str, num_tokens: int = 0, truncated: bool = False) -> Sample:
    return Sample(prompt=r.prompt, completion=completion, answer=r.answer, truth=r.truth or {}, record_id=r.id,
                  meta=r.meta, num_tokens=num_tokens, truncated=truncated)


def reward_data_problem(cfg: RunConfig, records) -> str | None:
    """Why a reward term cannot score any of `records` (answer_match on records without an
    'answer'), else None. Found when training began, every completion got the term's fallback,
    and the run learned nothing from it, with exit 0."""
    failing = RewardSet.from_config(cfg.grpo.rewards, cfg.grpo.fallback_reward).failing_on_every_record(
        [record_sample(r, "") for r in records])
    if failing is None:
        return None
    label, error = failing
    hint = (": TRL's GRPO datasets often name it 'solution' (here in each record's meta); rename it 'answer'"
            if "'answer'" in error and any("solution" in r.meta for r in records) else "")
    return (f"grpo.rewards: {label} fails on every record of data.train_file before any completion ({error})"
            f"{hint}")


# ---------------------------------------------------------------- scoring and the update

def signal_rows(rewards: torch.Tensor, group_size: int, drop_flat: bool = False) -> tuple[list[int], torch.Tensor]:
    """(rows in the loss, bool [groups] of the all-equal ones). An all-equal group has zero
    advantages: kept, it still counts in the token normaliser and its KL term still pulls
    (TRL, DeepSeekMath); with `drop_flat` its rows leave the loss, so it contributes nothing
    and the others' update is scaled up by total / kept tokens."""
    flat = all_equal_groups(rewards, group_size)
    return [i for i in range(rewards.numel()) if not (drop_flat and flat[i // group_size])], flat


def global_count(accelerator, n: int) -> int:
    """`n` summed over processes (the number itself with one process)."""
    if accelerator.num_processes == 1:
        return n
    return int(accelerator.reduce(torch.tensor(n, device=accelerator.device), "sum"))


def micro_batches(rows: list[int], size: int | None) -> list[list[int]]:
    size = size or max(1, len(rows))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def scoring_batch(seqs: list[Sequence], rows: list[int], pad_id: int, shared_prompt: bool, device) -> dict:
    """Prompt + completion rows (labels only on the completion) on `device`; with
    `shared_prompt`, each prompt once followed by its completions in this micro-batch."""
    batch = collate_sequences([seqs[i] for i in rows], pad_id, shared_prompt=shared_prompt)
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def fixed_logps(scorer, reference, batches: list[dict], want_old: bool) -> list[dict]:
    """Per micro-batch: the rollout policy's log-probs (for the ratio; None = on-policy, ratio 1)
    and the reference's (None without a reference)."""
    was_training = scorer.training
    scorer.eval()
    out = [{"old": scorer(b)["logps"] if want_old else None,
            "ref": reference(b)["logps"] if reference is not None else None} for b in batches]
    scorer.train(was_training)
    return out


def update(scorer, optimizer, scheduler, params, batches, chunks, fixed, adv, totals, g: GrpoConfig,
           max_grad_norm: float, accelerator) -> tuple[float, float, dict]:
    """One optimizer step over the rollouts in the loss. Each micro-batch's loss is weighted by
    its share of the batch (tokens for "token", sequences for "sequence" and "dr_grpo"; "dapo"
    divides every micro-batch by the same all-process normaliser), so gradients and metrics
    equal those of one grpo_loss over the whole batch."""
    total, metrics = 0.0, {}
    for k, (batch, rows, fx) in enumerate(zip(batches, chunks, fixed)):
        mask = (batch["labels"][:, 1:] != -100).float()
        tokens = mask.sum().item()
        part = {"token": tokens / totals["tokens"], "dapo": 1.0}.get(g.loss_type, len(rows) / totals["rows"])
        share = totals["scale"] * part
        sync = k == len(batches) - 1
        with accelerator.no_sync(scorer) if not sync else contextlib.nullcontext():
            with accelerator.autocast():
                logps = scorer(batch)["logps"]
                out = grpo_loss(logps, fx["old"], fx["ref"], adv[rows].to(logps), mask, clip_eps=g.clip_eps,
                                clip_eps_high=g.clip_eps_high, beta=g.kl_beta, loss_type=g.loss_type,
                                kl_estimator=g.kl_estimator, normalizer=totals["dapo_normalizer"],
                                max_completion_length=g.max_new_tokens)
            accelerator.backward(out.loss * share)
        total += float(out.loss.detach()) * share
        token_share = tokens / totals["tokens"]
        for name, value in out.metrics.items():
            if name.startswith(("kl", "clip_ratio")):  # token means: weight by tokens
                metrics[name] = metrics.get(name, 0.0) + float(value) * token_share
    norm = float(accelerator.clip_grad_norm_(params, max_grad_norm or float("inf")))
    if math.isfinite(total) and math.isfinite(norm):
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total, norm, metrics


# ---------------------------------------------------------------- evaluation and small helpers

@torch.no_grad()
def evaluate(model, dataset: PromptDataset, rewards: RewardSet, g: GrpoConfig, batch_size: int, pad_id: int,
             eos_ids: list[int], precomputed: bool, accelerator, seed: int = 0) -> dict:
    """Held-out records scored by the configured rewards, two ways: the greedy completion
    (groups of one: group-relative terms give 0) -> "reward", "rewards/<term>",
    "completion_length"; and G samples as in training (what GRPO optimises; drawn from a seeded
    RNG of their own, so training's sampling is untouched) -> "sampled/reward", "sampled/...".
    Each process scores its share of the records; the sums are added over processes."""
    was_training = model.training
    model.eval()
    device, tok = accelerator.device, dataset.encoder.processor.tokenizer
    mine = list(range(accelerator.process_index, len(dataset), accelerator.num_processes))
    keys = ["n", "reward", "completion_length", *(f"rewards/{label}" for label in rewards.labels)]
    sums = {prefix: dict.fromkeys(keys, 0.0) for prefix in ("", "sampled/")}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(mine), batch_size):
            prompts = [x for x in (dataset[i] for i in mine[start:start + batch_size]) if not isinstance(x, Skipped)]
            if not prompts:
                continue
            inputs = [p for _, p in prompts]
            feats = [encode_visual(model, p, device) for p in inputs] if precomputed else None
            for prefix, n in (("", 1), ("sampled/", g.num_generations)):
                ids, truncated = rollout(model, inputs, feats, g, n, pad_id, eos_ids, device, greedy=not prefix)
                scored = rewards(make_samples([r for r, _ in prompts], n, ids, truncated, tok), n)
                add = {"n": len(ids), "reward": scored.total.sum().item(), "completion_length": sum(map(len, ids)),
                       **{f"rewards/{k}": sum(v) for k, v in scored.terms.items()}}
                for key, value in add.items():
                    sums[prefix][key] += value
    model.train(was_training)
    if accelerator.num_processes > 1:
        flat = torch.tensor([sums[p][k] for p in sums for k in keys], device=device)
        flat = accelerator.reduce(flat, "sum").tolist()
        sums = {p: dict(zip(keys, flat[i * len(keys):(i + 1) * len(keys)])) for i, p in enumerate(sums)}
    out = {f"{p}{k}": v / sums[p]["n"] for p in sums for k, v in sums[p].items() if k != "n" and sums[p]["n"]}
    return {**out, "n": int(sums[""]["n"])}


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def average(rows: list[dict]) -> dict:
    return {k: mean([r[k] for r in rows]) for k in rows[0]} if rows else {}
