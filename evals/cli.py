"""`mmalign eval`: run a hallucination benchmark from a YAML config.

    mmalign eval --config configs/eval/videohallucer.yaml model.path=runs/rrpo/final data.root=/data/VideoHallucer
    mmalign eval --config configs/eval/pope.yaml data.root=/data/POPE \
        --models base=/ckpt/Qwen2.5-VL-7B rrpo=runs/rrpo/final

Several processes: `accelerate launch --num_processes 8 -m mmalign.cli eval --config ...`.
"""

from __future__ import annotations

import argparse


def cmd_eval(args) -> int:
    from .config import load_eval_config
    from .run import evaluate

    cfg = load_eval_config(args.config, args.overrides, args.models)
    evaluate(cfg, overwrite=args.overwrite, predictions=args.predictions)
    return 0


def register(sub) -> None:
    from mmalign.cli import config_reference

    from .config import EvalConfig

    p = sub.add_parser("eval", help="Run a hallucination benchmark with the official scoring.",
                       epilog=config_reference(EvalConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/eval/videohallucer.yaml")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. model.path=runs/rrpo/final")
    p.add_argument("--models", nargs="+", metavar="NAME=PATH",
                   help="Compare several models (replaces `models` in the config; put it last), "
                        "e.g. base=/ckpt rrpo=runs/rrpo/final")
    p.add_argument("--predictions", default=None, metavar="FILE",
                   help="Score this predictions file (our predictions.jsonl, or a JSON object / list of "
                        "{id, prediction}) instead of running a model; items it lacks are listed and counted.")
    p.add_argument("--overwrite", action="store_true",
                   help="Discard predictions already in output_dir instead of resuming from them.")
    p.set_defaults(func=cmd_eval)
