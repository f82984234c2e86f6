"""EventHallusion (Zhang et al., 2024): yes/no questions built to pull a video LLM towards
the event its language prior expects rather than the one on screen.

Files (Stevetich/EventHallusion @ 7396e04, `questions/`): `{entire,interleave,misleading}_questions.json`,
each a list of {id, category, length, event_info, questions: [{type, question, answer}]} with
answers "Yes." / "No."; looked for in `root/questions/` and `root/`. Videos: the official
inference reads `<video_path>/<subset>/<id>.mp4`; we read `root/videos/<subset>/<id>.mp4`
(`data.media_dir` replaces `videos`). Assumed, not verified: the inner layout of the Google
Drive video archive; point `data.media_dir` at the folder holding entire/, interleave/, misleading/.

Prompt (inference_template/.../run_inference.py): "<question>\\nPlease answer yes or no:".

Parsing, mode `official` (eval.py, `extract_pred`): lower-case the output; "Yes." if it starts
with "yes", "No." if it starts with "no" (so "Not sure" and "None" read as "No."), otherwise
unmatched -> unparsable and wrong. Right when the result equals the ground truth exactly.
Metrics: per subset and overall, question accuracy = right / questions (overall pools every
question, as eval.py does), and the not-matching rate.

Description task (`data.options.task: description`): each video is asked "Please describe
this video in detail." (run_inference.py); a judge reads the description with the subset's
referee prompt (constants.py: `entire` and `misleading` against event_info.caption,
`interleave` against event_info.unexpected) and gpt4o_judge.py's system message; the reply,
with "*" removed and lower-cased, is right when it starts with "yes" (eval.py
`extract_yes_no_gpt`; neither word = not matching). An empty description is judged as the
official script does: no judgement, so not matching. The judge is `score.judge_model`, a local
chat model (the official one is gpt-4o): the task refuses to start without it.
Metrics: description accuracy per subset and overall (right / videos), not-matching rate.
"""

from __future__ import annotations

from mmalign.config import ConfigError

from .base import (Benchmark, Item, Judgement, Loaded, by_category, load_subsets, media_root, ratio, read_json,
                   resolve_root, selected, take, with_suffix)
from .judges import chat_judge

SPLITS = ("entire", "interleave", "misleading")
SUFFIX = "\nPlease answer yes or no:"
TASKS = ("qa", "description")
DESCRIBE = "Please describe this video in detail."
_REFEREE = ("Imagine you are a referee tasked with evaluating a model's output. The model will output a detailed "
            "description of a video. ")
_FOCUS = ("You need only focus on the consistency of the event and action. Do not judge the description of specific "
          "object, environment, atmosphere, and so on. Please answer yes or no in the first word of your reply! ")
REFEREE = {  # constants.py, per subset: (prompt with {desc} and {event}, the event_info field)
    "misleading": (_REFEREE + "You will receive both the model's output and the ground truth event. Your task is to "
                   "determine whether the model's description is consistent with the ground truth event. If you find "
                   "any other descriptions unrelated to the ground truth event, answer \"no.\" Otherwise, answer "
                   "\"yes.\" " + _FOCUS + "Then, provide your analysis and reasoning. Model output: {desc}"
                   "Ground-truth event: {event}", "caption"),
    "entire": (_REFEREE + "You will receive both the model's output and a ground-truth event. Your task is to "
               "determine whether the event described in the model's output is consistent with the ground-truth "
               "event. If true, answer \"yes.\" If it is not consistent with the ground-truth event, answer \"no.\" "
               + _FOCUS + "Then, provide your analysis and reasoning. Model output: {desc}Ground-truth event: {event}",
               "caption"),
    "interleave": (_REFEREE + "You will receive the output of the tested model and a special event. You need to "
                   "determine whether this special event is mentioned in the output of the model. If mentioned, you "
                   "need to answer \"yes\", otherwise answer \"no\". " + _FOCUS + "Then, provide your analysis. "
                   "Output: {desc}Unexpected event: {event}", "unexpected"),
}
JUDGE_SYSTEM = ("You are ChatGPT, a large language model trained by OpenAI, based on the GPT-4 architecture. You are "
                "chatting with the user via the ChatGPT iOS app. This means most of the time your lines should be a "
                "sentence or two, unless the user's request requires reasoning or long-form outputs. Never use "
                "emojis, unless explicitly asked to. Knowledge cutoff: 2023-10 Current date: 2024-08-15. Image input "
                "capabilities: Enabled Personality: v2")


