"""Pair generation throughput (videos per minute) on this machine, next to decord's own decode
rate for the same videos.

    python benchmarks/pairs_throughput.py [--videos N] [--out benchmarks/results/pairs_throughput.json]

Builds a synthetic world of N videos, then measures:
- decord: VideoReader + get_batch of the 8 uniformly sampled frames pairs use, and a full decode
  of every frame (the upper bound of any pipeline that reads these files); best of 3 passes;
- mmalign.data.video.load_video (decord plus our checks and sampling);
- `run_pairs` for model-free generators (inject, TEMPLE caption lists joined) and for
  generators that ask the tiny model (rrpo: one answer per video; temple on pixels: a clean
  and two perturbed answers per video). The model is loaded before the clock starts (its load
  time is reported apart); each run starts from scratch (--restart).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_minute(n: int, seconds: float) -> float:
    return round(60.0 * n / seconds, 1)


def bench_decord(paths: list[Path], num_frames: int = 8, repeats: int = 3) -> dict:
    """Best of `repeats` passes over the folder, after one warm-up decode."""
    import decord
    import numpy as np

    from mmalign.data.video import load_video

    def sampled(p):
        vr = decord.VideoReader(str(p))
        vr.get_batch(np.linspace(0, len(vr) - 1, num_frames).round().astype(int).tolist()).asnumpy()

    def full(p):
        vr = decord.VideoReader(str(p))
        return len(vr.get_batch(list(range(len(vr)))).asnumpy())

    def best(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for p in paths:
                fn(p)
            times.append(time.perf_counter() - t)
        return min(times)

    full(paths[0])  # warm-up: library load, first-use allocations
    frames = sum(full(p) for p in paths)
    full_s = best(full)
    return {"decord_sampled_8_frames": per_minute(len(paths), best(sampled)),
            "decord_all_frames": per_minute(len(paths), full_s),
            "decord_frames_per_second": round(frames / full_s, 1),
            "mmalign_load_video_8_frames": per_minute(len(paths), best(lambda p: load_video(p, num_frames=num_frames)))}


def bench_pairs(world: Path, runs: dict[str, dict], tiny_dir: str) -> dict:
    from mmalign.perturb.config import build_pairs_config, needs_model
    from mmalign.perturb.run import run_pairs

    results, models = {}, {}
    for name, raw in runs.items():
        raw = {**raw, "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir}}
        cfg = build_pairs_config(raw)
        backend, load_s = None, None
        if needs_model(cfg):
            from mmalign.perturb.model import ModelBackend

            t = time.perf_counter()
            if "tiny" not in models:
                models["tiny"] = ModelBackend(cfg)
            models["tiny"].cfg = cfg  # same weights; this run's decoding settings
            backend, load_s = models["tiny"].backend(), round(time.perf_counter() - t, 2)
        out = Path(tempfile.mkdtemp()) / f"{name}.jsonl"
        t = time.perf_counter()
        report = run_pairs(cfg, world / "videos", out, backend=backend, restart=True, show_progress=False)
        seconds = time.perf_counter() - t
        results[name] = {"videos_per_minute": per_minute(report["videos"], seconds), "seconds": round(seconds, 2),
                         "videos": report["videos"], "records": report["records"], "filtered": report["filtered"],
                         "model_load_seconds": load_s, "config": raw}
        print(f"{name:>24}: {results[name]['videos_per_minute']:>8} videos/min  ({report['records']} records)")
    return results


from mmalign.io import write_result_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tiny-dir", default=str(ROOT / "data" / "tiny-models"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pairs_throughput.json"))
    args = parser.parse_args()

    import torch

    from mmalign.world import build_world

    world = Path(tempfile.mkdtemp()) / "world"
    build_world(world, n_videos=args.videos, seed=0, show_progress=False)
    paths = sorted((world / "videos").glob("*.mp4"))
    decode = bench_decord(paths)
    for k, v in decode.items():
        print(f"{k:>32}: {v}")
    gen = {"max_new_tokens": args.max_new_tokens, "batch_size": 8}
    runs = {
        "inject (no model)": {"generator": "inject", "answers": "truth"},
        "temple captions, joined (no model)": {"generator": "temple", "temple": {"summarizer": "join"}},
        "rrpo (tiny model)": {"generator": "rrpo", "answers": "truth", "generation": gen},
        "temple pixels (tiny model)": {"generator": "temple", "answers": "model", "generation": gen,
                                       "temple": {"source": "pixels", "kinds": ["reverse", "shuffle"], "magnitudes": [4]}},
    }
    pairs = bench_pairs(world, runs, args.tiny_dir)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
                    "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()]},
        "videos": {"count": len(paths), "frames": 16, "size": "64x64", "fps": 8, "codec": "h264"},
        "decode_videos_per_minute": decode,
        "pairs": pairs,
        "note": "Videos per minute over the whole folder. Model-free generators are bound by decoding; with a model, "
                "by generation (tiny random model, greedy, max_new_tokens as in each config, CPU).",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result_json(args.out, result, ROOT)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
