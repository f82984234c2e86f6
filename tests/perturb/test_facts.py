"""The truth the generators use: the sentence checker, per-clip captions, object boxes."""

import numpy as np
import pytest

from mmalign.world import Scene, WorldObject, caption, sample_scene
from mmalign.perturb.facts import Truth, check_sentence, clip_captions, event_frame, label_sentences


def scene():
    """A still red square; a blue circle moving down, gone at frame 12; a green triangle moving
    right, appearing at frame 4 (16 frames of 64 x 64)."""
    return Scene(seed=1, objects=(
        WorldObject(0, "square", "red", 14, (4, 4)),
        WorldObject(1, "circle", "blue", 16, (44, 2), "down", 2, disappear_frame=12),
        WorldObject(2, "triangle", "green", 18, (2, 40), "right", 1, appear_frame=4),
    ))


@pytest.mark.parametrize("sentence, label", [
    ("A red square stays still.", 1),
    ("A red square moves left.", 0),
    ("The blue circle moves down.", 1),
    ("Then a green triangle appears.", 1),
    ("Then a red square appears.", 0),  # there from the start
    ("Then the blue circle disappears.", 1),
    ("Then the green triangle disappears.", 0),
    ("A yellow circle moves down.", 0),  # not in the scene
    ("There is a green triangle.", 1),
    ("There is also a white square.", 0),
    ("There is a white square flying over the sea.", 0),
    ("There is a red square near the edge.", None),  # there, but the rest is not checked
    ("Two red squares stay still.", 0),
    ("The video is nice.", None),
])
def test_checker_labels_world_sentences(sentence, label):
    assert check_sentence(sentence, scene()) == label


def test_true_captions_are_all_factual():
    for seed in range(40):
        s = sample_scene(seed)
        assert label_sentences(caption(s), s) == [1] * len(caption(s).split(". "))


def test_an_unreadable_sentence_means_no_labels():
    assert label_sentences("A red square stays still. It is sunny.", scene()) is None


def test_event_frames():
    s = scene()
    assert event_frame("Then a green triangle appears.", s) == 4
    assert event_frame("Then the blue circle disappears.", s) == 12
    assert event_frame("A red square stays still.", s) is None


def test_clip_captions_follow_the_scene():
    caps = clip_captions(scene(), 4)  # frames 0-3, 4-7, 8-11, 12-15
    assert len(caps) == 4
    assert "green" not in caps[0] and "A green triangle appears at the bottom left and moves right." in caps[1]
    assert "Then the blue circle disappears." in caps[2]  # last seen at frame 11
    assert "blue" not in caps[3]
    assert caps[0].startswith("A red square is at the top left and stays still.")


def test_boxes_are_fractions_of_the_frame_for_the_sampled_frames():
    truth = Truth(scene(), "x")
    boxes = truth.boxes([0, 12], [1, 2])
    assert boxes[0] == [[44 / 64, 2 / 64, 60 / 64, 18 / 64]]  # the triangle is not there yet
    assert boxes[1] == [[(2 + 8) / 64, 40 / 64, (2 + 8 + 18) / 64, 58 / 64]]  # the circle is gone
    assert np.isclose(boxes[0][0][2] - boxes[0][0][0], 16 / 64)
