"""What every benchmark shares: the item a loader yields, the judgement a scorer gives one
answer, the `Benchmark` record the registry holds, and small helpers (finding official files,
binary metrics, pair accuracy).

A benchmark follows lmms-eval's task conventions where they fit:
- `load(cfg)`       the docs, each already turned into a prompt (doc_to_text, doc_to_visual);
- `judge(item, prediction, score_cfg)`   one result -> parsed answer + correctness (process_results);
- `aggregate(rows, score_cfg)`           all judged rows -> metrics (aggregation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mmalign.config import ConfigError


class BenchmarkFilesMissing(ConfigError):
    """The benchmark folder lacks official files; the message names each one and where it was looked for."""


@dataclass
class Item:
    id: str
    prompt: str
    target: Any                          # the truth the judge compares with
    category: str                        # the subset it is reported under
    media: str | None = None             # absolute path of the video / image
    media_kind: str | None = None        # "video" | "image" | None
    group: str | None = None             # items scored together (a basic / hallucinated pair)
    system: str | None = None            # system message, when the benchmark prescribes one
    meta: dict = field(default_factory=dict)


@dataclass
class Loaded:
    items: list[Item]
    missing: list[str] = field(default_factory=list)   # official files absent (subsets skipped)
    notes: list[str] = field(default_factory=list)     # anything the report should say (limits, ...)


@dataclass
class Judgement:
    parsed: Any               # what the parsing rule read from the answer
    correct: bool
    unparsable: bool = False  # the answer matched none of the options the rule looks for
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    name: str
    load: Callable[..., Loaded]
    judge: Callable[[Item, str, Any], Judgement]
    aggregate: Callable[[list[dict], Any], dict]
    modes: tuple[str, ...] = ("official",)   # the first is the official rule
    splits: tuple[str, ...] = ()
    options: tuple[str, ...] = ()            # keys accepted in data.options
    headline: tuple[str, ...] = ()           # metrics shown in the summary table, in order
    needs_backend: bool = False              # official scoring needs outside NLP resources
    prepare: Callable | None = None          # run once on the main process before loading (build data)
    unparsable_note: str | dict = "counted as wrong, as the official script does"  # or {mode: note}
    read_predictions: Callable | None = None  # (parsed JSON, path) -> {item id: prediction} for an official file
    # (rows of (":<line>" | "[<index>]", parsed object), path, items) -> [(item id, prediction, where)], or None
    # when the rows are not an answer file of the benchmark's own, without our ids (POPE's go by position)
    read_answer_rows: Callable | None = None
    # what a prediction may be besides null; VidHal's official ordering file holds lists of option letters
    answer_types: tuple[type, ...] = (str,)


# ---------------------------------------------------------------- files

def resolve_root(root: str | None, name: str, expected: str) -> Path:
    if not root:
        raise BenchmarkFilesMissing(f"{name}: set data.root to the folder holding {expected}")
    path = Path(root)
    if not path.is_dir():
        raise BenchmarkFilesMissing(f"{name}: data.root {path} is not a folder (expected {expected})")
    return path


def find_file(root: Path, candidates: list[str]) -> Path | None:
    """The first candidate (official layout first) that exists under root."""
    return next((root / c for c in candidates if (root / c).is_file()), None)


def missing_message(root: Path, candidates: list[str]) -> str:
    return f"{root}/{candidates[0]}" + (f" (also looked for {', '.join(candidates[1:])})" if candidates[1:] else "")


def require(name: str, root: Path, found: dict[str, Path | None], candidates: dict[str, list[str]]) -> dict[str, Path]:
    """All of `found`, or one error naming every file that is missing."""
    missing = [missing_message(root, candidates[k]) for k, p in found.items() if p is None]
    if missing:
        raise BenchmarkFilesMissing(f"{name}: missing official file(s) in {root}: " + "; ".join(missing))
    return found  # type: ignore[return-value]


def load_subsets(name: str, root: Path, subsets: list[str], files: Callable[[str], list[str]],
                 read: Callable[[Path, str], list[Item]]) -> Loaded:
    """Items of every subset whose official file exists; the others are listed as missing
    (the run goes on without them), and an error when none exists at all."""
    loaded = Loaded([])
    for subset in subsets:
        path = find_file(root, files(subset))
        if path is None:
            loaded.missing.append(missing_message(root, files(subset)))
        else:
            loaded.items += read(path, subset)
    if not loaded.items and loaded.missing:
        raise BenchmarkFilesMissing(f"{name}: no annotation file found: " + "; ".join(loaded.missing))
    return loaded


def media_root(root: Path, media_dir: str | None, default: str) -> Path:
    path = Path(media_dir if media_dir is not None else default)
    return path if path.is_absolute() else root / path


class AnnotationRow(dict):
    """An annotation entry that knows where it came from: a missing field is a one-line error
    naming the file and line (or entry), not a KeyError deep in a loader."""

    def __init__(self, data: dict, source: str):
        super().__init__({k: _located(v, f"{source}.{k}") for k, v in data.items()})
        self.source = source

    def __missing__(self, key):
        raise BenchmarkFilesMissing(f"{self.source}: missing field {key!r} (an official annotation file has it)")


def _located(value, source: str):
    if isinstance(value, dict):
        return AnnotationRow(value, source)
    if isinstance(value, list):
        return [_located(v, f"{source}[{i}]") for i, v in enumerate(value)]
    return value


def read_json(path: Path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkFilesMissing(f"{path}: not valid JSON ({e})") from None
    return _located(data, str(path))


def read_json_lines(path: Path) -> list:
    from mmalign.io import iter_jsonl

    try:
        return [_located(row, f"{path}:{lineno}") for lineno, row in iter_jsonl(path)]
    except ValueError as e:
        raise BenchmarkFilesMissing(str(e)) from None


def check_rows(rows: list[tuple[str, object]], path: str, fits: Callable[[object], bool], shape: str) -> None:
    """An answer file whose first row has a benchmark's own shape: every row must have it."""
    bad = next((where for where, row in rows if not fits(row)), None)
    if bad is not None:
        raise ConfigError(f"{path}{bad}: not {shape}, as {path}{rows[0][0]} is")


