"""What every training recipe shares, in the order a stage uses it: the accelerator, the policy
and its reference, the data and its order, the optimizer and schedule, resume, the end of each
step, and the finish (final weights, summary).

The preference recipe (`recipe.py`) and the GRPO recipe (`grpo.py`) are read top to bottom and
call these; neither imports the other. `mmalign.train.run` picks the recipe of each stage.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
from pathlib import Path

import torch
import yaml

from mmalign.config import RunConfig, needs_reference, to_dict
from mmalign.data.records import RecordError, no_usable_records, read_record_files, reason_counts
from mmalign.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, iter_jsonl
from mmalign.methods import method
from mmalign.models.backbone import freeze_vision, load_backbone
from mmalign.train.checkpoint import latest_checkpoint, load_checkpoint, save_final
from mmalign.train.curves import plot_curves
from mmalign.train.curriculum import visit_order
from mmalign.train.reference import ModelReference, frozen_copy


# ---------------------------------------------------------------- setup

def make_accelerator(cfg: RunConfig, stage_dir: Path):
    """The stage's Accelerator (mixed precision, trackers); the main process writes the
    stage's resolved config (the loss settings that run) to stage_dir/config.yaml."""
    from accelerate import Accelerator

    t = cfg.train
    stage_dir.mkdir(parents=True, exist_ok=True)
    mixed = ("bf16" if torch.cuda.is_available() else "no") if t.mixed_precision == "auto" else t.mixed_precision
    accelerator = Accelerator(mixed_precision=mixed, log_with=t.report_to or None, project_dir=str(stage_dir))
    if accelerator.is_main_process:
        atomic_write_text(stage_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if t.report_to:
        accelerator.init_trackers(stage_dir.name, config=flat_config(cfg))
    return accelerator


def load_policy(cfg: RunConfig, accelerator, path: str | None = None):
    """(model, processor). The main process loads first: a tiny preset it builds on the way
    is complete before any other process reads it."""
    with accelerator.main_process_first():
        return load_backbone(cfg.model, path=path)


def shared_prompt_or_fallback(cfg: RunConfig, model, accelerator, stage_dir: Path) -> None:
    """A backbone that cannot share the prompt runs one pass per response: said once, and the
    stage's config.yaml records what runs."""
    from mmalign.models.shared_prompt import cannot_share

    reason = cannot_share(model) if cfg.train.shared_prompt else None
    if reason:
        accelerator.print(f"train.shared_prompt: {type(model).__name__} cannot share the prompt ({reason}); "
                          "scoring each response in its own pass instead")
        cfg.train.shared_prompt = False
        if accelerator.is_main_process:
            atomic_write_text(stage_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


def reference_kind(cfg: RunConfig) -> str:
    """The reference the stage runs with; `train.reference` values that cannot serve the method
    were refused when the config was read (mmalign.config._check_stage)."""
    kind = cfg.train.reference
    if not needs_reference(cfg):
        return "none"
    if kind == "auto":
        return "lora_disabled" if cfg.lora.enabled else "copy"
    return kind


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
    """The model with LoRA adapters; its targets were checked before the run began (check_lora_targets)."""
    from peft import get_peft_model

    return get_peft_model(model, peft_lora_config(cfg))


def peft_lora_config(cfg):
    from peft import LoraConfig

    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
                      exclude_modules=cfg.exclude_modules)


def lora_targets_problem(model, cfg) -> str | None:
    """Why peft would give no module of `model` an adapter (by peft's own matching rule), with
    the names the user can choose from; None when some module matches. (peft's own error names
    neither the key nor the modules there are.)"""
    from peft.tuners.tuners_utils import check_target_module_exists

    lora = peft_lora_config(cfg)
    if any(check_target_module_exists(lora, name) for name, _ in model.named_modules() if name):
        return None
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and not (cfg.exclude_modules and re.fullmatch(cfg.exclude_modules, n))})
    return (f"lora.target_modules: {cfg.target_modules} name no module of {type(model).__name__} outside "
            f"lora.exclude_modules; its language-model linear layers: {', '.join(linear) or 'none'}")


def load_data(cfg: RunConfig, path: str | None):
    """Records of `path` within the configured difficulty range."""
    if not path:
        return [], []
    d = cfg.data
    records, skipped = read_record_files(path, method(cfg.method).records, strict=d.strict,
                                         allow_absolute_paths=d.allow_absolute_paths, media_dir=d.media_dir)
    if d.difficulty_min is not None or d.difficulty_max is not None:
        lo = -math.inf if d.difficulty_min is None else d.difficulty_min
        hi = math.inf if d.difficulty_max is None else d.difficulty_max
        records = [r for r in records if r.difficulty is not None and lo <= r.difficulty <= hi]
    return records, skipped


def load_usable(cfg: RunConfig, key: str, where: str = "") -> tuple[list, list]:
    """`load_data` of `data.<key>` (train_file or eval_file), refusing a file that is set and
    gives no record: an eval_file with none (another method's records, say) was replaced by
    training records without a word, while the table's note asked to set data.eval_file."""
    path = getattr(cfg.data, key)
    records, skipped = load_data(cfg, path)
    if path and not records:
        if skipped:
            raise no_usable_records(f"{where}data.{key}: {path}", skipped)
        filtered = cfg.data.difficulty_min is not None or cfg.data.difficulty_max is not None
        raise RecordError(f"{where}data.{key}: {path}: "
                          + ("no record within data.difficulty_min / difficulty_max" if filtered else "holds no record"))
    return records, skipped


