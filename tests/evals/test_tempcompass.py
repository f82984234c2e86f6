"""TempCompass: the official rule-based parsers (eval_<task>.py --disable_llm) on hand-computed
examples, print_result's per-dimension / fine-grained / avg / match-rate numbers, the official
predictions file read through `mmalign eval --predictions`, and captioning's judge rule.

Checked by hand once (not in CI: the data is CC BY-NC): on the published predictions of
video-llava, gemini, reka-core and reka-flash, every number the official scripts print with
--disable_llm equals ours (README, benchmark table)."""

import json

import pytest

from mmalign.cli import main
from mmalign.config import ConfigError
from mmalign.evals.benchmarks import tempcompass as tc

from eval_helpers import make_cfg, score

MC_Q = "What is the man doing?\nA. dunking a basketball\nB. dribbling a basketball\nC. passing a basketball"
CM_Q = ("Which caption matches the video better?\nCaption A: A man is dunking a basketball.\n"
        "Caption B: The man is shooting a basketball.")
CM_Q2 = ("Which description is a more suitable match for the video?\nOption 1: The man is dribbling.\n"
         "Option 2: A man is dunking.")


@pytest.mark.parametrize("pred,answer,rating", [
    ("A. dunking a basketball", "A. dunking a basketball", 1),   # equal to the answer
    ("A", "A. dunking a basketball", 1), ("B", "A. dunking a basketball", 0),
    ("A. dribbling", "A. dunking a basketball", 1),               # only the letter counts
    ("C) passing", "A. dunking a basketball", 0), ("A) x", "A. y", 1),
    ("The answer is A", "A. dunking a basketball", None),         # no rule matches
    ("a", "A. dunking a basketball", None),                       # case-sensitive
])
def test_multi_choice_rule(pred, answer, rating):
    assert tc.multi_choice_rule(pred, answer) == rating


@pytest.mark.parametrize("pred,answer,rating", [
    ("Yes, he is.", "yes", 1), ("NO", "yes", 0), ("Nope", "no", 1),  # "nope" starts with "no"
    ("I think yes", "yes", None), ("", "no", None),
])
def test_yes_no_rule(pred, answer, rating):
    assert tc.yes_no_rule(pred, answer) == rating


@pytest.mark.parametrize("pred,question,answer,rating", [
    ("Caption A: A man is dunking a basketball.", CM_Q, "Caption A: A man is dunking a basketball.", 1),  # line
    ("A man is dunking a basketball.", CM_Q, "Caption A: A man is dunking a basketball.", 1),             # sentence
    ("Caption B", CM_Q, "Caption A: A man is dunking a basketball.", 0),                                 # index
    ("A.", CM_Q, "Caption A: A man is dunking a basketball.", 1),                  # short index, "." removed
    ("B) The man is shooting a basketball.", CM_Q, "Caption A: A man is dunking a basketball.", 0),
    ("2", CM_Q2, "Option 2: A man is dunking.", 1), ("Option 1", CM_Q2, "Option 2: A man is dunking.", 0),
    ("The first one", CM_Q, "Caption A: A man is dunking a basketball.", None),
])
def test_caption_matching_rule(pred, question, answer, rating):
    assert tc.caption_matching_rule(pred, question, answer) == rating


@pytest.mark.parametrize("reply,mc_answer,rating", [
    ("Reasoning: it dunks.\nAnswer: A. dunking a basketball", "A. dunking a basketball", 1),
    ("Reasoning: x\nAnswer: B. dribbling", "A. dunking a basketball", 0),
    ("Reasoning: x\nAnswer: A. dunking, not B. dribbling", "A. dunking a basketball", 0),  # names two options
    ("Answer: None of the choices are correct", "A. dunking a basketball", 0),
    ("A. dunking a basketball", "A. dunking a basketball", 1),       # no Answer line: the whole reply
])
def test_captioning_judge_rule(reply, mc_answer, rating):
    assert tc.caption_rating(reply, mc_answer) == rating


@pytest.mark.parametrize("reply,rating", [("Correct.", 1), ("Incorrect", 0), ("It is Correct", 1),
                                          ("Correct? No, Incorrect", 1), ("I'd say Incorrect", 0), ("maybe", 0)])
def test_judge_rating(reply, rating):
    assert tc.judge_rating(reply) == rating


def write_root(root, tasks=("multi-choice", "yes_no")):
    (root / "questions").mkdir(parents=True)
    questions = {
        "multi-choice": {"v1": {"action": [{"question": MC_Q, "answer": "A. dunking a basketball"}] * 2,
                                "speed": [{"question": MC_Q, "answer": "B. dribbling a basketball"}]},
                         "v2": {"order": [{"question": MC_Q, "answer": "C. passing a basketball"}]}},
        "yes_no": {"v1": {"action": [{"question": "Is he dunking?", "answer": "yes"},
                                     {"question": "Is he passing?", "answer": "no"}]}},
    }
    for t in tasks:
        (root / "questions" / f"{t}.json").write_text(json.dumps(questions[t]))
    meta = {"v1": {"eval_dim": {"action": {"type": "fine-grained action"}, "speed": {"type": "absolute speed"},
                                "order": None}},
            "v2": {"eval_dim": {"action": None, "order": {"type": "order"}}}}
    (root / "meta_info.json").write_text(json.dumps(meta))
    return root


