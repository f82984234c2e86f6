"""The pairs run over a folder of raw videos: batched, sharded across processes, resumable.

    OUT.jsonl            the records, in the order of the sorted video list (written last, atomically)
    OUT.report.json      counts, skipped videos with their reasons, dropped pairs by filter
    OUT.jsonl.parts/     run.json (the config the run was started with) and, per phase and
                         process, one JSONL line per finished batch of videos

Work is done in batches of `videos_per_batch` videos; a batch's results are appended as one
line and fsync'ed, so a killed run loses at most the batch it was in (a torn last line is cut
off on restart) and a rerun with the same command skips every video already finished. The
batches are fixed slices of each process's share of the sorted video list, so a resumed run
batches the remaining videos as the uninterrupted run would have. Every random choice draws
from the video's or the record's own seed, so records do not depend on batching or sharding;
with greedy decoding a resumed run writes the same records as an uninterrupted one.

Processes: under `accelerate launch` (or torchrun) process k of n takes every n-th video; the
processes meet between phases and the main process merges. A video that cannot be decoded
(or lacks what the generator needs) is skipped, its reason kept for the report; `strict`
stops at the first one instead. `MMALIGN_KILL_AFTER_VIDEOS=N` SIGKILLs a process once it has
finished N videos (fault injection for the resume tests, as MMALIGN_KILL_AFTER_STEP in train).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmalign.config import ConfigError, changed_keys
from mmalign.data.records import Record, read_records, record_to_dict
from mmalign.data.prefetch import decoded_ahead
from mmalign.data.video import MediaError, MediaLoader
from mmalign.io import (atomic_write_json, atomic_write_jsonl, check_output_folder, cut_torn_tail, iter_jsonl,
                        lies_under)

from .config import PairsConfig, needs_model
from .facts import Truth
from .inject import InjectPairs
from .objects import OspoPairs
from .qa import RrpoQaPairs
from .pair import Backend, Item, Result
from .self_inject import ApasiPairs
from .video import FrameOpsPairs, RrpoPairs, TemplePairs

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")
GENERATORS = {"temple": TemplePairs, "rrpo": RrpoPairs, "rrpo_qa": RrpoQaPairs, "video": FrameOpsPairs,
              "inject": InjectPairs,
              "apasi": ApasiPairs, "ospo": OspoPairs}
KILL_ENV = "MMALIGN_KILL_AFTER_VIDEOS"


def list_videos(folder: str | os.PathLike) -> list[str]:
    """Video files under `folder` (recursively, hidden entries left out), as sorted
    "/"-separated paths relative to it."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--videos {folder}: not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames
                  if not f.startswith(".") and f.lower().endswith(VIDEO_EXTENSIONS)]
    return sorted(found)


def video_seed(seed: int, key: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(key.encode("utf-8"))]).generate_state(1)[0])


def report_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".report.json")


class RunConflict(ConfigError):
    """OUT.parts holds a run made with another config or video folder."""


@dataclasses.dataclass
class _Processes:
    rank: int = 0
    world: int = 1
    state: object = None  # accelerate.PartialState when distributed

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def device(self) -> str:
        if self.state is not None:
            return str(self.state.device)
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _processes() -> _Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch
        from accelerate import PartialState

        # Without a GPU, accelerate joins the (gloo) process group only when told it runs on the CPU.
        state = PartialState(cpu=not torch.cuda.is_available())
        if state.num_processes != world:  # never let n processes each do all the work
            raise RuntimeError(f"WORLD_SIZE={world} but accelerate sees {state.num_processes} process(es)")
        return _Processes(state.process_index, state.num_processes, state)
    return _Processes()


