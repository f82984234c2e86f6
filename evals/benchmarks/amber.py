"""AMBER discriminative (Wang et al., 2023): yes/no questions about existence, attributes
(state, number, action) and relations of objects in 1,004 images.

Files (junyangwang0410/AMBER @ 534babf, `data/`): `annotations.json` ([{id, type, truth}], the
truth of query id i is annotations[i - 1]; we look it up by `id`, which gives the same row on
the official file, where annotations[i - 1]["id"] == i for every i) and
`query/query_discriminative.json` ([{id, image, query}]). Looked for in `root/`, `root/data/`
and `root/data/query/`. Images: `root/image/AMBER_<n>.jpg` (`data.media_dir` replaces
`image`; assumed, not verified: the inner layout of the Google Drive image archive).

Prompt: the query as written, plus `prompt.suffix` (default "\\nAnswer the question using a
single word or phrase."; AMBER fixes the answer format, "Yes" or "No", but not a prompt).

Parsing, mode `official` (inference.py): the response must be exactly "Yes" or "No"
(case-sensitive, no punctuation or spaces); anything else is unparsable and wrong. "No" is
the positive class. Metrics, each over one set of counters, every denominator starting at
0.001 (data/metrics.txt) and every numerator at 0:
    Accuracy  = right / questions              Precision = right "No" / answered "No"
    Recall    = right "No" / truth "no"        F1 = 2PR / (P + R + 0.0001), from P and R
already rounded, all x100 and rounded to one decimal (Python round, as the script).
Groups: overall; existence (type discriminative-hallucination; its F1 adds 0.001, not
0.0001 — the script's quirk, kept); attribute = state + number + action summed, so its
denominators start at 0.003; state, number, action; relation (discriminative-relation and
relation).

Mode `first_word` (ours, not official): the first word, stripped of punctuation and
lower-cased, "yes" / "no" -> "Yes" / "No" before the official comparison.
Not reproduced: the generative task (CHAIR / Cover / Hal / Cog), which needs spaCy vectors.
"""

from __future__ import annotations

import re

from .base import (Benchmark, BenchmarkFilesMissing, Item, Judgement, Loaded, find_file, media_root, read_json,
                   require, resolve_root, selected, take, with_suffix)

SPLITS = ("existence", "attribute", "relation")
SUFFIX = "\nAnswer the question using a single word or phrase."
CATEGORY = {"discriminative-hallucination": "existence",  # the rest (discriminative-relation, relation): relation
            "discriminative-attribute-state": "attribute-state",
            "discriminative-attribute-number": "attribute-number",
            "discriminative-attribute-action": "attribute-action"}
CANDIDATES = {"annotations": ["annotations.json", "data/annotations.json"],
              "queries": ["query_discriminative.json", "query/query_discriminative.json",
                          "data/query/query_discriminative.json"]}
GROUPS = {"existence": ("existence",), "attribute": ("attribute-state", "attribute-number", "attribute-action"),
          "attribute-state": ("attribute-state",), "attribute-number": ("attribute-number",),
          "attribute-action": ("attribute-action",), "relation": ("relation",)}


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "amber", "annotations.json and query_discriminative.json (the repo's data/)")
    paths = require("amber", root, {k: find_file(root, c) for k, c in CANDIDATES.items()}, CANDIDATES)
    truth = {a["id"]: a for a in read_json(paths["annotations"])}
    images = media_root(root, cfg.data.media_dir, "image")
    wanted = selected(cfg.data.splits, SPLITS)
    items = []
    for q in read_json(paths["queries"]):
        if q["id"] not in truth:
            raise BenchmarkFilesMissing(f"amber: query id {q['id']} has no row in {paths['annotations']}")
        category = CATEGORY.get(truth[q["id"]]["type"], "relation")
        if category.split("-")[0] in wanted:
            items.append(Item(id=str(q["id"]), prompt=with_suffix(q["query"], cfg.prompt.suffix, SUFFIX),
                              target=truth[q["id"]]["truth"], category=category, media=str(images / q["image"]),
                              media_kind="image"))
    return Loaded(take(items, cfg.data.limit))


def normalise(response: str, mode: str) -> str:
    if mode == "first_word":
        words = response.strip().split()
        word = re.sub(r"[^a-z]", "", words[0].lower()) if words else ""
        return {"yes": "Yes", "no": "No"}.get(word, response)
    return response


def judge(item: Item, prediction: str, score) -> Judgement:
    response = normalise(prediction, score.mode)
    parsed = response if response in ("Yes", "No") else None
    return Judgement(parsed, (item.target, response) in (("yes", "Yes"), ("no", "No")), unparsable=parsed is None)


def counts(rows: list[dict]) -> dict:
    """The script's six counters for a set of rows (numerators; denominators before the 0.001)."""
    return {
        "correct_score": sum(r["correct"] for r in rows), "correct_num": len(rows),
        "no_score": sum(r["target"] == "no" and r["parsed"] == "No" for r in rows),
        "no_num": sum(r["target"] == "no" for r in rows),
        "ans_no_score": sum(r["parsed"] == "No" and r["target"] == "no" for r in rows),
        "ans_no_num": sum(r["parsed"] == "No" for r in rows),
    }


def scores(parts: list[dict], f1_eps: float = 0.0001) -> dict:
    """Accuracy / precision / recall / F1 (percent, one decimal) from one or more counter sets,
    each contributing its own 0.001 to every denominator."""
    total = {k: sum(p[k] for p in parts) for k in parts[0]}
    base = 0.001 * len(parts)
    acc = round(total["correct_score"] / (total["correct_num"] + base) * 100, 1)
    precision = round(total["ans_no_score"] / (total["ans_no_num"] + base) * 100, 1)
    recall = round(total["no_score"] / (total["no_num"] + base) * 100, 1)
    f1 = round(2 * (precision / 100) * (recall / 100) / ((precision / 100) + (recall / 100) + f1_eps) * 100, 1)
    return {"accuracy": acc, "precision": precision, "recall": recall, "f1": f1, "n": total["correct_num"]}


def aggregate(rows: list[dict], score) -> dict:
    per_category = {c: counts([r for r in rows if r["category"] == c])
                    for c in ("existence", "attribute-state", "attribute-number", "attribute-action", "relation")}
    present = {c for c in per_category if per_category[c]["correct_num"]}
    cats = {
        group: scores([per_category[c] for c in members], 0.001 if group == "existence" else 0.0001)
        for group, members in GROUPS.items() if present & set(members)
    }
    return {"metrics": scores([counts(rows)]), "categories": cats}


BENCHMARK = Benchmark("amber", load, judge, aggregate, modes=("official", "first_word"), splits=SPLITS,
                      headline=("accuracy", "precision", "recall", "f1"))
