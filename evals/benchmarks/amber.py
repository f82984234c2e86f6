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
Generative task (split `generative`, asked only when listed in data.splits): the queries of
`query/query_generative.json` ("Describe this image.") as written, each response scored as
inference.py does: its nouns (NLTK word_tokenize + pos_tag NN*, WordNet-lemmatized) that are in
the association vocabulary of `relation.json`; each noun not in `safe_words.txt` either covers
a truth object (equal to it or to one of its associated words, else spaCy en_core_web_lg
similarity > 0.8 to one) or is a hallucinated object; equal or similar to a `hallu` object
(or its associations) it also counts towards Cog. Metrics (x100, one decimal, every
denominator from 0.001): CHAIR = hallucinated nouns / nouns, Cover = truth objects covered /
truth objects, Hal = 100 - responses without a hallucinated noun / responses, Cog = hallu
objects named / hallu objects. score.backend=official runs NLTK + spaCy as the script does
(`official: true` refuses anything else); `simple` (no downloads) takes every lower-cased word,
singularized, as a candidate noun and only exact matches as similar: an approximation, said in
the report.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from mmalign.config import ConfigError

from .base import (Benchmark, BenchmarkFilesMissing, Item, Judgement, Loaded, find_file, media_root, read_json,
                   require, resolve_root, selected, take, with_suffix)

SPLITS = ("existence", "attribute", "relation")  # the default: the discriminative task
ALL_SPLITS = SPLITS + ("generative",)
SUFFIX = "\nAnswer the question using a single word or phrase."
CATEGORY = {"discriminative-hallucination": "existence",  # the rest (discriminative-relation, relation): relation
            "discriminative-attribute-state": "attribute-state",
            "discriminative-attribute-number": "attribute-number",
            "discriminative-attribute-action": "attribute-action"}
GENERATIVE = {"queries": ["query_generative.json", "query/query_generative.json", "data/query/query_generative.json"],
              "relation": ["relation.json", "data/relation.json"],
              "safe_words": ["safe_words.txt", "data/safe_words.txt"]}
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
    items = generative_items(cfg, root, truth, images) if "generative" in wanted else []
    for q in read_json(paths["queries"]) if set(wanted) - {"generative"} else []:
        if q["id"] not in truth:
            raise BenchmarkFilesMissing(f"amber: query id {q['id']} has no row in {paths['annotations']}")
        category = CATEGORY.get(truth[q["id"]]["type"], "relation")
        if category.split("-")[0] in wanted:
            items.append(Item(id=str(q["id"]), prompt=with_suffix(q["query"], cfg.prompt.suffix, SUFFIX),
                              target=truth[q["id"]]["truth"], category=category, media=str(images / q["image"]),
                              media_kind="image"))
    notes = ["generative: score.backend=simple approximates NLTK's noun tagging and spaCy's similarity "
             "(exact matches only)"] if "generative" in wanted and cfg.score.backend != "official" else []
    return Loaded(take(items, cfg.data.limit), notes=notes)


def generative_items(cfg, root: Path, truth: dict, images: Path) -> list[Item]:
    if cfg.official and cfg.score.backend != "official":
        raise ConfigError("official: true: AMBER's generative task must score with score.backend=official "
                          "(NLTK + spaCy en_core_web_lg)")
    backend(cfg.score.backend)  # a missing NLTK / spaCy model stops the run here, before any answer is generated
    paths = require("amber", root, {k: find_file(root, c) for k, c in GENERATIVE.items()}, GENERATIVE)
    meta = {"relation": str(paths["relation"]), "safe_words": str(paths["safe_words"])}
    return [Item(id=str(q["id"]), prompt=q["query"] if cfg.prompt.suffix is None else q["query"] + cfg.prompt.suffix,
                 target={"truth": list(truth[q["id"]]["truth"]), "hallu": list(truth[q["id"]]["hallu"])},
                 category="generative", media=str(images / q["image"]), media_kind="image", meta=meta)
            for q in read_json(paths["queries"])]


# ---------------------------------------------------------------- generative: text backends

class BackendUnavailable(ConfigError):
    """AMBER's official text backend (NLTK data, spaCy en_core_web_lg) is not installed."""


@lru_cache(maxsize=2)
def backend(name: str):
    """(nouns(text) -> list[str], similar(a, b) -> float) for score.backend."""
    if name == "simple":
        from .chair import simple_singularize

        return (lambda text: [simple_singularize(w) for w in re.findall(r"[a-z]+", text.lower())],
                lambda a, b: float(a == b))
    try:
        import nltk
        import spacy
        from nltk.stem import WordNetLemmatizer

        nlp = spacy.load("en_core_web_lg")
        lemmatizer = WordNetLemmatizer()
        nltk.pos_tag(nltk.word_tokenize("a test"))
        lemmatizer.lemmatize("tests")
    except (ImportError, OSError, LookupError) as e:
        raise BackendUnavailable(f"amber: score.backend=official needs NLTK (punkt, averaged_perceptron_tagger, "
                                 f"wordnet data) and spaCy with en_core_web_lg ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:120]})") from None

    def nouns(text):
        return [lemmatizer.lemmatize(w) for w, pos in nltk.pos_tag(nltk.word_tokenize(text)) if pos.startswith("NN")]

    return nouns, lambda a, b: nlp(a).similarity(nlp(b))