def run_pairs(cfg: PairsConfig, videos: str | os.PathLike, out: str | os.PathLike, *, backend: Backend | None = None,
              restart: bool = False, strict: bool = False, show_progress: bool = True,
              processes: _Processes | None = None) -> dict:
    """Generate pair records for every video under `videos` into `out` (see the module
    docstring). `backend` supplies the model's answers (tests pass deterministic stubs); by
    default the config's model is loaded when the generator needs one. Returns the report."""
    t0 = time.time()
    if backend is None and needs_model(cfg) and not (cfg.model.path or cfg.model.tiny):
        raise ConfigError(f"model: generator {cfg.generator} with these settings asks the model; set model.path "
                          "(a checkpoint) or model.tiny")
    procs = processes or _processes()
    videos, out = Path(videos).absolute(), Path(out).absolute()
    if out.is_dir():  # found before the model answers, not when the records are written
        raise ConfigError(f"--out {out}: a folder; name the JSONL file to write in it, e.g. {out / 'pairs.jsonl'}")
    if not out.exists():
        check_output_folder(out, "--out")  # a file where one of its folders should be
    keys = list_videos(videos)
    generator = GENERATORS[cfg.generator](cfg, backend if backend is not None else _LazyModel(cfg, procs).backend())
    if backend is None:
        check_models(cfg)
    parts = Path(str(out) + ".parts")
    _claim(parts, cfg, videos, restart, procs)

    truth_dir = Path(cfg.truth_dir) if cfg.truth_dir else videos.parent / "truth"
    stems = _stems(keys)
    finished_before = set(_finished(parts, generator.phases[-1]))
    processed = 0
    for p, phase in enumerate(generator.phases):
        carried = _finished(parts, generator.phases[p - 1]) if p else {}  # what the phase before left
        generator.start_phase(phase, {k: row["data"] for k, row in carried.items() if row.get("data") is not None})
        done = _finished(parts, phase)
        mine = [k for i, k in enumerate(keys) if i % procs.world == procs.rank]
        pending = [k for k in mine if k not in done]
        own = parts / f"{phase}-{procs.rank:03d}-of-{procs.world:03d}.jsonl"
        cut_torn_tail(own)
        bar = tqdm(total=len(pending), desc=f"{cfg.generator}:{phase}", unit="video",
                   disable=not show_progress or procs.rank != 0)
        size = cfg.videos_per_batch
        # Fixed slices of this process's share: a resumed run batches what is left the same way.
        batches = [b for b in ([k for k in mine[i:i + size] if k not in done] for i in range(0, len(mine), size)) if b]
        to_decode = [[str(videos / k) for k in b if not carried.get(k, {}).get("skipped")] for b in batches]
        with contextlib.closing(decoded_ahead(to_decode, MediaLoader(cfg.sampling).video,
                                              cfg.generation.decode_workers)) as loads:
            for batch, decoded in zip(batches, loads):
                results = _run_batch(generator, phase, cfg, batch, decoded, videos, truth_dir, stems, carried, strict)
                _append_line(own, {"videos": [_row(r) for r in results]})
                bar.update(len(batch))
                processed += len(batch)
                if os.environ.get(KILL_ENV) and processed >= int(os.environ[KILL_ENV]):
                    os.kill(os.getpid(), signal.SIGKILL)
        bar.close()
        procs.barrier()

    report = None
    if procs.rank == 0:
        report = _merge(cfg, keys, videos, out, parts, generator.phases[-1], generator.notes(keys),
                        time.time() - t0, sum(k not in finished_before for k in keys))
    procs.barrier()
    return report


class _LazyModel:
    """Loads the config's model the first time a generator asks for it (a model-free config
    never imports torch)."""

    def __init__(self, cfg: PairsConfig, procs: _Processes):
        self.cfg, self.procs, self.model = cfg, procs, None

    def _get(self):
        if self.model is None:
            from .model import ModelBackend

            self.model = ModelBackend(self.cfg, self.procs.device())
        return self.model

    def backend(self) -> Backend:
        if not needs_model(self.cfg):
            return Backend()
        return Backend(generate=lambda *a, **k: self._get().generate(*a, **k),
                       complete=lambda *a, **k: self._get().complete(*a, **k),
                       yes_prob=lambda *a, **k: self._get().yes_prob(*a, **k))


def check_models(cfg: PairsConfig, made_later: list[str] = ()) -> None:
    """Each model folder the run names is a checkpoint, checked before the run claims its
    progress folder: checked when it loaded, a wrong path left a claim that refused the mended
    path until --restart. Folders under `made_later` (a pipeline's earlier steps) are not
    there yet."""
    from mmalign.models.backbone import check_checkpoint, check_runtime

    if needs_model(cfg):
        check_runtime(cfg.model)
    for key, path in (("model.path", cfg.model.path if needs_model(cfg) else None),
                      ("rrpo_qa.judge_model", cfg.rrpo_qa.judge_model),
                      ("rrpo_qa.rewriter_model", cfg.rrpo_qa.rewriter_model)):
        if path and not lies_under(path, made_later):
            check_checkpoint(path, cfg.model.trust_remote_code, key, serves="backbone" if key == "model.path" else "chat")


def _claim(parts: Path, cfg: PairsConfig, videos: Path, restart: bool, procs: _Processes) -> None:
    """Start or continue the run in `parts`: its run.json must describe this config."""
    config = dataclasses.asdict(cfg)
    # Batch sizes may change between runs (after an out-of-memory, say): they decide how much
    # is computed at once, not what (up to the numerics of padding); decode workers, only when.
    config.pop("videos_per_batch")
    config["generation"].pop("batch_size")
    config["generation"].pop("decode_workers")
    from mmalign.models.backbone import weights_stamp

    # The models' weights, not only their folders: one retrained in place answers differently.
    folders = {"model": cfg.model.path if needs_model(cfg) else None, "judge_model": cfg.rrpo_qa.judge_model,
               "rewriter_model": cfg.rrpo_qa.rewriter_model}
    stamps = {k: weights_stamp(v) for k, v in folders.items()}
    identity = {"videos": str(videos), "config": config, "model_weights": {k: v for k, v in stamps.items() if v}}
    if procs.rank == 0:
        if restart and parts.exists():
            shutil.rmtree(parts)
        claimed = parts / "run.json"
        if claimed.exists():
            before = json.loads(claimed.read_text(encoding="utf-8"))
            before.setdefault("model_weights", identity["model_weights"])  # claimed before mmalign recorded them
            if before != identity:
                changed = [key for key, *_ in changed_keys(before, identity)]
                raise RunConflict(f"{parts} holds a run with a different {', '.join(changed[:5])}; rerun with "
                                  "--restart to start over, or write to another --out")
        else:
            parts.mkdir(parents=True, exist_ok=True)
            atomic_write_json(claimed, identity)
    procs.barrier()


