"""The training recipe: read it top to bottom.

`train(cfg)` runs the config's stages in order (one stage when the config lists none); each
stage starts from the previous stage's final weights. `run_stage` is setup (model, reference,
data, optimizer), the loop (visible, with manual gradient accumulation so NaN steps can be
skipped), and the final save. Methods plug in as a loss function (`methods.compute_loss`);
the data path is the same for all of them.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from mmalign.config import REFERENCE_FREE, RunConfig, stages_of, to_dict
from mmalign.data.encode import RecordDataset, make_collate
from mmalign.data.records import RecordError, read_records
from mmalign.io import append_jsonl, atomic_write_json, atomic_write_text, iter_jsonl
from mmalign.models.backbone import family_of, freeze_vision, load_backbone
from mmalign.train.checkpoint import is_final, latest_checkpoint, load_checkpoint, save_checkpoint, save_final
from mmalign.train.curriculum import OrderSampler, visit_order
from mmalign.train.methods import KL_METHODS, compute_loss, preference_margins
from mmalign.train.reference import ModelReference, PrecomputedReference, frozen_copy, model_fingerprint
from mmalign.train.scoring import TokenScorer


class RunExists(RuntimeError):
    pass


def train(cfg: RunConfig, resume: bool = False) -> dict:
    from accelerate import PartialState

    out = Path(cfg.output_dir)
    # Under torchrun / accelerate launch this is one of several processes. Without a GPU,
    # accelerate only joins the process group (gloo) when told it runs on the CPU.
    process = PartialState(cpu=not torch.cuda.is_available())
    if (out / "config.yaml").exists() and not resume:
        raise RunExists(f"{out} already holds a run: pass --resume to continue it, or choose another "
                        f"output_dir (output_dir=...)")
    process.wait_for_everyone()  # every process has checked before the main one writes
    if process.is_main_process:
        atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        if cfg.world.enabled:
            from mmalign.world import build_world

            build_world(cfg.world.out, n_videos=cfg.world.n_videos, seed=cfg.world.seed)
    process.wait_for_everyone()
    stages = stages_of(cfg)
    init, summaries = None, {}
    for i, (name, scfg) in enumerate(stages):
        stage_dir = out if len(stages) == 1 else out / f"stage{i}-{name}"
        if not is_final(stage_dir / "final"):
            run_stage(scfg, stage_dir, init, resume)
        summaries[name] = json.loads((stage_dir / "summary.json").read_text())
        init = str(stage_dir / "final")
    if process.is_main_process:
        atomic_write_json(out / "summary.json", {"stages": summaries, "final": init})
        print_summary(summaries)
    return summaries


# ---------------------------------------------------------------- one stage

def record_kind(method: str) -> str:
    return {"sft": "sft", "grpo": "grpo"}.get(method, "pair")


def reference_kind(cfg: RunConfig) -> str:
    kind = cfg.train.reference
    if cfg.method in REFERENCE_FREE or (cfg.method == "grpo" and cfg.grpo.kl_beta == 0):
        return "none"
    if kind == "auto":
        return "lora_disabled" if cfg.lora.enabled else "copy"
    if kind == "lora_disabled" and not cfg.lora.enabled:
        raise ValueError("train.reference=lora_disabled needs lora.enabled=true")
    if kind == "precomputed" and cfg.method in KL_METHODS:
        raise ValueError(f"{cfg.method} needs the reference's full distribution (token-wise KL): "
                         "use train.reference=copy or lora_disabled")
    return kind


def make_accelerator(cfg: RunConfig, stage_dir: Path):
    from accelerate import Accelerator

    t = cfg.train
    stage_dir.mkdir(parents=True, exist_ok=True)
    mixed = ("bf16" if torch.cuda.is_available() else "no") if t.mixed_precision == "auto" else t.mixed_precision
    accelerator = Accelerator(mixed_precision=mixed, log_with=t.report_to or None, project_dir=str(stage_dir))
    if t.report_to:
        accelerator.init_trackers(stage_dir.name, config=flat_config(cfg))
    return accelerator


def prepare_policy(cfg: RunConfig, model, accelerator, make_scorer, reference_model=None):
    """Freeze the vision side, build the reference (a frozen copy taken before LoRA, or the
    policy itself with its adapters disabled), then add LoRA and gradient checkpointing.
    `make_scorer(model)` wraps a model in the scorer the method needs."""
    if cfg.model.freeze_vision:
        freeze_vision(model)
    ref_kind = reference_kind(cfg)
    reference = ModelReference(make_scorer(frozen_copy(reference_model or model))) if ref_kind == "copy" else None
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora.enabled:
            model.enable_input_require_grads()
    if ref_kind == "lora_disabled":
        reference = ModelReference(make_scorer(model), disable_adapters=True)
    if reference is not None:
        reference.scorer.to(accelerator.device)
    return model, reference


def apply_lora(model, cfg):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
                      exclude_modules=cfg.exclude_modules)
    return get_peft_model(model, lora)


def load_data(cfg: RunConfig, path: str | None):
    """Records of `path` within the configured difficulty range."""
    if not path:
        return [], []
    d = cfg.data
    records, skipped = read_records(path, record_kind(cfg.method), strict=d.strict,
                                    allow_absolute_paths=d.allow_absolute_paths)
    if d.difficulty_min is not None or d.difficulty_max is not None:
        lo = -math.inf if d.difficulty_min is None else d.difficulty_min
        hi = math.inf if d.difficulty_max is None else d.difficulty_max
        records = [r for r in records if r.difficulty is not None and lo <= r.difficulty <= hi]
    return records, skipped


def record_order(cfg: RunConfig, records, processes: int) -> list[int]:
    """The records' visiting order over all epochs. `train.max_steps` overrides the epochs: the
    stream is extended with further epochs until it holds that many steps for `processes`."""
    d, t = cfg.data, cfg.train
    if d.curriculum != "shuffle" and any(r.difficulty is None for r in records):
        raise ValueError(f"data.curriculum={d.curriculum} needs a `difficulty` on every record")
    epochs = t.epochs
    if t.max_steps:
        epochs = max(epochs, math.ceil(t.max_steps * t.batch_size * t.grad_accum * processes / len(records)))
    return visit_order([r.difficulty or 0.0 for r in records], epochs, t.seed, d.curriculum,
                       d.curriculum_buckets, d.curriculum_start)


def run_stage(cfg: RunConfig, stage_dir: Path, init_path: str | None, resume: bool,
              reference_path: str | None = None) -> dict:
    """`reference_path`: weights of the frozen reference when it is not the stage's starting
    policy (APASI rounds that keep the first reference; needs train.reference=copy)."""
    if reference_path and (cfg.method == "grpo" or reference_kind(cfg) != "copy"):
        raise ValueError("a reference other than the starting policy (reference_path) needs train.reference=copy")
    if cfg.method == "grpo":
        from mmalign.train.grpo import run_grpo_stage

        return run_grpo_stage(cfg, stage_dir, init_path, resume)
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    t = cfg.train
    accelerator = make_accelerator(cfg, stage_dir)
    set_seed(t.seed)
    main = accelerator.is_main_process

    # -- data first: a bad file fails before the model loads
    records, skipped = load_data(cfg, cfg.data.train_file)
    eval_records, _ = load_data(cfg, cfg.data.eval_file)
    if not records:
        raise RecordError(f"{cfg.data.train_file}: no usable records ({len(skipped)} skipped)")

    # -- model, reference
    model, processor = load_backbone(cfg.model, path=init_path)
    family = family_of(model)
    ref_model = load_backbone(cfg.model, path=reference_path)[0] if reference_path else None
    ref_kind = reference_kind(cfg)
    model, reference = prepare_policy(cfg, model, accelerator, lambda m: TokenScorer(m, t.logps_chunk_size), ref_model)

    # -- data loader, optimizer, schedule
    pad_id = processor.tokenizer.pad_token_id
    dataset = RecordDataset(records, processor, family, cfg.method, cfg.data)
    collate = make_collate(pad_id, shared_prompt=t.shared_prompt)
    order = record_order(cfg, records, accelerator.num_processes)
    loader = torch.utils.data.DataLoader(dataset, batch_size=t.batch_size, sampler=OrderSampler(order),
                                         collate_fn=collate, num_workers=t.num_workers)
    micro_total = math.ceil(len(records) * t.epochs / (t.batch_size * accelerator.num_processes))
    total_steps = t.max_steps or max(1, micro_total // t.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = get_scheduler("constant_with_warmup" if t.scheduler == "constant" else t.scheduler, optimizer,
                              num_warmup_steps=int(t.warmup_ratio * total_steps), num_training_steps=total_steps)
    scorer = TokenScorer(model, t.logps_chunk_size)
    scorer, optimizer, loader = accelerator.prepare(scorer, optimizer, loader)
    if ref_kind == "precomputed":
        reference = precompute_reference(scorer, dataset, collate, stage_dir, t.batch_size, accelerator)

    # -- resume
    state = {"step": 0, "micro": 0, "bad_steps": 0, "skipped": [asdict(s) for s in skipped]}
    ckpt_dir = stage_dir / "checkpoints"
    latest = latest_checkpoint(ckpt_dir) if resume else None
    if latest:
        state = load_checkpoint(latest, accelerator.unwrap_model(scorer).model, optimizer, scheduler)
        truncate_metrics(stage_dir / "metrics.jsonl", state["step"])
        accelerator.print(f"resumed from {latest} (step {state['step']})")
    elif main:
        (stage_dir / "metrics.jsonl").unlink(missing_ok=True)
    before = evaluate(cfg, scorer, reference, eval_records or records[:16], processor, family, accelerator)
    if latest and (stage_dir / "eval_before.json").exists():
        before = json.loads((stage_dir / "eval_before.json").read_text())
    elif main:
        atomic_write_json(stage_dir / "eval_before.json", before)

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
            with accelerator.no_sync(scorer) if not sync else _nullctx():
                with accelerator.autocast():
                    out = step_loss(cfg, scorer, reference, tensors, batch)
                accelerator.backward(out.loss / t.grad_accum)
            losses.append(out.loss.detach())
            step_metrics.append(out.metrics)
        if exhausted and not losses:
            break
        grad_norm = accelerator.clip_grad_norm_(params, t.max_grad_norm or float("inf"))
        loss = torch.stack(losses).mean() if losses else torch.tensor(float("nan"), device=accelerator.device)
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
    after = evaluate(cfg, scorer, reference, eval_records or records[:16], processor, family, accelerator)
    summary = {"method": cfg.method, "steps": state["step"], "records": len(records),
               "skipped": len(state["skipped"]), "skipped_records": state["skipped"][:200],
               "before": before, "after": after}
    accelerator.wait_for_everyone()
    gathered = gathered_weights(accelerator, scorer)  # every process takes part in the gather
    if main:
        save_final(stage_dir / "final", accelerator.unwrap_model(scorer).model, processor, gathered)
        atomic_write_json(stage_dir / "summary.json", summary)
    accelerator.wait_for_everyone()  # the others read this stage's summary and final weights next
    accelerator.end_training()
    return summary


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def step_loss(cfg: RunConfig, scorer, reference, tensors: dict, batch):
    """One micro-batch through policy (and reference) into the method's loss."""
    k = batch.n_per_record
    n = len(batch.records)
    want_kl = cfg.method in KL_METHODS
    ref = reference(tensors, batch.records, k, want_hidden=want_kl) if reference is not None else None
    if want_kl:
        policy = scorer(tensors, ref_hidden=ref["hidden"], ref_head=ref["head"], kl_rows=n)
    else:
        policy = scorer(tensors)
    return compute_loss(cfg.method, cfg.loss, tensors, k, policy, ref)


