"""What every pair builder shares: the unit of work (a video with its truth), what the model
can be asked (`Backend`), the chosen answers, sentence labels, and the record itself.

Records are built with absolute media paths; the runner makes them relative to the output
file when it writes them (`mmalign.data.records.record_to_dict`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mmalign.data.records import sentence_spans
from mmalign.data.video import Video

from .config import PairsConfig
from .diff import Span, changed_fraction, check_spans, sentences_touched
from .facts import Truth, check_sentence, label_sentences

# (prompt, video or None for text only) -> answer
GenerateFn = Callable[[list[tuple[str, Video | None]]], list[str]]
# (prompt, the assistant's answer so far) -> its continuation, cut at the first "."
CompleteFn = Callable[[list[tuple[str, str]]], list[str]]
# (question, video) -> P(yes) among yes / no
YesProbFn = Callable[[list[tuple[str, Video]]], list[float]]


@dataclass
class Backend:
    """The model's three services; None where a run has no model (then a generator that needs
    one fails with a clear message)."""
    generate: GenerateFn | None = None
    complete: CompleteFn | None = None
    yes_prob: YesProbFn | None = None

    def need(self, name: str, why: str):
        fn = getattr(self, name)
        if fn is None:
            raise RuntimeError(f"{why} needs the model ({name}), but this run has none")
        return fn


@dataclass
class Item:
    key: str  # the video's path relative to the videos folder, "/"-separated
    path: str  # absolute path
    seed: int  # this video's seed (from the config seed and the key)
    truth: Truth | None = None
    video: Video | None = None  # sampled frames, decoded by the runner
    stem: str | None = None  # what record ids start with: the key without its extension, unless that is ambiguous

    def __post_init__(self):
        if self.stem is None:
            name = self.key.rsplit("/", 1)[-1]
            self.stem = self.key[: len(self.key) - len(name)] + (name.rsplit(".", 1)[0] if "." in name else name)


@dataclass
class Result:
    key: str
    records: list[dict] = field(default_factory=list)
    data: dict | None = None  # what an earlier phase hands to the next one
    filtered: dict[str, int] = field(default_factory=dict)  # reason -> candidate pairs dropped
    skipped: str | None = None  # why this video gave nothing

    def drop(self, reason: str) -> None:
        self.filtered[reason] = self.filtered.get(reason, 0) + 1


def op_seed(record_id: str) -> int:
    """The seed the trainer replays a record's rejected_video ops with
    (mmalign.data.encode.record_seed; repeated here so model-free runs never import torch,
    and tested to agree)."""
    return zlib.crc32(record_id.encode("utf-8"))


def record_rng(item: Item, record_id: str) -> np.random.Generator:
    """The random stream of one record's choices: independent of batching and sharding."""
    return np.random.default_rng([item.seed, op_seed(record_id)])


class PairBuilder:
    """A generator: `run(phase, items)` turns a batch of decoded videos into Results, phase by
    phase (most have one, "pairs"); `start_phase` gets what the phase before left per video."""

    name = "pairs"
    phases: tuple[str, ...] = ("pairs",)

    def __init__(self, cfg: PairsConfig, backend: Backend):
        self.cfg, self.backend = cfg, backend

    def start_phase(self, phase: str, earlier: dict[str, dict]) -> None:
        pass

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        raise NotImplementedError

    def notes(self, keys: list[str]) -> list[str]:
        """What the report should tell about this run's input as a whole (`keys`: every video)."""
        return []


def with_truth(items: list[Item], results: dict[str, Result], why: str) -> list[Item]:
    """The items that have truth; the others are marked skipped with `why`."""
    for it in items:
        if it.truth is None:
            results[it.key].skipped = why
    return [it for it in items if it.truth is not None]


def chosen_answers(cfg: PairsConfig, backend: Backend, items: list[Item], results: dict[str, Result]) -> dict[str, str]:
    """The chosen answer of each item: its truth caption, or the model's answer on the clean
    video. Items without what they need are marked skipped."""
    if cfg.answers == "truth":
        return {it.key: it.truth.caption
                for it in with_truth(items, results, "answers: truth, but the video has no truth file "
                                                     "(answers=model takes the model's own answer)")}
    generate = backend.need("generate", "answers: model")
    texts = generate([(cfg.prompt, it.video) for it in items])
    return {it.key: t for it, t in zip(items, texts)}


def sentence_labels(item: Item, chosen: str, rejected: str, rejected_spans: list[Span] | None = None):
    """(chosen labels, rejected labels) where the truth decides them, else None each. With
    `rejected_spans` from an edit, the sentences the edit changed are labelled 0 (the edit
    made them false by construction, e.g. two events in the wrong order); the rest are
    checked."""
    if item.truth is None:
        return None, None
    scene = item.truth.scene
    chosen_labels = label_sentences(chosen, scene)
    sentences = sentence_spans(rejected)
    touched = sentences_touched(sentences, rejected_spans) if rejected_spans is not None else set()
    labels = [0 if i in touched else check_sentence(rejected[s:e], scene) for i, (s, e) in enumerate(sentences)]
    return chosen_labels, (None if None in labels else labels)


def make_record(cfg: PairsConfig, item: Item, tag: str, chosen: str, chosen_spans: list[Span], rejected: str,
                rejected_spans: list[Span], *, generator: str, labels=(None, None), ops: list[dict] | None = None,
                difficulty: float | None = None, meta: dict | None = None, prompt: str | None = None) -> dict:
    """A pair record (DESIGN.md) with absolute paths; spans are checked before it is kept."""
    check_spans(chosen, chosen_spans, rejected, rejected_spans)
    record = {
        "id": f"{item.stem}-{tag}",
        "video": item.path,
        "prompt": prompt if prompt is not None else cfg.prompt,
        "chosen": chosen,
        "rejected": rejected,
        "chosen_spans": [list(s) for s in chosen_spans],
        "rejected_spans": [list(s) for s in rejected_spans],
        "chosen_sentence_labels": labels[0],
        "rejected_sentence_labels": labels[1],
        "rejected_video": {"source": item.path, "ops": ops} if ops is not None else None,
        "difficulty": None if difficulty is None else round(float(difficulty), 4),
        "meta": {"generator": f"perturb.{generator}", "seed": item.seed, **(meta or {})},
    }
    if item.video is not None and ops is not None:
        record["meta"]["num_frames"] = len(item.video.frames)
    return {k: v for k, v in record.items() if v is not None}


def edit_difficulty(chosen: str, chosen_spans, rejected: str, rejected_spans) -> float:
    """The smaller the change, the harder the pair: 1 - the changed share of the two texts."""
    return 1.0 - changed_fraction(chosen, chosen_spans, rejected, rejected_spans)


def vocabulary_of(cfg: PairsConfig, item: Item) -> str:
    """The object vocabulary for this video: the config's, or (auto) the world's when the video
    has truth, COCO's otherwise."""
    if cfg.vocabulary != "auto":
        return cfg.vocabulary
    return "world" if item.truth is not None else "coco"
