"""`mmalign eval --harness lmms-eval --tasks videomme`: lmms-eval's own Video-MME task (its
prompt, answer extraction and metric) on a tiny local fixture in the task's own format (a
local dataset folder and videos where lmms-eval unpacks them), with an mmalign model and
nothing downloaded. Skipped when the optional extra is not installed."""

import json

import numpy as np
import pytest

from mmalign.cli import main

pytest.importorskip("lmms_eval", reason="lmms-eval is an optional extra: pip install -e '.[lmms]'")

DOCS = [  # the columns of lmms-eval/Video-MME's test split
    {"videoID": "vidA", "question_id": "001-1", "question": "What color is the circle?",
     "options": ["A. red", "B. blue", "C. green", "D. white"], "answer": "B"},
    {"videoID": "vidA", "question_id": "001-2", "question": "Where does it move?",
     "options": ["A. left", "B. right", "C. up", "D. down"], "answer": "A"},
    {"videoID": "vidB", "question_id": "002-1", "question": "How many objects?",
     "options": ["A. 1", "B. 2", "C. 3", "D. 4"], "answer": "C"},
]


def write_fixture(root):
    import pandas as pd

    from mmalign.world.render import write_video

    ds = root / "videomme"
    (ds / "videomme").mkdir(parents=True)
    (ds / "data").mkdir()
    rows = [{**d, "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
             "task_type": "Counting Problem", "url": "", "video_id": d["videoID"]} for d in DOCS]
    pd.DataFrame(rows).to_parquet(ds / "videomme" / "test-00000-of-00001.parquet")
    (ds / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n"
                                  "    path: videomme/test-*.parquet\n---\n")
    frames = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    write_video(frames, ds / "data" / "vidA.mp4", fps=4)
    (ds / "data" / "vidB.mp4").write_bytes(b"not a video")   # corrupt: listed, not fatal
    return root


def run(tmp_path, *extra):
    root = write_fixture(tmp_path / "lmms")
    out = tmp_path / "out"
    code = main(["eval", "--harness", "lmms-eval", "--tasks", "videomme", "model.tiny=qwen2_vl",
                 f"model.tiny_dir={tmp_path / 'tiny'}", f"data.root={root}", f"output_dir={out}",
                 "sampling.num_frames=4", *extra])
    return code, json.loads((out / "results.json").read_text())


def test_videomme_through_lmms_eval_task_code(tmp_path, monkeypatch):
    import mmalign.models.generate as gen

    seen = []
    answers = {"What color": "B", "Where does": "The answer is (C).", "How many": "C"}

    def fake_generate(model, processor, prompts, max_new_tokens, **kw):
        seen.extend((p.text, p.video is not None, max_new_tokens) for p in prompts)
        return [[next(a for k, a in answers.items() if k in p.text)] for p in prompts]

    monkeypatch.setattr(gen, "generate", fake_generate)
    code, results = run(tmp_path)
    assert code == 0
    (m,) = results["models"]
    # lmms-eval's own prompt (videomme_doc_to_text), our frames, the task's token budget (16)
    text, has_video, budget = seen[0]
    assert text.startswith("Select the best answer to the following multiple-choice question")
    assert "What color is the circle?\nA. red\nB. blue" in text
    assert text.endswith("Answer with the option's letter from the given choices directly.")
    assert has_video and budget == 16
    # vidB is corrupt: listed; its empty answer scores wrong, as the task scores an empty answer.
    # Right: doc 1 ("B"); wrong: doc 2 ("C" for A) and doc 3 (no answer) -> 1 of 3, in percent
    assert m["counts"]["media_errors"] == 1 and m["media_errors"][0]["id"] == "videomme/2"
    assert m["metrics"]["videomme/videomme_perception_score"] == pytest.approx(100 / 3)
    assert len(seen) == 2
    out = tmp_path / "out"
    assert (out / "metrics.md").is_file() and (out / "report.html").is_file()
    assert "videomme_perception_score" in (out / "metrics.md").read_text()


def test_a_real_tiny_model_answers(tmp_path):
    code, results = run(tmp_path, "data.limit=1")
    (m,) = results["models"]
    assert code == 0 and m["counts"]["items"] == 1 and m["counts"]["media_errors"] == 0
    assert isinstance(m["items"][0]["prediction"], str)
    assert 0.0 <= m["metrics"]["videomme/videomme_perception_score"] <= 100.0


def test_unknown_task_gets_a_did_you_mean(tmp_path, capsys):
    root = write_fixture(tmp_path / "lmms")
    assert main(["eval", "--harness", "lmms-eval", "--tasks", "videome", "model.tiny=qwen2_vl",
                 f"data.root={root}"]) == 2
    assert "did you mean 'videomme'" in capsys.readouterr().err
