"""generator rrpo_qa: RRPO's self-alignment recipe (questions on a perturbed video, wrong answers
kept, the truth rewritten minimally with the wrong concepts), on the world and on real videos."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmalign.config import ConfigError
from mmalign.data.records import read_records
from mmalign.perturb.config import build_pairs_config
from mmalign.perturb.diff import apply_spans, changed_fraction
from mmalign.perturb.pair import Backend
from mmalign.perturb.qa import (NO_CONCEPT, NOT_MINIMAL, RIGHT, is_right, normalise, rewrite_with_facts, short_form,
                                world_questions, wrong_concepts)
from mmalign.perturb.run import report_path, run_pairs
from mmalign.world import Scene
from mmalign.world.scene import WorldObject

ROOT = Path(__file__).resolve().parents[2]


def scene():
    objects = (WorldObject(0, "circle", "red", 10, (10, 10), "left", 1, 0),
               WorldObject(1, "square", "blue", 10, (40, 40), "static", 0, 4))
    return Scene(seed=0, objects=objects)


def test_short_forms_are_judged_by_exact_match_after_normalising():
    yes_no = {"type": "yes_no", "answer": "no"}
    assert is_right(yes_no, "No, there is not.") and not is_right(yes_no, "Yes.")
    mcq = {"type": "mcq", "answer": "C"}
    assert is_right(mcq, "(C) blue") and is_right(mcq, "c") and not is_right(mcq, "B. red")
    # the article of a reply in words is no letter; the option it names is (it read as option A)
    mcq = {"type": "mcq", "answer": "A", "options": ["a blue square", "a red circle"]}
    assert not is_right(mcq, "a red circle") and is_right(mcq, "A blue square.") and is_right(mcq, "A")
    short = {"type": "short", "answer": "2"}
    assert is_right(short, "Two.") and not is_right(short, "three")
    assert normalise("  The RED, circle! ") == "the red circle" and short_form("Yes, it does", "yes_no") == "yes"


def test_world_questions_cover_each_type_with_exact_answers():
    qs = world_questions(scene(), ["yes_no", "mcq", "short", "open"], np.random.default_rng(0))
    types = {q["type"] for q in qs}
    assert types == {"yes_no", "mcq", "short", "open"}
    opened = [q for q in qs if q["type"] == "open"]
    assert opened[0]["answer"] == "A red circle moves left. Then a blue square appears. The blue square stays still."
    for q in (q for q in qs if q["type"] == "mcq"):
        letter = q["answer"]
        assert f"\n{letter}. " in q["prompt"] and q["prompt"].endswith("Answer with the option's letter.")


def test_the_facts_rewrite_carries_exactly_the_wrong_concepts():
    s = scene()
    truth = "A red circle moves left. Then a blue square appears. The blue square stays still."
    reply = "A red circle moves right. Then a blue triangle appears."
    concepts = wrong_concepts(reply, s)
    assert {"kind": "object", "name": "blue triangle"} in concepts
    assert {"kind": "motion", "name": "red circle", "direction": "right"} in concepts
    rewritten = rewrite_with_facts(truth, concepts, s)
    assert rewritten == "A red circle moves right. Then a blue triangle appears. The blue triangle stays still."
    assert wrong_concepts(truth, s) == []  # the truth itself carries none


class AnswersWrong:
    """A stub model: says "yes" to every yes/no question, "5" to every short one, and a
    caption with a hallucinated object for the open question."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts):
        self.calls += prompts
        out = []
        for text, video in prompts:
            if "yes' or 'no'" in text:
                out.append("yes")
            elif text.startswith("Describe"):
                out.append("A purple triangle moves up.")
            else:
                out.append("5")
        return out


def test_world_run_keeps_wrong_answers_and_counts_every_stage(world, tmp_path):
    model = AnswersWrong()
    out = tmp_path / "qa.jsonl"
    cfg = build_pairs_config({"generator": "rrpo_qa", "truth_dir": str(world / "truth"), "videos_per_batch": 3})
    report = run_pairs(cfg, world / "videos", out, backend=Backend(model), show_progress=False)
    records, skipped = read_records(out, "pair", allow_absolute_paths=True)  # the videos lie outside tmp_path
    assert skipped == [] and len(records) == report["records"] > 0
    # every question asked was answered on the masked + shuffled clip, not the clean one
    assert all(v is not None and v.path.endswith(".mp4") for _, v in model.calls)
    asked = len(model.calls)
    assert report["records"] + sum(report["filtered"].values()) == asked
    assert report["filtered"][RIGHT] > 0  # "yes" is right for the basic questions
    for r in records:
        assert r.chosen != r.rejected
        assert apply_spans(r.chosen, r.chosen_spans, r.rejected, r.rejected_spans) == r.rejected
        assert r.meta["question_type"] in ("yes_no", "short", "open")
        assert r.rejected_video["ops"][0]["op"] == "mask" and 0.25 <= r.rejected_video["ops"][0]["area"] <= 0.5
        if r.meta["question_type"] == "yes_no":
            assert (r.chosen, r.rejected) == ("no", "yes")
        if r.meta["question_type"] == "open":
            assert "purple triangle" in r.rejected and r.meta["rewriter"] == "facts"
            assert r.meta["changed_fraction"] == pytest.approx(
                changed_fraction(r.chosen, r.chosen_spans, r.rejected, r.rejected_spans), abs=1e-4)


