"""`mmalign run CONFIG [key.path=value ...] [--resume] [--plan]`: run a pipeline YAML
(configs/pipelines/). Registered by mmalign.cli."""

from __future__ import annotations

import json


def cmd_run(args) -> int:
    from mmalign.config import load_raw

    from .plan import apply_pipeline_overrides, load_pipeline

    cfg, steps = load_pipeline(args.config, args.overrides)
    if args.plan:
        for s in steps:
            extra = {"init": s.init, "reference": s.reference, "videos": s.videos}
            print(s.folder, s.kind, json.dumps({k: v for k, v in extra.items() if v}))
            print("   ", " ".join(f"{key}={json.dumps(value)}" for key, value in step_settings(s)))
        return 0
    from .run import run_pipeline

    run_pipeline(cfg, steps, resume=args.resume, raw=apply_pipeline_overrides(load_raw(args.config), args.overrides))
    return 0


def step_settings(step) -> list[tuple[str, object]]:
    """(key, value) of what `step` runs with that its kind's defaults do not say (the output
    folder aside), so that the plan shows every value the YAML and the command line set."""
    import dataclasses

    from mmalign.config import changed_keys

    from .plan import config_class

    defaults = dataclasses.asdict(config_class(step.kind)())
    return [(key, now) for key, _, now in changed_keys(defaults, step.config) if key != "output_dir"]


def register(sub) -> None:
    import argparse

    from mmalign.cli import config_reference

    from .plan import PipelineConfig

    p = sub.add_parser("run", help="Run a pipeline: pairs, training stages, curricula, rounds, evals.",
                       description="Stages run in order, each in its own folder; a re-run with --resume skips "
                                   "finished stages and continues the unfinished one. Format: pipelines/plan.py.",
                       epilog=config_reference(PipelineConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="Pipeline YAML, e.g. configs/pipelines/apasi_quickstart.yaml")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. output_dir=runs/mine or "
                                                "stages.dpo.config.loss.beta=0.2 (a stage by name)")
    p.add_argument("--resume", action="store_true", help="Continue the pipeline in output_dir.")
    p.add_argument("--plan", action="store_true", help="Print the expanded steps, each with the settings it runs with "
                   "beyond its kind's defaults, and exit.")
    p.set_defaults(func=cmd_run)
