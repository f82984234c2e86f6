"""Is a change in the synthetic alignment table more than noise? Its SFT models and aligned copies,
scored on another unseen world with four times the benchmark world's videos.

    python benchmarks/synthetic_alignment.py                     # first: the models
    python benchmarks/second_world_check.py --captions           # the default's rows on world seed 2
    python benchmarks/second_world_check.py --quick --work runs/synthetic_alignment_quick_sft-purple-as-blue \
        --tables runs/synthetic_alignment_quick_sft-purple-as-blue/synthetic_alignment.json     # a smoke run

Since stop 36 the default's own table is scored on such a world (seed 10); this scores the same
models on another one, or the models of any results file (--tables) made with
--held-out-world 0, whose table came from the benchmark world's 160 test videos.
The world is one that no model has seen (seed SECOND_SEED; the benchmark world is 0 and the
pretraining world synthetic_alignment.PRETRAIN_SEED), built with the harness's object sizes.
Nothing is chosen on it: each method's lr comes from the results files named by --tables, where
it was chosen on held-in validation videos. Only the DPO and RRPO rows are scored (METHODS; others
with --methods): the others change the held-out table by at most 0.003, and each row costs ~2 min here.
Writes benchmarks/results/second_world/second_world.{json,md,png} (--report-only: md and png again
from the json).

    python benchmarks/second_world_check.py --world-seed 3 --captions --tables <results json> --results <folder>

scores another unseen world, and with --captions the test videos' captions too (object precision,
CHAIR_s and the objects named, for a table whose lr was chosen by a caption metric).

    python benchmarks/second_world_check.py ... --methods dpo_open rrpo_open sft_chosen_open --against sft_chosen_open

also sets each row against a control row of the same tables: per seed, the row's score minus the
control's (both aligned from that seed's SFT model), by the same rule. That is what the preference
adds beyond SFT on the answers it prefers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import synthetic_alignment as sa  # noqa: E402

SECOND_SEED = 2
SCALE = 4  # videos (and so test videos and pairs) against the benchmark world
METHODS = ("dpo", "rrpo", "dpo_open", "rrpo_open")
METRICS = ("accuracy", "halluc_accuracy", "basic_accuracy")
CAPTION_METRICS = sa.CAPTION_METRICS  # with --captions
TABLES = ("benchmarks/results/synthetic_alignment.json",)  # the default run's; --tables for others


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name  # no folder of this machine


def rows_to_score(metas: dict[Path, dict], methods: tuple[str, ...] = METHODS) -> dict[str, tuple[str, float, list[str]]]:
    """Run-folder name -> (method, lr, the tables whose row it is), for `methods`; `metas`: each
    results file's meta."""
    rows: dict[str, tuple[str, float, list[str]]] = {}
    for table, meta in metas.items():
        for method, choice in meta["lrs"].items():
            if method in methods:
                name = sa.run_name(method, choice["lr"], meta["size"])
                rows.setdefault(name, (method, choice["lr"], []))[2].append(shown(table))
    return rows


def changes(per_seed: dict, name: str, metrics: tuple[str, ...] = METRICS, reference: str = "sft") -> dict:
    """Per metric: each seed's change against that seed's `reference` model (its own SFT model,
    or a control row aligned from it), their mean and std, and the target's rule
    (synthetic_alignment.beyond_spread); with captions, the objects named's relative change per
    seed (the target's length rule: within 15%)."""
    out = {}
    for metric in metrics:
        deltas = [per_seed[s][name][metric] - per_seed[s][reference][metric] for s in per_seed]
        out[metric] = {"deltas": deltas, "mean": statistics.mean(deltas),
                       "std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0,
                       "beyond_spread": sa.beyond_spread(deltas, metric in sa.LOWER_IS_BETTER)}
    if "mentions" in per_seed[next(iter(per_seed))][name]:
        out["objects_named"] = [sa.relative_change(per_seed[s][name]["mentions"], per_seed[s][reference]["mentions"])
                                for s in per_seed]
    return out


def metrics_of(meta: dict) -> tuple[str, ...]:
    return METRICS + (CAPTION_METRICS if meta.get("captions") else ())


def row_label(row: dict) -> str:
    return f"{sa.LABELS[row['method']]} ({row['lr']:g})"


def rule_cells(c: dict) -> list[str]:
    """One metric's two cells: the per-seed differences, and their mean ± std with the rule."""
    return [", ".join(f"{d:+.3f}" for d in c["deltas"]),
            f"{c['mean']:+.3f} ± {c['std']:.3f}" + (" (beyond the spread)" if c["beyond_spread"] else "")]


