"""Where the synthetic-alignment harness fails before alignment: does the SFT model read the video
when it answers a yes/no question?

    python benchmarks/synthetic_sft_probe.py          # ~30 min on 2 CPU cores (four SFT runs)
    python benchmarks/synthetic_sft_probe.py --quick  # a smoke run of every step

Seed 0 of `synthetic_alignment.py` (same world, vision stand-in, SFT mix and sizes; its work
folder is shared, so a finished harness run's SFT model is reused), and three SFT variants: twice
the steps, the vision tower trained too, and a third language-model layer. Each is scored with
the synthetic benchmark, per question kind, on held-in videos only:

- `seen`: 80 of the pair videos, whose yes/no questions the SFT mix holds (can it fit them?);
- `val`: the 80 validation videos the harness chooses its alignment lr on (does it generalise?).

A kind's pair accuracy counts a pair only when the basic question (answer yes) and its
hallucinated twin (answer no: "Is there a red triangle?" beside a red circle) are both right, so
an answer read off the question's wording scores 0 there. The held-out split is not touched.
Writes benchmarks/results/synthetic_sft_probe.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import synthetic_alignment as harness  # noqa: E402

# variant -> (SFT overrides, language-model layers); "sft" is the harness's own SFT model
VARIANTS = {"sft": ({}, None), "steps_x2": ({"max_steps": 2}, None), "vision_trained": ({"freeze_vision": False}, None),
            "layers_3": ({}, 3)}
KINDS = ("existence", "attribute", "direction", "count", "order")


def sft_variant(name: str, size: dict, world: Path, work: Path) -> Path:
    overrides, layers = VARIANTS[name]
    if name == "sft":
        return harness.run_sft(size, world, work, 0)
    suffix = f"-l{layers}" if layers else ""
    base = harness.build_small_qwen(work / f"base{suffix}", size["hidden"], layers or size["layers"], 0)
    base = harness.pretrain_vision(base, work / f"vision{suffix}", world, size["vision_steps"])
    mix = harness.sft_file(world, set(harness.held_in_split(world, size)[1]))
    steps = size["sft_steps"] * overrides.get("max_steps", 1)
    return harness.train_run(work / f"sft-{name}", str(base), "sft", mix, size, 0, lr=size["sft_lr"], max_steps=steps,
                             freeze_vision=overrides.get("freeze_vision", True))


def scores(model: Path, bench: Path, out: Path) -> dict:
    harness.bench_eval({"m": str(model)}, bench, out)
    (result,) = json.loads((out / "results.json").read_text())["models"]
    return {"pair_accuracy": result["metrics"]["pair_accuracy"], "basic_accuracy": result["metrics"]["basic_accuracy"],
            "halluc_accuracy": result["metrics"]["halluc_accuracy"],
            "by_kind": {k: result["categories"][k]["accuracy"] for k in KINDS if k in result["categories"]}}


def markdown(rows: dict, meta: dict) -> str:
    lines = ["SFT models of seed 0, synthetic benchmark pair accuracy per question kind on held-in videos "
             "(seen: questions in the SFT mix; val: the harness's validation videos).", "",
             "| SFT variant | split | " + " | ".join(KINDS) + " | all pairs | basic q acc. | halluc. q acc. |",
             "|---|---|" + "---|" * (len(KINDS) + 3)]
    for name, splits in rows.items():
        for split, s in splits.items():
            cells = [f"{s['by_kind'][k]:.3f}" if k in s["by_kind"] else "–" for k in KINDS]
            lines.append(f"| {name} | {split} | " + " | ".join(cells) + f" | {s['pair_accuracy']:.3f} | "
                         f"{s['basic_accuracy']:.3f} | {s['halluc_accuracy']:.3f} |")
    lines += ["", f"Wall time {meta['wall_minutes']:.1f} min; regenerate with `{meta['command']}`."]
    lines += [f"({meta['note']}.)"] if meta.get("note") else []
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: the harness's --quick sizes")
    ap.add_argument("--work", default=None, help="folder of intermediate runs (default: the harness's)")
    ap.add_argument("--results", default=None, help="results folder (default benchmarks/results; --quick: the work folder)")
    ap.add_argument("--note", default=None, help="a remark on how this run was made, kept in the results")
    args = ap.parse_args(argv)
    size = dict(harness.QUICK if args.quick else harness.FULL)
    work = Path(args.work or ROOT / ("runs/synthetic_alignment" + ("_quick" if args.quick else "")))
    results = Path(args.results or (work if args.quick else ROOT / "benchmarks/results"))
    results.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    from mmalign.world import build_world

    world = work / "world"
    build_world(world, n_videos=size["n_videos"], seed=0, object_sizes=size["object_sizes"],
                max_objects=size["max_objects"], show_progress=False)
    harness._cache_videos()
    pair_ids, val_ids = harness.held_in_split(world, size)
    benches = {"seen": harness.validation_bench(world, work / "seen", pair_ids[:80]),
               "val": harness.validation_bench(world, work, val_ids)}
    rows = {}
    for name in VARIANTS:
        model = sft_variant(name, size, world, work)
        rows[name] = {split: scores(model, bench, work / f"probe-{name}-{split}") for split, bench in benches.items()}
    meta = {"command": "python benchmarks/synthetic_sft_probe.py" + (" --quick" if args.quick else ""),
            "size": size, "wall_minutes": (time.time() - t0) / 60, "variants": {k: {"overrides": v[0], "layers": v[1]}
                                                                                  for k, v in VARIANTS.items()},
            "note": args.note}
    from mmalign.io import write_result_json

    stem = results / "synthetic_sft_probe"
    write_result_json(f"{stem}.json", {"meta": meta, "rows": rows}, ROOT)
    md = markdown(rows, meta)
    Path(f"{stem}.md").write_text(md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
