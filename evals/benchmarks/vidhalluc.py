"""VidHalluc (Li et al., CVPR 2025): temporal hallucination on pairs of similar clips: action
(binary QA, multiple choice), temporal sequence and scene transition.

Scored as the official scripts do (Vid-Halluc/VidHalluc @ 936fb3c, `eval/evaluation/`), with
the prompts of `eval/inference/video_hallu_<task>.py`:
- `bqa` (eval_bqa.py): {index: [{q, a: {clip: "Yes"|"No"}}]}; every clip is asked
  "<q> Only answer with a single word 'Yes' or 'No'."; the answer is read as
  strip().split('.')[0].split(',')[0].strip().upper(), and a question counts as right only when
  every clip's answer equals its truth. Accuracy = right questions / questions.
- `mcq` (eval_mcq.py): {index: {clip: {Question, Choices: {A: ..}, Correct Answer}}}; prompt
  "<Question> Please select the correct answer (one or more options), only return your
  answer(s). (e.g., ABCD)\\nChoices:\\nA. ..\\n"; the set of stand-alone capitals A-D in the answer
  (case-sensitive), or else the first choice whose text occurs in the lower-cased answer, must
  equal the set of letters of the correct answer. Accuracy per clip.
- `tsh` (eval_tsh.py): {index: {video, Question, Correct Answer}}; prompt "<Question>Sort these
  two actions ..." (no space between them, as the script builds it); the answer is mapped to
  "AB" / "BA" / "A" / "B" / "None" by `model_answer_to_correct_answer` (ported below with its
  regular expressions) and must equal the correct answer.
- `sth` (eval_sth.py): {video_id: {"Scene change": "Yes"|"No", "Locations": "from X to Y."}};
  the answer is split into a yes/no and locations as `main` does. Score = 0.6 * ((MCC + 1) / 2)^2
  + 0.4 * description score, where each clip answered yes with truth yes adds up to 2: per
  "from"/"to" scene, the SimCSE cosine s of model and truth scenes scores 0 at s <= 0.5 (main's
  threshold), else (sigmoid(s) - sigmoid(0.5)) / (sigmoid(1) - sigmoid(0.5)). The embedder is
  `score.embedding_model` (the official one is princeton-nlp/sup-simcse-roberta-large, from a
  local folder); without it STH reports MCC and the classification score only, and an
  `official: true` run refuses to start.
Files looked for in `root/` and `root/data/`: `ach_binaryqa.json`, `ach_mcq.json`, `tsh.json`,
`sth.json` (set `data.options.files: {bqa: ..., ...}` for other names); videos
`root/videos/<clip>.mp4` (`data.media_dir`). Assumed, not verified: the file names and folder
layout of the data release (the repository has only the code); the formats are the ones the
official scripts read.
"""

from __future__ import annotations

import math
import re

from mmalign.config import ConfigError

from .base import (Benchmark, Item, Judgement, Loaded, find_file, load_subsets, media_root, ratio, read_json,
                   resolve_root, selected, take)
from .judges import cosine

TASKS = ("bqa", "mcq", "tsh", "sth")
FILES = {"bqa": "ach_binaryqa.json", "mcq": "ach_mcq.json", "tsh": "tsh.json", "sth": "sth.json"}
BQA_SUFFIX = " Only answer with a single word 'Yes' or 'No'."
MCQ_SUFFIX = " Please select the correct answer (one or more options), only return your answer(s). (e.g., ABCD)"
TSH_SUFFIX = ("Sort these two actions in the order they occur in the video, and return the order you detect (i.e., "
              "AB or BA). If you only detect one action of these two in the video, return that action.")
STH_PROMPT = ("Watch the given video and determine if a scene change occurs. If no change occurs, respond: 'Scene "
              "change: No, Locations: None'. If there is a scene change, respond in the format: 'Scene change: Yes, "
              "Locations: from [location1] to [location2].'")
STH_LOW = 0.5  # eval_sth.py main() passes similarity_threshold_low=0.5 (the functions default to 0.3)


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "vidhalluc", ", ".join(FILES.values()))
    names = {**FILES, **cfg.data.options.get("files", {})}
    videos = media_root(root, cfg.data.media_dir, "videos")
    tasks = selected(cfg.data.splits, TASKS)
    if cfg.official and "sth" in tasks and not cfg.score.embedding_model:
        raise ConfigError("vidhalluc: official: true scores STH descriptions with SimCSE: set score.embedding_model "
                          "to a local princeton-nlp/sup-simcse-roberta-large folder, or leave sth out of data.splits")

    def read(path, task):
        data = take(list(read_json(path).items()), cfg.data.limit)
        return [item for key, entry in data for item in READERS[task](key, entry, videos)]

    loaded = load_subsets("vidhalluc", root, tasks, lambda t: [names[t], f"data/{names[t]}"], read)
    if "sth" in tasks and not cfg.score.embedding_model:
        loaded.notes.append("sth: no score.embedding_model, so only MCC and the classification score are reported "
                            "(the official overall score also needs SimCSE description scores)")
    return loaded