def markdown(result: dict) -> str:
    meta = result["meta"]
    metrics = metrics_of(meta)
    lines = [f"Unseen held-out world (seed {meta['world_seed']}, {meta['test_videos']} test videos, "
             f"{meta['bench_pairs']} yes/no pairs); the models of {', '.join(meta['tables'])}. "
             f"SFT pair acc. by seed: " + ", ".join(f"{v:.3f}" for v in meta["sft_accuracy"]) + ".", "",
             "| method (lr) | from | " + " | ".join(f"Δ {sa.NAMES[m]} per seed | mean ± std" for m in metrics)
             + (" | objects named, Δ per seed" if meta.get("captions") else "") + " |",
             "|---|---|" + "---|---|" * len(metrics) + ("---|" if meta.get("captions") else "")]
    for name, row in result["rows"].items():
        cells = [cell for m in metrics for cell in rule_cells(row["changes"][m])]
        if meta.get("captions"):
            cells.append(", ".join(f"{100 * c:+.0f}%" for c in row["changes"]["objects_named"]))
        lines.append(f"| {row_label(row)} | {', '.join(row['tables'])} | " + " | ".join(cells) + " |")
    if meta.get("against"):
        control = result["rows"][meta["against"]]
        lines += ["", f"Against the control, {row_label(control)}: per seed, the row's score minus the control's "
                      "(both aligned from that seed's SFT model), by the same rule:", "",
                  "| method (lr) | " + " | ".join(f"{sa.NAMES[m]} − control per seed | mean ± std" for m in metrics)
                  + " |", "|---|" + "---|---|" * len(metrics)]
        for name, row in result["rows"].items():
            if name != meta["against"]:
                cells = [cell for m in metrics for cell in rule_cells(row["against"][m])]
                lines.append(f"| {row_label(row)} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {meta['wall_minutes']:.1f} min; regenerate with `{meta['command']}`."]
    return "\n".join(lines) + "\n"


