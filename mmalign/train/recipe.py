"""The preference recipe (SFT and every pair method): read it top to bottom.

`run_preference_stage` is setup (data, model, reference, optimizer), the loop (visible, with
manual gradient accumulation so NaN steps can be skipped), and the finish. Methods plug in as
a record in `mmalign.methods` (loss function, weights, what they need); the data path is the
same for all of them. The scaffolding it shares with the GRPO recipe is in `stage.py`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmalign.config import RunConfig
from mmalign.data.encode import RecordDataset, make_collate
from mmalign.data.prefetch import die_with_parent
from mmalign.data.records import no_usable_records
from mmalign.io import append_jsonl
from mmalign.methods import compute_loss, method, preference_margins
from mmalign.models.backbone import family_of
from mmalign.train.checkpoint import save_checkpoint
from mmalign.train.curriculum import OrderSampler
from mmalign.train.plan import drop_over_length
from mmalign.train.reference import PrecomputedReference, model_fingerprint
from mmalign.train.scoring import TokenScorer
from mmalign.train.stage import (end_of_step, eval_before, finish, load_policy, load_usable, make_accelerator,
                                mean_metrics, optimizer_and_schedule, prepare_policy,
                                record_order, reduce_metrics, reference_kind, resume, shared_prompt_or_fallback,
                                skip_summary)


def run_preference_stage(cfg: RunConfig, stage_dir: Path, init_path: str | None, resume_asked: bool,
                         reference_path: str | None = None) -> dict:
    """`reference_path`: weights of the frozen reference when it is not the stage's starting
    policy (APASI rounds that keep the first reference; needs train.reference=copy)."""
    if reference_path and reference_kind(cfg) != "copy":
        raise ValueError("a reference other than the starting policy (reference_path) needs train.reference=copy")
    from accelerate.utils import set_seed

    t = cfg.train
    accelerator = make_accelerator(cfg, stage_dir)
    set_seed(t.seed)
    main = accelerator.is_main_process

    # -- data first: a bad file fails before the model loads
    records, skipped = load_usable(cfg, "train_file")
    eval_records, _ = load_usable(cfg, "eval_file")

    # -- model, reference
    model, processor = load_policy(cfg, accelerator, init_path)
    family = family_of(model)
    shared_prompt_or_fallback(cfg, model, accelerator, stage_dir)
    records, too_long = drop_over_length(records, processor, family, cfg)
    skipped += too_long
    if too_long:
        accelerator.print(f"{len(too_long)} record(s) over data.max_length={cfg.data.max_length} skipped before "
                          f"training, e.g. {too_long[0].source}: {too_long[0].reason}")
    if not records:
        raise no_usable_records(cfg.data.train_file, skipped)
    ref_model = load_policy(cfg, accelerator, reference_path)[0] if reference_path else None
    ref_kind = reference_kind(cfg)
    model, reference = prepare_policy(cfg, model, accelerator, lambda m: TokenScorer(m, t.logps_chunk_size), ref_model)

    # -- data loader, optimizer, schedule
    pad_id = processor.tokenizer.pad_token_id
    dataset = RecordDataset(records, processor, family, cfg.method, cfg.data, cfg.sampling)
    collate = make_collate(pad_id, shared_prompt=t.shared_prompt)
    order = record_order(cfg, records, accelerator.num_processes)
    loader = torch.utils.data.DataLoader(dataset, batch_size=t.batch_size, sampler=OrderSampler(order),
                                         collate_fn=collate, num_workers=t.num_workers,
                                         worker_init_fn=die_with_parent)
    micro_total = math.ceil(len(records) * t.epochs / (t.batch_size * accelerator.num_processes))
    total_steps = t.max_steps or max(1, micro_total // t.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = optimizer_and_schedule(cfg, params, total_steps)
    scorer = TokenScorer(model, t.logps_chunk_size)
    scorer, optimizer, loader = accelerator.prepare(scorer, optimizer, loader)
    if ref_kind == "precomputed":
        reference = precompute_reference(scorer, dataset, collate, stage_dir, t.batch_size, accelerator)

    # -- resume
    state = {"step": 0, "micro": 0, "bad_steps": 0, "skipped": [asdict(s) for s in skipped]}
    ckpt_dir = stage_dir / "checkpoints"
    state, latest = resume(stage_dir, resume_asked, accelerator, accelerator.unwrap_model(scorer).model, optimizer,
                           scheduler, state)
    held_out = eval_records or records[:16]
    measured_on = "data.eval_file" if eval_records else "the first 16 TRAINING records (no data.eval_file given)"
    before = eval_before(stage_dir, latest, accelerator,
                         lambda: evaluate(cfg, scorer, reference, held_out, processor, family, accelerator))

    # -- the loop
    batches = iter(accelerator.skip_first_batches(loader, state["micro"]) if state["micro"] else loader)
    bar = tqdm(total=total_steps, initial=state["step"], desc=f"{cfg.method}", disable=not main)
    scorer.train()
    while state["step"] < total_steps:
        t0 = time.time()
        step_metrics, losses, exhausted = [], [], False
        for micro in range(t.grad_accum):
            batch = next(batches, None)
            if batch is None:
                exhausted = True
                break
            state["micro"] += 1
            state["skipped"] += [asdict(s) for s in batch.skipped]
            if batch.tensors is None:
                continue
            tensors = {k: v.to(accelerator.device) for k, v in batch.tensors.items()}
            sync = micro == t.grad_accum - 1
            with accelerator.no_sync(scorer) if not sync else contextlib.nullcontext():
                with accelerator.autocast():
                    out = step_loss(cfg, scorer, reference, tensors, batch)
                accelerator.backward(out.loss / t.grad_accum)
            losses.append(out.loss.detach())
            step_metrics.append(out.metrics)
        if not losses:  # every record of these micro-batches was skipped: no step, not a NaN step
            if exhausted:
                break
            continue
        grad_norm = accelerator.clip_grad_norm_(params, t.max_grad_norm or float("inf"))
        loss = torch.stack(losses).mean()
        loss, averaged = reduce_metrics(accelerator, loss, mean_metrics(step_metrics))
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(torch.as_tensor(grad_norm)))
        if finite:
            optimizer.step()
            scheduler.step()
            state["bad_steps"] = 0
        else:
            state["bad_steps"] += 1
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        row = {"step": state["step"], "loss": float(loss), "lr": scheduler.get_last_lr()[0],
               "grad_norm": float(grad_norm), "skipped_records": len(state["skipped"]),
               "seconds": round(time.time() - t0, 3), **averaged}
        if not finite:
            row["nonfinite_step_skipped"] = True
        if main:
            append_jsonl(stage_dir / "metrics.jsonl", row)
            accelerator.log(row, step=state["step"])
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        end_of_step(t, state, finite and main, "the data",
                    lambda: save_checkpoint(ckpt_dir, accelerator.unwrap_model(scorer).model, optimizer, scheduler, state))
        if exhausted:
            break
    bar.close()

    # -- after: evaluate, save, summarise
    after = evaluate(cfg, scorer, reference, held_out, processor, family, accelerator)
    summary = {"method": cfg.method, "steps": state["step"], **skip_summary(records, skipped, state["skipped"]),
               "before": before, "after": after, "before_after_measured_on": measured_on}
    return finish(accelerator, stage_dir, scorer, accelerator.unwrap_model(scorer).model, processor, summary)


def step_loss(cfg: RunConfig, scorer, reference, tensors: dict, batch):
    """One micro-batch through policy (and reference) into the method's loss."""
    k = batch.n_per_record
    n = len(batch.records)
    want_kl = method(cfg.method).token_kl
    ref = reference(tensors, batch.records, k, want_hidden=want_kl) if reference is not None else None
    if want_kl:
        policy = scorer(tensors, ref_hidden=ref["hidden"], ref_head=ref["head"], kl_rows=n)
    else:
        policy = scorer(tensors)
    return compute_loss(cfg.method, cfg.loss, tensors, k, policy, ref)


