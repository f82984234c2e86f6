"""`mmalign eval`'s generation loop with its videos decoded in turn against decoded ahead in
worker processes (`generation.decode_workers`), on 720p videos and the tiny offline model.

    python benchmarks/decode_ahead.py [--videos 16] [--workers 0 2] [--out benchmarks/results/decode_ahead.json]

One 10 s 1280x720 h264 clip (30 fps, moving texture) is copied --videos times; each copy gets one
question, 16 frames sampled, 8 questions a batch, greedy, 8 new tokens. The tiny model makes
generation cheap, as a GPU does for a 7B model next to a CPU decoding 720p: this measures how much
of the decoding the workers take off the generating process, and checks that the answers are the
same. The model is loaded before the clock starts; the best of --repeats runs is kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmalign.io import write_result_json  # noqa: E402


def write_clip(path: Path, seconds: int = 10, fps: int = 30, size: tuple[int, int] = (720, 1280)) -> None:
    import av

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (*size, 3), np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = *size, "yuv420p"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.roll(texture, 4 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny-dir", default=str(ROOT / "data" / "tiny-models"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode_ahead.json"))
    args = parser.parse_args()

    import torch

    from mmalign.config import ModelConfig
    from mmalign.evals.benchmarks import Item
    from mmalign.evals.config import build_eval_config
    from mmalign.evals.runner import generate_predictions, merged_predictions
    from mmalign.models.backbone import load_backbone

    work = Path(tempfile.mkdtemp())
    write_clip(work / "clip.mp4")
    for i in range(args.videos):
        shutil.copy(work / "clip.mp4", work / f"clip{i:03d}.mp4")
    items = [Item(id=f"q{i}", prompt="Is there a red circle?", target="no", category="c",
                  media=str(work / f"clip{i:03d}.mp4"), media_kind="video") for i in range(args.videos)]
    model, processor = load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=args.tiny_dir))
    model.eval()

    runs, answers = {}, {}
    for workers in args.workers:
        cfg = build_eval_config({"benchmark": "synthetic", "sampling": {"num_frames": 16},
                                 "generation": {"batch_size": 8, "max_new_tokens": 8, "decode_workers": workers}})
        times = []
        for r in range(args.repeats):
            out = work / f"w{workers}-{r}"
            t = time.perf_counter()
            generate_predictions(items, out, lambda: (model, processor), cfg)
            times.append(time.perf_counter() - t)
            answers[workers] = [row["prediction"] for row in merged_predictions(items, out)]
        runs[str(workers)] = {"seconds": round(min(times), 2), "all_seconds": [round(t, 2) for t in times],
                              "videos_per_minute": round(60 * args.videos / min(times), 1)}
        print(f"decode_workers={workers}: {runs[str(workers)]['seconds']} s "
              f"({runs[str(workers)]['videos_per_minute']} videos/min)")
    base = runs[str(args.workers[0])]["seconds"]
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": "cpu", "torch_threads": torch.get_num_threads()},
        "videos": {"count": args.videos, "size": "1280x720", "seconds": 10, "fps": 30, "codec": "h264",
                   "frames_sampled": 16},
        "generation": {"model": "tiny qwen2_5_vl (random weights)", "batch_size": 8, "max_new_tokens": 8},
        "decode_workers": runs,
        "speedup_vs_first": {w: round(base / r["seconds"], 2) for w, r in runs.items()},
        "same_answers": all(a == answers[args.workers[0]] for a in answers.values()),
        "note": "Workers are capped at the CPU cores; here they share 2 cores with the generating process.",
    }
    write_result_json(args.out, result, ROOT)
    print(f"written {args.out}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