def figure(result: dict):
    """One panel per metric: each row's per-seed changes against its own SFT model (dots), their
    mean (bar) and twice their std (error bar), as in the harness's own figure: the target's rule
    is every dot on the good side of 0 and the bar past its error bar. With --against, a second
    line of panels: each other row's per-seed score minus the control's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = result["meta"]
    metrics = metrics_of(meta)
    lines = [("changes", "vs own SFT", list(result["rows"].values()))]
    if meta.get("against"):
        lines.append(("against", "vs the control",
                      [row for name, row in result["rows"].items() if name != meta["against"]]))
    fig, axes = plt.subplots(len(lines), len(metrics), figsize=(3.6 * len(metrics), 3.8 * len(lines)), squeeze=False)
    for panels, (key, title, rows) in zip(axes, lines):
        for ax, metric in zip(panels, metrics):
            changes = [row[key][metric] for row in rows]
            ax.bar(range(len(rows)), [c["mean"] for c in changes], yerr=[2 * c["std"] for c in changes], capsize=4,
                   color="#bbbbbb" if key == "against" else "#3b7dd8")
            for i, c in enumerate(changes):
                ax.scatter([i] * len(c["deltas"]), c["deltas"], color="k", s=8, zorder=3)
            ax.axhline(0, color="#888888", lw=1)
            ax.set_xticks(range(len(rows)), [f"{sa.LABELS[row['method']]}\n(lr {row['lr']:g})" for row in rows],
                          rotation=30, ha="right", fontsize=7)
            ax.set_title(f"Δ {sa.NAMES[metric]} {title}", fontsize=9)
    control = (f"; bottom: against the control, {row_label(result['rows'][meta['against']])}"
               if meta.get("against") else "")
    fig.suptitle(f"Unseen world seed {meta['world_seed']} ({meta['test_videos']} test videos): per-seed changes "
                 f"(dots), mean (bar) ± 2 std{control}", fontsize=10)
    fig.tight_layout()
    return fig


def write_report(results: Path, result: dict) -> None:
    """second_world.md and second_world.png from the result (the json is written by main)."""
    import matplotlib.pyplot as plt

    md = markdown(result)
    (results / "second_world.md").write_text(md)
    fig = figure(result)
    fig.savefig(results / "second_world.png", dpi=110)
    plt.close(fig)
    print(md)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the harness's --quick sizes")
    ap.add_argument("--work", default=sa.work_folder(), help="the harness's work folder (its models; default the "
                                                              "default command's)")
    ap.add_argument("--tables", nargs="+", default=list(TABLES), help="results json files whose lrs are scored")
    ap.add_argument("--results", default="benchmarks/results/second_world")
    ap.add_argument("--world-seed", type=int, default=SECOND_SEED,
                    help=f"the unseen world's seed (default {SECOND_SEED}; the benchmark world is 0, the pretraining "
                         f"world {sa.PRETRAIN_SEED})")
    ap.add_argument("--captions", action="store_true",
                    help="also caption the test videos: object precision, CHAIR_s and the objects named")
    ap.add_argument("--methods", nargs="+", choices=sa.METHODS, default=list(METHODS),
                    help=f"the rows to score, of those the tables trained (default {' '.join(METHODS)})")
    ap.add_argument("--against", choices=sa.METHODS, default=None,
                    help="a control row (one of --methods): each other row is also set against it, seed by seed")
    ap.add_argument("--report-only", action="store_true", help="re-render md / png from --results' json")
    args = ap.parse_args(argv)
    if args.report_only:
        result = json.loads((ROOT / args.results / "second_world.json").read_text())
        write_report(ROOT / args.results, result)
        return result
    if args.world_seed in (0, sa.PRETRAIN_SEED):
        ap.error(f"--world-seed {args.world_seed}: that world is not unseen (0 is the benchmark world, "
                 f"{sa.PRETRAIN_SEED} the pretraining world)")
    work, results = ROOT / args.work, ROOT / args.results
    tables = [ROOT / t for t in args.tables]
    size = dict(sa.QUICK if args.quick else sa.FULL)
    t0 = time.time()
    world, manifest = sa.unseen_world(work, args.world_seed, SCALE * size["n_videos"], size)
    metas = {table: json.loads(table.read_text())["meta"] for table in tables}
    rows = rows_to_score(metas, tuple(args.methods))
    control = None
    if args.against:
        controls = [name for name, (method, *_) in rows.items() if method == args.against]
        if len(controls) != 1:
            ap.error(f"--against {args.against}: it must be one of --methods, trained at one lr by the tables "
                     f"(found {len(controls)} such rows)")
        control = controls[0]
    seeds = metas[tables[0]]["seeds"]
    per_seed = {}
    test = sa.split_ids(world, "test")
    for seed in seeds:
        models = {"sft": str(work / f"sft-seed{seed}" / "final"),
                  **{name: str(work / f"seed{seed}" / name / "final") for name in rows}}
        per_seed[seed] = sa.bench_eval(models, world, sa.eval_folder(work, seed, args.world_seed))
        if args.captions:
            for name, path in models.items():
                per_seed[seed][name] |= sa.caption_eval(path, world, size, test)
    metrics = metrics_of({"captions": args.captions})
    result = {"meta": {"command": "python benchmarks/second_world_check.py" + (" --quick" if args.quick else "")
                       + (f" --work {shown(work)}" if args.work != ap.get_default("work") else "")
                       + (f" --tables {' '.join(map(shown, tables))}" if args.tables != list(TABLES) else "")
                       + (f" --world-seed {args.world_seed}" if args.world_seed != SECOND_SEED else "")
                       + (" --captions" if args.captions else "")
                       + (f" --methods {' '.join(args.methods)}" if args.methods != list(METHODS) else "")
                       + (f" --against {args.against}" if args.against else "")
                       + (f" --results {args.results}" if args.results != ap.get_default("results") else ""),
                       "world_seed": args.world_seed, "captions": args.captions, "against": control, "videos": SCALE * size["n_videos"],
                       "test_videos": manifest["counts"]["test_videos"],
                       "bench_pairs": sum(json.loads(line)["split"] == "test" for line in open(world / "bench.jsonl")),
                       "tables": [shown(t) for t in tables],
                       "sft_accuracy": [per_seed[s]["sft"]["accuracy"] for s in seeds], "seeds": seeds,
                       "wall_minutes": (time.time() - t0) / 60},
              "rows": {name: {"method": method, "lr": lr, "tables": from_tables,
                              "changes": changes(per_seed, name, metrics),
                              **({"against": changes(per_seed, name, metrics, reference=control)}
                                 if control and name != control else {})}
                       for name, (method, lr, from_tables) in rows.items()},
              "per_seed": per_seed}
    from mmalign.io import write_result_json

    results.mkdir(parents=True, exist_ok=True)
    write_result_json(results / "second_world.json", result, ROOT, work=work)
    write_report(results, result)
    return result


if __name__ == "__main__":
    main()