def take(items: list, limit: int | None) -> list:
    return items if limit is None else items[:limit]


def selected(splits: list[str], default: tuple[str, ...]) -> list[str]:
    return list(splits) if splits else list(default)


def with_suffix(question: str, suffix: str | None, default: str) -> str:
    return question + (default if suffix is None else suffix)


# ---------------------------------------------------------------- metrics

def ratio(num: float, den: float) -> float:
    """num / den, and 0.0 where the official script would divide by zero (it would crash)."""
    return num / den if den else 0.0


def binary_metrics(tp: int, fp: int, tn: int, fn: int) -> dict:
    """Accuracy, precision, recall, F1 of a positive class, as POPE's evaluate.py computes them."""
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * precision * recall, precision + recall),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def by_category(rows: list, category: Callable = lambda row: row["category"]) -> dict[str, list]:
    """Result rows (or items, with `category=lambda it: it.category`) by category, in order."""
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(category(row), []).append(row)
    return out


def pair_scores(rows: list[dict], basic_role: str = "basic") -> dict:
    """VideoHallucer's cal_score on rows grouped into pairs: basic accuracy, hallucinated
    accuracy, and pair accuracy (a pair counts only when both questions are right)."""
    pairs: dict[str, dict[str, bool]] = {}
    for row in rows:
        pairs.setdefault(row["group"], {})[row["meta"]["role"]] = row["correct"]
    complete = [p for p in pairs.values() if len(p) == 2]
    n = len(complete)
    basic = sum(p[basic_role] for p in complete)
    halluc = sum(v for p in complete for k, v in p.items() if k != basic_role)
    return {"basic_accuracy": ratio(basic, n), "halluc_accuracy": ratio(halluc, n),
            "accuracy": ratio(sum(all(p.values()) for p in complete), n), "pairs": n}


def mean(values: list[float]) -> float:
    """Plain left-to-right sum / n, as the official scripts average (fsum could differ in the last bit)."""
    return sum(values) / len(values) if values else 0.0
