"""POPE: the official yes/no parsing on awkward answers, metrics computed by hand, LLaVA's
published check numbers, the lmms-eval mode, and loading the real annotation files."""

import shutil

import pytest
from eval_helpers import FIXTURES, make_cfg, score

from mmalign.evals.benchmarks import BenchmarkFilesMissing
from mmalign.evals.benchmarks.pope import aggregate, load, parse_official


@pytest.mark.parametrize("answer, parsed", [
    ("Yes.", "yes"),
    ("yes", "yes"),
    ("No.", "no"),
    ("no, there is not", "no"),
    ("There is no snowboard in the image.", "no"),
    ("Yes, there is a car. No wait", "yes"),   # only the first sentence counts
    ("I do not see one", "no"),
    ("", "yes"),                               # nothing -> the default, yes
    ("NO", "yes"),                             # case-sensitive: "NO" is not a no-word
    ("Not at all", "yes"),                     # neither is "Not"
    ("no,", "no"),                             # commas are removed before splitting
])
def test_official_parsing(answer, parsed):
    assert parse_official(answer) == parsed


def pope_cfg(**kw):
    return make_cfg("pope", FIXTURES / "pope", **kw)


def test_metrics_on_a_hand_built_prediction_file():
    cfg = pope_cfg(data={"splits": ["random"]})
    items = load(cfg).items
    assert [it.target for it in items] == ["yes", "no", "yes", "no", "yes", "no"]
    answers = ["Yes.", "no, there is not", "", "YES", "No", "There is a couch."]
    # TP: 1, 3 (empty reads yes)   TN: 2   FP: 4 (YES), 6 (no no-word)   FN: 5
    out = score(cfg, items, answers)
    m = out["categories"]["random"]
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 2, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["yes_ratio"] == pytest.approx(4 / 6)
    assert out["metrics"]["f1"] == pytest.approx(m["f1"])  # one split: the mean is that split
    # Answers with no yes/no word are listed (the official rule still reads them as yes).
    assert [u["id"] for u in out["unparsable"]] == ["random-3", "random-6"]
    assert [r["correct"] for r in out["items"]] == [True, True, True, False, False, False]


def rows_from_counts(tp, fp, tn, fn):
    return ([{"parsed": "yes", "target": "yes", "category": "random"}] * tp
            + [{"parsed": "yes", "target": "no", "category": "random"}] * fp
            + [{"parsed": "no", "target": "no", "category": "random"}] * tn
            + [{"parsed": "no", "target": "yes", "category": "random"}] * fn)


def test_reproduces_the_published_check_numbers():
    m = aggregate(rows_from_counts(1183, 31, 1379, 317), make_cfg("pope").score)["categories"]["random"]
    assert m["accuracy"] == pytest.approx(0.880412, abs=1e-6)
    assert m["f1"] == pytest.approx(0.871775, abs=1e-6)
    assert m["precision"] == pytest.approx(1183 / 1214)
    assert m["recall"] == pytest.approx(1183 / 1500)
    assert m["yes_ratio"] == pytest.approx(1214 / 2910)


def test_headline_is_the_mean_over_splits():
    cfg = pope_cfg()
    items = load(cfg).items
    assert [it.category for it in items[::6]] == ["random", "popular", "adversarial"]
    answers = [it.target for it in items[:6]] + ["yes"] * 6 + ["no"] * 6  # perfect, all-yes, all-no
    out = score(cfg, items, answers)
    f1 = {k: v["f1"] for k, v in out["categories"].items()}
    labels = [it.target for it in items[6:12]]
    tp = labels.count("yes")
    all_yes_f1 = 2 * (tp / 6) * 1.0 / (tp / 6 + 1.0)
    assert f1 == pytest.approx({"random": 1.0, "popular": all_yes_f1, "adversarial": 0.0})
    assert out["metrics"]["f1"] == pytest.approx((1.0 + all_yes_f1 + 0.0) / 3)


def test_lmms_eval_mode_needs_an_exact_word():
    cfg = pope_cfg(data={"splits": ["random"]}, score={"mode": "lmms_eval"})
    items = load(cfg).items
    out = score(cfg, items, [" Yes ", "No.", "yes", "no", "Yes, it is", "no"])
    assert [r["correct"] for r in out["items"]] == [True, False, True, True, False, True]
    assert [u["id"] for u in out["unparsable"]] == ["random-2", "random-5"]
    m = out["categories"]["random"]
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 0, 2, 0)  # unparsable answers are in no cell
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["yes_ratio"] == pytest.approx(3 / 6)  # lmms-eval's: the share of ground-truth yes


def test_loader_reads_the_official_lines_and_builds_the_prompt():
    items = load(pope_cfg()).items
    assert len(items) == 18
    first = items[0]
    assert first.id == "random-1" and first.target == "yes" and first.media_kind == "image"
    assert first.prompt == "Is there a snowboard in the image?\nAnswer the question using a single word or phrase."
    assert first.media == str(FIXTURES / "pope" / "val2014" / "COCO_val2014_000000310196.jpg")
    custom = load(pope_cfg(prompt={"suffix": " Answer yes or no."}, data={"limit": 2})).items
    assert len(custom) == 6 and custom[0].prompt.endswith("image? Answer yes or no.")


def test_missing_split_is_reported_and_an_empty_folder_is_an_error(tmp_path):
    shutil.copy(FIXTURES / "pope" / "coco_pope_random.json", tmp_path)
    loaded = load(make_cfg("pope", tmp_path))
    assert {it.category for it in loaded.items} == {"random"}
    assert len(loaded.missing) == 2 and "coco_pope_popular.json" in loaded.missing[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkFilesMissing, match="coco_pope_random.json"):
        load(make_cfg("pope", empty))
    with pytest.raises(BenchmarkFilesMissing, match="data.root"):
        load(make_cfg("pope"))
