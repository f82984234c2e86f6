"""CHAIR (Rohrbach et al., EMNLP 2018): how many of the COCO objects a caption mentions are
not in the image.

Files (COCO-style, as LisaAnne/Hallucination `utils/chair.py` reads them):
    root/synonyms.txt                          one line per COCO object: "object, synonym, ..."
                                               (the repo's data/synonyms.txt)
    root/annotations/instances_val2014.json    COCO instances: images, categories, annotations
    root/annotations/captions_val2014.json     COCO reference captions
    root/val2014/<file_name>                   images (`data.media_dir` replaces val2014)
The `train2014` files are read as well when present (the official script merges both; for
val2014 images they add nothing). Images evaluated: those of instances_val2014.json in id
order; `data.options.sample: N` draws N of them at random (`data.options.seed`, default 0),
as OPERA-style setups draw 500.

Prompt: "Please describe this image in detail." (`prompt.suffix` appends).

Scoring (chair.py, `caption_to_words` / `compute_chair`), per caption:
1. tokenize the lower-cased caption and singularize every token (backend, below);
2. merge two-word names left to right ("traffic light", "hot dog", ...; "baby bird" -> bird,
   "adult cow" -> cow, "passenger train" -> train, "bow tie" -> tie, "toilet seat" -> toilet);
3. if both "toilet" and "seat" remain, drop "seat" (a toilet seat is no chair);
4. keep the words in the synonym list; map each to its object (first word of its line).
Ground truth of an image = objects of its instance annotations (category names through the
synonym list) plus the objects step 1-4 finds in its reference captions.
CHAIR_i = mentions of objects not in the truth / all object mentions (repeats count);
CHAIR_s = captions with at least one such mention / all captions. Fractions (the paper and
chair.py's printout show x100). An empty caption is listed as unparsable and counted as
the official script does (no mention, not hallucinated).

`--predictions` reads chair.py's own cap_file ({overall, imgToEval}) and the {image_id, caption}
lines (or JSON list) that OPERA's chair.py and its forks read, beside our formats.

Backends (score.backend): `official` = NLTK `word_tokenize` + pattern.en `singularize`, as the
script imports them (install `nltk pattern` and NLTK's punkt data); a run with
`official: true` refuses to start without them. `simple` = a regex tokenizer and a small
rule-based singularizer, deterministic and dependency-free; close to, not identical with,
the official numbers.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .base import (Benchmark, BenchmarkFilesMissing, Item, Judgement, Loaded, check_rows, find_file, media_root,
                   ratio, read_json, require, resolve_root, take, with_suffix)

PROMPT = "Please describe this image in detail."
CANDIDATES = {"synonyms": ["synonyms.txt", "data/synonyms.txt"],
              "instances": ["annotations/instances_val2014.json", "instances_val2014.json"],
              "captions": ["annotations/captions_val2014.json", "captions_val2014.json"]}
COCO_DOUBLE_WORDS = ["motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
                     "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
                     "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
                     "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
                     "stove top oven", "home plate", "train track"]
ANIMAL_WORDS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub"]
VEHICLE_WORDS = ["jet", "train"]


class BackendUnavailable(BenchmarkFilesMissing):
    """The official text backend (NLTK, pattern) is not installed."""


# ---------------------------------------------------------------- text backends

@dataclass(frozen=True)
class TextBackend:
    name: str
    tokenize: Callable[[str], list[str]]
    singularize: Callable[[str], str]


_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "mice": "mouse", "geese": "goose", "feet": "foot",
              "teeth": "tooth", "knives": "knife", "leaves": "leaf", "shelves": "shelf", "buses": "bus", "skis": "ski"}


def simple_singularize(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def simple_tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text)


def simple_backend() -> TextBackend:
    return TextBackend("simple", simple_tokenize, simple_singularize)


def official_backend() -> TextBackend:
    try:
        import nltk
        from pattern.en import singularize
    except ImportError as e:
        raise BackendUnavailable(f"chair: score.backend=official needs NLTK and pattern ({e.name} is missing): "
                                 "pip install nltk pattern, then python -m nltk.downloader punkt") from None
    try:
        nltk.word_tokenize("a test")
    except LookupError:
        raise BackendUnavailable("chair: NLTK's punkt tokenizer data is missing: "
                                 "python -m nltk.downloader punkt") from None
    return TextBackend("official", nltk.word_tokenize, singularize)


BACKENDS = {"simple": simple_backend, "official": official_backend}


# ---------------------------------------------------------------- the evaluator

def double_word_dict() -> dict[str, str]:
    out = {w: w for w in COCO_DOUBLE_WORDS}
    for animal in ANIMAL_WORDS:
        out[f"baby {animal}"] = animal
        out[f"adult {animal}"] = animal
    for vehicle in VEHICLE_WORDS:
        out[f"passenger {vehicle}"] = vehicle
    out.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return out


class Chair:
    def __init__(self, synonym_lines: list[str], backend: TextBackend):
        groups = [line.strip().split(", ") for line in synonym_lines if line.strip()]
        self.objects = {w for g in groups for w in g}
        self.node = {w: g[0] for g in groups for w in g}
        self.double = double_word_dict()
        self.backend = backend

    def words(self, caption: str) -> list[str]:
        """The COCO-object words of a caption, after singularizing and merging double words."""
        tokens = [self.backend.singularize(w) for w in self.backend.tokenize(caption.lower())]
        merged, i = [], 0
        while i < len(tokens):
            pair = " ".join(tokens[i:i + 2])
            if pair in self.double:
                merged.append(self.double[pair])
                i += 2
            else:
                merged.append(tokens[i])
                i += 1
        if "toilet" in merged and "seat" in merged:
            merged = [w for w in merged if w != "seat"]
        return [w for w in merged if w in self.objects]

    def node_words(self, caption: str) -> list[str]:
        return [self.node[w] for w in self.words(caption)]


@lru_cache(maxsize=4)
def evaluator(synonyms: str, backend: str) -> Chair:
    return Chair(Path(synonyms).read_text(encoding="utf-8").splitlines(), BACKENDS[backend]())


# ---------------------------------------------------------------- loading

def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "chair", "synonyms.txt and annotations/{instances,captions}_val2014.json")
    paths = require("chair", root, {k: find_file(root, c) for k, c in CANDIDATES.items()}, CANDIDATES)
    chair = evaluator(str(paths["synonyms"]), cfg.score.backend)
    instances = read_json(paths["instances"])
    images = sample_images(sorted(instances["images"], key=lambda im: im["id"]), cfg.data.options)
    wanted = {im["id"] for im in images}
    truth = ground_truth(chair, wanted, [instances, *extra(paths["instances"], "instances")],
                         [read_json(paths["captions"]), *extra(paths["captions"], "captions")])
    folder = media_root(root, cfg.data.media_dir, "val2014")
    items = [Item(id=str(im["id"]), prompt=with_suffix(PROMPT, cfg.prompt.suffix, ""), target=sorted(truth[im["id"]]),
                  category="coco", media=str(folder / im["file_name"]), media_kind="image",
                  meta={"synonyms": str(paths["synonyms"])})
             for im in images]
    return Loaded(take(items, cfg.data.limit))


def sample_images(images: list[dict], options: dict) -> list[dict]:
    n = options.get("sample")
    if n is None or n >= len(images):
        return images
    return random.Random(options.get("seed", 0)).sample(images, n)


def extra(val_path: Path, kind: str) -> list[dict]:
    """The train2014 file beside a val2014 one, if present (the official script merges both)."""
    train = val_path.with_name(f"{kind}_train2014.json")
    return [read_json(train)] if train.is_file() else []


def ground_truth(chair: Chair, image_ids: set[int], instance_files: list[dict], caption_files: list[dict]) -> dict:
    truth = {i: set() for i in image_ids}
    for inst in instance_files:
        names = {c["id"]: c["name"] for c in inst["categories"]}
        for ann in inst["annotations"]:
            if ann["image_id"] in truth:
                truth[ann["image_id"]].add(node_of_category(chair, names[ann["category_id"]]))
    for caps in caption_files:
        for ann in caps["annotations"]:
            if ann["image_id"] in truth:
                truth[ann["image_id"]].update(chair.node_words(ann["caption"]))
    return truth


def node_of_category(chair: Chair, name: str) -> str:
    if name not in chair.node:
        raise BenchmarkFilesMissing(f"chair: COCO category {name!r} is on no line of synonyms.txt")
    return chair.node[name]


# ---------------------------------------------------------------- scoring

def judge(item: Item, prediction: str, score) -> Judgement:
    chair = evaluator(item.meta["synonyms"], score.backend)
    mentions = chair.words(prediction)
    nodes = [chair.node[w] for w in mentions]
    hallucinated = [[w, n] for w, n in zip(mentions, nodes) if n not in set(item.target)]
    return Judgement(nodes, not hallucinated, unparsable=not prediction.strip(),
                     extra={"hallucinated": hallucinated, "mentions": len(nodes)})


def aggregate(rows: list[dict], score) -> dict:
    metrics = {"chair_s": ratio(sum(not r["correct"] for r in rows), len(rows)),
               "chair_i": ratio(sum(len(r["hallucinated"]) for r in rows), sum(r["mentions"] for r in rows)),
               "n": len(rows)}
    return {"metrics": metrics, "categories": {"coco": dict(metrics)}}


def read_predictions(data, path: str) -> dict | None:
    """chair.py's own cap_file (LisaAnne/Hallucination @ 6e4d33c, `load_generated_captions`):
    coco-caption's evaluation output, {overall, imgToEval: {id: {image_id, caption, ...}}}."""
    if not (isinstance(data, dict) and isinstance(data.get("imgToEval"), dict)):
        return None
    return {str(c["image_id"]): c["caption"] for c in data["imgToEval"].values()}


def read_answer_rows(rows: list[tuple[str, object]], path: str, items: list[Item]) -> list[tuple] | None:
    """The captions file most CHAIR forks read (OPERA's chair.py and its descendants, `--cap_file
    x.jsonl --image_id_key image_id --caption_key caption`): {image_id, caption} lines, or a
    JSON list of them."""
    first = rows[0][1] if rows else None
    if not (isinstance(first, dict) and "image_id" in first and "caption" in first and "id" not in first):
        return None
    check_rows(rows, path, lambda r: isinstance(r, dict) and "image_id" in r and "caption" in r,
               'a caption like {"image_id": ..., "caption": "..."}')
    return [(str(r["image_id"]), r["caption"], where) for where, r in rows]


BENCHMARK = Benchmark("chair", load, judge, aggregate, options=("sample", "seed"), headline=("chair_s", "chair_i"),
                      needs_backend=True, read_predictions=read_predictions, read_answer_rows=read_answer_rows,
                      unparsable_note="empty captions; counted as the official script does (no object mentioned)")
