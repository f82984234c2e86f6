"""Which change made the synthetic-alignment SFT model read the video? Held-in videos only.

    python benchmarks/synthetic_sft_probe.py          # ~11 min on 2 CPU cores after a harness run
    python benchmarks/synthetic_sft_probe.py --quick  # a smoke run of every step
    python benchmarks/synthetic_sft_probe.py --base-steps 6000 --base-seed 0 --results benchmarks/results/base6k_seed0
                                                      # on the harness run of that recipe (the first default)

The harness's first SFT models answered yes/no questions about a named object from the
question's wording: "Is there a red triangle?" got "yes" beside a red circle, and existence and
attribute pair accuracy were ~0 even on videos whose questions they were trained on. This probe
trains, for seed 0, the SFT recipes between that one and the harness's current one, and scores
each with the synthetic benchmark per question kind on two sets of held-in videos:

- `seen`: 80 of the pair videos, whose yes/no questions the SFT mix holds (can it fit them?);
- `val`: the 80 validation videos the harness chooses its alignment lr on (does it generalise?).

Recipes (VARIANTS): `previous`, the harness before: the vision stand-in trained on the benchmark
world's held-in videos (here less the validation ones, so its tokens can be scored on unseen
videos), then SFT from the random language model at lr 2e-3; `pretrain_world_vision`, the same SFT
on the harness's vision stand-in (pretrained on the pretraining world); `lower_lr`, that stand-in
with SFT at lr 5e-4; `base_then_sft`, the harness's own seed-0 SFT model (a base language model
pretrained on the pretraining world, then SFT). Each vision stand-in is also scored per token on
the validation videos (`vision_token_scores`). The work folder is the harness's, so a finished
harness run's vision stand-in, base and SFT model are reused. The held-out split is not touched.
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

# The harness's SFT before this probe: its step counts and lr, trained from the random language model.
PREVIOUS = {"full": dict(vision_steps=1500, sft_steps=3000), "quick": dict(vision_steps=2, sft_steps=2)}
# variant -> (vision stand-in, SFT lr or None for the harness's own seed-0 SFT model)
VARIANTS = {"previous": ("held_in", 2e-3), "pretrain_world_vision": ("pretrain_world", 2e-3),
            "lower_lr": ("pretrain_world", 5e-4), "base_then_sft": ("pretrain_world", None)}
KINDS = ("existence", "attribute", "direction", "count", "order")


def visions(size: dict, steps: dict, world: Path, work: Path, val_ids: list[str]) -> dict[str, Path]:
    """The two vision stand-ins: the harness's (pretraining world; `run_base` built it) and the
    previous one (the benchmark world's held-in videos less the validation ones `val_ids`)."""
    held_in = [v for v in harness.split_ids(world, "train") if v not in set(val_ids)]
    model = harness.build_small_qwen(work / "base", size["hidden"], size["layers"], 0)
    previous = harness.pretrain_vision(model, work / "vision-held-in", world, steps["vision_steps"], ids=held_in)
    return {"pretrain_world": work / "vision", "held_in": previous}


def sft_variant(name: str, size: dict, steps: dict, world: Path, work: Path, vision: dict[str, Path],
                base: Path) -> Path:
    tower, lr = VARIANTS[name]
    if lr is None:
        return harness.run_sft(size, world, work, 0, base)
    mix = harness.instruction_mix(world, ("train",), set(harness.held_in_split(world, size)[1]), "sft_mix_train")
    return harness.train_run(work / f"probe-sft-{name}", str(vision[tower]), "sft", mix, size, 0, lr=lr,
                             max_steps=steps["sft_steps"])


def scores(model: Path, bench: Path, out: Path) -> dict:
    (result,) = harness.bench_eval({"m": str(model)}, bench, out).values()
    return {"pair_accuracy": result["pair_accuracy"], "basic_accuracy": result["basic_accuracy"],
            "halluc_accuracy": result["halluc_accuracy"], "by_kind": result["by_kind"]}


def markdown(rows: dict, towers: dict, meta: dict) -> str:
    lines = ["SFT models of seed 0, synthetic benchmark pair accuracy per question kind on held-in videos "
             "(seen: questions in the SFT mix; val: the harness's validation videos).", "",
             "| SFT recipe | split | " + " | ".join(KINDS) + " | all pairs | basic q acc. | halluc. q acc. |",
             "|---|---|" + "---|" * (len(KINDS) + 3)]
    for name, splits in rows.items():
        for split, s in splits.items():
            cells = [f"{s['by_kind'][k]:.3f}" if k in s["by_kind"] else "–" for k in KINDS]
            lines.append(f"| {name} | {split} | " + " | ".join(cells) + f" | {s['pair_accuracy']:.3f} | "
                         f"{s['basic_accuracy']:.3f} | {s['halluc_accuracy']:.3f} |")
    lines += ["", "Vision stand-ins, per merged token on the validation videos (object precision / recall; "
              "motion precision / recall): " + "; ".join(
                  f"{k} {v['precision']:.3f} / {v['recall']:.3f}; {v['motion_precision']:.3f} / {v['motion_recall']:.3f}"
                  for k, v in towers.items()) + "."]
    lines += ["", f"Wall time {meta['wall_minutes']:.1f} min; regenerate with `{meta['command']}`."]
    lines += [f"({meta['note']}.)"] if meta.get("note") else []
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: the harness's --quick sizes")
    ap.add_argument("--work", default=None, help="folder of intermediate runs (default: the harness's)")
    ap.add_argument("--results", default=None, help="results folder (default benchmarks/results; --quick: the work folder)")
    ap.add_argument("--note", default=None, help="a remark on how this run was made, kept in the results")
    harness.add_recipe_args(ap)  # the harness's base, so its work folder and its seed-0 SFT model
    args = ap.parse_args(argv)
    # The probe studies SFT on the exact truth: the harness's default SFT data, whose annotator
    # writes purple as blue since stop 36, would also put its SFT model in the wrong work folder.
    size = dict(harness.QUICK if args.quick else harness.FULL, sft_mislabels={})
    recipe = harness.recipe_of(args, size)
    size.update(recipe)
    steps = PREVIOUS["quick" if args.quick else "full"]
    work = Path(args.work or ROOT / harness.work_folder(args.quick, recipe=recipe, mislabels={}))
    results = Path(args.results or (work if args.quick else ROOT / "benchmarks/results"))
    results.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    from mmalign.world import build_world

    world = work / "world"
    build_world(world, n_videos=size["n_videos"], seed=0, object_sizes=size["object_sizes"],
                max_objects=size["max_objects"], show_progress=False)
    harness._cache_videos(size["n_videos"] + size["pretrain_videos"])
    pair_ids, val_ids = harness.held_in_split(world, size)
    benches = {"seen": harness.validation_bench(world, work / "seen", pair_ids[:80]),
               "val": harness.validation_bench(world, work, val_ids)}
    base, _ = harness.run_base(size, world, work)  # builds (or reuses) the harness's stand-in and base
    vision = visions(size, steps, world, work, val_ids)
    towers = {name: harness.vision_token_scores(path, world, val_ids) for name, path in vision.items()}
    rows = {}
    for name in VARIANTS:
        model = sft_variant(name, size, steps, world, work, vision, base)
        rows[name] = {split: scores(model, bench, work / f"probe-{name}-{split}") for split, bench in benches.items()}
    meta = {"command": "python benchmarks/synthetic_sft_probe.py" + (" --quick" if args.quick else "")
                       + harness.recipe_flags(recipe) + (f" --results {args.results}" if args.results and not args.quick else ""),
            "size": size, "previous": steps, "wall_minutes": (time.time() - t0) / 60,
            "variants": {k: {"vision": v[0], "sft_lr": v[1]} for k, v in VARIANTS.items()}, "note": args.note}
    from mmalign.io import write_result_json

    stem = results / "synthetic_sft_probe"
    write_result_json(f"{stem}.json", {"meta": meta, "rows": rows, "vision_tokens": towers}, ROOT, work=work)
    md = markdown(rows, towers, meta)
    Path(f"{stem}.md").write_text(md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
