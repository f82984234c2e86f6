"""EventHallusion: question files in the official format (written here: the repo ships no
licence), eval.py's starts-with parsing on awkward answers, per-subset and pooled accuracy."""

import json

import pytest
from eval_helpers import make_cfg, score

from mmalign.evals.benchmarks import BenchmarkFilesMissing
from mmalign.evals.benchmarks.eventhallusion import extract_pred, load


def video(vid, answers):
    return {"id": vid, "category": "pet&animal", "length": "00:05",
            "event_info": {"object": ["dog"], "scene": "A yard.", "caption": "A dog barks."},
            "questions": [{"type": "hallucination", "question": f"Question {k} about {vid}?", "answer": a}
                          for k, a in enumerate(answers)]}


def folder(root):
    (root / "questions").mkdir(parents=True)
    (root / "questions" / "entire_questions.json").write_text(
        json.dumps([video("entire_001", ["No."]), video("entire_002", ["No.", "No."])]))
    (root / "questions" / "interleave_questions.json").write_text(
        json.dumps([video("interleave_001", ["Yes."]), video("interleave_002", ["Yes."])]))
    return root


@pytest.mark.parametrize("answer, parsed", [
    ("Yes.", "Yes."), ("yes, the man plays", "Yes."), ("NO", "No."), ("No", "No."),
    ("Not sure", "No."), ("None of them", "No."),   # starts with "no": read as No. (official)
    ("The dog barks.", None), ("", None), (" yes", None),  # no stripping in eval.py
])
def test_official_parsing(answer, parsed):
    assert extract_pred(answer) == parsed


def test_loader_and_accuracy_by_hand(tmp_path):
    cfg = make_cfg("eventhallusion", folder(tmp_path))
    loaded = load(cfg)
    assert len(loaded.missing) == 1 and "misleading_questions.json" in loaded.missing[0]
    items = loaded.items
    assert [it.id for it in items] == ["entire_001-q0", "entire_002-q0", "entire_002-q1",
                                       "interleave_001-q0", "interleave_002-q0"]
    assert items[0].prompt == "Question 0 about entire_001?\nPlease answer yes or no:"
    assert items[0].media == str(tmp_path / "videos" / "entire" / "entire_001.mp4")
    out = score(cfg, items, ["No, he is not.", "Yes.", "The man waits.", "Yes", "not really"])
    assert [r["correct"] for r in out["items"]] == [True, False, False, True, False]
    assert out["categories"]["entire"]["accuracy"] == pytest.approx(1 / 3)
    assert out["categories"]["interleave"]["accuracy"] == pytest.approx(1 / 2)
    assert out["metrics"]["accuracy"] == pytest.approx(2 / 5)  # pooled over questions, as eval.py
    assert out["metrics"]["not_matching_rate"] == pytest.approx(1 / 5)
    assert [u["id"] for u in out["unparsable"]] == ["entire_002-q1"]


def test_no_question_file_is_an_error(tmp_path):
    with pytest.raises(BenchmarkFilesMissing, match="entire_questions.json"):
        load(make_cfg("eventhallusion", tmp_path))


def test_description_task_through_the_referee_prompts(tmp_path, monkeypatch):
    from mmalign.config import ConfigError
    from mmalign.evals.benchmarks import eventhallusion as eh

    root = folder(tmp_path)
    with pytest.raises(ConfigError, match="score.judge_model"):
        load(make_cfg("eventhallusion", root, data={"options": {"task": "description"}}))
    calls = []

    def fake_judge(path, prompt, system=None):
        calls.append((prompt, system))
        described = prompt.split("utput: ")[-1].split("Ground-truth event")[0].split("Unexpected event")[0]
        return "**Yes**, consistent." if "barks" in described else "No."

    monkeypatch.setattr(eh, "chat_judge", fake_judge)
    cfg = make_cfg("eventhallusion", root, data={"options": {"task": "description"}},
                   score={"judge_model": "/judge"})
    items = load(cfg).items
    assert [it.id for it in items] == ["entire_001-desc", "entire_002-desc", "interleave_001-desc",
                                       "interleave_002-desc"]
    assert items[0].prompt == "Please describe this video in detail."
    for it in items[2:]:
        it.target["unexpected"] = "A cat appears."
    out = score(cfg, items, ["A dog barks loudly.", "A dog sleeps.", "", "A dog barks, then a cat."])
    assert [r["correct"] for r in out["items"]] == [True, False, False, True]
    # entire: judged against the caption; interleave: against the unexpected event; the empty
    # description is not judged (not matching), as gpt4o_judge.py skips it
    assert calls[0][0].endswith("Model output: A dog barks loudly.Ground-truth event: A dog barks.")
    assert calls[0][1].startswith("You are ChatGPT")
    assert calls[2][0].endswith("Output: A dog barks, then a cat.Unexpected event: A cat appears.")
    assert len(calls) == 3
    assert out["categories"]["entire"]["accuracy"] == pytest.approx(1 / 2)
    assert out["metrics"]["not_matching_rate"] == pytest.approx(1 / 4)


def test_official_predictions_file(tmp_path):
    from mmalign.evals.benchmarks.eventhallusion import read_predictions

    data = {"entire": {"entire_001": {"id": "entire_001", "desc": "A dog.",
                                      "qa": [{"question": "q", "answer": "No.", "prediction": "no"}]}}}
    assert read_predictions(data, "p.json") == {"entire_001-q0": "no", "entire_001-desc": "A dog."}
    assert read_predictions({"entire_001-q0": "no"}, "p.json") is None
