"""VideoHallucer (Wang et al., 2024): paired yes/no questions about a video; the basic
question's answer is "yes", its hallucinated twin's is "no".

Files (patrick-tssn/VideoHallucer @ ae4c2f2, the layout of its data release):
    root/<category>/<category>.json     [{basic: {video, question, answer}, hallucination: {...}, type}]
    root/<category>/videos/<video>      (a flat root/<category>.json is accepted too)
for the five categories that make "overall": object_relation, temporal, semantic_detail,
external_factual, external_nonfactual. Each question is asked about its own `video` (basic and
hallucinated videos differ in semantic_detail). With `data.media_dir` set, the videos are looked
for in <media_dir>/<category>/<video> instead.

Prompt (evaluations/evaluation_utils.py, `evaluate`): "<question>\\nAnswer the question using
'yes' or 'no'."

Parsing, mode `official` (evaluation_utils.py, `cal_score`, since May 2024): a question is
right when its ground-truth word occurs in the output as a whole word, any case
(re.search(r'\\b(' + answer + r')\\b', output, re.IGNORECASE)). Quirk kept: an output holding
both words ("yes and no") is right for either truth. An output with neither word is
unparsable and wrong. Per category: basic accuracy, hallucinated accuracy, and accuracy =
pairs with both right / pairs. "overall" (evaluation.py, `all`) = the plain mean over the
categories evaluated of each of the three numbers; when a category file is missing the mean
covers the others (as the official script does) and the report flags the run incomplete.

Mode `first_sentence` (the same file before May 2024, commit 0949046): the output up to the
first ".", stripped, lower-cased, must equal the answer ("Yes." right; "Yes, it is." wrong).

`--predictions` reads the official run's own file: `evaluate` (evaluation_utils.py) writes
`results/<qa_type>_<model>.json`, the category's annotation list with each question's output
added as `predict`. Its pairs are matched to ours by their videos and questions, not by
position: the annotation files changed (ae4c2f2 removed duplicate pairs from temporal.json), and
a file made on another version would otherwise meet other pairs' answers. A pair the loaded
files lack counts as extra, never scored.

Not reproduced: evaluation_bias.py's yes/no-bias numbers (they read a different results folder).
"""

from __future__ import annotations

import re

from .base import (Benchmark, Item, Judgement, Loaded, by_category, check_rows, load_subsets, mean, media_root,
                   pair_scores, read_json, resolve_root, selected, take, with_suffix)

CATEGORIES = ("object_relation", "temporal", "semantic_detail", "external_factual", "external_nonfactual")
SUFFIX = "\nAnswer the question using 'yes' or 'no'."
ROLES = ("basic", "hallucination")


def files(category: str) -> list[str]:
    return [f"{category}/{category}.json", f"{category}.json"]


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "videohallucer", "<category>/<category>.json for " + ", ".join(CATEGORIES))

    def read(path, cat):
        videos = media_root(root, cfg.data.media_dir and f"{cfg.data.media_dir}/{cat}", f"{cat}/videos")
        return [item for i, pair in enumerate(take(read_json(path), cfg.data.limit))
                for item in pair_items(pair, f"{cat}-{i}", cat, videos, cfg.prompt.suffix)]

    return load_subsets("videohallucer", root, selected(cfg.data.splits, CATEGORIES), files, read)


def pair_items(pair: dict, group: str, category: str, videos, suffix: str | None) -> list[Item]:
    """The basic and hallucinated questions of one pair, each with its own video."""
    return [
        Item(id=f"{group}-{role}", prompt=with_suffix(pair[role]["question"], suffix, SUFFIX),
             target=pair[role]["answer"], category=category, media=str(videos / pair[role]["video"]),
             media_kind="video", group=group,
             meta={"role": role, "type": pair.get("type"), "video": pair[role]["video"], "question": pair[role]["question"]})
        for role in ROLES
    ]


def whole_word(answer: str, output: str) -> bool:
    return re.search(r"\b(" + answer + r")\b", output, re.IGNORECASE) is not None


def judge_yes_no(item: Item, prediction: str, mode: str) -> Judgement:
    if mode == "first_sentence":
        head = prediction.split(".")[0].strip().lower()
        return Judgement(head, head == item.target.lower(), unparsable=head not in ("yes", "no"))
    found = [w for w in ("yes", "no") if whole_word(w, prediction)]
    parsed = found[0] if len(found) == 1 else ("both" if found else None)
    return Judgement(parsed, whole_word(item.target, prediction), unparsable=not found)


def judge(item: Item, prediction: str, score) -> Judgement:
    return judge_yes_no(item, prediction, score.mode)


def aggregate_pairs(rows: list[dict]) -> dict:
    cats = {cat: pair_scores(r) for cat, r in by_category(rows).items()}
    overall = {k: mean([c[k] for c in cats.values()]) for k in ("accuracy", "basic_accuracy", "halluc_accuracy")}
    return {"metrics": overall, "categories": cats}


def aggregate(rows: list[dict], score) -> dict:
    return aggregate_pairs(rows)


def read_answer_rows(rows: list[tuple[str, object]], path: str, items: list[Item]) -> list[tuple] | None:
    """(item id, output, where) of an official results file's pairs, matched by content."""
    first = rows[0][1] if rows else None
    if not (isinstance(first, dict) and isinstance(first.get("basic"), dict) and "predict" in first["basic"]):
        return None
    pairs: dict[str, dict[str, Item]] = {}
    for it in items:
        pairs.setdefault(it.group, {})[it.meta["role"]] = it
    groups_of: dict[tuple, list[str]] = {}
    for group, roles in pairs.items():
        groups_of.setdefault(tuple((roles[r].meta["video"], roles[r].meta["question"]) for r in ROLES), []).append(group)
    check_rows(rows, path, lambda pair: isinstance(pair, dict) and all(
        isinstance(pair.get(r), dict) and {"video", "question", "predict"} <= set(pair[r]) for r in ROLES),
        "a pair like {basic: {video, question, predict}, hallucination: {...}}")
    out = []
    for where, pair in rows:
        same = groups_of.get(tuple((pair[r]["video"], pair[r]["question"]) for r in ROLES))
        group = same.pop(0) if same else f"not-loaded{where}"  # a pair given twice takes the next copy, if any
        out += [(f"{group}-{role}", pair[role]["predict"], where) for role in ROLES]
    return out


BENCHMARK = Benchmark("videohallucer", load, judge, aggregate, modes=("official", "first_sentence"),
                      splits=CATEGORIES, headline=("accuracy", "basic_accuracy", "halluc_accuracy"),
                      read_answer_rows=read_answer_rows)
