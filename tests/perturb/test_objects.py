"""OSPO-style object negatives: the text edits and the object-masked condition."""

import numpy as np

from mmalign.data.video import Video
from mmalign.data.video_ops import apply_ops
from mmalign.world import COLORS, Scene, WorldObject, caption, render
from mmalign.perturb.config import build_pairs_config
from mmalign.perturb.diff import check_spans
from mmalign.perturb.facts import Truth
from mmalign.perturb.objects import OspoPairs, object_edits
from mmalign.perturb.pair import Backend, Item


def scene():
    return Scene(seed=2, objects=(
        WorldObject(0, "circle", "red", 14, (4, 4), "right", 1),
        WorldObject(1, "square", "blue", 14, (40, 40)),
        WorldObject(2, "triangle", "green", 16, (4, 44), "up", 1, appear_frame=5),
    ))


def item():
    s = scene()
    idx = [0, 3, 6, 9, 12, 15]
    return Item("v.mp4", "/v.mp4", 3, Truth(s, "t"), Video(render(s)[idx], [i / 8 for i in idx], 8.0, "/v.mp4", idx))


TEXT = "A red circle moves right. A blue square stays still. Then a green triangle appears. The green triangle moves up."


def test_replace_renames_every_mention_to_a_near_miss():
    edits = {(e.detail["object"], e.detail["new"]): e for e, _ in object_edits(TEXT, "replace", Truth(scene(), "t"))}
    e = edits[("green triangle", "green circle")]
    assert e.rejected == TEXT.replace("green triangle", "green circle")
    assert len(e.chosen_spans) == 2
    assert ("green triangle", "red triangle") in edits and ("green triangle", "blue triangle") in edits
    assert ("green triangle", "red circle") not in edits  # shares neither colour nor shape
    assert all(new != "blue square" for _, new in edits)  # never an object that is there


def test_swap_exchanges_two_objects_colours():
    edits = {tuple(e.detail["objects"]): (e, names) for e, names in object_edits(TEXT, "swap", Truth(scene(), "t"))}
    e, names = edits[("blue square", "red circle")]
    assert e.rejected == "A blue circle moves right. A red square stays still. Then a green triangle appears. " \
                         "The green triangle moves up."
    assert sorted(names) == ["blue square", "red circle"]


def test_drop_removes_an_objects_sentences_and_the_space_after_them():
    edits = {e.detail["object"]: e for e, _ in object_edits(TEXT, "drop", Truth(scene(), "t"))}
    assert edits["green triangle"].rejected == "A red circle moves right. A blue square stays still."
    assert edits["red circle"].rejected == TEXT.removeprefix("A red circle moves right. ")
    for e in edits.values():
        check_spans(e.chosen, e.chosen_spans, e.rejected, e.rejected_spans)


def test_ospo_pairs_mask_the_object_the_edit_is_about():
    cfg = build_pairs_config({"generator": "ospo", "answers": "truth"})
    it = item()
    (res,) = OspoPairs(cfg, Backend()).run("pairs", [it])
    assert caption(scene()) == res.records[0]["chosen"]
    assert {r["meta"]["perturbation"] for r in res.records} == {"replace", "swap", "drop"}
    for r in res.records:
        masked = apply_ops(it.video.frames, r["rejected_video"]["ops"], seed=0)
        for name in r["meta"]["objects"]:
            colour = COLORS[name.split(" ")[0]]
            assert (it.video.frames == colour).all(-1).any() and not (masked == colour).all(-1).any()
        others = {o.color for o in scene().objects} - {n.split(" ")[0] for n in r["meta"]["objects"]}
        for c in others:  # the other objects are untouched
            assert np.array_equal((masked == COLORS[c]).all(-1), (it.video.frames == COLORS[c]).all(-1))
        assert r["chosen_sentence_labels"] == [1, 1, 1, 1]
        if r["meta"]["perturbation"] != "drop":
            assert 0 in r["rejected_sentence_labels"]


def test_self_check_keeps_only_pairs_whose_yes_probability_drops():
    cfg = build_pairs_config({"generator": "ospo", "answers": "truth", "ospo": {"self_check": True, "margin": 0.5}})
    flat = Backend(yes_prob=lambda asks: [0.6] * len(asks))
    (res,) = OspoPairs(cfg, flat).run("pairs", [item()])
    assert res.records == [] and sum(res.filtered.values()) == 3
    sharp = Backend(yes_prob=lambda asks: [0.9 if i % 2 == 0 else 0.2 for i in range(len(asks))])  # clean, masked
    (res,) = OspoPairs(cfg, sharp).run("pairs", [item()])
    assert len(res.records) == 3 and all(r["meta"]["self_check"] == 0.7 for r in res.records)


def test_no_truth_no_ospo():
    cfg = build_pairs_config({"generator": "ospo", "answers": "truth"})
    it = item()
    it.truth = None
    (res,) = OspoPairs(cfg, Backend()).run("pairs", [it])
    assert res.skipped == "ospo needs a truth file (object boxes)"