def _stems(keys: list[str]) -> dict[str, str]:
    """Record ids start with the key without its extension, or with the whole key where two
    videos differ only by extension."""
    stems = {k: Item(k, "", 0).stem for k in keys}
    seen: dict[str, int] = {}
    for s in stems.values():
        seen[s] = seen.get(s, 0) + 1
    return {k: (s if seen[s] == 1 else k) for k, s in stems.items()}


def _run_batch(generator, phase, cfg, batch, decoded, videos, truth_dir, stems, carried, strict) -> list[Result]:
    """`decoded`: each video's frames by path (or its MediaError / ValueError), from `decoded_ahead`."""
    ready, results = [], {}
    for key in batch:
        if key in carried and carried[key].get("skipped"):
            results[key] = Result(key, skipped=carried[key]["skipped"])
            continue
        item = Item(key, str(videos / key), video_seed(cfg.seed, key), stem=stems[key])
        try:
            item.truth = _truth(truth_dir, key)
            if isinstance(decoded[item.path], Exception):
                raise decoded[item.path]
            item.video = decoded[item.path]
        except (MediaError, ValueError) as e:
            if strict:
                raise
            results[key] = Result(key, skipped=str(e))
            continue
        ready.append(item)
    for result in generator.run(phase, ready) if ready else []:
        if strict and result.skipped:
            raise MediaError(result.key, result.skipped)
        results[result.key] = result
    return [results[k] for k in batch]


def _truth(truth_dir: Path, key: str) -> Truth | None:
    path = truth_dir / (key.rsplit(".", 1)[0] + ".json")
    if not path.is_file():
        return None
    try:
        return Truth.load(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: unreadable truth file ({e})") from None


def _row(r: Result) -> dict:
    row = {"video": r.key, "records": r.records, "filtered": r.filtered}
    if r.data is not None:
        row["data"] = r.data
    if r.skipped:
        row["skipped"] = r.skipped
    return row


def _append_line(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _finished(parts: Path, phase: str) -> dict[str, dict]:
    """Every video finished in `phase` by any process of any earlier or current run."""
    done = {}
    for path in sorted(parts.glob(f"{phase}-*.jsonl")):
        for _, line in iter_jsonl(path, skip_torn_tail=True):
            for row in line["videos"]:
                done.setdefault(row["video"], row)
    return done


def _merge(cfg, keys, videos, out, parts, phase, notes, seconds, processed) -> dict:
    rows = _finished(parts, phase)
    missing = [k for k in keys if k not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} videos were not finished (first: {missing[0]}); rerun to complete them")
    folder = out.parent
    records = [record_to_dict(Record(source="", **r), folder) for k in keys for r in rows[k]["records"]]
    atomic_write_jsonl(out, records)
    outside = not _inside(videos, folder)
    # Videos that are symbolic links to files elsewhere (a dataset linked in, not copied) are
    # named by their links, which the trainer checks by where they lead: out of the folder.
    real_folder = Path(os.path.realpath(folder))
    linked_out = not outside and any(not _inside(Path(os.path.realpath(videos / k)), real_folder) for k in keys)
    _, bad = read_records(out, "pair", allow_absolute_paths=outside or linked_out)
    if bad:  # a generator wrote something the trainer cannot read: a bug, never silent
        raise RuntimeError(f"{len(bad)} written records do not read back; first: {bad[0].source}: {bad[0].reason}")
    filtered: dict[str, int] = {}
    for k in keys:
        for reason, n in rows[k].get("filtered", {}).items():
            filtered[reason] = filtered.get(reason, 0) + n
    skipped = [{"video": k, "reason": rows[k]["skipped"]} for k in keys if rows[k].get("skipped")]
    report = {
        "out": str(out), "generator": cfg.generator, "videos": len(keys), "records": len(records),
        "videos_with_records": sum(bool(rows[k]["records"]) for k in keys),
        "skipped": skipped, "filtered": dict(sorted(filtered.items())),
        "this_run": {"videos_processed": processed, "seconds": round(seconds, 3),  # all processes
                     "videos_per_minute": round(60 * processed / seconds, 2) if seconds > 0 else None},
        "absolute_media_paths": outside, "media_links_lead_out": linked_out, "notes": notes,
        "config": dataclasses.asdict(cfg),
    }
    atomic_write_json(report_path(out), report)
    return report


def _inside(path: Path, folder: Path) -> bool:
    try:
        return os.path.commonpath([str(path), str(folder)]) == str(folder)
    except ValueError:
        return False
