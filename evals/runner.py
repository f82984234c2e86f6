"""The generation runner: benchmark items -> prompts -> `mmalign.models.generate.generate`,
in batches, greedy (deterministic), on the CPU or whatever device accelerate gives this process.

Resumable: each process appends one JSON line per finished item to its own shard file
(`predictions.shard<i>-of-<n>.jsonl`, fsynced per batch), and a rerun skips every item that
already has a prediction for the same prompt in any shard file, so a killed eval continues
where it stopped (even with another number of processes). Settings that change answers
without changing prompts (model and its weight files, frames, max_new_tokens) are recorded
in `run.json`; a rerun with other settings refuses to mix them unless told to overwrite.

Sharded: under `accelerate launch`, process i of n takes items i, i+n, ...; the main process
merges the shards back into benchmark order once every process is done.

Media: decoded in `generation.decode_workers` processes, the next batches' while the model
generates this one (mmalign.data.prefetch). An item whose video / image is missing or corrupt
gets `prediction: null` and the loader's reason in `error`; the batch goes on without it, and a
rerun tries it again.
Predictions are stored stripped of surrounding whitespace, as the official inference scripts
(LLaVA, Video-LLaVA) store them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from itertools import groupby
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from mmalign.config import ConfigError
from mmalign.data.prefetch import decoded_ahead
from mmalign.io import append_jsonl, atomic_write_json, cut_torn_tail

from .benchmarks import Item

SHARD_GLOB = "predictions.shard*.jsonl"


class RunMismatch(ConfigError):
    """The output folder holds predictions made with other settings."""


class SingleProcess:
    """Stands in for accelerate's PartialState when no launcher is involved."""
    process_index, num_processes, is_main_process, is_local_main_process = 0, 1, True, True
    device = "cpu"

    def wait_for_everyone(self):
        pass


def shard_path(out: Path, index: int, count: int) -> Path:
    return out / f"predictions.shard{index}-of-{count}.jsonl"


def read_predictions(out: Path) -> dict[str, dict]:
    """The last row written for each item id, over every shard file (a torn last line, from a
    kill mid-write, is ignored)."""
    rows: dict[str, dict] = {}
    for path in sorted(out.glob(SHARD_GLOB)):
        lines = path.read_bytes().split(b"\n")
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                    raise ValueError("no string 'id'")
            except ValueError as e:
                if any(line.strip() for line in lines[lineno:]):  # not just a torn last line
                    print(f"mmalign: warning: {path}:{lineno}: not a prediction row ({str(e)[:80]}); skipped, "
                          "its item is generated again", file=sys.stderr)
                continue
            rows[row["id"]] = row
    return rows


def is_done(row: dict | None, item: Item) -> bool:
    return row is not None and row.get("error") is None and row.get("prompt") == item.prompt


def check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """Record the settings of this run's predictions; refuse to mix with other settings."""
    path = out / "run.json"
    if overwrite:
        for shard in out.glob(SHARD_GLOB):
            shard.unlink()
    elif path.exists():
        old = json.loads(path.read_text())
        # A setting the record lacks was added to mmalign after those predictions were made.
        diff = {k: (old[k], v) for k, v in settings.items() if k in old and old[k] != v}
        # A checkpoint moved with its folder (mv, or a copy that keeps file times) has the same
        # weight files, sizes and newest time: only its path changed, its answers are its own.
        if old.get("model_weights") is not None and "model_weights" not in diff:
            diff.pop("model", None)
        if diff and any(out.glob(SHARD_GLOB)):
            raise RunMismatch(f"{out} holds predictions made with other settings {diff} (was, now); "
                              "pass --overwrite to discard them or choose another output_dir")
    atomic_write_json(path, settings)


