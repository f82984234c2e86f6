"""APASI self-injection: how many and which sentences, which guide objects, how the completion
is asked for and put in, and the records."""

import math

import numpy as np
import pytest

from mmalign.data.records import sentence_spans
from mmalign.world import Scene, WorldObject
from mmalign.perturb.config import build_pairs_config
from mmalign.perturb.diff import check_spans
from mmalign.perturb.facts import Truth
from mmalign.perturb.pair import Backend, Item
from mmalign.perturb.self_inject import (ApasiPairs, cooccurrence, guided_sentence, pick_sentences, plan_replacement,
                                 replace_count, sentence_weights)


@pytest.mark.parametrize("n, rate, expected", [(5, 0.2, 1), (3, 0.2, 1), (2, 0.2, None), (1, 0.9, None),
                                               (10, 0.25, 2), (10, 0.35, 4), (4, 0.7, 3), (4, 0.9, None)])
def test_replace_count_is_round_rate_n_never_the_first(n, rate, expected):
    assert replace_count(n, rate) == expected  # round(2.5) = 2 (Python rounds half to even)


def test_weights_rise_linearly_in_sqrt_i_from_1_to_2():
    w = sentence_weights(5)  # i = 1..4: a = 1 / (sqrt(4) - sqrt(1)) = 1, b = 0 -> sqrt(i)
    raw = np.sqrt([1, 2, 3, 4])
    assert w == pytest.approx(raw / raw.sum())
    w10 = sentence_weights(10)
    assert w10[-1] / w10[0] == pytest.approx(2.0)
    assert sentence_weights(5, weighted=False) == pytest.approx([0.25] * 4)
    assert sentence_weights(2) == pytest.approx([1.0])


def test_picked_sentences_follow_the_weights_and_skip_the_first():
    counts = np.zeros(5)
    rng = np.random.default_rng(0)
    for _ in range(4000):
        (i,) = pick_sentences(5, 1, rng)
        counts[i] += 1
    assert counts[0] == 0
    assert counts[1:] / 4000 == pytest.approx(sentence_weights(5), abs=0.025)
    assert all(len(set(pick_sentences(6, 3, rng))) == 3 for _ in range(50))  # without replacement


def test_cooccurrence_counts_each_description_once_most_frequent_first():
    table = cooccurrence(["A red circle. A blue square. A red circle again.",
                          "A red circle and a green triangle.",
                          "A blue square and a red circle."], "world")
    assert table["red circle"] == ["blue square", "green triangle"]  # 2 descriptions vs 1
    assert table["green triangle"] == ["red circle"]


def test_guide_objects_are_absent_and_co_occur_with_a_kept_object():
    text = "A red circle moves left. A blue square stays still. Then the blue square disappears."
    table = {"red circle": ["blue square", "green triangle", "white circle", "purple circle"],
             "blue square": ["red circle", "yellow square"]}
    for seed in range(30):
        plan, why = plan_replacement(text, 0.5, np.random.default_rng(seed), table, "world", ["There is a {}"],
                                     top_k=2)
        assert why is None and len(plan) == round(0.5 * 3) == 2
        for i, obj, template in plan:
            assert i != 0 and template == "There is a {}"
            # the first 2 co-occurring objects that the text does not describe (APASI's top-k)
            assert obj in ("green triangle", "white circle", "yellow square")
    plan, why = plan_replacement("One sentence only.", 0.5, np.random.default_rng(0), table, "world", ["{}"])
    assert plan == [] and "round" in why


def test_guided_sentence_cuts_at_the_first_full_stop():
    assert guided_sentence("There is a dog", " sleeping on a mat. It is old") == "There is a dog sleeping on a mat."
    assert guided_sentence("There is a dog", "") == "There is a dog."
    assert guided_sentence("There is a dog", "barking! Loudly") == "There is a dog barking."


def test_apasi_records_prefixes_and_spans():
    scene = Scene(seed=3, objects=(WorldObject(0, "circle", "red", 14, (4, 4), "right", 1),
                                   WorldObject(1, "square", "blue", 14, (40, 40))))
    text = "A red circle moves right. A blue square stays still. The red circle moves right. The blue square stays still."
    asked = []

    def complete(items, **kw):
        asked.append((items, kw))
        return [f"number {len(asked)}. ignored" for _ in items]

    cfg = build_pairs_config({"generator": "apasi", "answers": "truth", "apasi": {"replace_rates": [0.5]}})
    gen = ApasiPairs(cfg, Backend(complete=complete))
    item = Item("v.mp4", "/v.mp4", 1, Truth(scene, "t"), None)
    gen.start_phase("pairs", {"v.mp4": {"description": text}, "w.mp4": {"description": "A green circle moves up. "
                                                                                       "A red circle moves up."}})
    (res,) = gen.run("pairs", [item])
    (r,) = res.records
    assert len(asked) == 2 and asked[0][1] == {"max_new_tokens": 64, "repetition_penalty": 1.1}
    (q1, p1), = asked[0][0]
    (q2, p2), = asked[1][0]
    assert q1 == q2 == cfg.prompt
    sentences = sentence_spans(text)
    first, second = r["meta"]["replaced"]
    assert p1 == text[: sentences[first][0]] + f"There is a {r['meta']['guide_objects'][0]}"
    # the second prefix already holds the first replacement
    assert p2.startswith(text[: sentences[first][0]] + f"There is a {r['meta']['guide_objects'][0]} number 1. ")
    check_spans(r["chosen"], [tuple(s) for s in r["chosen_spans"]], r["rejected"], [tuple(s) for s in r["rejected_spans"]])
    assert [r["rejected"][a:b] for a, b in r["rejected_spans"]] == [
        f"There is a {r['meta']['guide_objects'][0]} number 1.", f"There is a {r['meta']['guide_objects'][1]} number 2."]
    assert r["meta"]["guide_objects"][0] == "green circle"  # the only co-occurring absent object
    labels = [0 if i in (first, second) else 1 for i in range(4)]
    assert r["chosen_sentence_labels"] == [1, 1, 1, 1] and r["rejected_sentence_labels"] == labels
    assert r["difficulty"] == 0.5 and math.isclose(r["meta"]["replace_rate"], 0.5)
