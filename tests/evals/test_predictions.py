"""`mmalign eval --predictions FILE`: score an existing predictions file, no model loaded;
items it lacks are listed and counted; a null prediction is read as an empty answer by the
benchmark's own rule, not a crash."""

import json

import pytest

from mmalign.cli import main
from mmalign.evals.benchmarks.pope import load


@pytest.fixture
def pope_cfg(tmp_path):
    from pathlib import Path

    root = Path(__file__).parent / "fixtures" / "pope"
    cfg = tmp_path / "pope.yaml"
    cfg.write_text(f"benchmark: pope\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}, splits: [random], "
                   "limit: 6}\nmodel: {path: /no/such/model}\n")
    return cfg


def test_scores_a_file_without_a_model_and_lists_what_it_lacks(tmp_path, pope_cfg):
    from mmalign.evals.config import load_eval_config

    items = load(load_eval_config(pope_cfg)).items
    assert len(items) == 6
    truth = {it.id: it.target for it in items}
    # answer the first four right, the fifth wrong, leave the sixth out; one extra null row
    rows = [{"id": it.id, "prediction": it.target.capitalize() + "."} for it in items[:4]]
    wrong = "No." if items[4].target == "yes" else "Yes."
    rows.append({"id": items[4].id, "prediction": wrong})
    path = tmp_path / "preds.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    (m,) = results["models"]
    assert m["missing_predictions"] == [items[5].id] and m["counts"]["missing_predictions"] == 1
    assert m["counts"]["scored"] == 5
    assert m["metrics"]["accuracy"] == pytest.approx(4 / 5)
    assert truth  # the model path does not exist: nothing was loaded


def test_a_null_prediction_is_unmatched(tmp_path, pope_cfg):
    from mmalign.evals.config import load_eval_config

    items = load(load_eval_config(pope_cfg)).items
    preds = {it.id: it.target for it in items}
    preds[items[0].id] = None
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(preds))
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    row = next(r for r in m["items"] if r["id"] == items[0].id)
    # POPE's official rule reads an empty answer as "yes" (no "no" word in it)
    assert row["unparsable"] is True and row["parsed"] == "yes" and row["correct"] == (items[0].target == "yes")
    assert m["metrics"]["accuracy"] == pytest.approx((5 + (items[0].target == "yes")) / 6)


def test_eval_models_are_all_checked_before_any_generates(tmp_path, tiny_dir):
    cfg = tmp_path / "syn.yaml"
    cfg.write_text(f"benchmark: synthetic\noutput_dir: {tmp_path / 'out'}\nworld: {{enabled: true, out: "
                   f"{tmp_path / 'world'}, n_videos: 4}}\nmodel: {{tiny_dir: {tiny_dir}}}\n")
    code = main(["eval", "--config", str(cfg), "--models", "a=/no/such/first", "b=/no/such/second"])
    assert code == 2
    assert not (tmp_path / "out" / "a").exists()


def test_metrics_md_defines_its_metrics(tmp_path, pope_cfg):
    from mmalign.evals.config import load_eval_config

    items = load(load_eval_config(pope_cfg)).items
    path = tmp_path / "p.json"
    path.write_text(json.dumps({it.id: "yes" for it in items}))
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path)]) == 0
    md = (tmp_path / "out" / "metrics.md").read_text()
    assert "- `accuracy`: share of scored questions answered right" in md and "- `yes_ratio`:" in md
    assert "<dt><code>f1</code></dt>" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("drop, field", [("label", "label"), ("text", "text")])
def test_an_annotation_line_missing_a_field_is_named(tmp_path, drop, field, capsys):
    from pathlib import Path

    root = tmp_path / "pope"
    root.mkdir()
    src = Path(__file__).parent / "fixtures" / "pope" / "coco_pope_random.json"
    lines = src.read_text().splitlines()[:4]
    bad = json.loads(lines[2])
    del bad[drop]
    lines[2] = json.dumps(bad)
    (root / "coco_pope_random.json").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "pope.yaml"
    cfg.write_text(f"benchmark: pope\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}, splits: [random]}}\n")
    preds = tmp_path / "p.json"
    preds.write_text("{}")
    assert main(["eval", "--config", str(cfg), "--predictions", str(preds)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mmalign: error: {root / 'coco_pope_random.json'}:3: missing field '{field}' "
                   "(an official annotation file has it)"]


def test_a_file_made_on_other_annotation_files_is_flagged(tmp_path, pope_cfg):
    from mmalign.evals.config import load_eval_config

    items = load(load_eval_config(pope_cfg)).items
    preds = {it.id: "yes" for it in items[:4]} | {"random-9999": "no"}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preds))
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    (note,) = [n for n in results["notes"] if "another version" in n]
    assert "lacks 2 of the 6 items and names 1" in note and "e3e3926" in note
    assert "another version" in (tmp_path / "out" / "metrics.md").read_text()


