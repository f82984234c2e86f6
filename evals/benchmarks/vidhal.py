"""VidHal (Choong et al., 2024): each video comes with three captions of rising hallucination
(rank "1" right, "2" and "3" increasingly wrong), across five aspects (action, attribute,
object, order, direction).

Files (Lookuz/VidHal @ e394ae3, `vidhal/`): `annotations.json` = [{video, captions: {"1", "2",
"3"}, aspect, subaspect, dataset}] and `options.json` = {video: {"A": rank, "B": rank, "C":
rank}}, the published display order of the options (required: without it the official code
shuffles unseeded). Looked for in `root/` and `root/vidhal/`; videos `<that folder>/videos/<video>.mp4`.

`data.options.task` picks the task (prompts from mmalign.pipelines/inference/base.py, formatted as
its Qwen2.5-VL pipeline does: the instruction as system message, the user turn
"<main prompt>\\n\\n<A. caption\\nB. caption\\nC. caption>"):
- `mcqa` (default): choose the caption that describes the video. Parsing
  (`VidHalMCQAInferencePipeline.process_response`): the first stand-alone letter a-c / A-C,
  upper-cased; with none, the raw response is kept. Right (pipelines/evaluation.py) when that
  equals the right option letter, or when the right caption, lower-cased and stripped of
  ".", occurs in it (case-sensitive, as the official code). Unparsable = no letter and not right.
  Quirk kept: a stand-alone article "a" reads as option A.
- `naive_ordering`: rank the three captions; the response is parsed by a port of
  `VidHalNaiveOrderingInferencePipeline.process_response` (letters, then "X." / "X," forms,
  then per line / sentence) and scored by `VidHalCaptionOrderingEvaluationPipeline`: NDCG with
  relevance 4 - rank, normalised between the reversed order (0) and the right one (1); an
  order that is not three distinct options scores 0 (and is listed as unparsable).
`--predictions` reads the official inference output, {video: response}: for `mcqa` the
letter its process_response kept, for `naive_ordering` the list of letters it parsed, which
pipelines/evaluation.py scores as it is (a list is not parsed again; before, it was read as an
empty answer and every video scored 0).
Metrics: mean per aspect and "overall" over all videos. `relative_ordering` (an adaptive
series of pairwise questions) is not implemented.
"""

from __future__ import annotations

import math
import re
import string

from mmalign.config import ConfigError

from .base import (Benchmark, Item, Judgement, Loaded, by_category, find_file, media_root, ratio, read_json, require,
                   resolve_root, take, with_suffix)

TASKS = ("mcqa", "naive_ordering")
MCQA_SYSTEM = ("You are provided with a video and a set of several captions. "
               "Your task is to watch the video provided carefully, and select the caption that best describes "
               "the video. Provide your answer only as a single letter representing the option whose caption that "
               "best describes the video, without any explanation.")
MCQA_MAIN = "Watch the video provided, and choose the option whose caption describes the video most accurately."
ORDER_SYSTEM = ("You are provided with a video and a set of several captions. "
                "Your task is to order the captions in order of most to least relevant based on their alignment with "
                "the contents of the video. Provide your answer without any further explanation.")
ORDER_MAIN = ("Watch the video provided, and rank the captions below in order from the most accurate to the least "
              "accurate in describing the video. Provide your response only as a sequence of comma separated option "
              "letters matching the corresponding captions. Do not give any additional explanation for your answer.")
ORDER_HINT = ("For example, if option B contains the caption that best describes the video, option A contains the "
              "caption that describes the video second best and option C contains the caption that describes the "
              "video least accurately, provide your response as: B, A, C.")
CANDIDATES = {"annotations": ["annotations.json", "vidhal/annotations.json"],
              "options": ["options.json", "vidhal/options.json"]}


def task_of(cfg) -> str:
    task = cfg.data.options.get("task", "mcqa")
    if task not in TASKS:
        raise ConfigError(f"data.options.task: {task!r} is not one of {list(TASKS)}")
    return task


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "vidhal", "annotations.json and options.json (the repo's vidhal/ folder)")
    found = require("vidhal", root, {k: find_file(root, c) for k, c in CANDIDATES.items()}, CANDIDATES)
    task = task_of(cfg)
    orders = read_json(found["options"])
    videos = media_root(found["annotations"].parent, cfg.data.media_dir, "videos")
    items = []
    for ex in take(read_json(found["annotations"]), cfg.data.limit):
        option_to_rank = orders[ex["video"]]
        items.append(Item(
            id=ex["video"], prompt=with_suffix(prompt(task, ex["captions"], option_to_rank), cfg.prompt.suffix, ""),
            target={"option_to_rank": option_to_rank, "caption": ex["captions"]["1"], "task": task},
            category=ex["aspect"], media=str(videos / f"{ex['video']}.mp4"), media_kind="video",
            system=MCQA_SYSTEM if task == "mcqa" else ORDER_SYSTEM, meta={"subaspect": ex.get("subaspect")}))
    return Loaded(items)


