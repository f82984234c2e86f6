"""`mmalign eval`: run a hallucination benchmark from a YAML config.

    mmalign eval --config configs/eval/videohallucer.yaml model.path=runs/rrpo/final data.root=/data/VideoHallucer
    mmalign eval --config configs/eval/pope.yaml data.root=/data/POPE \
        --models base=/ckpt/Qwen2.5-VL-7B rrpo=runs/rrpo/final

Several processes: `accelerate launch --num_processes 8 -m mmalign.cli eval --config ...`.
"""

from __future__ import annotations

import argparse
import sys


def cmd_eval(args) -> int:
    from mmalign.config import ConfigError

    from .config import load_eval_config
    from .run import evaluate

    if args.harness == "lmms-eval":
        from .harness import run_lmms_eval

        tasks = [t for t in (args.tasks or "").split(",") if t]
        if not tasks:
            raise ConfigError("--harness lmms-eval needs --tasks, e.g. --tasks videomme,mvbench")
        if args.predictions:
            raise ConfigError("--predictions scores a built-in benchmark's file; lmms-eval tasks run a model")
        run_lmms_eval(load_eval_config(args.config, args.overrides, args.models), tasks)
        return 0
    if args.tasks:
        raise ConfigError("--tasks names lmms-eval tasks: add --harness lmms-eval")
    if not args.config:
        raise ConfigError("--config is required (e.g. configs/eval/videohallucer.yaml), "
                          "unless --harness lmms-eval runs lmms-eval tasks")
    cfg = load_eval_config(args.config, args.overrides, args.models)
    results = evaluate(cfg, overwrite=args.overwrite, predictions=args.predictions)
    return 1 if said_nothing_scored(results, cfg.output_dir) else 0


def said_nothing_scored(results: dict, out: str) -> bool:
    """A model with items and not one of them scored (every video unreadable, or a predictions
    file that answers none of them) fails the command, as `mmalign pairs` does with no pair:
    its results are written, but a script must not read "0 of 0 right" as a run that worked."""
    from mmalign.data.records import reason_counts

    def asked(m):  # a predictions file's items it lacks are not among its counted items
        return m["counts"]["items"] + m["counts"].get("missing_predictions", 0)

    failed = [m for m in results.get("models", []) if asked(m) and not m["counts"]["scored"]]
    for m in failed:
        reasons = [{"reason": row["error"].replace(row["media"], "…") if row.get("media") else row["error"]}
                   for row in m.get("items", []) if row.get("error")]
        reasons += [{"reason": "no prediction for the item"}] * m["counts"].get("missing_predictions", 0)
        top = "\n".join(f"  {n:>5} x {reason}" for reason, n in reason_counts(reasons)[:5])
        print(f"mmalign: error: {m['name']}: not one of its {asked(m)} items was scored (results in "
              f"{out}); why:\n{top}", file=sys.stderr)
    return bool(failed)


def register(sub) -> None:
    from mmalign.cli import config_reference

    from .config import EvalConfig

    p = sub.add_parser("eval", help="Run a hallucination benchmark with the official scoring.",
                       epilog=config_reference(EvalConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config, e.g. configs/eval/videohallucer.yaml (optional with --harness)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. model.path=runs/rrpo/final")
    p.add_argument("--models", nargs="+", metavar="NAME=PATH",
                   help="Compare several models (replaces `models` in the config; put it last), "
                        "e.g. base=/ckpt rrpo=runs/rrpo/final")
    p.add_argument("--predictions", default=None, metavar="FILE",
                   help="Score this predictions file (the benchmark's official format, our predictions.jsonl, "
                        "or a JSON object / list of {id, prediction}) instead of running the config's model, or, "
                        "with --models, beside those models; items it lacks are listed and counted.")
    p.add_argument("--harness", choices=("builtin", "lmms-eval"), default="builtin",
                   help="builtin: the config's benchmark; lmms-eval: the --tasks of lmms-eval (an optional extra, "
                        "pip install -e '.[lmms]'), run with this config's model and sampling, data from data.root")
    p.add_argument("--tasks", default=None, metavar="T1,T2",
                   help="lmms-eval tasks, e.g. videomme,mvbench,mlvu,longvideobench,tvbench,vinoground,tempcompass")
    p.add_argument("--overwrite", action="store_true",
                   help="Discard predictions already in output_dir instead of resuming from them.")
    p.set_defaults(func=cmd_eval)
