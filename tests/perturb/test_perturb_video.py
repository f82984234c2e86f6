"""perturb.video: the perturbation catalogue, TEMPLE's caption-list perturbation and filters,
and the video pair builders on the synthetic world with a stub model."""

import numpy as np
import pytest

from mmalign.data.video import Video, load_video
from mmalign.data.video_ops import apply_ops
from mmalign.world import COLORS, Scene, WorldObject, render
from mmalign.perturb.config import FRAME_PERTURBATIONS, build_pairs_config
from mmalign.perturb.facts import Truth
from mmalign.perturb.pair import Item, op_seed
from mmalign.perturb.video import (FrameOpsPairs, RrpoPairs, TemplePairs, frame_ops, perturb_captions, temple_difficulty,
                           temple_filter, temple_ops)


def scene():
    return Scene(seed=1, objects=(
        WorldObject(0, "square", "red", 14, (4, 4)),
        WorldObject(1, "circle", "blue", 16, (44, 2), "down", 2, disappear_frame=12),
    ))


def rendered_item(indices=(0, 2, 4, 6, 8, 10, 12, 14)):
    s = scene()
    frames = render(s)[list(indices)]
    video = Video(frames, [i / 8 for i in indices], 8.0, "/v.mp4", list(indices))
    return Item("v.mp4", "/v.mp4", 11, Truth(s, "t.json"), video)


def numbered(t=8):
    return np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None] * 20, (t, 8, 8, 3)).copy()


@pytest.mark.parametrize("name", FRAME_PERTURBATIONS)
def test_strength_zero_is_the_identity_and_strength_one_changes_the_clip(name):
    item = rendered_item()
    frames = item.video.frames
    rng = np.random.default_rng(0)
    assert np.array_equal(apply_ops(frames, frame_ops(name, 0.0, len(frames), item, rng), seed=1), frames)
    changed = apply_ops(frames, frame_ops(name, 1.0, len(frames), item, rng), seed=1)
    assert changed.shape != frames.shape or not np.array_equal(changed, frames)