def prompt(task: str, captions: dict, option_to_rank: dict) -> str:
    options = "\n".join(f"{option}. {captions[rank]}" for option, rank in option_to_rank.items())
    main = MCQA_MAIN if task == "mcqa" else f"{ORDER_MAIN}\n{ORDER_HINT}"
    return f"{main}\n\n{options}"


# ---------------------------------------------------------------- mcqa

def parse_option(response: str, n: int = 3) -> str:
    last = string.ascii_uppercase[n - 1]
    match = re.search(fr"\b[a-{last.lower()}A-{last}]\b", response)
    return match.group(0).upper().strip(";:., ") if match else response


def judge_mcqa(target: dict, response: str) -> Judgement:
    parsed = parse_option(response, len(target["option_to_rank"]))
    answer = {rank: option for option, rank in target["option_to_rank"].items()}["1"]
    correct = parsed == answer or target["caption"].lower().strip(".") in parsed
    is_letter = parsed in tuple(string.ascii_uppercase[:len(target["option_to_rank"])])
    return Judgement(parsed, bool(correct), unparsable=not is_letter and not correct)


# ---------------------------------------------------------------- naive ordering

def _condense(seq: list[str]) -> list[str]:
    """Drop consecutive repeats (a model naming an option again while explaining it)."""
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def _letters(pattern: str, text: str, valid: list[str]) -> list[str]:
    return [x for x in _condense([m.upper().strip(";:., ") for m in re.findall(pattern, text)]) if x in valid]


def parse_order(response: str, n: int = 3) -> list[str]:
    """Port of VidHalNaiveOrderingInferencePipeline.process_response (same branches, same order)."""
    valid = list(string.ascii_uppercase[:n])
    response = re.sub(r"(?<=[A-Z])(?=[A-Z])", ", ", response)
    initial = _letters(r"\b[A-Z]\b", response, valid)
    if len(initial) == n:
        return initial
    matches = _letters(r"\b[A-Z][:\.,]", response, valid)
    if matches and len(matches) <= n:
        return matches
    if len(matches) > n:
        matches = _order_from_parts(response, n, valid)
    if len(matches) <= n and len(initial) > len(matches):
        return initial
    return matches


def _order_from_parts(response: str, n: int, valid: list[str]) -> list[str]:
    """The longest distinct ordering found in a line (2..n letters) or a sentence (>1 letter).
    Ties: the official code takes the first of a `set` (order varies with PYTHONHASHSEED); we
    take the alphabetically first, so a rerun scores the same."""
    single = r"(?<![a-zA-Z'])[A-Z]\b"
    found = [m for m in (re.findall(single, line) for line in response.split("\n")) if 1 < len(m) <= n]
    found += [m for m in (re.findall(single, s) for s in response.split(".")) if len(m) > 1]
    found = [[x for x in m if x in valid] for m in found]
    candidates = sorted(set(tuple(m) for m in found), key=lambda m: (-len(m), m))
    return list(candidates[0]) if candidates else []


def dcg(ranks: list, n: int) -> float:
    return sum((n + 1 - int(r)) / math.log2(i + 2) for i, r in enumerate(ranks))


def full_order(order: list[str], option_to_rank: dict) -> bool:
    """Every option once (a letter that is no option, which the official code meets with a
    KeyError, is not a full order either)."""
    return len(order) == len(option_to_rank) and set(order) == set(option_to_rank)


def ndcg(order: list[str], option_to_rank: dict) -> float:
    """0 for the reversed order, 1 for the right one; partial or repeated orders score 0.
    (The official r-normalisation table is only ever read at full length, i.e. the reversed order.)"""
    n = len(option_to_rank)
    if not full_order(order, option_to_rank):
        return 0.0
    best, worst = dcg(list(range(1, n + 1)), n), dcg(list(range(n, 0, -1)), n)
    return (dcg([option_to_rank[x] for x in order], n) - worst) / (best - worst)


def judge_order(target: dict, response: str | list) -> Judgement:
    n = len(target["option_to_rank"])
    order = [str(x) for x in response] if isinstance(response, list) else parse_order(response, n)
    score = ndcg(order, target["option_to_rank"])
    return Judgement(order, score == 1.0, unparsable=not full_order(order, target["option_to_rank"]),
                     extra={"ndcg": score})


def judge(item: Item, prediction: str | list, score) -> Judgement:
    if item.target["task"] == "mcqa":
        return judge_mcqa(item.target, prediction if isinstance(prediction, str) else "")
    return judge_order(item.target, prediction)


def category_metrics(rows: list[dict]) -> dict:
    if rows and rows[0]["target"]["task"] == "naive_ordering":
        return {"ndcg": ratio(sum(r["ndcg"] for r in rows), len(rows)), "n": len(rows)}
    return {"accuracy": ratio(sum(r["correct"] for r in rows), len(rows)), "n": len(rows)}


def aggregate(rows: list[dict], score) -> dict:
    cats = {aspect: category_metrics(r) for aspect, r in by_category(rows).items()}
    return {"metrics": category_metrics(rows), "categories": cats}


BENCHMARK = Benchmark("vidhal", load, judge, aggregate, options=("task",), headline=("accuracy", "ndcg"),
                      answer_types=(str, list))
