"""Build the synthetic world on disk: videos, per-video truth, and the SFT / pair / GRPO /
benchmark JSONL files that the quickstart, pair generation and the synthetic benchmark read.

    out_dir/
      videos/vid0000.mp4 ...     H.264 yuv420p
      truth/vid0000.json ...     scene + caption + sentences + events + per-frame boxes + split
      {sft,pairs,grpo}_{train,test}.jsonl  bench.jsonl
      manifest.json              build arguments + version + counts, written last

The quickstart calls `build_world` on every run: a finished build with the same arguments
returns at once, and a killed build rerun renders only the videos it is missing. A build with
other arguments rewrites the folder: videos it no longer has are deleted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmalign.io import atomic_write_json, atomic_write_jsonl

from .render import render, write_video
from .scene import Scene, sample_scene
from .text import ANSWER_CHOICES, benchmark_items, caption, caption_sentences, hallucinated_caption, qa_pairs

# Bump when scenes, pixels or text change, so cached worlds are rebuilt.
WORLD_VERSION = 3
CAPTION_PROMPT = "Describe what happens in the video."
# Training records are written per split (the trainer reads a file as it is); the benchmark
# keeps one file with a `split` key, since evals choose the split.
SPLITS = ("train", "test")
OUTPUT_JSONL = tuple(f"{k}_{s}.jsonl" for k in ("sft", "pairs", "grpo") for s in SPLITS) + ("bench.jsonl",)


def derived_seed(*keys: int) -> int:
    """A 32-bit seed for one video or pair, independent across keys, the same everywhere."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def split_of(index: int, n_videos: int) -> str:
    """The last quarter of the videos (rounded down) is held out for benchmarks."""
    return "test" if index >= n_videos - n_videos // 4 else "train"


def world_args_problem(n_videos: int, object_sizes: tuple[int, int], max_objects: int,
                       size: int = 64, seed: int = 0) -> tuple[str, str] | None:
    """(the argument, what is wrong with it) for arguments `build_world` cannot use, else None."""
    if seed < 0:  # numpy's SeedSequence takes no negative number
        return "seed", f"need a number >= 0, got {seed}"
    if n_videos < 1:
        return "n_videos", f"need at least 1 video, got {n_videos}"
    if not 1 <= object_sizes[0] <= object_sizes[1] < size:
        return "object_sizes", f"need 1 <= min <= max < {size} (the frame side), got {list(object_sizes)}"
    if max_objects < 1:
        return "max_objects", f"need at least 1, got {max_objects}"
    return None


def build_world(
    out_dir,
    n_videos: int = 32,
    seed: int = 0,
    n_frames: int = 16,
    size: int = 64,
    fps: int = 8,
    pairs_per_video: int = 2,
    object_sizes: tuple[int, int] = (14, 20),
    max_objects: int = 3,
    show_progress: bool = True,
) -> dict:
    """Write the world to `out_dir` (layout in the module docstring) and return the manifest
    plus `out_dir` and `reused` (True when an identical finished build was found).
    `object_sizes` (min, max box side in pixels) and `max_objects` set how easy the videos are
    to see: a small model trained from scratch needs larger, fewer objects."""
    problem = world_args_problem(n_videos, object_sizes, max_objects, size, seed)
    if problem:
        raise ValueError(f"{problem[0]}: {problem[1]}")
    out = Path(out_dir)
    args = {"n_videos": n_videos, "seed": seed, "n_frames": n_frames, "size": size,
            "fps": fps, "pairs_per_video": pairs_per_video, "object_sizes": list(object_sizes),
            "max_objects": max_objects}
    manifest = _finished_manifest(out, args)
    if manifest is not None:
        return {**manifest, "out_dir": str(out), "reused": True}

    rows = {name: [] for name in OUTPUT_JSONL}
    for i in tqdm(range(n_videos), desc="world videos", disable=not show_progress):
        vid = f"vid{i:04d}"
        split = split_of(i, n_videos)
        scene = sample_scene(derived_seed(seed, i), n_frames=n_frames, width=size, height=size, fps=fps,
                             sizes=tuple(object_sizes), max_objects=max_objects)
        _ensure_video(out, vid, scene, split)
        video = f"videos/{vid}.mp4"
        rows[f"sft_{split}.jsonl"] += sft_records(scene, vid, video, split)
        rows[f"pairs_{split}.jsonl"] += _pair_records(scene, vid, video, split, seed, i, pairs_per_video)
        rows[f"grpo_{split}.jsonl"] += _grpo_records(scene, vid, video, split)
        rows["bench.jsonl"] += bench_records(scene, vid, video, split)
    for name, records in rows.items():
        atomic_write_jsonl(out / name, records)

    _remove_videos_from(out, n_videos)

    counts = {name.removesuffix(".jsonl"): len(records) for name, records in rows.items()}
    counts["videos"] = n_videos
    counts["test_videos"] = n_videos // 4
    manifest = {"version": WORLD_VERSION, "args": args, "counts": counts}
    atomic_write_json(out / "manifest.json", manifest)  # last: its presence means "finished"
    return {**manifest, "out_dir": str(out), "reused": False}