@lru_cache(maxsize=2)
def vocabulary(relation: str, safe_words: str):
    association = read_json(Path(relation))
    words = {w for k, vs in association.items() for w in (k, *vs)}
    safe = Path(safe_words).read_text(encoding="utf-8").split("\n")
    return association, words, set(safe)


def objects(names: list[str], association: dict) -> tuple[list[str], list[int]]:
    """inference.py's word list for truth (or hallu) objects: every object's associated words,
    then the objects themselves; `owner` maps an associated word to its object's slot."""
    words, owner = [], []
    for i, name in enumerate(names):
        words += association[name]
        owner += [i] * len(association[name])
    return words + names, owner


def mark(flags: list[int], owner: list[int], j: int) -> None:
    """Word j covers its object: an associated word marks its owner's slot, an object itself."""
    flags[owner[j] if j < len(owner) else j - len(owner)] = 1


def generative_counts(response: str, target: dict, meta: dict, backend_name: str, threshold: float = 0.8) -> dict:
    association, vocab, safe = vocabulary(meta["relation"], meta["safe_words"])
    nouns_of, similarity = backend(backend_name)
    nouns = [n for n in nouns_of(response) if n in vocab]
    truth_words, truth_owner = objects(target["truth"], association)
    hallu_words, hallu_owner = objects(target["hallu"], association)
    covered, named = [0] * len(target["truth"]), [0] * len(target["hallu"])
    hallucinated = 0
    for noun in nouns:
        if noun in safe:
            continue
        if noun in truth_words:
            mark(covered, truth_owner, truth_words.index(noun))
            continue
        if noun in hallu_words:
            mark(named, hallu_owner, hallu_words.index(noun))
        j = next((j for j, w in enumerate(hallu_words) if similarity(noun, w) > threshold), None)
        if j is not None:
            mark(named, hallu_owner, j)
        j = next((j for j, w in enumerate(truth_words) if similarity(noun, w) > threshold), None)
        if j is not None:
            mark(covered, truth_owner, j)
            continue
        hallucinated += 1
    return {"chair_score": hallucinated, "chair_num": len(nouns), "cover_score": sum(covered),
            "cover_num": len(covered), "cog_score": sum(named), "cog_num": len(named), "clean": hallucinated == 0}


def generative_scores(rows: list[dict]) -> dict:
    total = {k: sum(r["counts"][k] for r in rows) for k in rows[0]["counts"]}
    return {"chair": round(total["chair_score"] / (total["chair_num"] + 0.001) * 100, 1),
            "cover": round(total["cover_score"] / (total["cover_num"] + 0.001) * 100, 1),
            "hal": round(100 - total["clean"] / (len(rows) + 0.001) * 100, 1),
            "cog": round(total["cog_score"] / (total["cog_num"] + 0.001) * 100, 1), "n": len(rows)}


def normalise(response: str, mode: str) -> str:
    if mode == "first_word":
        words = response.strip().split()
        word = re.sub(r"[^a-z]", "", words[0].lower()) if words else ""
        return {"yes": "Yes", "no": "No"}.get(word, response)
    return response


def judge(item: Item, prediction: str, score) -> Judgement:
    if item.category == "generative":
        counts = generative_counts(prediction, item.target, item.meta, score.backend)
        return Judgement(None, counts["clean"], extra={"counts": counts})
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
    generative = [r for r in rows if r["category"] == "generative"]
    rows = [r for r in rows if r["category"] != "generative"]
    out = discriminative(rows) if rows else {"metrics": {}, "categories": {}}
    if generative:
        out["categories"]["generative"] = generative_scores(generative)
        out["metrics"].update({k: v for k, v in out["categories"]["generative"].items() if k != "n"})
    return out


def discriminative(rows: list[dict]) -> dict:
    per_category = {c: counts([r for r in rows if r["category"] == c])
                    for c in ("existence", "attribute-state", "attribute-number", "attribute-action", "relation")}
    present = {c for c in per_category if per_category[c]["correct_num"]}
    cats = {
        group: scores([per_category[c] for c in members], 0.001 if group == "existence" else 0.0001)
        for group, members in GROUPS.items() if present & set(members)
    }
    return {"metrics": scores([counts(rows)]), "categories": cats}


BENCHMARK = Benchmark("amber", load, judge, aggregate, modes=("official", "first_word"), splits=ALL_SPLITS,
                      headline=("accuracy", "precision", "recall", "f1", "chair", "cover", "hal", "cog"))
