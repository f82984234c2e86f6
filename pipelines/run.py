"""`run_pipeline(cfg, steps)`: the expanded plan (pipelines/plan.py), step by step.

    <output_dir>/pipeline.yaml           the pipeline config the run was started with
    <output_dir>/plan.json               the expanded steps, each with its resolved config
    <output_dir>/NN-<step>/              one folder per step:
        pairs:    pairs.jsonl (+ .report.json, .parts/ while running)
        training: final/ (LoRA merged), metrics.jsonl, summary.json, checkpoints/
        eval:     results.json, metrics.md, report.html, <model>/ predictions
        done.json                        the marker: written atomically last, with the step's
                                         config, its outputs and its headline numbers
    <output_dir>/pipeline_summary.{json,md,png}

Resume: a step whose marker exists is skipped (its marker must hold the same config, else the
run refuses to mix); the first unfinished step continues where it stopped with the tool's own
resume (pairs: OUT.parts, training: the latest checkpoint, eval: the saved predictions), each
of which refuses a config other than the one the step started with (training: its run.json).
`MMALIGN_KILL_AFTER_STAGE=<step name>` SIGKILLs the process right after that step's marker is
written (fault injection for the resume tests, as MMALIGN_KILL_AFTER_STEP in train).

One process runs the steps in order (a training step on one device); under a multi-process
launch (WORLD_SIZE > 1) the run refuses to start, before it writes anything.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import yaml

from mmalign.config import ConfigError
from mmalign.io import atomic_write_json, atomic_write_text, check_output_folder, lies_under

from .plan import BASE, PipelineConfig, Step

KILL_ENV = "MMALIGN_KILL_AFTER_STAGE"
MARKER = "done.json"


class PipelineExists(ConfigError):
    """output_dir holds a pipeline run and --resume was not given."""


class NothingMade(ConfigError):
    """A step ran and made nothing the next one can use (no pair): the config or the data must
    change, so the command reports it in one line, as a config error."""


def run_pipeline(cfg: PipelineConfig, steps: list[Step], resume: bool = False, raw: dict | None = None) -> dict:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Every process would run every step and write the same markers: refuse before writing.
        raise ConfigError("mmalign run: a pipeline runs in one process (WORLD_SIZE="
                          f"{os.environ['WORLD_SIZE']}); launch it without accelerate launch / torchrun, or run "
                          "its steps (mmalign pairs / train / eval) under the launcher one by one")
    out = Path(cfg.output_dir)
    check_output_folder(out, "output_dir")
    if (out / "plan.json").exists() and not resume:
        raise PipelineExists(f"{out} already holds a pipeline run: pass --resume to continue it, or choose another "
                             "output_dir (output_dir=...)")
    finished = {s.name: _finished(s, out / s.folder / MARKER) for s in steps}  # refuse before writing anything
    pending = [s for s in steps if finished[s.name] is None]
    check_inputs(cfg, pending, out)
    if cfg.world.enabled:  # it writes outside output_dir: built, and its files checked, before the folder is claimed
        from mmalign.world import build_world

        build_world(cfg.world.out, n_videos=cfg.world.n_videos, seed=cfg.world.seed, show_progress=False)
        check_world_reads(cfg, pending)
    out.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        atomic_write_text(out / "pipeline.yaml", yaml.safe_dump(raw, sort_keys=False))
    atomic_write_json(out / "plan.json", [s.to_dict() for s in steps])

    done = []
    for step in steps:
        folder = out / step.folder
        marker = folder / MARKER
        row = finished[step.name]
        if row is not None:
            print(f"[pipeline] {step.name}: done before, skipped")
        else:
            print(f"[pipeline] {step.name} ({step.kind}) -> {folder}")
            t0 = time.time()
            result = RUNNERS[step.kind](cfg, step, folder)
            row = {"step": step.name, "kind": step.kind, "round": step.round, "folder": str(folder),
                   "seconds": round(time.time() - t0, 2), **result, "config": step.config}
            atomic_write_json(marker, row)
            if os.environ.get(KILL_ENV) == step.name:
                os.kill(os.getpid(), signal.SIGKILL)
        done.append(row)

    from .summary import write_summary

    smoke = bool(cfg.model.tiny) and not cfg.model.path
    return write_summary(out, done, smoke=smoke)


def check_inputs(cfg: PipelineConfig, steps: list[Step], out: Path) -> None:
    """What `steps` read that no step makes (the base model, record files, a judge's folder,
    a pairs step's videos, a benchmark's annotation files, LoRA targets, reward models), checked before the first step runs: found when its step
    began, it stopped the pipeline after the training before it (hours, on a GPU)."""
    from mmalign.config import build_config
    from mmalign.data.records import RecordError
    from mmalign.models.backbone import check_checkpoint
    from mmalign.perturb.config import build_pairs_config
    from mmalign.perturb.run import check_models
    from mmalign.train.run import check_stage_reads

    made_later = [str(out), *([cfg.world.out] if cfg.world.enabled else [])]
    skeletons = {}
    if cfg.model.path:
        check_checkpoint(cfg.model.path, cfg.model.trust_remote_code, serves="backbone")
    for step in steps:
        try:
            if step.kind == "eval":
                _check_benchmark_files(step)
            elif step.kind == "pairs":
                check_models(build_pairs_config(step.config, step.name), made_later)
                if not lies_under(step.videos, made_later) and not Path(step.videos).is_dir():
                    raise ConfigError(f"videos: {step.videos}: not a folder")
            else:
                check_stage_reads(build_config(step.config, step.name), "", made_later, skeletons)
        except (ConfigError, RecordError) as e:
            raise type(e)(f"step {step.name}: {e}") from None


def check_world_reads(cfg: PipelineConfig, steps: list[Step]) -> None:
    """The record and benchmark files the world wrote, read as `steps` will read them: a world
    too small for a step (`world.n_videos=1` leaves no test split) stopped the pipeline at that
    step, after the ones before it had trained."""
    from mmalign.config import build_config
    from mmalign.data.records import RecordError
    from mmalign.evals.benchmarks import REGISTRY
    from mmalign.evals.config import build_eval_config
    from mmalign.train.run import check_record_files, world_too_small

    world = [cfg.world.out]
    for step in steps:
        files = ()  # a training step's record files: the hint is not for a user's own file in the world's folder
        try:
            if step.kind == "eval":
                eval_cfg = build_eval_config(step.config, step.name)
                if eval_cfg.data.root and lies_under(eval_cfg.data.root, world):
                    REGISTRY[eval_cfg.benchmark].load(eval_cfg)
            elif step.kind != "pairs":
                train_cfg = build_config(step.config, step.name)
                files = (train_cfg.data.train_file, train_cfg.data.eval_file)
                check_record_files(train_cfg, only_under=world)
        except (ConfigError, RecordError) as e:
            raise type(e)(f"step {step.name}: {e}{world_too_small(cfg.world, files)}") from None


def _check_benchmark_files(step: Step) -> None:
    """An eval step's annotation files (a benchmark that writes its own, the synthetic world, is
    left to its step) and its models' GPU-only options."""
    from mmalign.evals.benchmarks import REGISTRY
    from mmalign.evals.config import build_eval_config, model_specs
    from mmalign.models.backbone import check_runtime

    eval_cfg = build_eval_config(step.config, step.name)
    for spec in model_specs(eval_cfg):
        check_runtime(spec.model)
    bench = REGISTRY[eval_cfg.benchmark]
    if bench.prepare is None:
        bench.load(eval_cfg)


