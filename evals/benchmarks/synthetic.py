"""The synthetic world benchmark: paired yes/no questions (existence, attribute, direction,
count, order) about videos of moving shapes, with truth exact by construction
(mmalign.world.benchmark_items derives every answer from the scene record).

Files: `bench.jsonl` of a world folder (mmalign.world.build_world), one pair a line:
{id, type, basic: {question, answer: "yes"}, hallucination: {question, answer: "no"}, video, split}.
`data.root` is that folder, or a world YAML ({out, n_videos, seed}) built first; with
`world.enabled` the world in `world.out` is built (or reused) first. Default subset: "test"
(the held-out last quarter of the videos).

Prompt and parsing follow VideoHallucer (see videohallucer.py): "<question>\\nAnswer the
question using 'yes' or 'no'.", whole-word match of the truth, a pair right only when both
questions are. Metrics: per question type basic / hallucinated / pair accuracy; `accuracy` =
mean pair accuracy over the types present (VideoHallucer's "overall"), `pair_accuracy` = all
pairs pooled.
"""

from __future__ import annotations

from pathlib import Path

from mmalign.config import WorldConfig, _build, load_raw

from .base import (Benchmark, BenchmarkFilesMissing, Loaded, media_root, pair_scores, read_json_lines, resolve_root,
                   selected, take)
from .videohallucer import aggregate_pairs, judge, pair_items

SPLITS = ("train", "test")
TYPES = ("existence", "attribute", "direction", "count", "order")


def world_to_build(cfg) -> WorldConfig | None:
    """The world this run must build first, if any: `world.enabled`, or a YAML as data.root."""
    root = cfg.data.root
    if root and Path(root).suffix in (".yaml", ".yml"):
        return _build(WorldConfig, load_raw(root), f"data.root ({root})")
    return cfg.world if cfg.world.enabled else None


def world_root(cfg) -> str | None:
    world = world_to_build(cfg)
    return world.out if world is not None else cfg.data.root


def prepare(cfg) -> None:
    """Build (or reuse) the world; run on the main process only, before any loading."""
    world = world_to_build(cfg)
    if world is not None:
        from mmalign.world import build_world

        build_world(world.out, n_videos=world.n_videos, seed=world.seed, show_progress=False)


def load(cfg) -> Loaded:
    root = resolve_root(world_root(cfg), "synthetic", "a world folder with bench.jsonl (mmalign world --out DIR)")
    path = root / "bench.jsonl"
    if not path.is_file():
        raise BenchmarkFilesMissing(f"synthetic: missing {path}; build one with `mmalign world --out {root}` "
                                    "or set world.enabled=true")
    videos = media_root(root, cfg.data.media_dir, ".")
    rows = read_json_lines(path)
    loaded = Loaded([])
    splits = selected(cfg.data.splits, ("test",))
    for split in splits:
        for row in take([r for r in rows if r.get("split") == split], cfg.data.limit):
            pair = {role: {**row[role], "video": row["video"]} for role in ("basic", "hallucination")}
            pair["type"] = row["type"]
            loaded.items += pair_items(pair, row["id"], row["type"], videos, cfg.prompt.suffix)
    if not loaded.items:
        raise BenchmarkFilesMissing(f"synthetic: {path} has no pairs in split(s) {splits}")
    return loaded


def aggregate(rows: list[dict], score) -> dict:
    out = aggregate_pairs(rows)
    out["metrics"]["pair_accuracy"] = pair_scores(rows)["accuracy"]
    return out


BENCHMARK = Benchmark("synthetic", load, judge, aggregate, modes=("official", "first_sentence"), splits=SPLITS,
                      headline=("accuracy", "pair_accuracy", "basic_accuracy", "halluc_accuracy"), prepare=prepare)
