"""TempCompass (Liu et al., 2024): temporal perception (action, direction, speed, order,
attribute change) asked four ways about the same videos.

Files (llyx97/TempCompass @ e1b4631): `questions/{multi-choice,yes_no,caption_matching,captioning}.json`,
each {video_id: {dimension: [{question, answer}]}}, and `meta_info.json` (fine-grained
aspects, optional: without it only the five dimensions are reported). Looked for in `root/`
and `root/questions/`; videos `root/videos/<video_id>.mp4` (`data.media_dir` replaces `videos`).

Prompts (run_qwen2_vl.py, `answer_prompt`): the question, then "\\nPlease directly give the best
option:" (multi-choice, caption_matching), "\\nPlease answer yes or no:" (yes_no), nothing for
captioning (its question already ends in "Generated Caption:").

Scoring, the official `eval_<task>.py` rules, on the answer with "</s>" removed and stripped:
- multi-choice: right when it equals the answer, or is a bare letter A-D, or starts with "A." /
  "A)" (..D), and that letter is the answer's;
- yes_no: "yes" / "no" when the lower-cased answer starts with it (`extract_pred`);
- caption_matching: `eval_rule`: the answer equals a whole option line, an option sentence
  (also after a "X) " prefix), or an option index ("Caption A", "A", "Option 1", "1", with
  "." removed); right when that is the answer's line, index or sentence.
An answer no rule matches is `match_success: false`. With `--disable_llm` (our default) it
scores 0; with `score.judge_model` set it goes to that local chat model with the official
judge prompt (prompt_templates.py) and `llm_output_to_rating` reads its reply, as the script
does with gpt-3.5-turbo-1106 (so a local judge is close to, not the same as, the official run).
- captioning always needs the judge: the caption and the item's first multi-choice question go
  to `caption_evaluation_prompt`; right when the judge's "Answer:" line starts with the right
  option ("B. ...") and names exactly one option. Without `score.judge_model` the captioning
  subset is skipped and said (an `official: true` run refuses to start).
Metrics (utils/eval_utils.py, `print_result`), per task: accuracy per dimension and per
fine-grained aspect, `avg` over all its questions, and the match-success rate. We keep
fractions; the script prints round(100 * x, 1).
"""

from __future__ import annotations

from pathlib import Path

from mmalign.config import ConfigError

from .base import (Benchmark, BenchmarkFilesMissing, Item, Judgement, Loaded, find_file, load_subsets, media_root,
                   ratio, read_json, resolve_root, selected, take, with_suffix)
from .judges import chat_judge

TASKS = ("multi-choice", "yes_no", "caption_matching", "captioning")
DIMENSIONS = ("action", "direction", "speed", "order", "attribute_change")
SUFFIX = {"multi-choice": "\nPlease directly give the best option:", "yes_no": "\nPlease answer yes or no:",
          "caption_matching": "\nPlease directly give the best option:", "captioning": ""}

JUDGE_SYSTEM = "You are an AI assistant for question answering."  # utils/eval_utils.py get_llm_output
_JUDGE_HEAD = ("\nYou will receive a {kind}, the ground-truth answer and the prediction from a question answering "
               "(QA) model. Your task is to determine whether QA model prediction is correct, based on the question "
               "and ground-truth answer. If the prediction is correct, respond \"Correct\". If the prediction is "
               "incorrect, respond \"Incorrect\".\n")
# prompt_templates.py: (name of the question kind, header of the question block) per task
JUDGE_KINDS = {"multi-choice": ("multi-choice question", "Multi-Choice Question"),
               "yes_no": ("Yes/No question", "Yes/No Question"),
               "caption_matching": ("caption matching question", "Caption Matching Question")}
CAPTION_JUDGE = (
    "\nYou will receive a video description and a multi-choice question. Your task is to choose the correct answer "
    "and briefly explain the reason why you choose the answer. If none of the choice candidates are correct or the "
    "video description lacks enough information to answer the question, just answer \"None of the choices are "
    "correct\". Please organize your response in this format:\n```\nReasoning: [Your reason to obtain the answer]\n"
    "Answer: [Your answer]\n```\n\nHere are some examples of video description, multi-choice question and the "
    "expected answer:\n```\nVideo Description: A person is palying football.\nMulti-Choice Question:\nWhat is the "
    "person doing in the video?\nA. cooking\nB. palying football\nC. playing basketball\nD. reading book\n"
    "Reasoning: The video description mentions that the person is playing football.\nAnswer: B. palying football\n\n"
    "Video Description: A bird is flying clockwise.\nMulti-Choice Question:\nIn which direction is the bird flying?\n"
    "A. backwark\nB. counter-clockwise\nC. clockwise\nD. downward\nReasoning: The video description mentions that "
    "the bird is flying clockwise\nAnswer: C. clockwise\n\nVideo Description: An air balloon is inflating.\n"
    "Multi-Choice Question:\nWhat is happening to the air balloon?\nA. exploding\nB. getting smaller\nC. flying\n"
    "Reasoning: The video description mentions that the air balloon is inflating, while none of the coices can be "
    "explained as inflating.\nAnswer: None of the choices are correct\n```\n")