def files(split: str) -> list[str]:
    return [f"questions/{split}_questions.json", f"{split}_questions.json"]


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "eventhallusion", "questions/{entire,interleave,misleading}_questions.json")
    videos = media_root(root, cfg.data.media_dir, "videos")

    task = cfg.data.options.get("task", "qa")
    if task not in TASKS:
        raise ConfigError(f"data.options.task: eventhallusion offers {list(TASKS)}, got {task!r}")
    if task == "description" and not cfg.score.judge_model:
        raise ConfigError("eventhallusion: the description task is scored by an LLM judge (gpt4o_judge.py): set "
                          "score.judge_model to a local chat model folder")

    def describe(path, split):
        return [Item(id=f"{video['id']}-desc", prompt=DESCRIBE, category=split, target=dict(video["event_info"]),
                     media=str(videos / split / f"{video['id']}.mp4"), media_kind="video",
                     meta={"task": "description", "video_category": video.get("category")})
                for video in take(read_json(path), cfg.data.limit)]

    def read(path, split):
        return [Item(id=f"{video['id']}-q{k}", prompt=with_suffix(q["question"], cfg.prompt.suffix, SUFFIX),
                     target=q["answer"], category=split, media=str(videos / split / f"{video['id']}.mp4"),
                     media_kind="video", meta={"video_category": video.get("category")})
                for video in take(read_json(path), cfg.data.limit) for k, q in enumerate(video["questions"])]

    loaded = load_subsets("eventhallusion", root, selected(cfg.data.splits, SPLITS), files,
                          describe if task == "description" else read)
    if task == "description":
        loaded.notes.append(f"description judge: {cfg.score.judge_model} (the official judge is gpt-4o)")
    return loaded


def extract_pred(output: str) -> str | None:
    output = output.lower()
    if output.startswith("yes"):
        return "Yes."
    if output.startswith("no"):
        return "No."
    return None


def judge_reply(reply: str) -> str | None:
    """eval.py `extract_yes_no_gpt`."""
    reply = reply.replace("*", "").lower()
    return "yes" if reply.startswith("yes") else "no" if reply.startswith("no") else None


def judge(item: Item, prediction: str, score) -> Judgement:
    if item.meta.get("task") == "description":
        if not prediction:  # gpt4o_judge.py skips an empty description: judgement '' -> not matching
            return Judgement(None, False, unparsable=True, extra={"judgement": ""})
        template, field = REFEREE[item.category]
        reply = chat_judge(score.judge_model, template.format(desc=prediction, event=item.target[field]),
                           system=JUDGE_SYSTEM)
        parsed = judge_reply(reply)
        return Judgement(parsed, parsed == "yes", unparsable=parsed is None, extra={"judgement": reply})
    parsed = extract_pred(prediction)
    return Judgement(parsed, parsed == item.target, unparsable=parsed is None)


def accuracy(rows: list[dict]) -> dict:
    return {"accuracy": ratio(sum(r["correct"] for r in rows), len(rows)),
            "not_matching_rate": ratio(sum(r["unparsable"] for r in rows), len(rows)), "n": len(rows)}


def aggregate(rows: list[dict], score) -> dict:
    return {"metrics": accuracy(rows), "categories": {s: accuracy(r) for s, r in by_category(rows).items()}}


def read_predictions(data, path: str) -> dict | None:
    """run_inference.py's output: {subset: {video id: {..., qa: [{question, answer, prediction}], desc}}}."""
    if not (isinstance(data, dict) and set(data) <= set(SPLITS) and data
            and all(isinstance(v, dict) for v in data.values())):
        return None
    out = {}
    for videos in data.values():
        for vid, info in videos.items():
            out.update({f"{vid}-q{k}": qa.get("prediction") for k, qa in enumerate(info.get("qa", []))})
            if "desc" in info:
                out[f"{vid}-desc"] = info["desc"]
    return out


BENCHMARK = Benchmark("eventhallusion", load, judge, aggregate, splits=SPLITS, options=("task",),
                      headline=("accuracy", "not_matching_rate"), read_predictions=read_predictions)