def test_a_rewrite_over_max_changed_fraction_is_dropped_and_counted(world, tmp_path):
    out = tmp_path / "qa.jsonl"
    cfg = build_pairs_config({"generator": "rrpo_qa", "truth_dir": str(world / "truth"),
                              "rrpo": {"max_changed_fraction": 0.01}, "rrpo_qa": {"types": ["open"]}})
    report = run_pairs(cfg, world / "videos", out, backend=Backend(AnswersWrong()), show_progress=False)
    assert report["records"] == 0 and report["filtered"][NOT_MINIMAL] == len(list((world / "videos").glob("*.mp4")))


def tiny_chat_lm(path, replies):
    """A tiny random Qwen2 causal LM saved as a user's local judge / rewriter model; its
    `generate` is replaced by one that returns `replies` in turn (a random LM writes noise)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from mmalign.models.tiny import QWEN_CHAT_TEMPLATE, _qwen_tokenizer

    tok = _qwen_tokenizer()
    tok.chat_template = QWEN_CHAT_TEMPLATE
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    model.save_pretrained(path)
    tok.save_pretrained(path)


def test_real_videos_without_truth_use_a_qa_file_and_a_local_model_rewriter(world, tmp_path, monkeypatch):
    """Videos with no truth files: questions from the user's QA file, short answers judged by
    exact match, the open answer judged and rewritten by a local chat model (RRPO's two turns)."""
    videos = tmp_path / "videos"
    shutil.copytree(world / "videos", videos)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in [
        {"video": "vid0000.mp4", "prompt": "Is the ball red?", "answer": "no"},
        {"video": "vid0000", "prompt": "Describe the video.", "answer": "A man kicks a red ball on a field."},
        {"video": "missing.mp4", "prompt": "Is it?", "answer": "yes"}]) + "\n")
    lm = tmp_path / "judge"
    tiny_chat_lm(lm, None)
    import mmalign.perturb.text_model as tm

    turns = []

    def chat(self, conversations):
        turns.extend(conversations)
        replies = []
        for messages in conversations:
            last = messages[-1]["content"]
            replies.append("no" if last.startswith("Question:") else
                           "- kicks -> throws\n- red -> blue" if last.startswith("Ground truth:") else
                           "A man throws a blue ball on a field.")
        return replies

    monkeypatch.setattr(tm.TextModel, "chat", chat)
    cfg = build_pairs_config({"generator": "rrpo_qa", "rrpo_qa": {"questions": str(qa), "judge_model": str(lm)}})
    out = tmp_path / "pairs" / "qa.jsonl"
    model = lambda prompts: ["yes" if p.startswith("Is") else "A woman throws a blue ball." for p, _ in prompts]
    report = run_pairs(cfg, videos, out, backend=Backend(model), show_progress=False)
    records, _ = read_records(out, "pair", allow_absolute_paths=True)
    by_type = {r.meta["question_type"]: r for r in records}
    assert (by_type["yes_no"].chosen, by_type["yes_no"].rejected) == ("no", "yes")
    open_ = by_type["open"]
    assert (open_.chosen, open_.rejected) == ("A man kicks a red ball on a field.", "A man throws a blue ball on a field.")
    assert [open_.chosen[s:e] for s, e in open_.chosen_spans] == ["kicks", "red"]
    assert open_.meta["judge"] == "model" and open_.meta["rewriter"] == "model"
    # the rewrite saw the differences it listed first: RRPO's second turn
    assert turns[-1][-2] == {"role": "assistant", "content": "- kicks -> throws\n- red -> blue"}
    assert len(report["skipped"]) == len(list(videos.glob("*.mp4"))) - 1  # the others have no question
    assert all("no question" in s["reason"] for s in report["skipped"])
    # The question about a video that is not there was never asked, and the report says so.
    assert report["notes"] == [f"1 question(s) of {qa} name a video not under --videos, so none was asked: missing"]
    assert not str(records[0].video).startswith(str(tmp_path / "pairs"))  # outside the output's folder: absolute


