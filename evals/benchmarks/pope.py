"""POPE (Li et al., EMNLP 2023): "Is there a <object> in the image?" on COCO val2014, in three
negative-sampling settings (random, popular, adversarial).

Files (RUCAIBox/POPE, `output/coco/`): `coco_pope_{random,popular,adversarial}.json`, one JSON
object a line: {question_id, image, text, label}. Looked for in `root/` and in
`root/output/coco/`. Images: `root/val2014/<image>` unless `data.media_dir` says otherwise.

Prompt: the question + "\\nAnswer the question using a single word or phrase." (LLaVA-1.5's
POPE prompt; POPE itself ships no prompt). Change it with `prompt.suffix`.

Parsing, mode `official` (POPE `evaluate.py`, also LLaVA's `eval_pope.py`):
1. keep the text before the first "." (the whole text when there is none);
2. remove every ","; split on single spaces (case kept);
3. the answer is "no" if the words include `No`, `not` or `no`; otherwise "yes".
So "Yes." -> yes, "no, there is not" -> no, "NO" -> yes (case-sensitive), "" -> yes.
An answer with neither a no-word nor a yes-word is listed as unparsable, but the official rule
reads it as "yes" and so do we (it is not forced wrong).
Metrics per setting, positive class = "yes": accuracy, precision, recall, F1, yes-ratio =
predicted yes / N. Headline (LLaVA's report): mean F1 and mean accuracy over the settings run.
Where a denominator is 0 the official script crashes; we report 0.0.

`--predictions` also reads POPE's own answer file (RUCAIBox/POPE @ 3df3ba1, README "Evaluation",
`answer/example.json`): one {"question", "answer"} object a line (or a JSON list of them), in
the order of one split's label file. `evaluate.py` pairs answer i with label i (zip) and never
looks at the question, so a file in another order, or made on another split, scores against
the wrong labels without a word. Here the split is the one whose questions the file follows,
line by line (else the one its name holds, as in `coco_pope_random_answers.json`, else the only
one selected), and the first line that leaves that order is refused by number.

And LLaVA-1.5's answers (haotian-liu/LLaVA @ c121f04, `llava/eval/model_vqa_loader.py` writes
{question_id, prompt, text, ...} lines for the questions of its `llava_pope_test.jsonl`, which
has {question_id, image, text, category}), given that question file as
`data.options.question_file`: `eval_pope.py` takes a category's answers in file order and zips
them with that split's labels, so the i-th question of category s is item i of split s. Each
is checked on its image and question (the first line of its text), which tells a question
file of another POPE version (LLaVA-1.5's lines up with commit e3e3926) at its first line.

Mode `lmms_eval` (lmms-eval `tasks/pope/utils.py`): the answer lower-cased and stripped must
equal "yes" or "no" exactly ("Yes." matches neither and is unparsable -> wrong); precision /
recall count only exact "yes" / "no" predictions; its yes-ratio is the share of *ground-truth*
yes labels (that is what lmms-eval computes), kept as is.
"""

from __future__ import annotations

from pathlib import Path

from mmalign.config import ConfigError

from .base import (Benchmark, BenchmarkFilesMissing, Item, Judgement, Loaded, binary_metrics, by_category, check_rows,
                   load_subsets, mean, media_root, ratio, read_json_lines, resolve_root, selected, take, with_suffix)

SPLITS = ("random", "popular", "adversarial")
SUFFIX = "\nAnswer the question using a single word or phrase."
NO_WORDS = ("No", "not", "no")


def files(split: str) -> list[str]:
    return [f"coco_pope_{split}.json", f"output/coco/coco_pope_{split}.json"]


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "pope", "coco_pope_{random,popular,adversarial}.json")
    images = media_root(root, cfg.data.media_dir, "val2014")

    def read(path, split):
        return [Item(id=f"{split}-{q['question_id']}", prompt=with_suffix(q["text"], cfg.prompt.suffix, SUFFIX),
                     target=q["label"], category=split, media=str(images / q["image"]), media_kind="image",
                     meta={"question": q["text"]})
                for q in take(read_json_lines(path), cfg.data.limit)]

    loaded = load_subsets("pope", root, selected(cfg.data.splits, SPLITS), files, read)
    if cfg.data.options.get("question_file"):
        number_as_llava(loaded.items, Path(cfg.data.options["question_file"]))
    return loaded


def number_as_llava(items: list[Item], question_file: Path) -> None:
    """Give each item the question_id LLaVA's question file gives it (meta.llava_question_id)."""
    if not question_file.is_file():
        raise BenchmarkFilesMissing(f"data.options.question_file: {question_file} is not a file "
                                    "(LLaVA's llava_pope_test.jsonl)")
    questions = by_category(read_json_lines(question_file))
    for split, split_items in by_split(items).items():
        for n, (it, q) in enumerate(zip(split_items, questions.get(split, [])), start=1):
            question = q["text"].split("\n")[0]  # LLaVA's text is the question, a newline, its answer format
            if Path(q["image"]).name != Path(it.media).name or not same_question(question, it.meta["question"]):
                raise BenchmarkFilesMissing(
                    f"{q.source}: {q['image']} {question!r} is not question {n} of POPE's {split} split "
                    f"({Path(it.media).name} {it.meta['question']!r}): the question file is of another POPE "
                    "version than data.root's label files (LLaVA-1.5's is of commit e3e3926)")
            it.meta["llava_question_id"] = q["question_id"]


def official_words(text: str) -> list[str]:
    if text.find(".") != -1:
        text = text.split(".")[0]
    return text.replace(",", "").split(" ")


def parse_official(text: str) -> str:
    words = official_words(text)
    return "no" if any(w in words for w in NO_WORDS) else "yes"