def bqa_items(index, questions, videos) -> list[Item]:
    return [Item(id=f"bqa/{index}/{qi}/{clip}", prompt=q["q"] + BQA_SUFFIX, target=truth, category="bqa",
                 media=str(videos / f"{clip}.mp4"), media_kind="video", group=f"bqa/{index}/{qi}",
                 meta={"task": "bqa", "clips": len(q["a"])})
            for qi, q in enumerate(questions) for clip, truth in q["a"].items()]


def mcq_items(index, clips, videos) -> list[Item]:
    return [Item(id=f"mcq/{index}/{clip}", target=q["Correct Answer"], category="mcq",
                 prompt=q["Question"] + MCQ_SUFFIX + "\nChoices:\n" + "".join(f"{k}. {v}\n" for k, v in
                                                                             q["Choices"].items()),
                 media=str(videos / f"{clip}.mp4"), media_kind="video", meta={"task": "mcq", "choices": q["Choices"]})
            for clip, q in clips.items()]


def tsh_items(index, entry, videos) -> list[Item]:
    return [Item(id=f"tsh/{index}", prompt=entry["Question"] + TSH_SUFFIX, target=entry["Correct Answer"],
                 category="tsh", media=str(videos / f"{entry['video']}.mp4"), media_kind="video",
                 meta={"task": "tsh"})]


def sth_items(video_id, entry, videos) -> list[Item]:
    return [Item(id=f"sth/{video_id}", prompt=STH_PROMPT, category="sth", media=str(videos / f"{video_id}.mp4"),
                 media_kind="video", target={"change": entry["Scene change"], "locations": entry["Locations"]},
                 meta={"task": "sth"})]


READERS = {"bqa": bqa_items, "mcq": mcq_items, "tsh": tsh_items, "sth": sth_items}


# ---------------------------------------------------------------- the official rules

def bqa_answer(pred: str) -> str:
    return pred.strip().split(".")[0].split(",")[0].strip().upper()


def mcq_letters(pred: str, choices: dict) -> set[str]:
    letters = set(re.findall(r"\b[A-D]\b", pred))
    if letters:
        return letters
    low = pred.lower()
    return next(({k.strip().upper()} for k, v in choices.items() if v.lower() in low), set())


def _ordered(answer: str, pattern: str, reverse: bool) -> str | None:
    m = re.search(pattern, answer)
    if not m:
        return None
    first, second = m.group(1)[-1].upper(), m.group(2)[-1].upper()
    return second + first if reverse else first + second


def tsh_answer(pred: str) -> str:
    """eval_tsh.py `model_answer_to_correct_answer` (its character classes such as [^before]
    are kept as written: they exclude letters, not the word)."""
    answer = pred.lower()
    if answer in ("ab", "ba", "a", "b"):
        return answer.upper()
    if "not clear" in answer or "no clear" in answer:
        return "None"
    has_a, has_b = "action a" in answer, "action b" in answer
    if has_a and has_b:
        action = r"(action [ab]|[ab][\.\)])"
        for word, reverse in (("before", False), ("then", False), ("after", True)):
            if word in answer:
                found = _ordered(answer, rf"{action}[^{word}]+{word}[^action]*?{action}", reverse)
                if found:
                    return found
                break  # the script looks at the first of before / then / after only
        return "".join(m.group(1)[-1].upper() for m in re.finditer(action, answer))
    return "A" if has_a else "B" if has_b else "None"


def sth_parse(text: str) -> tuple[str, str]:
    """main(): 'Scene change: Yes, Locations: from X to Y.' -> ("Yes", "from X to Y.")."""
    if ", Locations: " in text:
        change, locations = text.split(", Locations: ", 1)
        return change.split(": ", 1)[-1].split(",")[0].strip(), locations.strip()
    return text.split(": ", 1)[-1].split(",")[0].strip(), ""


def judge(item: Item, prediction: str, score) -> Judgement:
    task = item.meta["task"]
    if task == "bqa":
        parsed = bqa_answer(prediction)
        return Judgement(parsed, item.target.strip().upper() == parsed, unparsable=parsed not in ("YES", "NO"))
    if task == "mcq":
        letters = mcq_letters(prediction, item.meta["choices"])
        truth = set(re.findall(r"[A-D]", item.target.strip().upper()))
        return Judgement("".join(sorted(letters)), letters == truth, unparsable=not letters)
    if task == "tsh":
        parsed = tsh_answer(prediction)
        return Judgement(parsed, parsed == item.target, unparsable=parsed == "None")
    change, locations = sth_parse(prediction)
    said_yes, truth_yes = change.lower() == "yes", item.target["change"].lower() == "yes"
    extra = {"said_yes": said_yes, "truth_yes": truth_yes, "description": None}
    if said_yes and truth_yes and score.embedding_model:
        extra["description"] = description_score(score.embedding_model, locations, item.target["locations"])
    return Judgement({"change": change, "locations": locations}, said_yes == truth_yes,
                     unparsable=change.lower() not in ("yes", "no"), extra=extra)