def test_an_id_answered_twice_otherwise_is_refused_and_an_exact_repeat_is_not(tmp_path, pope_cfg, capsys):
    """A JSON-lines or list file that answers one id twice, differently: the last answer was
    scored without a word, a guess at which one the file meant."""
    from mmalign.evals.config import load_eval_config

    items = load(load_eval_config(pope_cfg)).items
    rows = [{"id": it.id, "prediction": it.target} for it in items]
    flipped = {"id": items[1].id, "prediction": "no" if items[1].target == "yes" else "yes"}
    lines = tmp_path / "p.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in [*rows, flipped]))
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(lines)]) == 2
    assert capsys.readouterr().err.strip() == (f"mmalign: error: {lines}:7: id {items[1].id!r} again, answered "
                                               f"otherwise at {lines}:2: which answer to score?")
    listed = tmp_path / "p.json"
    listed.write_text(json.dumps([flipped, *rows]))
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(listed)]) == 2
    assert f"{listed}[2]: id {items[1].id!r} again, answered otherwise at {listed}[0]" in capsys.readouterr().err
    lines.write_text("".join(json.dumps(r) + "\n" for r in [*rows, rows[1]]))  # the same answer again: no doubt
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(lines)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert m["metrics"]["accuracy"] == 1.0 and m["counts"]["scored"] == 6


def test_nothing_scored_fails_the_command_with_its_reasons(tmp_path, pope_cfg, capsys):
    """A predictions file that answers none of the items (or a run whose every video is
    unreadable) exited 0 with a table of zeros: a script took it for a run that worked."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"adversarial-1": "yes"}))
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path)]) == 1
    err = capsys.readouterr().err
    assert "mmalign: error: p: not one of its 6 items was scored" in err and "6 x no prediction for the item" in err
    assert json.loads((tmp_path / "out" / "results.json").read_text())["models"][0]["counts"]["scored"] == 0


def test_every_video_unreadable_fails_the_command_grouping_the_reason(tmp_path, capsys):
    import shutil
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures" / "videohallucer"
    shutil.copytree(fixtures / "temporal", tmp_path / "vh" / "temporal")  # the annotations, no videos
    assert main(["eval", "--config", str(Path(__file__).parents[2] / "configs/eval/videohallucer.yaml"),
                 f"data.root={tmp_path / 'vh'}", "data.splits=[temporal]", "model.path=null", "model.tiny=qwen2_5_vl",
                 f"model.tiny_dir={tmp_path / 'tiny'}", "model.dtype=float32", f"output_dir={tmp_path / 'out'}"]) == 1
    err = capsys.readouterr().err
    items = json.loads((tmp_path / "out" / "results.json").read_text())["models"][0]["counts"]["items"]
    assert f"not one of its {items} items was scored" in err and f"{items} x media: …: file not found" in err


def test_a_line_of_another_shape_shows_the_shape_this_benchmark_reads(tmp_path, pope_cfg, capsys):
    """A line of no shape we know said only "not a prediction row {id, prediction} (KeyError)":
    which ids, and how are they spelt? A LLaVA answer line is told what it needs (its ids are
    those of LLaVA's question file)."""
    path = tmp_path / "answers.jsonl"
    path.write_text('{"qid": 1, "pred": "Yes"}\n{"qid": 2, "pred": "No"}\n')
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (f"mmalign: error: {path}:1: not a prediction row like "
                                               '{"id": "random-1", "prediction": "..."} (KeyError: no \'id\')')
    path.write_text('{"question_id": 1, "text": "Yes"}\n{"question_id": 2, "text": "No"}\n')
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mmalign: error: {path}:1: a LLaVA answer ({{question_id, text}}): its question_ids are those of LLaVA's "
        "llava_pope_test.jsonl; name that file with data.options.question_file=<path>")


