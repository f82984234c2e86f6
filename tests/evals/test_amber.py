"""AMBER discriminative: exact "Yes" / "No" answers, the 0.001 denominators, one-decimal
rounding and the existence-F1 quirk, computed by hand on the real annotation files."""

import shutil

import pytest
from eval_helpers import FIXTURES, make_cfg, score

from mmalign.evals.benchmarks import BenchmarkFilesMissing
from mmalign.evals.benchmarks.amber import aggregate, load

ROOT = FIXTURES / "amber"

# query id -> answer; truth in the fixture (see fixtures/amber/data/annotations.json)
ANSWERS = {
    1005: "Yes", 1006: "No", 1007: "No",           # state: yes no yes -> right right wrong
    1013: "Yes", 1014: "Yes", 1019: "Yes.",        # number: yes no yes -> right wrong wrong (unparsable)
    1017: "Yes", 1018: "No", 1031: "Yes",          # action: yes no yes -> all right
    8633: "No", 8634: "No", 8635: "Yes",           # existence: no no no -> right right wrong
    13557: "Yes", 13558: "No", 13559: "No",        # relation: yes no yes -> right right wrong
    13560: "no", 13561: "Yes", 13563: "No",        # relation: no yes no -> wrong (unparsable) right right
}


def test_loader_maps_types_to_dimensions_in_the_official_layout():
    items = load(make_cfg("amber", ROOT)).items
    assert len(items) == 18
    cats = {int(it.id): it.category for it in items}
    assert cats[1005] == "attribute-state" and cats[1013] == "attribute-number" and cats[1017] == "attribute-action"
    assert cats[8633] == "existence" and cats[13557] == "relation" and cats[13558] == "relation"
    first = items[0]
    assert first.prompt == "Is the sky sunny in this image?\nAnswer the question using a single word or phrase."
    assert first.media == str(ROOT / "image" / "AMBER_1.jpg") and first.target == "yes"
    only = load(make_cfg("amber", ROOT, data={"splits": ["existence"]})).items
    assert [it.id for it in only] == ["8633", "8634", "8635"]


def test_metrics_by_hand():
    cfg = make_cfg("amber", ROOT)
    items = load(cfg).items
    out = score(cfg, items, [ANSWERS[int(it.id)] for it in items])
    assert [u["id"] for u in out["unparsable"]] == ["1019", "13560"]
    m = out["metrics"]
    # 12 of 18 right; 9 truths "no", 6 of them answered "No"; 8 answers "No", 6 of them right.
    assert m["accuracy"] == round(12 / 18.001 * 100, 1) == 66.7
    assert m["recall"] == round(6 / 9.001 * 100, 1) == 66.7
    assert m["precision"] == round(6 / 8.001 * 100, 1) == 75.0
    assert m["f1"] == round(2 * 0.75 * 0.667 / (0.75 + 0.667 + 0.0001) * 100, 1) == 70.6
    c = out["categories"]
    # existence: 2 of 3 right; 3 "no" truths, 2 answered No; 2 answers No, both right
    assert c["existence"]["accuracy"] == 66.6 and c["existence"]["recall"] == 66.6
    assert c["existence"]["precision"] == 100.0  # 2 / 2.001 = 99.950.. -> 100.0
    # attribute pools state + number + action: 6 of 9 right over 9.003; 3 "no" truths, 2 answered No
    assert c["attribute"]["accuracy"] == round(6 / 9.003 * 100, 1) == 66.6
    assert c["attribute"]["recall"] == round(2 / 3.003 * 100, 1) == 66.6
    assert c["attribute-action"]["accuracy"] == round(3 / 3.001 * 100, 1) == 100.0
    assert c["relation"]["accuracy"] == round(4 / 6.001 * 100, 1) == 66.7


def rows(n, category, truth, parsed):
    return [{"category": category, "target": truth, "parsed": parsed,
             "correct": (truth, parsed) in (("yes", "Yes"), ("no", "No"))}] * n


def test_existence_f1_adds_0_001_where_the_others_add_0_0001():
    # precision 1/200.001 -> 0.5 %, recall 1/1000.001 -> 0.1 %:
    # F1 = 2 * 0.005 * 0.001 / (0.006 + eps): eps 0.001 -> 0.14 % -> 0.1; eps 0.0001 -> 0.16 % -> 0.2
    def dim(category):
        return (rows(1, category, "no", "No") + rows(999, category, "no", "Yes")
                + rows(199, category, "yes", "No"))

    score_cfg = make_cfg("amber").score
    existence = aggregate(dim("existence"), score_cfg)
    relation = aggregate(dim("relation"), score_cfg)
    assert existence["categories"]["existence"]["precision"] == 0.5
    assert existence["categories"]["existence"]["recall"] == 0.1
    assert existence["categories"]["existence"]["f1"] == 0.1
    assert relation["categories"]["relation"]["f1"] == 0.2
    assert existence["metrics"]["f1"] == 0.2  # overall uses 0.0001


def test_attribute_denominators_start_at_0_003():
    out = aggregate(rows(1, "attribute-state", "yes", "Yes"), make_cfg("amber").score)
    assert out["categories"]["attribute-state"]["accuracy"] == round(1 / 1.001 * 100, 1) == 99.9
    assert out["categories"]["attribute"]["accuracy"] == round(1 / 1.003 * 100, 1) == 99.7
    assert "existence" not in out["categories"]


