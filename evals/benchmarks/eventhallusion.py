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

Not reproduced: the detailed-description task, which needs a GPT-4o judge (gpt4o_judge.py).
"""

from __future__ import annotations

from .base import (Benchmark, Item, Judgement, Loaded, by_category, load_subsets, media_root, ratio, read_json,
                   resolve_root, selected, take, with_suffix)

SPLITS = ("entire", "interleave", "misleading")
SUFFIX = "\nPlease answer yes or no:"


def files(split: str) -> list[str]:
    return [f"questions/{split}_questions.json", f"{split}_questions.json"]


def load(cfg) -> Loaded:
    root = resolve_root(cfg.data.root, "eventhallusion", "questions/{entire,interleave,misleading}_questions.json")
    videos = media_root(root, cfg.data.media_dir, "videos")

    def read(path, split):
        return [Item(id=f"{video['id']}-q{k}", prompt=with_suffix(q["question"], cfg.prompt.suffix, SUFFIX),
                     target=q["answer"], category=split, media=str(videos / split / f"{video['id']}.mp4"),
                     media_kind="video", meta={"video_category": video.get("category")})
                for video in take(read_json(path), cfg.data.limit) for k, q in enumerate(video["questions"])]

    return load_subsets("eventhallusion", root, selected(cfg.data.splits, SPLITS), files, read)


def extract_pred(output: str) -> str | None:
    output = output.lower()
    if output.startswith("yes"):
        return "Yes."
    if output.startswith("no"):
        return "No."
    return None


def judge(item: Item, prediction: str, score) -> Judgement:
    parsed = extract_pred(prediction)
    return Judgement(parsed, parsed == item.target, unparsable=parsed is None)


def accuracy(rows: list[dict]) -> dict:
    return {"accuracy": ratio(sum(r["correct"] for r in rows), len(rows)),
            "not_matching_rate": ratio(sum(r["unparsable"] for r in rows), len(rows)), "n": len(rows)}


def aggregate(rows: list[dict], score) -> dict:
    return {"metrics": accuracy(rows), "categories": {s: accuracy(r) for s, r in by_category(rows).items()}}


BENCHMARK = Benchmark("eventhallusion", load, judge, aggregate, splits=SPLITS,
                      headline=("accuracy", "not_matching_rate"))