def judge(item: Item, prediction: str, score) -> Judgement:
    if score.mode == "lmms_eval":
        pred = prediction.lower().strip()
        ok = pred in ("yes", "no")
        return Judgement(pred if ok else None, ok and pred == item.target, unparsable=not ok)
    parsed = parse_official(prediction)
    words = official_words(prediction)
    defaulted = parsed == "yes" and not any(w.lower() == "yes" for w in words)
    return Judgement(parsed, parsed == item.target, unparsable=defaulted)


def confusion(rows: list[dict]) -> dict:
    """TP/FP/TN/FN with "yes" positive; rows whose parsed answer is neither are left out (lmms-eval)."""
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for r in rows:
        pred, label = r["parsed"], r["target"]
        if pred == "yes":
            counts["tp" if label == "yes" else "fp"] += 1
        elif pred == "no":
            counts["tn" if label == "no" else "fn"] += 1
    return counts


def split_metrics(rows: list[dict], mode: str) -> dict:
    c = confusion(rows)
    out = binary_metrics(c["tp"], c["fp"], c["tn"], c["fn"])
    if mode == "lmms_eval":
        out["accuracy"] = ratio(sum(r["correct"] for r in rows), len(rows))
        out["yes_ratio"] = ratio(sum(r["target"] == "yes" for r in rows), len(rows))
    else:
        out["yes_ratio"] = ratio(c["tp"] + c["fp"], len(rows))
    out["n"] = len(rows)
    return out


def aggregate(rows: list[dict], score) -> dict:
    cats = {split: split_metrics(r, score.mode) for split, r in by_category(rows).items()}
    return {"metrics": {"f1": mean([m["f1"] for m in cats.values()]),
                        "accuracy": mean([m["accuracy"] for m in cats.values()]),
                        "yes_ratio": mean([m["yes_ratio"] for m in cats.values()])},
            "categories": cats}


def read_answer_rows(rows: list[tuple[str, object]], path: str, items: list[Item]) -> list[tuple] | None:
    """(item id, answer, where) of POPE's own answer file or of LLaVA's, from (where, parsed
    object) rows; None when the rows are of neither shape. Answers past the loaded questions
    (a `data.limit`) come back under ids of their own, counted as extra, never scored."""
    first = rows[0][1] if rows else None
    if isinstance(first, dict) and "question_id" in first and "text" in first and "id" not in first:
        return llava_answers(rows, path, items)
    if not (isinstance(first, dict) and "answer" in first and "id" not in first):
        return None
    check_rows(rows, path, lambda r: isinstance(r, dict) and "answer" in r,
               'a POPE answer like {"question": "...", "answer": "..."}')
    splits = by_split(items)
    named = [s for s in splits if s in Path(path).name]
    candidates = list(splits)
    asked = [r.get("question") for _, r in rows]
    if all(isinstance(q, str) for q in asked):
        departs = {s: first_departure(asked, splits[s]) for s in candidates}
        if all(n is not None for n in departs.values()):
            split = named[0] if len(named) == 1 else max(candidates, key=lambda s: departs[s])
            n = departs[split]
            raise ConfigError(f"{path}{rows[n][0]}: question {asked[n]!r} is not question {n + 1} of POPE's {split} "
                              f"split ({splits[split][n].meta['question']!r}): POPE's answers must follow its "
                              "label file's order, one split a file")
        candidates = [s for s in candidates if departs[s] is None]
    if len(candidates) > 1 and len(set(candidates) & set(named)) == 1:
        candidates = [s for s in candidates if s in named]
    if len(candidates) != 1:
        raise ConfigError(f"{path}: POPE answers follow one split's label file, and this one fits "
                          f"{', '.join(candidates)}: name the split with data.splits=[<split>], or in the "
                          "file's name (coco_pope_<split>_answers.json)")
    (split,) = candidates
    ids = [it.id for it in splits[split]] + [f"{split}-line{i + 1}" for i in range(len(splits[split]), len(rows))]
    return [(item_id, r["answer"], where) for item_id, (where, r) in zip(ids, rows)]


def llava_answers(rows: list[tuple[str, object]], path: str, items: list[Item]) -> list[tuple]:
    by_llava_id = {it.meta["llava_question_id"]: it.id for it in items if "llava_question_id" in it.meta}
    if not by_llava_id:
        raise ConfigError(f"{path}{rows[0][0]}: a LLaVA answer ({{question_id, text}}): its question_ids are those of "
                          "LLaVA's llava_pope_test.jsonl; name that file with data.options.question_file=<path>")
    check_rows(rows, path, lambda r: isinstance(r, dict) and "question_id" in r and "text" in r,
               'a LLaVA answer like {"question_id": ..., "text": "..."}')
    return [(by_llava_id.get(r["question_id"], f"llava-{r['question_id']}"), r["text"], where) for where, r in rows]


def by_split(items: list[Item]) -> dict[str, list[Item]]:
    return by_category(items, lambda it: it.category)


def same_question(a: str, b: str) -> bool:
    """Compared lower-cased, spaces collapsed: POPE's README example writes its questions so."""
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def first_departure(asked: list[str], items: list[Item]) -> int | None:
    """The index of the first question that is not the split's question at that place, None if none is."""
    return next((i for i, (q, it) in enumerate(zip(asked, items)) if not same_question(q, it.meta["question"])), None)


BENCHMARK = Benchmark("pope", load, judge, aggregate, modes=("official", "lmms_eval"), splits=SPLITS,
                      options=("question_file",),
                      headline=("f1", "accuracy", "yes_ratio"), read_answer_rows=read_answer_rows,
                      unparsable_note={"official": "no yes/no word; the official rule reads these as 'yes'",
                                       "lmms_eval": "not exactly yes/no; counted as wrong, as lmms-eval does"})