def test_a_one_line_predictions_file_is_one_row_not_a_mapping(tmp_path, pope_cfg):
    """One JSON line is also one JSON object: {"id": ..., "prediction": ...} was read as the
    mapping {"id": <prediction>, "prediction": <prediction>}, and not one item was scored."""
    from mmalign.evals.config import load_eval_config

    first = load(load_eval_config(pope_cfg)).items[0]
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"id": first.id, "prediction": first.target.capitalize() + "."}) + "\n")
    assert main(["eval", "--config", str(pope_cfg), "--predictions", str(path), "data.limit=1"]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert m["counts"]["scored"] == 1 and m["metrics"]["accuracy"] == 1.0


def test_a_predictions_file_is_scored_beside_the_models_of_models(tmp_path, tiny_dir, monkeypatch):
    """--predictions with --models scored the file alone and ran none of the models, silently."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "syn.yaml"
    cfg.write_text(f"benchmark: synthetic\noutput_dir: out\nworld: {{enabled: true, out: world, n_videos: 4}}\n"
                   f"model: {{tiny: qwen2_5_vl, tiny_dir: {tiny_dir}}}\ngeneration: {{max_new_tokens: 2}}\n")
    from mmalign.evals.config import load_eval_config
    from mmalign.models.backbone import model_path

    tiny = model_path(load_eval_config(cfg).model)
    (tmp_path / "published.jsonl").write_text("")  # answers nothing yet: exit 1, and the model still runs
    assert main(["eval", "--config", str(cfg), "--predictions", "published.jsonl", "--models", f"mine={tiny}"]) == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["published", "mine"]
    mine = results["models"][1]
    answers = {r["id"]: r["prediction"] for r in mine["items"]}
    (tmp_path / "published.jsonl").write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n"
                                                      for i, p in answers.items()))
    assert main(["eval", "--config", str(cfg), "--predictions", "published.jsonl", "--models", f"mine={tiny}"]) == 0
    published, mine = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert published["metrics"] == mine["metrics"]  # the model's own answers, scored as a file, score the same
    assert main(["eval", "--config", str(cfg), "--predictions", "published.jsonl", "--models", f"published={tiny}"]) == 2


def pope_answers_cfg(tmp_path, splits="[random, popular, adversarial]"):
    from pathlib import Path

    root = Path(__file__).parent / "fixtures" / "pope"
    cfg = tmp_path / "pope3.yaml"
    cfg.write_text(f"benchmark: pope\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}, splits: {splits}}}\n")
    return cfg


def official_answer_lines(split: str, answers: list[str], questions: bool = True) -> str:
    """POPE's own answer file (RUCAIBox/POPE README, "Evaluation"): {question, answer} lines in
    the label file's order, the questions lower-cased as in its answer/example.json."""
    from pathlib import Path

    labels = [json.loads(line) for line in open(Path(__file__).parent / "fixtures" / "pope" / f"coco_pope_{split}.json")]
    return "".join(json.dumps({"question": q["text"].lower(), "answer": a} if questions else {"answer": a}) + "\n"
                   for q, a in zip(labels, answers))


def test_pope_s_own_answer_file_is_scored_against_the_split_its_questions_follow(tmp_path, capsys):
    """POPE's answers carry no id: its evaluate.py pairs line i with label i of the label file it
    is given. Such a file was refused as a row without 'id'. The split is the one its questions
    follow (here random, though all three are selected); hand count on random's labels
    (yes no yes no yes no): parsed yes no no no yes yes -> TP 2, FP 1, TN 2, FN 1."""
    cfg = pope_answers_cfg(tmp_path)
    answers = ["Yes", "No", "No", "no", "Yes, there is", "There is a car."]
    path = tmp_path / "answers.jsonl"
    path.write_text(official_answer_lines("random", answers))
    assert main(["eval", "--config", str(cfg), "--predictions", str(path)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    r = m["categories"]["random"]
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (2, 1, 2, 1)
    assert r["accuracy"] == pytest.approx(4 / 6) and r["yes_ratio"] == pytest.approx(3 / 6)
    assert set(m["categories"]) == {"random"} and m["counts"]["missing_predictions"] == 12  # the other splits
    # a JSON list of the same objects (some forks' json.dump) reads the same
    listed = tmp_path / "answers.json"
    listed.write_text(json.dumps([json.loads(line) for line in official_answer_lines("random", answers).splitlines()]))
    assert main(["eval", "--config", str(cfg), "--predictions", str(listed), "output_dir=" + str(tmp_path / "o2")]) == 0
    (m2,) = json.loads((tmp_path / "o2" / "results.json").read_text())["models"]
    assert m2["categories"] == m["categories"]


def test_pope_answers_out_of_the_label_order_are_refused_at_the_first_line_that_leaves_it(tmp_path, capsys):
    """evaluate.py zips answers with labels and never looks at the question: a file in another
    order, or made on another split, scored against the wrong labels without a word."""
    cfg = pope_answers_cfg(tmp_path)
    lines = official_answer_lines("popular", ["yes"] * 6).splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    path = tmp_path / "coco_pope_popular_answers.json"
    path.write_text("\n".join(lines) + "\n")
    assert main(["eval", "--config", str(cfg), "--predictions", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mmalign: error: {path}:4: question 'is there a skis in the image?' is not question 4 of POPE's popular split "
        "('Is there a car in the image?'): POPE's answers must follow its label file's order, one split a file")
    assert not (tmp_path / "out").exists()


def test_pope_answers_without_questions_take_their_split_from_the_name_or_the_selection(tmp_path, capsys):
    """Answers alone fit every split: the file's name (coco_pope_<split>_answers.json, as
    evaluate.py's example names it) or a single selected split says which labels they answer."""
    cfg = pope_answers_cfg(tmp_path)
    answers = ["yes", "no", "yes", "yes", "yes", "yes"]  # right on every split but for 4 and 6, which are "no"
    bare = tmp_path / "answers.jsonl"
    bare.write_text(official_answer_lines("random", answers, questions=False))
    assert main(["eval", "--config", str(cfg), "--predictions", str(bare)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mmalign: error: {bare}: POPE answers follow one split's label file, and this one fits random, popular, "
        "adversarial: name the split with data.splits=[<split>], or in the file's name (coco_pope_<split>_answers.json)")
    named = tmp_path / "coco_pope_adversarial_answers.json"
    named.write_text(bare.read_text())
    assert main(["eval", "--config", str(cfg), "--predictions", str(named)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert set(m["categories"]) == {"adversarial"} and m["categories"]["adversarial"]["accuracy"] == pytest.approx(4 / 6)
    assert main(["eval", "--config", str(pope_answers_cfg(tmp_path, "[popular]")), "--predictions", str(bare),
                 "--overwrite"]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert set(m["categories"]) == {"popular"} and m["counts"]["scored"] == 6
    bad = tmp_path / "coco_pope_random_answers.json"
    bad.write_text(bare.read_text() + '{"text": "yes"}\n')
    assert main(["eval", "--config", str(cfg), "--predictions", str(bad), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (f'mmalign: error: {bad}:7: not a POPE answer like {{"question": "...", '
                                               f'"answer": "..."}}, as {bad}:1 is')


def llava_question_file(path, order=("adversarial", "random", "popular")) -> dict:
    """A question file in LLaVA's llava_pope_test.jsonl shape ({question_id, image, text,
    category}, ids running over the whole file) built from the fixture label files; returns
    (split, position) -> question_id."""
    from pathlib import Path

    ids, lines = {}, []
    for split in order:
        for n, line in enumerate(open(Path(__file__).parent / "fixtures" / "pope" / f"coco_pope_{split}.json")):
            q = json.loads(line)
            ids[split, n] = 1000 + len(lines)
            lines.append({"question_id": ids[split, n], "image": q["image"],
                          "text": q["text"] + "\nAnswer the question using a single word or phrase.", "category": split})
    path.write_text("".join(json.dumps(q) + "\n" for q in lines))
    return ids


def test_llava_s_pope_answers_are_scored_through_its_question_file(tmp_path):
    """LLaVA-1.5's answers ({question_id, prompt, text}) name questions by the ids of its
    llava_pope_test.jsonl; its eval_pope.py takes a category's answers in order against that
    split's labels. Hand count: random answered right but for its 2nd question, popular all
    "Yes" (labels yes no yes no yes no), adversarial not at all."""
    ids = llava_question_file(tmp_path / "llava_pope_test.jsonl")
    cfg = pope_answers_cfg(tmp_path)
    random_labels = ["yes", "no", "yes", "no", "yes", "no"]
    rows = ([{"question_id": ids["popular", n], "prompt": "...", "text": "Yes", "model_id": "llava-v1.5-7b"}
             for n in range(6)]
            + [{"question_id": ids["random", n], "prompt": "...", "text": ("Yes" if n == 1 else label.capitalize())}
               for n, label in enumerate(random_labels)])
    answers = tmp_path / "llava-v1.5-7b.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "--config", str(cfg), "--predictions", str(answers),
                 f"data.options.question_file={tmp_path / 'llava_pope_test.jsonl'}"]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    cats = m["categories"]
    assert set(cats) == {"random", "popular"} and m["counts"]["missing_predictions"] == 6
    assert (cats["random"]["tp"], cats["random"]["fp"], cats["random"]["tn"], cats["random"]["fn"]) == (3, 1, 2, 0)
    assert cats["popular"]["accuracy"] == pytest.approx(3 / 6) and cats["popular"]["yes_ratio"] == 1.0


def test_a_llava_question_file_of_another_pope_version_is_refused_at_its_first_other_question(tmp_path, capsys):
    """LLaVA-1.5's question file lines up with POPE commit e3e3926, not with today's label files:
    scored as eval_pope.py does it (by position), every answer after the first difference would
    meet another question's label."""
    qfile = tmp_path / "llava_pope_test.jsonl"
    llava_question_file(qfile)
    lines = qfile.read_text().splitlines()
    q = json.loads(lines[8])  # random's third question
    assert q["category"] == "random" and q["text"].startswith("Is there a person")
    lines[8] = json.dumps({**q, "text": "Is there a kite in the image?\nAnswer the question using a single word or phrase."})
    qfile.write_text("\n".join(lines) + "\n")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": 1000, "text": "Yes"}) + "\n")
    assert main(["eval", "--config", str(pope_answers_cfg(tmp_path)), "--predictions", str(answers),
                 f"data.options.question_file={qfile}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mmalign: error: {qfile}:9: COCO_val2014_000000310196.jpg 'Is there a kite in the image?' is not question 3 of "
        "POPE's random split (COCO_val2014_000000310196.jpg 'Is there a person in the image?'): the question file is "
        "of another POPE version than data.root's label files (LLaVA-1.5's is of commit e3e3926)")


def test_a_one_line_pope_answer_file_is_one_answer_not_a_mapping(tmp_path):
    """POPE's answer/example.json is one {question, answer} object with no newline: it was read
    as the mapping {"question": ..., "answer": ...}, ids that no item has, and nothing scored."""
    path = tmp_path / "example.json"
    path.write_text('{"question": "is there a snowboard in the image?", "answer": "yes"}')
    cfg = pope_answers_cfg(tmp_path, "[random]")  # its one question is the first of every split
    assert main(["eval", "--config", str(cfg), "--predictions", str(path)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert m["counts"]["scored"] == 1 and m["items"][0]["id"] == "random-1" and m["items"][0]["correct"]


def test_videohallucer_s_own_results_file_is_matched_to_the_pairs_by_content(tmp_path):
    """evaluation_utils.py writes results/<qa_type>_<model>.json: the category's annotation list
    with `predict` added to each question. It was refused ("a list entry lacks 'id'"). Its pairs
    are matched by videos and questions, so a file from another version of the annotation (here:
    the pairs in the other order and one pair the files lack) scores the pairs it shares.
    Hand count with the official cal_score (whole word, any case): pair 0 basic "Yes." right,
    hallucinated "yes" wrong; pair 1 both right."""
    import re
    from pathlib import Path

    root = Path(__file__).parent / "fixtures" / "videohallucer"
    pairs = json.loads((root / "temporal" / "temporal.json").read_text())
    outputs = [("Yes.", "yes"), ("YES, it does", "No, it does not.")]
    results = [{**p, "basic": {**p["basic"], "predict": b}, "hallucination": {**p["hallucination"], "predict": h}}
               for p, (b, h) in zip(pairs, outputs)]
    other = {"basic": {"video": "x.mp4", "question": "Q?", "answer": "yes", "predict": "yes"},
             "hallucination": {"video": "x.mp4", "question": "R?", "answer": "no", "predict": "no"}}
    path = tmp_path / "temporal_MyModel.json"
    path.write_text(json.dumps([results[1], other, results[0]], indent=4))

    def hit(answer, output):
        return re.search(r"\b(" + answer + r")\b", output, re.IGNORECASE) is not None

    basic = [hit(r["basic"]["answer"], r["basic"]["predict"]) for r in results]
    halluc = [hit(r["hallucination"]["answer"], r["hallucination"]["predict"]) for r in results]
    assert (basic, halluc) == ([True, True], [False, True])  # the hand count above
    cfg = tmp_path / "vh.yaml"
    cfg.write_text(f"benchmark: videohallucer\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}}}\n")
    assert main(["eval", "--config", str(cfg), "--predictions", str(path)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    t = m["categories"]["temporal"]
    assert (t["basic_accuracy"], t["halluc_accuracy"], t["accuracy"]) == (1.0, 0.5, 0.5)
    assert set(m["categories"]) == {"temporal"} and m["counts"]["scored"] == 4
    assert m["counts"]["missing_predictions"] == 16  # the other four categories' 2 pairs x 2 questions
