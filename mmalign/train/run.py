"""`train(cfg)`: the config's stages in order (one stage when the config lists none), each
through its method's recipe (GRPO's own, the preference recipe for every other method); each
stage starts from the previous stage's final weights.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

import torch
import yaml

from mmalign.config import ConfigError, RunConfig, changed_keys, stages_of, to_dict
from mmalign.data.records import RecordError, record_files, short_repr
from mmalign.io import atomic_write_json, atomic_write_text, check_output_folder, lies_under
from mmalign.train.checkpoint import is_final


class RunExists(RuntimeError):
    pass


def check_inputs(stages: list[tuple[str, RunConfig]]) -> None:
    """What can be checked before anything is written: a start that fails here claims no
    output folder, so the corrected rerun needs no --resume. Every stage's records are read as
    its run will read them: a later stage's file with no usable record (or, with data.strict,
    one bad line) stopped the run after the stages before it had trained, and a first stage's
    left a claimed folder that the mended file could not resume."""
    from mmalign.models.backbone import check_checkpoint

    skeletons = {}
    for name, cfg in stages:
        where = f"stage {name}: " if len(stages) > 1 else ""
        if not (cfg.model.path or cfg.model.tiny):
            raise ConfigError(f"{where}model: set model.path (a checkpoint folder) or model.tiny (an offline preset)")
        if cfg.model.path:
            check_checkpoint(cfg.model.path, cfg.model.trust_remote_code, serves="backbone")
        if not cfg.data.train_file:
            raise ConfigError(f"{where}data.train_file: not set (a JSONL of {cfg.method} records)")
        check_stage_reads(cfg, where, [cfg.world.out] if cfg.world.enabled else [], skeletons)


def check_stage_reads(cfg: RunConfig, where: str, made_later: list[str], skeletons: dict) -> None:
    """One training stage's record files, LoRA targets, GRPO reward models and the model's
    GPU-only options (`mmalign train` and a pipeline's training steps)."""
    from mmalign.models.backbone import check_checkpoint, check_runtime
    from mmalign.rewards.model import reward_model_paths

    try:
        check_runtime(cfg.model)
        check_trackers(cfg.train.report_to)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None
    check_record_files(cfg, where, made_later)
    if cfg.lora.enabled:
        check_lora_targets(cfg, where, skeletons)
    if cfg.method == "grpo":
        for key, path in reward_model_paths(cfg.grpo.rewards):
            try:
                check_checkpoint(str(path), trust_remote_code=False, key=key, serves="reward")
            except ConfigError as e:
                raise ConfigError(f"{where}{e}") from None


def check_trackers(report_to: list[str]) -> None:
    """Each tracker of train.report_to is installed: accelerate only warns about a missing one,
    among the step logs, and the run then logs nowhere."""
    import accelerate.utils

    for name in report_to:
        if not getattr(accelerate.utils, f"is_{name}_available")():
            extra = " (pip install -e '.[tracking]')" if name == "tensorboard" else f" (pip install {name})"
            raise ConfigError(f"train.report_to: {name} is not installed here{extra}; install it or leave it out")


def check_lora_targets(cfg: RunConfig, where: str, skeletons: dict) -> None:
    """`lora.target_modules` names a module of the model, checked on its skeleton (built on the
    meta device from its config: no weight is read), which `skeletons` keeps per checkpoint.
    peft found it only after the run had claimed its folder, in a page-long traceback."""
    from accelerate import PartialState, init_empty_weights
    from transformers import AutoConfig, AutoModelForImageTextToText

    from mmalign.models.backbone import from_hub, model_path
    from mmalign.train.stage import lora_targets_problem

    with PartialState().main_process_first():  # a tiny preset is built by one process, then read by the others
        path = model_path(cfg.model)
    if path not in skeletons:
        with from_hub(path):
            config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
        with init_empty_weights():
            skeletons[path] = AutoModelForImageTextToText.from_config(config, trust_remote_code=cfg.model.trust_remote_code)
    problem = lora_targets_problem(skeletons[path], cfg.lora)
    if problem:
        raise ConfigError(f"{where}{problem}")


def check_record_files(cfg: RunConfig, where: str = "", made_later: list[str] = (),
                       only_under: list[str] | None = None) -> None:
    """Each record file of `cfg` is there and holds a usable record (with data.strict, no bad
    line), read as its stage will read it. Files under `made_later` (a world the run builds,
    a pipeline's own steps) are not there yet and are left to their stage; with `only_under`,
    only the files under those folders are checked (the world, once it is built)."""
    from mmalign.train.stage import curriculum_problem, load_usable

    for key in ("train_file", "eval_file"):
        path = getattr(cfg.data, key)
        if not path or lies_under(path, made_later) or (only_under is not None and not lies_under(path, only_under)):
            continue
        if glob.has_magic(path):
            if not record_files(path):
                raise RecordError(f"{where}data.{key}: {path}: matches no file")
        elif Path(path).is_dir():
            raise RecordError(f"{where}data.{key}: {path}: a folder, not a record file (a glob such as "
                              f"{Path(path) / '*.jsonl'} reads the files in it)")
        elif not Path(path).is_file():
            raise RecordError(f"{where}data.{key}: {path}: file not found")
        records, _ = load_usable(cfg, key, where)
        problem = curriculum_problem(cfg, records) if key == "train_file" else None
        if problem is None and key == "train_file" and cfg.method == "grpo":
            from mmalign.train.grpo import reward_data_problem

            problem = reward_data_problem(cfg, records)
        if problem:
            raise RecordError(f"{where}{problem}")


def run_stage(cfg: RunConfig, stage_dir: Path, init_path: str | None, resume: bool,
              reference_path: str | None = None) -> dict:
    if cfg.method == "grpo":
        if reference_path:
            raise ValueError("grpo: a reference other than the starting policy (reference_path) is not supported")
        from mmalign.train.grpo import run_grpo_stage

        return run_grpo_stage(cfg, stage_dir, init_path, resume)
    from mmalign.train.recipe import run_preference_stage

    return run_preference_stage(cfg, stage_dir, init_path, resume, reference_path)


# What a resume may change: how often metrics and checkpoints are written, and how the work is
# laid out in memory or across loader processes. None of them changes what is computed.
RESUME_MAY_CHANGE = ("train.save_every", "train.log_every", "train.report_to", "train.num_workers",
                     "train.logps_chunk_size", "train.max_bad_steps", "model.gradient_checkpointing")


def check_same_run(out: Path, now: dict) -> None:
    """`--resume` continues the run that `out`/run.json describes (`run_identity` when the run
    started; `now`: this one's): other settings (lr, method, data, steps, ...) or other records
    in its data files would finish a run that is neither the old one nor the new one.
    config.yaml cannot tell: it holds what ran, with the loss defaults filled in and a fallback
    the stage chose. A run started before run.json was written is not checked."""
    path = out / "run.json"
    if not path.exists():
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    old_stages, new_stages = before["stages"], now["stages"]
    if len(old_stages) == len(new_stages) == 1:  # one stage: keys as the config names them
        old_stages, new_stages = next(iter(old_stages.values())), next(iter(new_stages.values()))
        allowed = set(RESUME_MAY_CHANGE)
    else:  # "<stage name>.train.lr"
        allowed = {f"{name}.{key}" for name in new_stages for key in RESUME_MAY_CHANGE}
    changed = [f"{key} (was {short_repr(a)}, now {short_repr(b)})"
               for key, a, b in changed_keys(old_stages, new_stages) if key not in allowed]
    # A file the run itself wrote after it started (the synthetic world) was not there to record.
    changed += [f"{name}: other records" for name, digest in before["data_files"].items()
                if digest is not None and now["data_files"].get(name, digest) != digest]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise RunExists(f"{path}: --resume with other settings: {'; '.join(changed[:3])}{more}. Resume with the "
                        "config and data the run was started with, or start a new output_dir")


def run_identity(cfg: RunConfig) -> dict:
    """Each stage's effective config (typed: `lr=1e-4` on the command line is the float in the
    file) by stage name, and a digest of each record file the stages read."""
    stages = stages_of(cfg)
    files = sorted({f for _, stage in stages for f in (stage.data.train_file, stage.data.eval_file) if f})
    return {"stages": {name: json.loads(json.dumps(to_dict(stage))) for name, stage in stages},
            "data_files": {f: file_digest(f) for f in files}}


def file_digest(spec: str) -> str | None:
    """A digest of the records `spec` names: a file's bytes, or a glob's files (names and bytes),
    so that a file added to or taken from what a glob matches is other records too."""
    files = [f for f in record_files(spec) if Path(f).is_file()]
    if not files:
        return None
    digest = hashlib.sha256()  # hashlib.file_digest needs Python 3.11; mmalign supports 3.10
    for path in files:
        if glob.has_magic(spec):
            digest.update(path.encode("utf-8") + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def claim_run(out: Path, identity: dict) -> None:
    """Continue the run in `out` only if it was started as `identity` (`run_identity`) says;
    record it when the run starts."""
    check_same_run(out, identity)
    if not (out / "run.json").exists():
        atomic_write_json(out / "run.json", identity)


def train(cfg: RunConfig, resume: bool = False) -> dict:
    from accelerate import PartialState

    out = Path(cfg.output_dir)
    check_output_folder(out, "output_dir")
    stages = stages_of(cfg)
    # Under torchrun / accelerate launch this is one of several processes. Without a GPU,
    # accelerate only joins the process group (gloo) when told it runs on the CPU.
    process = PartialState(cpu=not torch.cuda.is_available())
    identity = run_identity(cfg)  # once: it reads every record file through
    if (out / "config.yaml").exists():
        if not resume:
            raise RunExists(f"{out} already holds a run: pass --resume to continue it, or choose another "
                            f"output_dir (output_dir=...)")
        check_same_run(out, identity)  # on every process, so that all of them stop
    check_inputs(stages)
    if cfg.world.enabled:
        build_checked_world(cfg, stages, process)
    process.wait_for_everyone()  # every process has checked before the main one writes
    if process.is_main_process:
        atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        claim_run(out, identity)
    process.wait_for_everyone()
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
        print(f"\nwrote {out}/: " + ", ".join(
            f"{name} -> {(out if len(stages) == 1 else out / f'stage{i}-{name}') / 'final'}"
            for i, (name, _) in enumerate(stages)) + f"; summary.json, config.yaml")
    process.wait_for_everyone()
    return summaries


def build_checked_world(cfg: RunConfig, stages: list[tuple[str, RunConfig]], process) -> None:
    """Build the synthetic world (the main process; it writes outside output_dir) and check the
    record files it wrote, before the run claims its folder: a world too small for a later
    stage's file (`world.n_videos=1` leaves no test pairs) stopped the run after the stages
    before had trained, in a claimed folder whose rerun with a mended world.n_videos --resume
    refused as other settings."""
    from mmalign.world import build_world

    if process.is_main_process:
        build_world(cfg.world.out, n_videos=cfg.world.n_videos, seed=cfg.world.seed)
    process.wait_for_everyone()
    for name, scfg in stages:
        try:
            check_record_files(scfg, f"stage {name}: " if len(stages) > 1 else "", only_under=[cfg.world.out])
        except RecordError as e:
            raise RecordError(f"{e}{world_too_small(cfg.world, (scfg.data.train_file, scfg.data.eval_file))}") from None


def world_too_small(world, files=()) -> str:
    """The hint for a world's file that gives too little; none where one of `files` lying in
    the world's folder is not a file the world wrote (a user's own file there)."""
    from mmalign.world.build import OUTPUT_JSONL

    written = {(Path(world.out) / name).resolve() for name in OUTPUT_JSONL}
    if any(Path(f).resolve() not in written for f in files if f and lies_under(f, [world.out])):
        return ""
    return f" (written by the world of world.n_videos={world.n_videos}: too few videos for it?)"


def print_summary(summaries: dict) -> None:
    keys = ("loss", "rewards/margin", "rewards/accuracy", "logp_margin", "logp_accuracy")
    print("\nstage        metric              before      after")
    for name, s in summaries.items():
        for k in keys:
            if k in s.get("after", {}):
                print(f"{name:<12} {k:<18} {s['before'].get(k, float('nan')):>9.4f}  {s['after'][k]:>9.4f}")
        if s.get("skipped"):
            print(f"{name:<12} skipped records: {s['skipped']}, e.g.:")
            for row in s["skipped_records"][:3]:
                print(f"{'':<12}   {row['source']}: {row['reason']}")
        if s.get("reward_errors"):
            print(f"{name:<12} note: {s['reward_errors']} reward-term calls failed and got the fallback reward "
                  "(each in reward_errors.jsonl)")
        if "TRAINING" in s.get("before_after_measured_on", ""):
            print(f"{name:<12} note: before/after measured on training records (set data.eval_file)")