def scenes(description: str) -> tuple[str, str] | None:
    m = re.match(r"from (.+?) to (.+?)\.", description, re.IGNORECASE)
    return (m.group(1).strip(), m.group(2).strip()) if m else None


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def scene_score(similarity: float, low: float = STH_LOW) -> float:
    if similarity <= low:
        return 0.0
    return (sigmoid(similarity) - sigmoid(low)) / (sigmoid(1) - sigmoid(low))


def description_score(model_path: str, model_text: str, truth_text: str) -> float:
    """evaluate_description: from-scene + to-scene scores, 0 when either side lacks the pattern."""
    if not model_text or not truth_text:
        return 0.0
    ours, truth = scenes(model_text), scenes(truth_text)
    if ours is None or truth is None:
        return 0.0
    return sum(scene_score(cosine(model_path, a, b)) for a, b in zip(ours, truth))


def mcc(tp: int, fp: int, tn: int, fn: int) -> float:
    """Matthews correlation as sklearn computes it for two classes (0 when undefined)."""
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den else 0.0


def sth_metrics(rows: list[dict], with_descriptions: bool) -> dict:
    tp = sum(r["said_yes"] and r["truth_yes"] for r in rows)
    fp = sum(r["said_yes"] and not r["truth_yes"] for r in rows)
    fn = sum(not r["said_yes"] and r["truth_yes"] for r in rows)
    tn = len(rows) - tp - fp - fn
    m = mcc(tp, fp, tn, fn)
    out = {"mcc": m, "classification_score": ((m + 1) / 2) ** 2, "n": len(rows)}
    if with_descriptions:
        both_yes = [r for r in rows if r["said_yes"] and r["truth_yes"]]
        out["description_score"] = ratio(sum(r["description"] for r in both_yes), 2 * len(both_yes))
        out["score"] = 0.6 * out["classification_score"] + 0.4 * out["description_score"]
    return out


def accuracy(rows: list[dict]) -> dict:
    return {"accuracy": ratio(sum(r["correct"] for r in rows), len(rows)), "n": len(rows)}


def aggregate(rows: list[dict], score) -> dict:
    cats = {}
    for task in TASKS:
        own = [r for r in rows if r["meta"]["task"] == task]
        if not own:
            continue
        if task == "bqa":  # a question is right only when all of its clips are; incomplete questions are left out
            groups: dict[str, list[dict]] = {}
            for r in own:
                groups.setdefault(r["group"], []).append(r)
            cats[task] = accuracy([{"correct": all(r["correct"] for r in g)} for g in groups.values()
                                   if len(g) == g[0]["meta"]["clips"]])
        elif task == "sth":
            cats[task] = sth_metrics(own, bool(score.embedding_model))
        else:
            cats[task] = accuracy(own)
    metrics = {t: c.get("score", c.get("accuracy", c.get("classification_score"))) for t, c in cats.items()}
    return {"metrics": metrics, "categories": cats}


def read_predictions(data, path: str) -> dict | None:
    """The official inference outputs (video_hallu_<task>.py): recognised by their shape."""
    if not isinstance(data, dict) or not data:
        return None
    first = next(iter(data.values()))
    if isinstance(first, list):  # bqa: {index: [{q, a: {clip: answer}}]}
        return {f"bqa/{i}/{qi}/{clip}": ans for i, qs in data.items() for qi, q in enumerate(qs)
                for clip, ans in q["a"].items()}
    if isinstance(first, str):  # sth: {video_id: answer}
        return {f"sth/{k}": v for k, v in data.items()}
    if isinstance(first, dict) and "Model Answer" in first:  # tsh
        return {f"tsh/{k}": v["Model Answer"] for k, v in data.items()}
    if isinstance(first, dict) and all(isinstance(v, dict) and "Model Answer" in v for v in first.values()):  # mcq
        return {f"mcq/{i}/{clip}": v["Model Answer"] for i, clips in data.items() for clip, v in clips.items()}
    return None


BENCHMARK = Benchmark("vidhalluc", load, judge, aggregate, splits=TASKS, options=("files",),
                      headline=("bqa", "mcq", "tsh", "sth"), read_predictions=read_predictions,
                      unparsable_note="counted as wrong, as the official scripts do")