def _finished_manifest(out: Path, args: dict) -> dict | None:
    path = out / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("version") != WORLD_VERSION or manifest.get("args") != args:
        return None
    expected = [out / name for name in OUTPUT_JSONL]
    expected += [out / "videos" / f"vid{i:04d}.mp4" for i in range(args["n_videos"])]
    return manifest if all(p.exists() for p in expected) else None


def _remove_videos_from(out: Path, n_videos: int) -> None:
    """Delete the videos and truth files numbered n_videos and up: a larger world built here
    before left them, and `mmalign pairs --videos out/videos` would read them as this world's."""
    for folder, suffix in (("videos", ".mp4"), ("truth", ".json")):
        for path in (out / folder).glob(f"vid*{suffix}"):
            index = path.name[3:-len(suffix)]
            if index.isdigit() and int(index) >= n_videos:
                path.unlink()


def _ensure_video(out: Path, vid: str, scene: Scene, split: str) -> None:
    """Render unless a finished video of this very scene is there. The truth file is
    written after the video, so truth naming the same scene means the video is complete
    (both writes are atomic), whatever arguments an earlier, killed build had."""
    video_path = out / "videos" / f"{vid}.mp4"
    truth_path = out / "truth" / f"{vid}.json"
    truth = json.loads(json.dumps(_truth(scene, vid, split)))  # tuples -> lists, as read back
    if video_path.exists() and truth_path.exists() and json.loads(truth_path.read_text()) == truth:
        return
    write_video(render(scene), video_path, scene.fps)
    atomic_write_json(truth_path, truth)


def _truth(scene: Scene, vid: str, split: str) -> dict:
    return {
        "id": vid,
        "version": WORLD_VERSION,
        "video": f"../videos/{vid}.mp4",  # relative to this file, like every path we write
        "split": split,
        "scene": scene.to_dict(),
        "caption": caption(scene),
        "sentences": caption_sentences(scene),
        "events": [list(e) for e in scene.events()],
        # Per frame, {object id: [x0, y0, x1, y1]} (half-open, clipped): for consumers that
        # mask or crop objects without importing mmalign.
        "boxes": [{str(k): list(b) for k, b in scene.boxes(t).items()} for t in range(scene.n_frames)],
    }


def sft_records(scene, vid, video, split) -> list[dict]:
    """One video's SFT records: its caption and its short QA (`video`: the path records hold)."""
    records = [{"id": f"{vid}-cap", "video": video, "prompt": CAPTION_PROMPT,
                "response": caption(scene), "meta": {"kind": "caption", "split": split}}]
    records += [
        {"id": f"{vid}-qa{k}", "video": video, "prompt": qa["question"],
         "response": qa["answer"], "meta": {"kind": qa["kind"], "split": split}}
        for k, qa in enumerate(qa_pairs(scene))
    ]
    return records


def _pair_records(scene, vid, video, split, seed, index, n_pairs) -> list[dict]:
    """Up to `n_pairs` distinct pairs; each is reproducible from its meta seed alone."""
    records, seen = [], set()
    for attempt in range(4 * n_pairs):
        if len(records) == n_pairs:
            break
        pair_seed = derived_seed(seed, index, attempt)
        pair = hallucinated_caption(scene, np.random.default_rng(pair_seed))
        if pair["rejected"] in seen:
            continue
        seen.add(pair["rejected"])
        kind = pair.pop("kind")
        records.append({"id": f"{vid}-p{len(records)}", "video": video, "prompt": CAPTION_PROMPT,
                        **pair, "meta": {"generator": "world.hallucinated_caption", "kind": kind,
                                         "seed": pair_seed, "split": split}})
    return records


def _grpo_records(scene, vid, video, split) -> list[dict]:
    return [
        {"id": f"{vid}-g{k}", "video": video, "prompt": qa["question"] + " Answer with one word.",
         "answer": qa["answer"], "meta": {"split": split},
         "truth": {"kind": qa["kind"], "choices": ANSWER_CHOICES[qa["kind"]]}}
        for k, qa in enumerate(qa_pairs(scene))
    ]


def bench_records(scene, vid, video, split) -> list[dict]:
    """One video's paired yes/no benchmark items, as bench.jsonl holds them."""
    return [{**item, "id": f"{vid}-{item['id']}", "video": video, "split": split}
            for item in benchmark_items(scene)]