def _finished(step: Step, marker: Path) -> dict | None:
    """The marker of a finished step, which must record the config this plan gives the step."""
    if not marker.exists():
        return None
    row = json.loads(marker.read_text(encoding="utf-8"))
    if row["config"] != json.loads(json.dumps(step.config)):
        raise ConfigError(f"step {step.name}: {marker} was made with another config; choose another "
                          "output_dir, or delete that step's folder (and the later ones) to redo it")
    return row


# ---------------------------------------------------------------- one step per kind

def run_pairs_step(cfg: PipelineConfig, step: Step, folder: Path) -> dict:
    from mmalign.perturb.config import build_pairs_config
    from mmalign.perturb.run import run_pairs

    pairs_cfg = build_pairs_config(step.config, step.name)
    report = run_pairs(pairs_cfg, step.videos, folder / "pairs.jsonl", show_progress=False)
    if not report["records"]:
        from mmalign.perturb.cli import top_reasons

        why = "; ".join(line.strip() for line in top_reasons(report).splitlines())
        raise NothingMade(f"step {step.name}: no pair was made from {report['videos']} video(s) ({why}); "
                          f"see {folder / 'pairs.report.json'}")
    return {"outputs": {"pairs": str(folder / "pairs.jsonl")}, "numbers": {"records": report["records"]}}


def run_train_step(cfg: PipelineConfig, step: Step, folder: Path) -> dict:
    from mmalign.config import build_config
    from mmalign.models.backbone import model_path
    from mmalign.train.checkpoint import is_final
    from mmalign.train.run import claim_run, run_identity, run_stage

    run_cfg = build_config(step.config, step.name)
    reference = model_path(cfg.model) if step.reference == BASE else step.reference
    folder.mkdir(parents=True, exist_ok=True)
    claim_run(folder, run_identity(run_cfg))  # a step killed mid-training continues only as it started
    if not is_final(folder / "final"):  # killed after the weights were saved: only the marker is missing
        run_stage(run_cfg, folder, step.init, resume=True, reference_path=reference)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    numbers = {"records": summary.get("records"), "steps": summary.get("steps")}
    for key in ("loss", "logp_accuracy", "rewards/accuracy"):
        if key in summary.get("after", {}):
            numbers[f"after/{key}"] = summary["after"][key]
    return {"outputs": {"model": str(folder / "final")}, "numbers": numbers}


def run_eval_step(cfg: PipelineConfig, step: Step, folder: Path) -> dict:
    from mmalign.evals.benchmarks import REGISTRY
    from mmalign.evals.config import build_eval_config
    from mmalign.evals.run import evaluate

    eval_cfg = build_eval_config(step.config, step.name)
    results = evaluate(eval_cfg)
    metrics = results["models"][0]["metrics"]
    metric = step.metric or (REGISTRY[eval_cfg.benchmark].headline or (next(iter(metrics), None),))[0]
    if step.metric and step.metric not in metrics:
        # known only once the benchmark has scored; without this the summary plots nothing, without a word
        raise ConfigError(f"step {step.name}: metric: {step.metric!r} is not a metric of {eval_cfg.benchmark}; it "
                          f"reports {', '.join(metrics)} (the answers are kept: fix it and rerun with --resume)")
    return {"outputs": {"results": str(folder / "results.json")},
            "numbers": {"metric": metric, "value": metrics.get(metric), **metrics}}


RUNNERS = {"pairs": run_pairs_step, "sft": run_train_step, "preference": run_train_step, "grpo": run_train_step,
           "eval": run_eval_step}
