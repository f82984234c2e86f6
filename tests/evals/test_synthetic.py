"""The synthetic benchmark: on a video whose content this test sets, the questions' truth is
right (checked against the scene and against the decoded pixels); the loader's splits; and a
world YAML as data.root."""

import json

import numpy as np
import pytest
from eval_helpers import make_cfg, score

from mmalign.evals.benchmarks.synthetic import load, prepare
from mmalign.evals.runner import load_media
from mmalign.world import COLORS, Scene, WorldObject, benchmark_items, build_world, render, write_video


def hand_set_scene() -> Scene:
    """A still red square; a blue circle moving down, gone at frame 12; a green triangle
    moving right, appearing at frame 4."""
    return Scene(seed=7, objects=(
        WorldObject(0, "square", "red", 14, (4, 4)),
        WorldObject(1, "circle", "blue", 16, (44, 2), "down", 2, disappear_frame=12),
        WorldObject(2, "triangle", "green", 18, (2, 40), "right", 1, appear_frame=4),
    ))


def write_scene_world(root, scene: Scene):
    write_video(render(scene), root / "videos" / "vid0000.mp4", scene.fps)
    rows = [{**it, "id": f"vid0000-{it['id']}", "video": "videos/vid0000.mp4", "split": "test"}
            for it in benchmark_items(scene)]
    (root / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def scene_world(tmp_path_factory):
    return write_scene_world(tmp_path_factory.mktemp("scene-world"), hand_set_scene())


def questions(items, category):
    """{(role, question): answer} of one question type (a repeated question appears once)."""
    return {(it.meta["role"], it.prompt.split("\n")[0]): it.target for it in items if it.category == category}


def test_truth_matches_the_scene_the_test_set(scene_world):
    items = load(make_cfg("synthetic", scene_world)).items
    present = ("red square", "blue circle", "green triangle")
    existence = questions(items, "existence")
    assert {q: a for (r, q), a in existence.items() if r == "basic"} == {
        f"Is there a {name} in the video?": "yes" for name in present}
    absent = {q: a for (r, q), a in existence.items() if r == "hallucination"}
    assert absent and set(absent.values()) == {"no"}
    assert not any(name in q for q in absent for name in present)
    count = questions(items, "count")
    assert count[("basic", "Are there exactly 3 objects in the video?")] == "yes"
    assert {q for r, q in count if r == "hallucination"} <= {"Are there exactly 2 objects in the video?",
                                                            "Are there exactly 4 objects in the video?"}
    direction = questions(items, "direction")
    assert direction[("basic", "Does the blue circle move down?")] == "yes"
    assert direction[("hallucination", "Does the blue circle move up?")] == "no"
    assert direction[("basic", "Does the green triangle move right?")] == "yes"
    assert direction[("hallucination", "Does the green triangle move left?")] == "no"
    assert direction[("basic", "Does the red square stay still?")] == "yes"
    order = questions(items, "order")  # the triangle appears (frame 4) before the circle disappears (12)
    assert order == {("basic", "Does the green triangle appear before the blue circle disappears?"): "yes",
                     ("hallucination", "Does the blue circle disappear before the green triangle appears?"): "no"}
    assert all(it.prompt.endswith("\nAnswer the question using 'yes' or 'no'.") for it in items)


def colour_mask(frame, colour):
    return (np.abs(frame.astype(int) - COLORS[colour]).sum(axis=-1) < 60)


def test_the_decoded_video_shows_what_the_truth_says(scene_world):
    cfg = make_cfg("synthetic", scene_world, sampling={"num_frames": 16})
    item = load(cfg).items[0]
    frames = load_media((item.media, item.media_kind), cfg.sampling).frames
    assert len(frames) == 16
    blue_y = [np.nonzero(colour_mask(f, "blue"))[0].mean() for f in frames[:12]]
    assert all(b > a for a, b in zip(blue_y, blue_y[1:]))  # moves down while visible
    assert not colour_mask(frames[13], "blue").any()  # gone from frame 12
    green = [colour_mask(f, "green").any() for f in frames]
    assert green == [False] * 4 + [True] * 12  # appears at frame 4
    green_x = [np.nonzero(colour_mask(f, "green"))[1].mean() for f in frames[4:]]
    assert all(b > a for a, b in zip(green_x, green_x[1:]))  # moves right
    red = [np.argwhere(colour_mask(f, "red")).mean(axis=0) for f in frames]
    assert np.allclose(red, red[0], atol=0.5)  # stays still


def test_truthful_answers_score_one(scene_world):
    cfg = make_cfg("synthetic", scene_world)
    items = load(cfg).items
    out = score(cfg, items, ["Yes." if it.target == "yes" else "No, it does not." for it in items])
    assert out["metrics"] == {"accuracy": 1.0, "basic_accuracy": 1.0, "halluc_accuracy": 1.0, "pair_accuracy": 1.0}
    always_yes = score(cfg, items, ["Yes"] * len(items))
    assert always_yes["metrics"]["pair_accuracy"] == 0.0 and always_yes["metrics"]["basic_accuracy"] == 1.0


def test_default_split_is_the_held_out_test_quarter(tmp_path):
    build_world(tmp_path, n_videos=4, seed=3, show_progress=False)
    items = load(make_cfg("synthetic", tmp_path)).items
    assert items and {it.media for it in items} == {str(tmp_path / "videos" / "vid0003.mp4")}
    train = load(make_cfg("synthetic", tmp_path, data={"splits": ["train"], "limit": 1})).items
    assert {it.group for it in train} == {"vid0000-existence0"}


def test_world_yaml_as_root_is_built_first(tmp_path):
    spec = tmp_path / "world.yaml"
    spec.write_text(f"out: {tmp_path / 'w'}\nn_videos: 4\nseed: 1\n")
    cfg = make_cfg("synthetic", spec)
    prepare(cfg)
    assert (tmp_path / "w" / "bench.jsonl").is_file() and load(cfg).items