def files(task: str) -> list[str]:
    return [f"questions/{task}.json", f"{task}.json"]


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "tempcompass",
                        "questions/{multi-choice,yes_no,caption_matching,captioning}.json")
    videos = media_root(root, cfg.data.media_dir, "videos")
    meta_path = find_file(root, ["meta_info.json"])
    aspects = read_json(meta_path) if meta_path else {}
    tasks = selected(cfg.data.splits, TASKS)
    notes = []
    if "captioning" in tasks and not cfg.score.judge_model:
        if cfg.data.splits or cfg.official:
            raise ConfigError("tempcompass: the captioning task is scored by an LLM judge: set score.judge_model "
                              "to a local chat model folder, or leave captioning out of data.splits")
        tasks.remove("captioning")
        notes.append("captioning skipped: it is scored by an LLM judge and score.judge_model is not set")
    mc_questions = None
    if "captioning" in tasks:
        mc_path = find_file(root, files("multi-choice"))
        if mc_path is None:
            raise BenchmarkFilesMissing(f"tempcompass: captioning is judged with the multi-choice questions: "
                                        f"missing {root}/questions/multi-choice.json")
        mc_questions = read_json(mc_path)

    def read(path: Path, task: str) -> list[Item]:
        items = []
        for vid, dims in take(list(read_json(path).items()), cfg.data.limit):
            for dim, questions in dims.items():
                for k, q in enumerate(questions):
                    meta = {"task": task, "dimension": dim, "question": q["question"],
                            "aspect": aspect_of(aspects, vid, dim)}
                    if task == "captioning":
                        meta["mc_question"] = mc_questions[vid][dim][0]["question"]
                        meta["mc_answer"] = mc_questions[vid][dim][0]["answer"]
                    items.append(Item(id=f"{task}/{vid}/{dim}/{k}",
                                      prompt=with_suffix(q["question"], cfg.prompt.suffix, SUFFIX[task]),
                                      target=q["answer"], category=f"{task}/{dim}", media=str(videos / f"{vid}.mp4"),
                                      media_kind="video", meta=meta))
        return items

    loaded = load_subsets("tempcompass", root, tasks, files, read)
    loaded.notes += notes
    if cfg.score.judge_model:
        loaded.notes.append(f"LLM judge: {cfg.score.judge_model} (the official script asks gpt-3.5-turbo-1106)")
    return loaded


def aspect_of(aspects: dict, vid: str, dim: str) -> str | None:
    """print_result's fine-grained aspect: meta_info's eval_dim type, and "order" for order."""
    if dim == "order":
        return "order"
    info = aspects.get(vid.replace(".jpg", "").replace(".mp4", ""))
    return info["eval_dim"][dim]["type"] if info and info["eval_dim"].get(dim) else None


# ---------------------------------------------------------------- the official rules

def multi_choice_rule(pred: str, answer: str) -> int | None:
    if pred == answer:
        return 1
    if pred in ("A", "B", "C", "D"):
        return int(pred == answer[0])
    if any(pred.startswith(p) for p in ("A.", "B.", "C.", "D.")):
        return int(pred.split(".")[0] == answer[0])
    if any(pred.startswith(p) for p in ("A)", "B)", "C)", "D)")):
        return int(pred.split(")")[0] == answer[0])
    return None


def yes_no_rule(pred: str, answer: str) -> int | None:
    low = pred.lower()
    word = "yes" if low.startswith("yes") else "no" if low.startswith("no") else None
    return None if word is None else int(word == answer)


def caption_matching_rule(pred: str, question: str, answer: str) -> int | None:
    """eval_caption_matching.py `eval_rule`: the last option form that the answer equals wins."""
    lines = question.split("\n")[1:]
    sentences = [line.split(": ")[1] for line in lines]
    indices = [line.split(": ")[0] for line in lines]
    indices += [i.replace("Sentence ", "").replace("Option ", "").replace("Caption ", "") for i in indices]
    found = None
    for line in lines:
        if line == pred:
            found = line
    for sent in sentences:
        if sent == pred or (") " in pred and sent == pred.split(") ")[1]):
            found = sent
    for index in indices:
        if index == pred or index == pred.replace(".", ""):
            found = index
    if found is None:
        return None
    head, _, sentence = answer.partition(": ")
    return int(found in (answer, answer.split(":")[0], sentence, head.split()[1]))