def test_prompts_metrics_and_match_rate_as_print_result(tmp_path):
    cfg = make_cfg("tempcompass", write_root(tmp_path / "tc"))
    loaded = tc.load(cfg)
    assert any("captioning skipped" in n for n in loaded.notes)
    mc = [it for it in loaded.items if it.meta["task"] == "multi-choice"]
    assert mc[0].prompt == MC_Q + "\nPlease directly give the best option:"
    assert mc[0].media.endswith("videos/v1.mp4")
    yn = [it for it in loaded.items if it.meta["task"] == "yes_no"]
    assert yn[0].prompt == "Is he dunking?\nPlease answer yes or no:"
    # multi-choice: v1/action right ("A</s>" stripped), v1/action unmatched, v1/speed wrong, v2/order right
    answers = {"multi-choice/v1/action/0": " A</s>", "multi-choice/v1/action/1": "dunking",
               "multi-choice/v1/speed/0": "A. dunking", "multi-choice/v2/order/0": "C",
               "yes_no/v1/action/0": "Yes", "yes_no/v1/action/1": "yes"}
    out = score(cfg, loaded.items, [answers[it.id] for it in loaded.items])
    m, cats = out["metrics"], out["categories"]
    assert m["multi-choice"] == pytest.approx(2 / 4) and m["multi-choice_match_rate"] == pytest.approx(3 / 4)
    assert m["yes_no"] == pytest.approx(1 / 2) and m["yes_no_match_rate"] == 1.0
    assert cats["multi-choice/action"]["accuracy"] == pytest.approx(1 / 2)
    assert cats["multi-choice/speed"]["accuracy"] == 0.0
    assert cats["multi-choice/absolute speed"]["accuracy"] == 0.0      # the fine-grained aspect, from meta_info
    assert cats["multi-choice/order"]["accuracy"] == 1.0
    assert out["counts"]["unparsable"] == 1


def test_official_predictions_file_scores_without_a_model(tmp_path):
    root = write_root(tmp_path / "tc")
    preds = {"v1": {"action": [{"question": MC_Q, "answer": "A", "prediction": "A"},
                               {"question": MC_Q, "answer": "A", "response": "B"}],   # "response" is read too
                    "speed": [{"question": MC_Q, "answer": "B", "prediction": None}]}}  # refused: 0
    path = tmp_path / "multi-choice.json"
    path.write_text(json.dumps(preds))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"benchmark: tempcompass\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}, "
                   "splits: [multi-choice]}\nmodel: {path: /no/such/model}\n")
    assert main(["eval", "--config", str(cfg), "--predictions", str(path)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert m["counts"]["scored"] == 3 and m["missing_predictions"] == ["multi-choice/v2/order/0"]
    assert m["metrics"]["multi-choice"] == pytest.approx(1 / 3)
    # the task is the file's name; any other name is refused in one line
    other = tmp_path / "preds.json"
    other.write_text(json.dumps(preds))
    with pytest.raises(ConfigError, match="named after its task"):
        tc.read_predictions(preds, str(other))


def test_captioning_needs_a_judge_when_asked_for(tmp_path):
    root = write_root(tmp_path / "tc")
    (root / "questions" / "captioning.json").write_text(json.dumps({"v1": {"action": [
        {"question": "Information A: ...\nGenerated Caption:", "answer": "A. dunking a basketball"}]}}))
    with pytest.raises(ConfigError, match="score.judge_model"):
        tc.load(make_cfg("tempcompass", root, data={"splits": ["captioning"]}))
    with pytest.raises(ConfigError, match="score.judge_model"):
        tc.load(make_cfg("tempcompass", root, official=True))


def test_captioning_and_unmatched_answers_go_to_the_judge(tmp_path, monkeypatch):
    root = write_root(tmp_path / "tc")
    (root / "questions" / "captioning.json").write_text(json.dumps({"v1": {"action": [
        {"question": "Information A: ...\nGenerated Caption:", "answer": "A. dunking a basketball"}]}}))
    prompts = []

    def fake_judge(path, prompt, system=None):
        prompts.append(prompt)
        return "Reasoning: r\nAnswer: A. dunking a basketball" if "Video Description" in prompt else "Correct"

    monkeypatch.setattr(tc, "chat_judge", fake_judge)
    cfg = make_cfg("tempcompass", root, score={"judge_model": "/judge"}, data={"splits": ["captioning", "yes_no"]})
    loaded = tc.load(cfg)
    cap = next(it for it in loaded.items if it.meta["task"] == "captioning")
    assert cap.prompt == "Information A: ...\nGenerated Caption:"      # no suffix for captioning
    assert cap.meta["mc_question"] == MC_Q                              # the first multi-choice question
    answers = {cap.id: "A man dunks.", "yes_no/v1/action/0": "I believe so", "yes_no/v1/action/1": "no"}
    out = score(cfg, loaded.items, [answers[it.id] for it in loaded.items])
    assert out["metrics"]["captioning"] == 1.0
    assert out["metrics"]["yes_no"] == 1.0 and out["metrics"]["yes_no_match_rate"] == pytest.approx(1 / 2)
    cap_prompt = next(p for p in prompts if "Video Description" in p)
    assert cap_prompt.endswith(f"\nVideo Description:A man dunks.\nMulti-Choice Question:\n{MC_Q}\n")
    yn_prompt = next(p for p in prompts if "Yes/No Question" in p)
    assert yn_prompt.endswith("respond \"Incorrect\".\n\nYes/No Question:\nIs he dunking?\nGround-Truth Answer: "
                              "yes\nModel Prediction: I believe so")