def mean_metrics(rows: list[dict]) -> dict:
    if not rows:
        return {}
    return {k: float(torch.stack([torch.as_tensor(r[k], dtype=torch.float32) for r in rows]).mean())
            for k in rows[0]}


def gathered_weights(accelerator, scorer) -> dict | None:
    """Full weights of a sharded model (FSDP / ZeRO-3), named as the backbone names them;
    None when every process already holds them whole (single process, DDP)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return None
    state = accelerator.get_state_dict(scorer)
    return {k.removeprefix("model."): v for k, v in state.items()} if state is not None else None


def flat_config(cfg: RunConfig) -> dict:
    """Scalar config values by dotted key, as trackers (TensorBoard hparams) take them."""
    flat = {}
    for section, values in to_dict(cfg).items():
        for key, value in (values.items() if isinstance(values, dict) else [("", values)]):
            if isinstance(value, (int, float, str, bool)):
                flat[f"{section}.{key}".rstrip(".")] = value
    return flat


def end_of_step(t, state: dict, can_save: bool, suspect: str, save) -> None:
    """After each optimizer step: stop on too many NaN/inf steps in a row, checkpoint on the
    `save_every` cadence (never from a non-finite step), and the kill -9 fault hook of the
    resume tests (`MMALIGN_KILL_AFTER_STEP=N`)."""
    if state["bad_steps"] >= t.max_bad_steps:
        raise FloatingPointError(f"{state['bad_steps']} consecutive steps had a NaN/inf loss or gradient "
                                 f"(last at step {state['step']}); stopping. Lower train.lr or check {suspect}.")
    if t.save_every and state["step"] % t.save_every == 0 and can_save:
        save()
    if os.environ.get("MMALIGN_KILL_AFTER_STEP") == str(state["step"]):
        os.kill(os.getpid(), signal.SIGKILL)


def reduce_metrics(accelerator, loss: torch.Tensor, metrics: dict) -> tuple[torch.Tensor, dict]:
    """Average the step's loss and metrics over processes, so the log is the global batch's."""
    if accelerator.num_processes == 1:
        return loss, metrics
    keys = sorted(metrics)
    values = torch.tensor([float(loss)] + [metrics[k] for k in keys], device=accelerator.device)
    values = accelerator.reduce(values, "mean")
    return values[0], dict(zip(keys, values[1:].tolist()))


@torch.no_grad()
def evaluate(cfg: RunConfig, scorer, reference, records, processor, family, accelerator) -> dict:
    """Held-out numbers for the summary: the loss's own metrics (reward margin and accuracy
    against the reference) and the reference-free preference accuracy: how often the policy
    gives the chosen response (with the method's token weights) a higher log-prob."""
    if not records:
        return {}
    was_training = scorer.training
    scorer.eval()
    dataset = RecordDataset(records, processor, family, cfg.method, cfg.data)
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


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows past the checkpoint being resumed, so steps are never logged twice."""
    if path.exists():
        from mmalign.io import atomic_write_jsonl

        atomic_write_jsonl(path, [row for _, row in iter_jsonl(path, skip_torn_tail=True) if row["step"] <= step])


def print_summary(summaries: dict) -> None:
    keys = ("loss", "rewards/margin", "rewards/accuracy", "logp_margin", "logp_accuracy")
    print("\nstage        metric              before      after")
    for name, s in summaries.items():
        for k in keys:
            if k in s.get("after", {}):
                print(f"{name:<12} {k:<18} {s['before'].get(k, float('nan')):>9.4f}  {s['after'][k]:>9.4f}")
        if s.get("skipped"):
            print(f"{name:<12} skipped records: {s['skipped']} (see summary.json)")