def test_frame_ops_do_what_they_say_at_full_strength():
    f = numbered(8)
    def order(name, s=1.0):
        return (apply_ops(f, frame_ops(name, s, 8), seed=2)[:, 0, 0, 0] // 20).tolist()
    assert order("reverse") == [7, 6, 5, 4, 3, 2, 1, 0]
    assert order("freeze") == [0] * 8
    assert order("freeze", 0.5) == [0, 1, 2, 3, 4, 4, 4, 4]  # start = round(0.5 * 7) = 4 (half to even)
    assert order("speed_up") == [0, 4]
    assert order("slow_down", 1 / 3) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert order("frame_drop") == [0, 7]  # keep 0.25: round(0.25 * 8) = 2 frames, spread evenly
    assert order("local_shuffle", 1 / 7) != list(range(8))  # window 2: neighbours trade places
    moved = order("local_shuffle", 1 / 7)
    assert sorted(moved) == list(range(8)) and all(abs(p - v) <= 1 for p, v in enumerate(moved))


def test_rrpo_local_shuffle_moves_no_frame_by_the_window_or_more():
    f = np.broadcast_to(np.arange(16, dtype=np.uint8)[:, None, None, None], (16, 4, 4, 3)).copy()
    for seed in range(30):
        out = apply_ops(f, [{"op": "shuffle", "window": 4}], seed=seed)[:, 0, 0, 0].tolist()
        assert sorted(out) == list(range(16)) and out != list(range(16))
        assert all(p // 4 == v // 4 for p, v in enumerate(out))  # each stays in its window of 4


def test_object_mask_removes_exactly_the_chosen_objects_pixels():
    item = rendered_item()
    ops = frame_ops("object_mask", 0.5, 8, item, np.random.default_rng(4))  # ceil(0.5 * 2) = 1 object
    (op,) = ops
    masked = apply_ops(item.video.frames, ops, seed=0)
    colours = {name: (item.video.frames == COLORS[name]).all(-1) for name in ("red", "blue")}
    gone = [name for name, where in colours.items() if where.any() and not (masked == COLORS[name]).all(-1).any()]
    kept = [name for name, where in colours.items() if np.array_equal((masked == COLORS[name]).all(-1), where)]
    assert len(gone) == 1 and len(kept) == 1
    assert op["fill"] == list(item.truth.scene.background)
    assert op["boxes"][-1] == [] or gone == ["red"]  # the blue circle is gone by frame 12


@pytest.mark.parametrize("kind", ["drop", "shuffle", "reverse"])
@pytest.mark.parametrize("m", [2, 4, 8, 16])
def test_caption_perturbation_is_the_pixel_perturbation_of_the_same_record(kind, m):
    captions = [f"clip {i}." for i in range(8)]
    record_id = f"vid0003-temple-{kind}-m{m}"
    perturbed, order = perturb_captions(captions, kind, m, record_id)
    pixels = apply_ops(numbered(8), temple_ops(kind, m, 8), seed=op_seed(record_id))
    assert (pixels[:, 0, 0, 0] // 20).tolist() == order
    assert perturbed == [captions[i] for i in order]


def test_op_seed_is_the_trainers_record_seed():
    from mmalign.data.encode import record_seed
    for rid in ("vid0000-temple-drop-m2", "a/b-rrpo0", "ü"):
        assert op_seed(rid) == record_seed(rid)


def test_temple_difficulty_falls_with_m():
    assert [temple_difficulty(m) for m in (2, 4, 8, 16)] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert temple_difficulty(1) == 1.0


@pytest.mark.parametrize("chosen, rejected, kind, reason", [
    ("A cat sits.", "A cat sits. A dog runs.", "shuffle", "rejected contains chosen"),
    ("A cat sits.", "A cat sits.", "reverse", "rejected contains chosen"),
    ("A cat sits.", "A dog runs fast.", "drop", "drop: rejected not shorter"),
    ("A cat sits.", "A dog runs.", "drop", "drop: rejected not shorter"),  # equal length
    ("A cat sits.", "A dog sat on the mat for ages.", "shuffle", "length ratio > 1.5"),
    ("A cat sits.", "A dog.", "drop", None),
    ("A cat sits.", "A dog sat on it.", "reverse", None),  # 16 / 11 < 1.5
    ("A cat sits.", "A dog sat on the mat.", "blur", None),  # no length rule
])
def test_temple_filters(chosen, rejected, kind, reason):
    assert temple_filter(chosen, rejected, kind, 1.5) == reason


# ---------------------------------------------------------------- builders on the world


def items_of(world, keys=("vid0000.mp4", "vid0001.mp4")):
    out = []
    for k in keys:
        video = load_video(world / "videos" / k, num_frames=8)
        out.append(Item(k, str(world / "videos" / k), 5, Truth.load(world / "truth" / k.replace(".mp4", ".json")), video))
    return out


def test_temple_caption_pairs_keep_only_what_passes_the_filters(world, backend):
    cfg = build_pairs_config({"generator": "temple", "temple": {"summarizer": "join", "clips": 8}})
    results = TemplePairs(cfg, backend).run("pairs", items_of(world))
    for res in results:
        assert res.skipped is None
        assert len(res.records) + sum(res.filtered.values()) == 12  # 3 kinds x 4 magnitudes
        for r in res.records:
            kind, m = r["meta"]["perturbation"], r["meta"]["m"]
            assert r["chosen"] not in r["rejected"]
            assert temple_filter(r["chosen"], r["rejected"], kind) is None
            assert r["rejected_video"]["ops"] == [{"op": "temple", "kind": kind, "m": m, "clips": 8}]
            assert r["difficulty"] == pytest.approx(temple_difficulty(m))
            if kind == "drop":
                assert len(r["meta"]["selected_clips"]) == max(1, 8 // m)


def test_pixel_pairs_answer_on_the_perturbed_clip(world, backend):
    cfg = build_pairs_config({"generator": "temple", "answers": "model",
                              "temple": {"source": "pixels", "kinds": ["reverse"], "magnitudes": [8]}})
    (res,) = TemplePairs(cfg, backend).run("pairs", items_of(world, ["vid0001.mp4"]))  # its frames change over time
    (r,) = res.records
    levels = lambda text: text.removeprefix("The video shows ").rstrip(".").split(", ")  # noqa: E731
    assert levels(r["rejected"]) == levels(r["chosen"])[::-1]  # m=8 of 8 clips: every frame reversed
    assert r["meta"]["num_frames"] == 8


def test_rrpo_and_frame_pairs_carry_their_condition(world, backend, tmp_path):
    cfg = build_pairs_config({"generator": "rrpo", "answers": "truth", "rrpo": {"pairs_per_video": 2}})
    res = RrpoPairs(cfg, backend).run("pairs", items_of(world))
    records = [r for x in res for r in x.records]
    assert len(records) == 4
    for r in records:
        area = r["meta"]["mask_area"]
        assert 0.25 <= area <= 0.5
        assert r["rejected_video"]["ops"] == [{"op": "mask", "area": area}, {"op": "shuffle", "window": 4}]
        assert r["chosen_sentence_labels"] == [1] * len(r["chosen_sentence_labels"])
    assert records[0]["meta"]["mask_area"] != records[1]["meta"]["mask_area"]
    cfg = build_pairs_config({"generator": "video", "video": {"perturbations": [{"name": "reverse", "strength": 1.0}]}})
    (res,) = FrameOpsPairs(cfg, backend).run("pairs", items_of(world, ["vid0001.mp4"]))
    assert [r["difficulty"] for r in res.records] == [0.0]


def test_rrpo_minimal_edit_filter_keeps_pairs_by_the_share_of_changed_characters():
    chosen, rejected = "A red circle moves left.", "A blue circle moves left."  # 24 + 25 characters
    c_spans, r_spans = [[2, 5]], [[2, 6]]  # "red" vs "blue": (3 + 4) / 49 = 0.143 changed
    far = ("A red circle moves left.", "Then a green square appears.", [[0, 24]], [[0, 28]])  # all changed
    for limit, keep_near, keep_far in ((1.0, True, True), (0.5, True, False), (0.1, False, False)):
        rrpo = RrpoPairs(build_pairs_config({"generator": "rrpo", "rrpo": {"max_changed_fraction": limit}}), None)
        assert (rrpo.filter(chosen, c_spans, rejected, r_spans, "rrpo") is None) == keep_near
        assert (rrpo.filter(far[0], far[2], far[1], far[3], "rrpo") is None) == keep_far
    assert rrpo.filter(chosen, [], chosen, [], "rrpo") == "identical answers"