def judge_rating(reply: str) -> int:
    """utils/eval_utils.py `llm_output_to_rating`; a reply with neither word is 0 (the script
    retries, then gives 0)."""
    if reply.startswith("Correct"):
        return 1
    if reply.startswith("Incorrect"):
        return 0
    return int("Correct" in reply and "Incorrect" not in reply)


def caption_rating(reply: str, mc_answer: str) -> int:
    """eval_captioning.py `parse_llm_output`: the judge's "Answer:" line must start with the
    right option and name exactly one option."""
    if not reply:
        return 0
    answer = reply
    for line in reply.split("\n"):
        if "Answer" in line:
            answer = line.strip().replace("Answer:", "").strip()
    named = sum(answer.count(p) for p in ("A.", "B.", "C.", "D."))
    return int(answer.split(". ")[0] == mc_answer.split(". ")[0] and named == 1)


def judge(item: Item, prediction: str, score) -> Judgement:
    task, pred = item.meta["task"], prediction.replace("</s>", "").strip()
    if task == "captioning":
        prompt = f"{CAPTION_JUDGE}\nVideo Description:{pred}\nMulti-Choice Question:\n{item.meta['mc_question']}\n"
        reply = chat_judge(score.judge_model, prompt, system=JUDGE_SYSTEM)
        rating = caption_rating(reply, item.meta["mc_answer"])
        return Judgement(reply, bool(rating), extra={"rating": rating, "match_success": None})
    if task == "multi-choice":
        rating = multi_choice_rule(pred, item.target)
    elif task == "yes_no":
        rating = yes_no_rule(pred, item.target)
    else:
        rating = caption_matching_rule(pred, item.meta["question"], item.target)
    if rating is not None:
        return Judgement(pred, bool(rating), extra={"rating": rating, "match_success": True})
    if not score.judge_model:  # --disable_llm
        return Judgement(None, False, unparsable=True, extra={"rating": 0, "match_success": False})
    kind, header = JUDGE_KINDS[task]
    prompt = (_JUDGE_HEAD.format(kind=kind) + f"\n{header}:\n{item.meta['question']}\nGround-Truth Answer: "
              f"{item.target}\nModel Prediction: {pred}")
    rating = judge_rating(chat_judge(score.judge_model, prompt, system=JUDGE_SYSTEM))
    return Judgement(None, bool(rating), unparsable=True, extra={"rating": rating, "match_success": False})


def task_metrics(rows: list[dict]) -> dict:
    ratings = [r["rating"] for r in rows]
    return {"accuracy": ratio(sum(ratings), len(ratings)), "n": len(rows)}


def aggregate(rows: list[dict], score) -> dict:
    metrics, categories = {}, {}
    for task in TASKS:
        own = [r for r in rows if r["meta"]["task"] == task]
        if not own:
            continue
        metrics[task] = ratio(sum(r["rating"] for r in own), len(own))
        if task != "captioning":
            metrics[f"{task}_match_rate"] = ratio(sum(bool(r["match_success"]) for r in own), len(own))
        for key in ("dimension", "aspect"):
            for value in dict.fromkeys(r["meta"][key] for r in own if r["meta"][key] is not None):
                categories[f"{task}/{value}"] = task_metrics([r for r in own if r["meta"][key] == value])
    return {"metrics": metrics, "categories": categories}


def read_predictions(data, path: str) -> dict | None:
    """The official predictions file, predictions/<model>/<task>.json: {video_id: {dimension:
    [{question, answer, prediction | response}]}}; the task is the file's name."""
    if not (isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values())
            and all(isinstance(q, list) for v in data.values() for q in v.values())):
        return None
    task = Path(path).stem
    if task not in TASKS:
        raise ConfigError(f"{path}: an official TempCompass predictions file is named after its task "
                          f"({', '.join(t + '.json' for t in TASKS)})")
    return {f"{task}/{vid}/{dim}/{k}": p.get("prediction", p.get("response"))
            for vid, dims in data.items() for dim, preds in dims.items() for k, p in enumerate(preds)}


BENCHMARK = Benchmark("tempcompass", load, judge, aggregate, splits=TASKS,
                      headline=("multi-choice", "yes_no", "caption_matching", "captioning"),
                      read_predictions=read_predictions,
                      unparsable_note="matched by no official rule: 0 (--disable_llm), or the judge's rating "
                                      "when score.judge_model is set")
