"""`mmalign pairs` (generate pair records from raw videos), `mmalign pairs-export` and
`mmalign pairs-import` (the RRPO release format). Registered by mmalign.cli."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_pairs(args) -> int:
    from mmalign.data.video import MediaError

    from .config import load_pairs_config
    from .run import run_pairs

    cfg = load_pairs_config(args.config, args.overrides)
    if args.quiet:  # transformers' own bars too ("Loading weights"), not only ours
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        report = run_pairs(cfg, args.videos, args.out, restart=args.restart, strict=args.strict,
                           show_progress=not args.quiet)
    except MediaError as e:  # --strict: the first unusable video ends the run
        print(f"mmalign: error: {e}", file=sys.stderr)
        return 2
    if report is None:  # a process other than the main one
        return 0
    summary = {k: report[k] for k in ("out", "records", "videos", "videos_with_records", "filtered", "this_run")}
    summary["skipped"] = len(report["skipped"])
    print(json.dumps(summary, indent=1))
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if report["absolute_media_paths"]:
        print("note: the videos lie outside the output's folder, so records name them by absolute path; "
              "train with data.allow_absolute_paths=true (or write --out next to the videos)", file=sys.stderr)
    if report["media_links_lead_out"]:
        print("note: videos under --videos are symbolic links to files outside the output's folder; records name "
              "them by their links, and the trainer checks where they lead: train with "
              "data.allow_absolute_paths=true (or copy the videos in)", file=sys.stderr)
    if report["records"] == 0:
        print(f"mmalign: error: {args.out}: no pair was written from {report['videos']} video(s); why:\n"
              + top_reasons(report), file=sys.stderr)
        return 1
    return 0


def top_reasons(report: dict, n: int = 5) -> str:
    """The commonest reasons videos gave no pair: skipped videos, then dropped candidates."""
    counts: dict[str, int] = {}
    for s in report["skipped"]:
        reason = s["reason"].split(": ", 1)[-1] if s["reason"].startswith("/") else s["reason"]
        counts[f"video skipped: {reason}"] = counts.get(f"video skipped: {reason}", 0) + 1
    for reason, k in report["filtered"].items():
        counts[f"pair dropped: {reason}"] = k
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    nothing = "  (no video found)" if not report["videos"] else "  (no candidate pair was made, and none dropped)"
    return "\n".join(f"  {k:>5} x {reason}" for reason, k in top) or nothing


def cmd_export(args) -> int:
    from .rrpo_format import export_rrpo

    written, skipped = export_rrpo(args.input, args.out, placeholder=args.placeholder)
    for s in skipped:
        print(f"skipped {s.source}: {s.reason}", file=sys.stderr)
    print(f"{written} records written to {args.out}, {len(skipped)} lines skipped")
    return 0


def cmd_import(args) -> int:
    from .rrpo_format import import_rrpo

    records, skipped = import_rrpo(args.input, args.out, media_root=args.media_root, check_media=args.check_media)
    for s in skipped:
        print(f"skipped {s.source}: {s.reason}", file=sys.stderr)
    print(f"{len(records)} records written to {args.out}, {len(skipped)} lines skipped")
    return 0


def register(sub) -> None:
    from mmalign.cli import config_reference

    from .config import PairsConfig

    p = sub.add_parser("pairs", help="Generate preference pairs from a folder of raw videos.",
                       description="The config's model answers prompts about each video; the generator makes the "
                                   "non-preferred side, marks what differs, and writes records `mmalign train` reads.",
                       epilog=config_reference(PairsConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help="Folder of raw videos (searched recursively).")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/pairs/temple.yaml")
    p.add_argument("--out", required=True, help="Output JSONL; OUT.parts/ holds progress, OUT.report.json the report.")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. temple.magnitudes=[16]")
    p.add_argument("--strict", action="store_true", help="Stop at the first video that cannot be used.")
    p.add_argument("--restart", action="store_true", help="Discard the progress in OUT.parts/ and start over.")
    p.add_argument("--quiet", action="store_true", help="No progress bar (neither ours nor transformers').")
    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser("pairs-export", help="Write pair records in the RRPO release format (answer_masked / pred_masked).")
    p.add_argument("input", help="Our pair JSONL.")
    p.add_argument("--out", required=True, help="Output: .json (an array, as RRPO ships) or .jsonl.")
    p.add_argument("--placeholder", default="<image>\n", help="Prepended to each question (LLaVA's media token).")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("pairs-import", help="Convert an RRPO release file into our pair records.")
    p.add_argument("input", help="RRPO JSON array or JSON lines.")
    p.add_argument("--out", required=True, help="Output pair JSONL.")
    p.add_argument("--media-root", default=None, help="Folder the release's media paths are relative to "
                                                      "(default: the input file's folder).")
    p.add_argument("--check-media", action="store_true", help="Skip records whose video file is missing.")
    p.set_defaults(func=cmd_import)
