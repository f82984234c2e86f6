"""VideoHallucer: the whole-word rule on awkward answers, pair accuracy and "overall" by hand
on the real annotation files, the older first-sentence rule, and missing categories."""

import shutil

import pytest
from eval_helpers import FIXTURES, make_cfg, score

from mmalign.evals.benchmarks import BenchmarkFilesMissing
from mmalign.evals.benchmarks.videohallucer import CATEGORIES, load

ROOT = FIXTURES / "videohallucer"


def test_loader_reads_pairs_with_each_question_on_its_own_video():
    items = load(make_cfg("videohallucer", ROOT)).items
    assert len(items) == 5 * 2 * 2  # 5 categories x 2 pairs x (basic, hallucinated)
    assert [it.category for it in items[::4]] == list(CATEGORIES)
    basic, halluc = items[0], items[1]
    assert basic.prompt == "Is there a baby in the video?\nAnswer the question using 'yes' or 'no'."
    assert (basic.target, halluc.target) == ("yes", "no") and basic.group == halluc.group
    assert basic.media == str(ROOT / "object_relation" / "videos" / "1052_6143391925_916_970.mp4")
    sem = [it for it in items if it.category == "semantic_detail"]
    assert sem[0].media.endswith("semantic_detail/videos/hp2YHxZ2v_k_a.mp4")
    assert sem[1].media.endswith("semantic_detail/videos/hp2YHxZ2v_k_b.mp4")


@pytest.mark.parametrize("answer, truth, correct, unparsable", [
    ("Yes.", "yes", True, False),
    ("no, there is not", "no", True, False),
    ("YES", "yes", True, False),
    ("There is no doll.", "no", True, False),
    ("", "yes", False, True),
    ("yesterday", "yes", False, True),        # whole words only
    ("I know", "no", False, True),            # "know" is not "no"
    ("Yes and no", "yes", True, False),       # official quirk: both words -> right either way
    ("Yes and no", "no", True, False),
    ("No.", "yes", False, False),
])
def test_whole_word_rule(answer, truth, correct, unparsable):
    cfg = make_cfg("videohallucer", ROOT, data={"splits": ["object_relation"], "limit": 1})
    items = load(cfg).items
    item = items[0] if truth == "yes" else items[1]
    row = score(cfg, [item], [answer])["items"][0]
    assert (row["correct"], row["unparsable"]) == (correct, unparsable)


RIGHT = {"yes": "Yes.", "no": "No, it is not."}
WRONG = {"yes": "No.", "no": "yes"}


def answers_for(items, wrong_ids):
    return [WRONG[it.target] if it.id in wrong_ids else RIGHT[it.target] for it in items]


def test_pair_accuracy_and_overall_by_hand():
    cfg = make_cfg("videohallucer", ROOT)
    items = load(cfg).items
    wrong = {
        "object_relation-1-hallucination",          # pair 1 broken: 1/2 pairs
        "temporal-0-basic", "temporal-1-basic",     # both pairs broken: 0/2
        "external_factual-0-basic", "external_factual-0-hallucination",  # one pair, both wrong: 1/2
    }
    out = score(cfg, items, answers_for(items, wrong))
    cats = out["categories"]
    assert cats["object_relation"] == {"basic_accuracy": 1.0, "halluc_accuracy": 0.5, "accuracy": 0.5, "pairs": 2}
    assert cats["temporal"] == {"basic_accuracy": 0.0, "halluc_accuracy": 1.0, "accuracy": 0.0, "pairs": 2}
    assert cats["semantic_detail"]["accuracy"] == 1.0
    assert cats["external_factual"] == {"basic_accuracy": 0.5, "halluc_accuracy": 0.5, "accuracy": 0.5, "pairs": 2}
    assert out["metrics"]["accuracy"] == pytest.approx((0.5 + 0.0 + 1.0 + 0.5 + 1.0) / 5)
    assert out["metrics"]["basic_accuracy"] == pytest.approx((1 + 0 + 1 + 0.5 + 1) / 5)
    assert out["metrics"]["halluc_accuracy"] == pytest.approx((0.5 + 1 + 1 + 0.5 + 1) / 5)


def test_a_pair_with_a_failed_video_is_left_out():
    cfg = make_cfg("videohallucer", ROOT, data={"splits": ["temporal"]})
    items = load(cfg).items
    answers = answers_for(items, set())
    answers[0] = None  # the basic question's video failed to load
    out = score(cfg, items, answers)
    assert out["categories"]["temporal"]["pairs"] == 1 and out["metrics"]["accuracy"] == 1.0
    assert out["counts"] == {"items": 4, "scored": 3, "media_errors": 1, "unparsable": 0}
    assert out["media_errors"][0]["id"] == "temporal-0-basic"


def test_first_sentence_mode_is_the_older_exact_rule():
    cfg = make_cfg("videohallucer", ROOT, data={"splits": ["object_relation"], "limit": 1},
                   score={"mode": "first_sentence"})
    items = load(cfg).items
    rows = score(cfg, items, ["Yes. There is a baby.", "No, there is no doll."])["items"]
    assert [r["correct"] for r in rows] == [True, False]
    assert rows[1]["parsed"] == "no, there is no doll" and rows[1]["unparsable"]


def test_missing_category_is_reported_and_overall_averages_the_rest(tmp_path):
    for cat in CATEGORIES[:4]:
        shutil.copytree(ROOT / cat, tmp_path / cat)
    cfg = make_cfg("videohallucer", tmp_path)
    loaded = load(cfg)
    assert len(loaded.missing) == 1 and "external_nonfactual/external_nonfactual.json" in loaded.missing[0]
    out = score(cfg, loaded.items, answers_for(loaded.items, {"temporal-0-basic", "temporal-1-basic"}))
    assert out["metrics"]["accuracy"] == pytest.approx((1 + 0 + 1 + 1) / 4)  # evaluation.py: mean over those run
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkFilesMissing, match="object_relation/object_relation.json"):
        load(make_cfg("videohallucer", empty))
    with pytest.raises(BenchmarkFilesMissing, match="not a folder"):
        load(make_cfg("videohallucer", tmp_path / "does-not-exist"))