@pytest.mark.parametrize("answer, truth, correct", [
    ("Yes", "yes", True), ("No", "no", True), ("Yes.", "yes", False), ("yes", "yes", False),
    (" No", "no", False), ("", "no", False), ("No", "yes", False),
])
def test_official_answers_must_be_exact(answer, truth, correct):
    cfg = make_cfg("amber", ROOT, data={"splits": ["existence" if truth == "no" else "attribute"], "limit": 1})
    assert score(cfg, load(cfg).items, [answer])["items"][0]["correct"] is correct


def test_first_word_mode_normalises_before_the_official_comparison():
    cfg = make_cfg("amber", ROOT, data={"splits": ["existence"]}, score={"mode": "first_word"})
    out = score(cfg, load(cfg).items, ["No, there is no cloud.", "no.", "I cannot tell"])
    assert [r["correct"] for r in out["items"]] == [True, True, False]
    assert [u["id"] for u in out["unparsable"]] == ["8635"]


def test_missing_file_names_every_place_looked(tmp_path):
    shutil.copy(ROOT / "data" / "annotations.json", tmp_path)
    with pytest.raises(BenchmarkFilesMissing, match=r"query_discriminative\.json.*data/query/query_discriminative"):
        load(make_cfg("amber", tmp_path))


# ---------------------------------------------------------------- the generative task
# Checked by hand once against inference.py itself (NLTK and spaCy replaced by the simple
# backend's rules, and again with a non-trivial similarity): CHAIR / Cover / Hal / Cog equal on
# all 1,004 generative annotations of the official file.

def generative_root(tmp_path):
    import json

    root = tmp_path / "amber"
    (root / "data" / "query").mkdir(parents=True)
    (root / "data" / "annotations.json").write_text(json.dumps([
        {"id": 1, "type": "generative", "truth": ["dog", "grass"], "hallu": ["cat", "ball"]},
        {"id": 2, "type": "generative", "truth": ["car"], "hallu": ["truck"]},
        {"id": 3, "type": "discriminative-hallucination", "truth": "no"}]))
    (root / "data" / "query" / "query_generative.json").write_text(json.dumps([
        {"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
        {"id": 2, "image": "AMBER_2.jpg", "query": "Describe this image."}]))
    (root / "data" / "query" / "query_discriminative.json").write_text(json.dumps([
        {"id": 3, "image": "AMBER_3.jpg", "query": "Is there a cat in this image?"}]))
    (root / "data" / "relation.json").write_text(json.dumps({
        "dog": ["puppy"], "grass": ["lawn"], "cat": ["kitten"], "ball": [], "car": ["vehicle"], "truck": [],
        "tree": [], "image": []}))
    (root / "data" / "safe_words.txt").write_text("image\nvehicle")
    return root


def test_generative_by_hand(tmp_path):
    root = generative_root(tmp_path)
    cfg = make_cfg("amber", root, data={"splits": ["generative", "existence"]})
    loaded = load(cfg)
    gen = [it for it in loaded.items if it.category == "generative"]
    assert [it.prompt for it in gen] == ["Describe this image."] * 2     # the query as written
    assert any("approximates" in n for n in loaded.notes)
    answers = {"1": "A puppy on the lawn chases a kitten near a tree in the image.",
               "2": "A vehicle.", "3": "No"}
    out = score(cfg, loaded.items, [answers[it.id] for it in loaded.items])
    # response 1 nouns in the vocabulary: puppy (covers dog), lawn (covers grass), kitten (hallu cat:
    # Cog, and a hallucinated noun), tree (hallucinated), image (a safe word: counted, never bad)
    # -> 5 nouns, 2 bad. response 2: vehicle, a safe word -> 1 noun, car uncovered, clean.
    m = out["metrics"]
    assert m["chair"] == round(2 / (6 + 0.001) * 100, 1)
    assert m["cover"] == round(2 / (3 + 0.001) * 100, 1)
    assert m["cog"] == round(1 / (3 + 0.001) * 100, 1)
    assert m["hal"] == round(100 - 1 / (2 + 0.001) * 100, 1)
    assert m["accuracy"] == round(1 / 1.001 * 100, 1)          # the discriminative question still scores


def test_generative_official_needs_the_official_backend(tmp_path):
    from mmalign.config import ConfigError

    root = generative_root(tmp_path)
    with pytest.raises(ConfigError, match="score.backend=official"):
        load(make_cfg("amber", root, data={"splits": ["generative"]}, official=True))


def test_generative_official_backend_missing_stops_before_generating(tmp_path, monkeypatch):
    import sys

    from mmalign.evals.benchmarks import amber

    monkeypatch.setitem(sys.modules, "spacy", None)   # spaCy not installed
    amber.backend.cache_clear()
    with pytest.raises(amber.BackendUnavailable, match="en_core_web_lg"):
        load(make_cfg("amber", generative_root(tmp_path), data={"splits": ["generative"]},
                      score={"backend": "official"}))
    amber.backend.cache_clear()