@torch.no_grad()
def evaluate(cfg: RunConfig, scorer, reference, records, processor, family, accelerator) -> dict:
    """Held-out numbers for the summary: the loss's own metrics (reward margin and accuracy
    against the reference) and the reference-free preference accuracy: how often the policy
    gives the chosen response (with the method's token weights) a higher log-prob."""
    if not records:
        return {}
    was_training = scorer.training
    scorer.eval()
    dataset = RecordDataset(records, processor, family, cfg.method, cfg.data, cfg.sampling)
    collate = make_collate(processor.tokenizer.pad_token_id, shared_prompt=cfg.train.shared_prompt)
    rows, margins = [], []
    for start in range(0, len(dataset), cfg.train.batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + cfg.train.batch_size, len(dataset)))])
        if batch.tensors is None:
            continue
        tensors = {k: v.to(accelerator.device) for k, v in batch.tensors.items()}
        out = step_loss(cfg, scorer, reference, tensors, batch)
        rows.append({"loss": out.loss, **out.metrics})
        if batch.n_per_record >= 2:
            policy = scorer(tensors)
            margins.append(preference_margins(cfg.method, tensors, batch.n_per_record, policy["logps"]))
    scorer.train(was_training)
    result = mean_metrics(rows)
    if margins:
        m = torch.cat(margins)
        result.update({"logp_margin": float(m.mean()), "logp_accuracy": float((m > 0).float().mean())})
    result["n"] = len(records)
    return result


def precompute_reference(scorer, dataset, collate, stage_dir: Path, batch_size: int, accelerator):
    """Fill (or reuse) the on-disk cache of reference log-probs: one pass before training."""
    model = accelerator.unwrap_model(scorer).model
    cache = PrecomputedReference(stage_dir / "ref_cache" / f"{model_fingerprint(model)}.safetensors")
    todo = [i for i in range(len(dataset)) if cache.missing([dataset.records[i]], 2)]
    with torch.no_grad():
        for start in tqdm(range(0, len(todo), batch_size), desc="reference log-probs",
                          disable=not accelerator.is_main_process):
            batch = collate([dataset[i] for i in todo[start:start + batch_size]])
            if batch.tensors is None:
                continue
            tensors = {k: v.to(accelerator.device) for k, v in batch.tensors.items()}
            cache.add(tensors, batch.records, batch.n_per_record, scorer(tensors)["logps"])
    if todo and accelerator.is_main_process:
        cache.save()
    return cache
