"""Hallucination injection: every edit changes exactly its recorded spans, and applying the
spans to the chosen text gives the rejected text; with truth, the edit is false."""

import numpy as np
import pytest

from mmalign.data.records import sentence_spans
from mmalign.world import caption, sample_scene
from mmalign.perturb.diff import apply_spans, check_spans, sentences_touched
from mmalign.perturb.facts import Truth, check_sentence, event_frame
from mmalign.perturb.inject import EDIT_FINDERS, InjectContext, inject, make_injection, prior_injection, prior_request

TYPES = sorted(EDIT_FINDERS)


def assert_exact(inj):
    """The spans cover what changed and nothing else."""
    check_spans(inj.chosen, inj.chosen_spans, inj.rejected, inj.rejected_spans)
    assert apply_spans(inj.chosen, inj.chosen_spans, inj.rejected, inj.rejected_spans) == inj.rejected
    for (a, b), (c, d) in zip(inj.chosen_spans, inj.rejected_spans):
        assert inj.chosen[a:b] != inj.rejected[c:d]


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_changes_exactly_its_spans_and_is_false_with_truth(kind):
    applied = 0
    for seed in range(40):
        scene = sample_scene(seed)
        text = caption(scene)
        inj = inject(text, kind, np.random.default_rng(seed), InjectContext("world", Truth(scene, "x")))
        if inj is None:
            continue
        applied += 1
        assert inj.type == kind and inj.chosen == text
        assert_exact(inj)
        sentences = sentence_spans(inj.rejected)
        touched = [inj.rejected[s:e] for i, (s, e) in enumerate(sentences)
                   if i in sentences_touched(sentences, inj.rejected_spans)]
        if kind == "order":  # both sentences true on their own, their events on different frames
            a, b = (event_frame(t, scene) for t in touched)
            assert a is not None and b is not None and a != b
        else:
            assert any(check_sentence(t, scene) == 0 for t in touched), (text, inj.rejected)
    assert applied >= 10, f"{kind} applied to only {applied} of 40 scenes"


def test_hand_checked_edits_on_one_caption():
    text = "A red circle moves left. Then a blue square appears."
    ctx = InjectContext("world")
    rng = np.random.default_rng(0)
    count = [i for i in EDIT_FINDERS["count"](text, ctx) if i.rejected.startswith("Two")][0]
    assert count.rejected == "Two red circles move left. Then a blue square appears."
    assert count.chosen_spans == [(0, 1), (6, 12), (13, 18)]
    assert count.rejected_spans == [(0, 3), (8, 15), (16, 20)]
    direction = {i.rejected for i in EDIT_FINDERS["direction"](text, ctx)}
    assert "A red circle moves right. Then a blue square appears." in direction
    assert "A red circle stays still. Then a blue square appears." in direction
    assert "A red circle moves left. Then a blue square disappears." in direction
    obj = inject(text, "object", rng, ctx)
    assert obj.chosen_spans in ([(6, 12)], [(37, 43)])  # a shape word, nothing else
    insert = inject(text, "cooccurrence", rng, ctx)
    assert insert.chosen_spans[0][0] == insert.chosen_spans[0][1]  # an insertion
    assert insert.rejected[slice(*insert.rejected_spans[0])].startswith(" There is also a ")
    order = inject("Then a red circle appears. Then a blue square leaves.", "order", rng, ctx)
    assert order.rejected == "Then a blue square leaves. Then a red circle appears."


def test_edits_on_everyday_text_use_coco_words():
    text = "Two dogs chase a red ball before the man opens the door."
    ctx = InjectContext("coco")
    for kind in TYPES:
        inj = inject(text, kind, np.random.default_rng(1), ctx)
        assert inj is not None, kind
        assert_exact(inj)
    assert inject(text, "count", np.random.default_rng(1), ctx).rejected.split(" ")[0] in ("One", "Three")
    before_after = [i.rejected for i in EDIT_FINDERS["order"](text, ctx)]
    assert "Two dogs chase a red ball after the man opens the door." in before_after
    objects = {i.detail["new"]: i.rejected for i in EDIT_FINDERS["object"](text, ctx)}
    assert objects["person"] == "Two people chase a red ball before the man opens the door."
    assert objects["hair drier"] == "Two hair driers chase a red ball before the man opens the door."
    assert objects["bus"] == "Two buses chase a red ball before the man opens the door."


def test_no_edit_is_none():
    assert inject("Nothing here", "order", np.random.default_rng(0), InjectContext("coco")) is None
    with pytest.raises(ValueError, match="unknown injection type"):
        inject("x", "colour", np.random.default_rng(0), InjectContext())


def test_language_prior_replaces_a_later_sentence_with_the_continuation():
    text = "A red circle moves left. Then a blue square appears. The blue square moves up."
    k, prefix = prior_request(text, np.random.default_rng(3))
    assert k in (1, 2) and text.startswith(prefix) and prefix.endswith(". ")
    inj = prior_injection(text, k, " a tree grows there")
    assert_exact(inj)
    assert inj.rejected[slice(*inj.rejected_spans[0])] == "a tree grows there."
    assert prior_injection(text, k, "  ") is None
    assert prior_request("One sentence only.", np.random.default_rng(0)) is None


def test_make_injection_refuses_overlapping_substitutions():
    with pytest.raises(ValueError, match="overlap"):
        make_injection("abcdef", "x", [(0, 3, "X"), (2, 4, "Y")])