def load_media(media: tuple[str, str], sampling):
    """The Video or PIL image of a (path, kind) item.media / media_kind. `decoded_ahead` hands
    back what it raises; a media error (MediaError, or bad sampling of a too-short video:
    ValueError) becomes the error row of the items that show it (run_batch)."""
    from mmalign.data.video import MediaLoader

    path, kind = media
    loader = MediaLoader(sampling)
    return loader.video(path) if kind == "video" else loader.images([path])[0]


def media_of(batch: list[Item]) -> list[tuple[str, str]]:
    return [(it.media, it.media_kind) for it in batch if it.media]


def to_prompt(item: Item, media):
    from mmalign.models.generate import Prompt

    if item.media_kind == "video":
        return Prompt(item.prompt, video=media)
    if item.media_kind == "image":
        return Prompt(item.prompt, images=[media])
    return Prompt(item.prompt)


def run_batch(batch: list[Item], media: dict, model, processor, cfg, generate_fn: Callable) -> list[dict]:
    """One row per item: its prediction, or the media error that kept it from the model.
    `media`: the loaded media by (item.media, item.media_kind) (paired questions share a video)."""
    rows, ready = {}, []
    for item in batch:
        loaded = media[(item.media, item.media_kind)] if item.media else None
        if isinstance(loaded, Exception) and not isinstance(loaded, ValueError):
            raise loaded  # not a media error: a bug, raised as when decoding was not done ahead
        if isinstance(loaded, Exception):
            rows[item.id] = {"id": item.id, "prompt": item.prompt, "prediction": None, "error": f"media: {loaded}"}
        else:
            ready.append((item, to_prompt(item, loaded)))
    # generate takes one system message per call; a benchmark uses one, so this is one call.
    for system, group in groupby(ready, key=lambda pair: pair[0].system):
        group = list(group)
        outs = generate_fn(model, processor, [p for _, p in group], max_new_tokens=cfg.generation.max_new_tokens,
                           do_sample=False, system=system if system is not None else cfg.prompt.system)
        for (item, _), texts in zip(group, outs):
            rows[item.id] = {"id": item.id, "prompt": item.prompt, "prediction": texts[0].strip(), "error": None}
    return [rows[item.id] for item in batch]


def generate_predictions(items: list[Item], out: Path, load_model: Callable, cfg, process=None,
                         generate_fn: Callable | None = None) -> int:
    """Generate what this process's shard still lacks; returns how many items it generated.
    The model is loaded (`load_model()` -> (model, processor)) only when something is left."""
    if generate_fn is None:
        from mmalign.models.generate import generate as generate_fn
    process = process or SingleProcess()
    mine = items[process.process_index::process.num_processes]
    done = read_predictions(out)
    todo = [it for it in mine if not is_done(done.get(it.id), it)]
    if not todo:
        return 0
    model, processor = load_model()
    path = shard_path(out, process.process_index, process.num_processes)
    cut_torn_tail(path)
    size = cfg.generation.batch_size
    with tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"generate {out.name}", unit="item",
              disable=not process.is_local_main_process) as bar:
        batches = [todo[start:start + size] for start in range(0, len(todo), size)]
        loads = decoded_ahead([media_of(b) for b in batches], functools.partial(load_media, sampling=cfg.sampling),
                              cfg.generation.decode_workers)
        with contextlib.closing(loads):
            for batch, media in zip(batches, loads):
                for row in run_batch(batch, media, model, processor, cfg, generate_fn):
                    append_jsonl(path, row)
                bar.update(len(batch))
    return len(todo)


def merged_predictions(items: list[Item], out: Path) -> list[dict]:
    """Every item's row, in benchmark order (main process, after every shard finished)."""
    rows = read_predictions(out)
    missing = [it.id for it in items if it.id not in rows or rows[it.id].get("prompt") != it.prompt]
    if missing:
        raise RuntimeError(f"{out}: no prediction for {len(missing)} item(s), e.g. {missing[:3]}; "
                           "did a process stop early? Rerun to complete them.")
    return [rows[it.id] for it in items]