def test_open_answers_on_real_videos_without_a_judge_model_fail_clearly(world, tmp_path):
    """Before the model answers anything: the answers of a batch no judge can read would be lost
    (the old code asked the model first, and stopped at the first open answer)."""
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"video": "vid0000.mp4", "prompt": "Describe it.", "answer": "A long open answer here."}))
    videos = tmp_path / "videos"
    shutil.copytree(world / "videos", videos)
    cfg = build_pairs_config({"generator": "rrpo_qa", "rrpo_qa": {"questions": str(qa)}})
    asked = []
    with pytest.raises(ValueError, match="rrpo_qa.judge_model"):
        run_pairs(cfg, videos, tmp_path / "o.jsonl", backend=Backend(lambda ps: asked.extend(ps) or ["x" for _ in ps]),
                  show_progress=False)
    assert asked == []


def test_a_malformed_qa_line_is_one_line_naming_it_before_any_model_loads(world, tmp_path):
    """`mmalign pairs` on real videos with a QA file whose second line is torn: the user's command
    gets `mmalign: error: <file>:2: ...` and exit 2, not a traceback, and no model is loaded (the
    model path here does not exist: loading it would be another error)."""
    from mmalign.cli import main

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"video": "vid0000.mp4", "prompt": "Is it red?", "answer": "yes"}) + "\n"
                  + '{"video": "vid0001.mp4", "prompt": "Is it?"\n')
    videos = tmp_path / "videos"
    shutil.copytree(world / "videos", videos)
    code = subprocess.run([sys.executable, "-m", "mmalign.cli", "pairs", "--videos", str(videos), "--config",
                           str(ROOT / "configs/pairs/rrpo_qa.yaml"), "--out", str(tmp_path / "pairs.jsonl"), "--quiet",
                           f"rrpo_qa.questions={qa}", f"model.path={tmp_path / 'no-model'}"],
                          capture_output=True, text=True, timeout=300)
    assert code.returncode == 2, code.stderr[-2000:]
    (line,) = code.stderr.strip().splitlines()
    assert line.startswith(f"mmalign: error: {qa}:2: not a QA record (JSONDecodeError: ")


def test_a_qa_file_that_is_not_text_is_one_line(world, tmp_path, capsys):
    """A binary file given as rrpo_qa.questions: one line naming it (it was a UnicodeDecodeError
    traceback), before any model loads."""
    from mmalign.cli import main

    qa = tmp_path / "qa.jsonl"
    qa.write_bytes(b"\x00\xff\xfe binary")
    args = ["pairs", "--videos", str(world / "videos"), "--config", str(ROOT / "configs/pairs/rrpo_qa.yaml"),
            "--out", str(tmp_path / "pairs.jsonl"), "--quiet", f"rrpo_qa.questions={qa}",
            f"model.path={tmp_path / 'no-model'}"]
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"mmalign: error: {qa}: cannot be read as a QA file (UnicodeDecodeError: ")


def test_a_user_s_multiple_choice_question_shows_its_options_and_reads_its_answer_as_a_letter(world, tmp_path):
    """A QA line with `options` and the right option's text as its answer (MVBench writes them
    so): the options were never shown, and the answer's first character was taken for its
    letter, so "a red circle" was option A and so was any reply that began with "a". Now the
    options follow the prompt, lettered, and the answer is the letter of the option it names."""
    videos = tmp_path / "videos"
    shutil.copytree(world / "videos", videos)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"video": "vid0000.mp4", "question": "What moves?",
                              "options": ["a blue square", "a red circle"], "answer": "a red circle"}) + "\n")
    asked = []
    model = lambda prompts: asked.extend(p for p, _ in prompts) or ["A" for _ in prompts]
    cfg = build_pairs_config({"generator": "rrpo_qa", "rrpo_qa": {"questions": str(qa)}})
    run_pairs(cfg, videos, tmp_path / "p.jsonl", backend=Backend(model), show_progress=False)
    assert asked == ["What moves?\nA. a blue square\nB. a red circle\nAnswer with the option's letter."]
    (record,), _ = read_records(tmp_path / "p.jsonl", "pair", allow_absolute_paths=True)
    assert (record.prompt, record.chosen, record.rejected) == (asked[0], "B", "A")

    qa.write_text(json.dumps({"video": "vid0000.mp4", "question": "What moves?",
                              "options": ["a blue square", "a red circle"], "answer": "a green dot"}) + "\n")
    with pytest.raises(ConfigError, match=rf"{qa}:1: multiple choice: answer 'a green dot' is neither one of its "
                                          "options nor an option letter"):
        run_pairs(cfg, videos, tmp_path / "q.jsonl", backend=Backend(model), show_progress=False)


