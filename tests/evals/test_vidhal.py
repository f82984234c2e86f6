"""VidHal: files in the official format (written here: the repo ships no licence), the MCQA
letter parsing and its quirks, the ordering parser, and NDCG computed by hand."""

import json
import math

import pytest
from eval_helpers import make_cfg, score

from mmalign.evals.benchmarks import BenchmarkFilesMissing
from mmalign.evals.benchmarks.vidhal import MCQA_SYSTEM, load, ndcg, parse_option, parse_order

ORDERS = {"attribute_1": {"A": "2", "B": "1", "C": "3"}, "order_1": {"A": "3", "B": "2", "C": "1"}}


def folder(root):
    root.mkdir(parents=True, exist_ok=True)
    annotations = [
        {"video": "attribute_1", "aspect": "attribute", "subaspect": "count", "dataset": "x",
         "captions": {"1": "Two dogs run.", "2": "Three dogs run.", "3": "Four dogs run."}},
        {"video": "order_1", "aspect": "order", "subaspect": "order", "dataset": "x",
         "captions": {"1": "Two orange trucks at the junction.", "2": "One truck.", "3": "No trucks."}},
    ]
    (root / "annotations.json").write_text(json.dumps(annotations))
    (root / "options.json").write_text(json.dumps(ORDERS))
    return root


def test_mcqa_prompt_keeps_the_published_option_order(tmp_path):
    items = load(make_cfg("vidhal", folder(tmp_path))).items
    assert items[0].system == MCQA_SYSTEM
    assert items[0].prompt.endswith("most accurately.\n\nA. Three dogs run.\nB. Two dogs run.\nC. Four dogs run.")
    assert items[0].media == str(tmp_path / "videos" / "attribute_1.mp4")


@pytest.mark.parametrize("response, parsed", [
    ("B", "B"), ("b.", "B"), ("The answer is C", "C"), ("Option (a)", "A"),
    ("I pick a caption", "A"),           # official quirk: the article "a" reads as option A
    ("Two dogs run", "Two dogs run"),    # no letter: the response is kept
])
def test_option_parsing(response, parsed):
    assert parse_option(response) == parsed


def test_mcqa_accuracy_by_hand(tmp_path):
    cfg = make_cfg("vidhal", folder(tmp_path))
    items = load(cfg).items
    # attribute_1: right option B; order_1: right option C ("Two orange trucks at the junction.")
    out = score(cfg, items, ["B.", "two orange trucks at the junction"])
    assert [r["correct"] for r in out["items"]] == [True, True]  # the caption itself counts
    out = score(cfg, items, ["A", "Two orange trucks at the junction"])
    assert [r["correct"] for r in out["items"]] == [False, False]  # the caption check is case-sensitive
    assert [u["id"] for u in out["unparsable"]] == ["order_1"]
    assert out["metrics"]["accuracy"] == 0.0 and out["categories"]["order"]["accuracy"] == 0.0


@pytest.mark.parametrize("response, order", [
    ("B, A, C", ["B", "A", "C"]),
    ("BAC", ["B", "A", "C"]),
    ("C > A > B", ["C", "A", "B"]),
    ("A", ["A"]),
    ("B. Two dogs run. A. Three dogs run. C. Four dogs run.", ["B", "A", "C"]),
])
def test_order_parsing(response, order):
    assert parse_order(response) == order


def test_ndcg_by_hand():
    rank = ORDERS["attribute_1"]  # B is rank 1, A rank 2, C rank 3
    best = 3 + 2 / math.log2(3) + 1 / 2
    worst = 1 + 2 / math.log2(3) + 3 / 2
    a_b_c = 2 + 3 / math.log2(3) + 1 / 2  # ranks 2, 1, 3 -> relevance 2, 3, 1
    assert ndcg(["B", "A", "C"], rank) == pytest.approx(1.0)
    assert ndcg(["C", "A", "B"], rank) == pytest.approx(0.0)
    assert ndcg(["A", "B", "C"], rank) == pytest.approx((a_b_c - worst) / (best - worst))
    assert ndcg(["A", "B"], rank) == 0.0 and ndcg(["A", "A", "C"], rank) == 0.0


def test_naive_ordering_task(tmp_path):
    cfg = make_cfg("vidhal", folder(tmp_path), data={"options": {"task": "naive_ordering"}})
    items = load(cfg).items
    assert "provide your response as: B, A, C.\n\nA. " in items[0].prompt
    out = score(cfg, items, ["B, A, C", "A"])
    assert [r["ndcg"] for r in out["items"]] == [1.0, 0.0]
    assert out["metrics"]["ndcg"] == pytest.approx(0.5)
    assert [u["id"] for u in out["unparsable"]] == ["order_1"]


def test_missing_options_file_is_named(tmp_path):
    folder(tmp_path)
    (tmp_path / "options.json").unlink()
    with pytest.raises(BenchmarkFilesMissing, match="options.json"):
        load(make_cfg("vidhal", tmp_path))


def test_the_official_ordering_predictions_file_scores_its_letter_lists(tmp_path):
    """VidHal's inference writes {video: [letters]} for naive ordering (the order its
    process_response parsed), and pipelines/evaluation.py scores the list as it is. Read as
    not-text, every list became an empty answer: NDCG 0 for every video. By hand: attribute_1
    right (B, A, C: 1.0), order_1 partial (C, B: 0, as the official code gives a partial order)."""
    from mmalign.cli import main

    root = folder(tmp_path / "vidhal")
    preds = tmp_path / "naive_ordering.json"
    preds.write_text(json.dumps({"attribute_1": ["B", "A", "C"], "order_1": ["C", "B"]}, indent=4))
    cfg = tmp_path / "vidhal.yaml"
    cfg.write_text(f"benchmark: vidhal\noutput_dir: {tmp_path / 'out'}\ndata: {{root: {root}, options: {{task: naive_ordering}}}}\n")
    assert main(["eval", "--config", str(cfg), "--predictions", str(preds)]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert [r["ndcg"] for r in m["items"]] == [1.0, 0.0] and m["metrics"]["ndcg"] == pytest.approx(0.5)
    assert [u["id"] for u in m["unparsable"]] == ["order_1"]
    # a letter that is no option scores 0 (the official code stops with a KeyError there)
    preds.write_text(json.dumps({"attribute_1": ["B", "A", "D"], "order_1": ["C", "B", "A"]}))
    assert main(["eval", "--config", str(cfg), "--predictions", str(preds), "--overwrite"]) == 0
    (m,) = json.loads((tmp_path / "out" / "results.json").read_text())["models"]
    assert [r["ndcg"] for r in m["items"]] == [0.0, 1.0]
