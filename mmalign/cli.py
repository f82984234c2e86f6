"""`mmalign` command line: train, world, pairs (mmalign.perturb), eval (mmalign.evals), run (mmalign.pipelines).

Heavy imports (torch, transformers) happen inside the commands so that `--help` and config
errors are instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def config_reference(config_cls=None) -> str:
    """The `--help` epilogue of a command configured by the dataclass `config_cls`
    (default: the training RunConfig): every key with its default and help text."""
    from mmalign.config import RunConfig, help_text

    rows = help_text(config_cls or RunConfig)
    width = max(len(k) for k, _, _ in rows)
    return "config keys (YAML, or key.path=value on the command line):\n" + "\n".join(
        f"  {k:<{width}}  {h} [default: {d}]" for k, d, h in rows)


def method_keys() -> str:
    """The `train --help` table of which loss keys each method reads, with its defaults."""
    from mmalign.methods import LOSS_KEYS, METHODS

    return ("loss keys each method reads (unset = the default shown; `derived` = computed from the others):\n"
            + "\n".join("  " + m.describe() for m in METHODS.values()) + "\n"
            + "\n".join(f"  loss.{k}: {h.split(': ', 1)[1]}" for k, h in LOSS_KEYS.items()))


def cmd_train(args) -> int:
    from mmalign.config import load_config
    from mmalign.train.run import train

    overrides = list(args.overrides) + (["data.strict=true"] if args.strict else [])
    cfg = load_config(args.config, overrides)
    if args.plan:
        from mmalign.train.plan import plan, print_plan

        print_plan(plan(cfg))
        return 0
    train(cfg, resume=args.resume)
    return 0


def cmd_world(args) -> int:
    from mmalign.config import ConfigError
    from mmalign.io import check_output_folder
    from mmalign.world import build_world
    from mmalign.world.build import world_args_problem

    check_output_folder(args.out, "--out")
    problem = world_args_problem(args.n, tuple(args.object_sizes), args.max_objects, seed=args.seed)
    if problem:
        flag = {"n_videos": "--n", "object_sizes": "--object-sizes", "max_objects": "--max-objects",
                "seed": "--seed"}[problem[0]]
        raise ConfigError(f"{flag}: {problem[1]}")
    summary = build_world(args.out, n_videos=args.n, seed=args.seed, object_sizes=tuple(args.object_sizes),
                          max_objects=args.max_objects)
    print(json.dumps(summary, indent=1))  # as `mmalign pairs` prints its report: for jq or json.loads
    return 0


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    parser = argparse.ArgumentParser(prog="mmalign", description="Align multimodal and video LLMs.")
    try:
        parser.add_argument("--version", action="version", version=f"mmalign {version('mmalign')}")
    except PackageNotFoundError:  # run from a source tree that was never installed
        parser.add_argument("--version", action="version", version="mmalign (not installed)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="Train from a YAML config.", epilog=config_reference() + "\n\n" + method_keys(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config, e.g. configs/quickstart.yaml")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. train.lr=1e-5")
    p.add_argument("--resume", action="store_true", help="Continue the run in output_dir from its last checkpoint.")
    p.add_argument("--strict", action="store_true", help="Fail on the first unusable record or media file.")
    p.add_argument("--plan", action="store_true", help="Print the token distribution, the longest record, the records "
                                                       "over data.max_length and the estimated activation memory per "
                                                       "micro-batch, from file headers alone; train nothing.")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("world", help="Write a synthetic raw-video folder with ground truth.")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=32, help="number of videos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--object-sizes", type=int, nargs=2, default=[14, 20], metavar=("MIN", "MAX"),
                   help="object box side in pixels of a 64 px frame (larger = easier to see)")
    p.add_argument("--max-objects", type=int, default=3, help="most objects in one video")
    p.set_defaults(func=cmd_world)

    from mmalign.evals.cli import register as register_eval
    from mmalign.perturb.cli import register as register_pairs
    from mmalign.pipelines.cli import register as register_run

    for register in (register_pairs, register_eval, register_run):
        register(sub)
    return parser


def parse(argv: list[str] | None):
    """argparse, except that key=value overrides may also follow a flag (`train cfg.yaml
    --resume train.lr=1e-5`): argparse ends a positional list at the first flag, and its
    parse_intermixed_args does not support subcommands."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) < len(extra) or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:
        args.overrides = list(args.overrides) + overrides  # in command-line order: the later one wins
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from mmalign.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as e:
        print(f"mmalign: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file or folder the command cannot read or write (permissions, a full disk, ...)
        print(f"mmalign: error: {e.filename}: {e.strerror or e}" if e.filename else f"mmalign: error: {e}",
              file=sys.stderr)
        return 2
    except Exception as e:
        from mmalign.data.records import RecordError
        from mmalign.train.checkpoint import CheckpointWriteError
        from mmalign.train.run import RunExists

        if isinstance(e, (RecordError, RunExists, CheckpointWriteError)):
            print(f"mmalign: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