def skip_summary(records, read_skipped, skipped: list[dict]) -> dict:
    """The summary's counts: each record once whatever the epochs (a bad video is met once per
    epoch), `records` = those that trained (read, and their media decoded), reasons grouped."""
    unique = {s["source"]: s for s in skipped}
    at_read = {s.source for s in read_skipped}
    never_decoded = len(set(unique) - at_read)
    return {"records": len(records) - never_decoded, "skipped": len(unique),
            "skipped_by_reason": dict(reason_counts(list(unique.values()))),
            "skipped_records": list(unique.values())[:200]}


def curriculum_problem(cfg: RunConfig, records) -> str | None:
    """Why `data.curriculum` cannot order `records` (some have no difficulty), else None."""
    lacking = [r for r in records if r.difficulty is None] if cfg.data.curriculum != "shuffle" else []
    if not lacking:
        return None
    return (f"data.curriculum={cfg.data.curriculum} orders records by their `difficulty`, and {len(lacking)} of the "
            f"{len(records)} have none (the first: {lacking[0].source}); give every record one, or set "
            "data.curriculum=shuffle")


def record_order(cfg: RunConfig, records, processes: int) -> list[int]:
    """The records' visiting order over all epochs. `train.max_steps` overrides the epochs: the
    stream is extended with further epochs until it holds that many steps for `processes`."""
    d, t = cfg.data, cfg.train
    problem = curriculum_problem(cfg, records)
    if problem:
        raise RecordError(problem)
    epochs = t.epochs
    if t.max_steps:
        epochs = max(epochs, math.ceil(t.max_steps * t.batch_size * t.grad_accum * processes / len(records)))
    return visit_order([r.difficulty or 0.0 for r in records], epochs, t.seed, d.curriculum,
                       d.curriculum_buckets, d.curriculum_start)


def optimizer_and_schedule(cfg: RunConfig, params, updates: int):
    """AdamW and the warmup + decay schedule over `updates` optimizer steps."""
    from transformers import get_scheduler

    t = cfg.train
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    scheduler = get_scheduler("constant_with_warmup" if t.scheduler == "constant" else t.scheduler, optimizer,
                              num_warmup_steps=int(t.warmup_ratio * updates), num_training_steps=updates)
    return optimizer, scheduler


# ---------------------------------------------------------------- resume

def resume(stage_dir: Path, resume_asked: bool, accelerator, model, optimizer, scheduler, state: dict,
           logs: tuple[str, ...] = ("metrics.jsonl",)) -> tuple[dict, Path | None]:
    """Continue from the latest complete checkpoint (its state replaces `state`; the logs are
    cut back to its step), or start the logs afresh. Partial checkpoint folders a kill left
    behind (`checkpoints/.tmp-*`, a full model each on a 7B run) are removed either way."""
    ckpt_dir = stage_dir / "checkpoints"
    if accelerator.is_main_process:
        for partial in ckpt_dir.glob(".tmp-*"):
            shutil.rmtree(partial, ignore_errors=True)
    latest = latest_checkpoint(ckpt_dir) if resume_asked else None
    if latest:
        state = load_checkpoint(latest, model, optimizer, scheduler)
        for name in logs:
            truncate_metrics(stage_dir / name, state["step"])
        accelerator.print(f"resumed from {latest} (step {state['step']})")
    elif accelerator.is_main_process:
        for name in logs:
            (stage_dir / name).unlink(missing_ok=True)
    return state, latest


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows past the checkpoint being resumed, so steps are never logged twice."""
    if path.exists():
        atomic_write_jsonl(path, [row for _, row in iter_jsonl(path, skip_torn_tail=True) if row["step"] <= step])


def eval_before(stage_dir: Path, resumed, accelerator, compute) -> dict:
    """The held-out numbers before training: computed once, read back on resume."""
    path = stage_dir / "eval_before.json"
    if resumed and path.exists():
        return json.loads(path.read_text())
    before = compute()
    if accelerator.is_main_process:
        atomic_write_json(path, before)
    return before


# ---------------------------------------------------------------- each step

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


def mean_metrics(rows: list[dict]) -> dict:
    if not rows:
        return {}
    return {k: float(torch.stack([torch.as_tensor(r[k], dtype=torch.float32) for r in rows]).mean())
            for k in rows[0]}


# ---------------------------------------------------------------- the finish

def gathered_weights(accelerator, module) -> dict | None:
    """Full weights of a sharded model (FSDP / ZeRO-3), named as the backbone names them;
    None when every process already holds them whole (single process, DDP)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return None
    state = accelerator.get_state_dict(module)
    return {k.removeprefix("model."): v for k, v in state.items()} if state is not None else None


def finish(accelerator, stage_dir: Path, wrapped, policy, processor, summary: dict) -> dict:
    """Save the summary and the training curves (metrics.png), then `final/` (its DONE marker last, so a kill in between leaves a
    stage that resumes and rewrites both), and wait for every process. Trackers end here; the
    process group stays for the next stage (`accelerator.end_training` would destroy it)."""
    accelerator.wait_for_everyone()
    gathered = gathered_weights(accelerator, wrapped)  # every process takes part in the gather
    if accelerator.is_main_process:
        atomic_write_json(stage_dir / "summary.json", summary)
        plot_curves(stage_dir / "metrics.jsonl", stage_dir / "metrics.png", f"{stage_dir.name} ({summary['method']})")
        save_final(stage_dir / "final", policy, processor, gathered)
    accelerator.wait_for_everyone()  # the others read this stage's summary and final weights next
    for tracker in accelerator.trackers:
        tracker.finish()
    return summary


def flat_config(cfg: RunConfig) -> dict:
    """Scalar config values by dotted key, as trackers (TensorBoard hparams) take them."""
    flat = {}
    for section, values in to_dict(cfg).items():
        for key, value in (values.items() if isinstance(values, dict) else [("", values)]):
            if isinstance(value, (int, float, str, bool)):
                flat[f"{section}.{key}".rstrip(".")] = value
    return flat