def test_integer_and_boolean_answers_are_their_text(world, tmp_path):
    """A QA file exported from a table carries counts as integers and yes/no as booleans; each
    line was refused ("must be strings"). A count is its digits, true / false are yes / no, and
    the pairs are those of the same file written in words."""
    videos = tmp_path / "videos"
    shutil.copytree(world / "videos", videos)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in [
        {"video": "vid0000.mp4", "prompt": "How many shapes are there?", "answer": 3},
        {"video": "vid0000.mp4", "prompt": "Is a green star there?", "answer": False}]) + "\n")
    model = lambda prompts: ["two" if p.startswith("How") else "Yes, it is." for p, _ in prompts]
    cfg = build_pairs_config({"generator": "rrpo_qa", "rrpo_qa": {"questions": str(qa)}})
    run_pairs(cfg, videos, tmp_path / "p.jsonl", backend=Backend(model), show_progress=False)
    records, _ = read_records(tmp_path / "p.jsonl", "pair", allow_absolute_paths=True)
    assert {(r.meta["question_type"], r.chosen, r.rejected) for r in records} == {("short", "3", "two"),
                                                                               ("yes_no", "no", "yes")}
    qa.write_text(json.dumps({"video": "vid0000.mp4", "prompt": "How long?", "answer": 2.5}) + "\n")
    with pytest.raises(ConfigError, match=rf"{qa}:1: not a QA record \(TypeError: video and prompt must be strings, "
                                          "answer a string, an integer or true/false\)"):
        run_pairs(cfg, videos, tmp_path / "q.jsonl", backend=Backend(model), show_progress=False)


def test_an_mvbench_style_json_array_with_candidates_makes_multiple_choice_pairs(world, tmp_path):
    """MVBench's QA files are one JSON array of {video, question, candidates, answer}: the array
    was refused at its first line, and a `candidates` line's options were ignored without a word
    (the question was asked without them, and its answer's text judged as a short answer). Fields
    that are not read are named in the report; a near-miss of a field name, and a question about
    a segment of its video, are refused by line."""
    videos = tmp_path / "videos"
    shutil.copytree(world / "videos", videos)
    qa = tmp_path / "mvbench.json"
    rows = [{"video": "vid0000.mp4", "question": "What moves?", "candidates": ["a blue square", "a red circle"],
             "answer": "a red circle", "source": "star"},
            {"video": "vid0001.mp4", "question": "What stays still?", "candidates": ["a cat", "a dog", "a tree"],
             "answer": "a tree", "source": "star"}]
    qa.write_text(json.dumps(rows, indent=2))
    asked = []
    model = lambda prompts: asked.extend(p for p, _ in prompts) or ["A" for _ in prompts]
    cfg = build_pairs_config({"generator": "rrpo_qa", "rrpo_qa": {"questions": str(qa)}})
    report = run_pairs(cfg, videos, tmp_path / "p.jsonl", backend=Backend(model), show_progress=False)
    assert sorted(asked) == ["What moves?\nA. a blue square\nB. a red circle\nAnswer with the option's letter.",
                             "What stays still?\nA. a cat\nB. a dog\nC. a tree\nAnswer with the option's letter."]
    records, _ = read_records(tmp_path / "p.jsonl", "pair", allow_absolute_paths=True)
    assert sorted((r.chosen, r.rejected, r.meta["question_type"]) for r in records) == [("B", "A", "mcq"),
                                                                                      ("C", "A", "mcq")]
    assert f"fields of {qa} that are not read (lines): source (2)" in report["notes"]

    for change, reason in [({"optoins": ["x", "y"]}, "unknown field 'optoins' (did you mean 'options'?)"),
                           ({"start": 3.0, "end": 9.5}, "'start': the question is about a part of its video"),
                           ({"options": ["x", "y"]}, "both 'options' and 'candidates': give the options once")]:
        qa.write_text(json.dumps([rows[0], {**rows[1], **change}], indent=2))
        line = [i + 1 for i, text in enumerate(qa.read_text().splitlines()) if text == "  {"][1]  # the second's
        with pytest.raises(ConfigError) as e:
            run_pairs(cfg, videos, tmp_path / "q.jsonl", backend=Backend(model), show_progress=False)
        assert str(e.value).startswith(f"{qa}:{line}: {reason}"), str(e.value)
