"""The frame ops perturb/ added to mmalign.data.video_ops, on clips whose content is known:
frame t is filled with the value t, or pixel (y, x) holds its own index."""

import itertools
import math

import numpy as np
import pytest

from mmalign.data.video_ops import VIDEO_OPS, apply_ops, temple_clip_order


def numbered(t=8, h=4, w=4):
    """Frame t is all t: the order of the output frames reads off any pixel."""
    return np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3)).copy()


def order(frames):
    return frames[:, 0, 0, 0].tolist()


def indexed(t=2, h=16, w=16):
    """Pixel (y, x) holds y * w + x in channel 0 (and the frame number in channel 1)."""
    f = np.zeros((t, h, w, 3), dtype=np.uint8)
    f[..., 0] = (np.arange(h)[:, None] * w + np.arange(w)[None, :]) % 256
    f[..., 1] = np.arange(t)[:, None, None]
    return f


NEW_OPS = ("repeat", "speed", "temple", "crop", "blur", "noise", "mask_boxes")
IDENTITY = [
    {"op": "repeat", "fraction": 0.0},
    {"op": "speed", "factor": 1.0},
    {"op": "temple", "kind": "drop", "m": 1},
    {"op": "temple", "kind": "shuffle", "m": 1},
    {"op": "temple", "kind": "reverse", "m": 1, "clips": 4},
    {"op": "crop", "area": 1.0},
    {"op": "blur", "sigma": 0.0},
    {"op": "noise", "std": 0.0},
    {"op": "mask_boxes", "boxes": []},
]


def test_new_ops_are_registered():
    assert set(NEW_OPS) <= set(VIDEO_OPS)


@pytest.mark.parametrize("spec", IDENTITY, ids=lambda s: f"{s['op']}-{s.get('kind', '')}")
def test_intensity_zero_is_the_identity_and_never_writes_into_the_input(spec):
    frames = indexed(t=8)
    before = frames.copy()
    out = apply_ops(frames, [spec], seed=5)
    assert np.array_equal(out, before)
    assert np.array_equal(frames, before)
    out[...] = 0  # a fresh array, not a view of the input
    assert np.array_equal(frames, before)


def test_repeat_replaces_exactly_round_fraction_frames_by_their_predecessor():
    frames = numbered(t=9)
    out = order(apply_ops(frames, [{"op": "repeat", "fraction": 0.5}], seed=3))
    assert len(out) == 9 and out[0] == 0
    repeated = [t for t in range(1, 9) if out[t] == t - 1]
    assert len(repeated) == round(0.5 * 8) == 4
    assert all(out[t] == t for t in range(9) if t not in repeated)
    assert out == order(apply_ops(frames, [{"op": "repeat", "fraction": 0.5}], seed=3))  # seeded
    others = {tuple(order(apply_ops(frames, [{"op": "repeat", "fraction": 0.5}], seed=s))) for s in range(6)}
    assert len(others) > 1


@pytest.mark.parametrize("factor, t, expected", [
    (2, 8, [0, 2, 4, 6]),
    (3, 8, [0, 3, 6]),
    (0.5, 3, [0, 0, 1, 1, 2, 2]),
    (1.5, 6, [0, 1, 3, 4]),  # floor(j * 1.5) for j < ceil(6 / 1.5) = 4
    (100, 5, [0]),
])
def test_speed_shows_input_frame_floor_j_times_factor(factor, t, expected):
    assert order(apply_ops(numbered(t), [{"op": "speed", "factor": factor}], seed=0)) == expected


@pytest.mark.parametrize("bad", [0, -1, float("nan"), True, "2"])
def test_speed_refuses_a_non_positive_factor(bad):
    with pytest.raises(ValueError, match="factor"):
        apply_ops(numbered(), [{"op": "speed", "factor": bad}], seed=0)


# ---------------------------------------------------------------- TEMPLE


@pytest.mark.parametrize("m, expected", [(2, [4, 5, 6, 7, 0, 1, 2, 3]), (4, [6, 7, 4, 5, 2, 3, 0, 1]),
                                         (8, [7, 6, 5, 4, 3, 2, 1, 0]), (16, [7, 6, 5, 4, 3, 2, 1, 0])])
def test_temple_reverse_reverses_blocks_of_n_over_m_clips(m, expected):
    assert order(apply_ops(numbered(8), [{"op": "temple", "kind": "reverse", "m": m}], seed=0)) == expected


def test_temple_clips_group_frames_with_array_split():
    # 10 frames in 4 clips: [0,1,2] [3,4,5] [6,7] [8,9]; m=2 -> runs of 2 clips reversed.
    out = order(apply_ops(numbered(10), [{"op": "temple", "kind": "reverse", "m": 2, "clips": 4}], seed=0))
    assert out == [6, 7, 8, 9, 0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("m", [2, 4, 8, 16])
def test_temple_drop_keeps_max_1_n_over_m_clips_in_order(m):
    for seed in range(10):
        out = order(apply_ops(numbered(16), [{"op": "temple", "kind": "drop", "m": m}], seed=seed))
        assert len(out) == max(1, 16 // m)
        assert out == sorted(set(out))


@pytest.mark.parametrize("m", [2, 4, 8])
def test_temple_shuffle_is_a_permutation_of_whole_blocks_never_the_identity(m):
    b = 16 // m
    for seed in range(20):
        out = order(apply_ops(numbered(16), [{"op": "temple", "kind": "shuffle", "m": m}], seed=seed))
        assert sorted(out) == list(range(16)) and out != list(range(16))
        blocks = [out[i:i + b] for i in range(0, 16, b)]
        # each block is one original run of b frames, kept in order: every frame moves by a multiple of b
        assert all(blk == list(range(blk[0], blk[0] + b)) and blk[0] % b == 0 for blk in blocks)
        assert all((pos - frame) % b == 0 for pos, frame in enumerate(out))


def test_temple_drop_draws_every_subset_uniformly():
    counts = {}
    for seed in range(1200):
        kept = tuple(temple_clip_order(4, "drop", 2, np.random.default_rng(seed)).tolist())
        counts[kept] = counts.get(kept, 0) + 1
    assert set(counts) == set(itertools.combinations(range(4), 2))
    assert all(150 <= c <= 250 for c in counts.values())  # 200 expected each


def test_temple_refuses_unknown_kinds_and_bad_m():
    with pytest.raises(ValueError, match="kind must be one of"):
        apply_ops(numbered(), [{"op": "temple", "kind": "flip", "m": 2}], seed=0)
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        apply_ops(numbered(), [{"op": "temple", "kind": "drop", "m": 0}], seed=0)


# ---------------------------------------------------------------- spatial


def test_crop_zooms_a_seeded_rectangle_by_nearest_neighbour():
    frames = indexed(t=2, h=16, w=16)
    out = apply_ops(frames, [{"op": "crop", "area": 0.25}], seed=7)
    assert out.shape == frames.shape
    top, left = divmod(int(out[0, 0, 0, 0]), 16)  # the crop's top-left pixel lands at (0, 0)
    for y, x in itertools.product(range(16), range(16)):  # crop is 8 x 8, each pixel shown 2 x 2
        assert out[0, y, x, 0] == frames[0, top + y // 2, left + x // 2, 0]
    assert np.array_equal(out[1, ..., 0], out[0, ..., 0]) and (out[1, ..., 1] == 1).all()  # same box, every frame


def test_blur_of_a_point_is_the_outer_product_of_two_gaussians():
    frames = np.zeros((1, 41, 41, 3), dtype=np.uint8)
    frames[0, 20, 20] = 255
    sigma = 2 / 41  # two pixels
    out = apply_ops(frames, [{"op": "blur", "sigma": sigma}], seed=0)
    r = math.ceil(3 * 2.0)
    g = np.array([math.exp(-0.5 * (k / 2.0) ** 2) for k in range(-r, r + 1)])
    g /= g.sum()
    expected = np.zeros((41, 41))
    expected[20 - r:20 + r + 1, 20 - r:20 + r + 1] = 255 * np.outer(g, g)
    assert np.abs(out[0, ..., 0].astype(float) - expected).max() <= 1  # rounding (twice) only
    assert (out[0, ..., 0] == out[0, ..., 2]).all()


def test_blur_leaves_a_flat_frame_flat():
    frames = np.full((2, 10, 12, 3), 77, dtype=np.uint8)
    assert np.array_equal(apply_ops(frames, [{"op": "blur", "sigma": 0.3}], seed=0), frames)


def test_noise_has_the_requested_spread_and_stays_in_range():
    frames = np.full((4, 64, 64, 3), 128, dtype=np.uint8)
    out = apply_ops(frames, [{"op": "noise", "std": 10}], seed=1).astype(float)
    assert abs(out.mean() - 128) < 0.3 and abs(out.std() - 10) < 0.3
    bright = apply_ops(np.full((1, 32, 32, 3), 250, dtype=np.uint8), [{"op": "noise", "std": 30}], seed=1)
    assert bright.max() == 255 and bright.dtype == np.uint8
    with pytest.raises(ValueError, match="std"):
        apply_ops(frames, [{"op": "noise", "std": -1}], seed=0)


def test_mask_boxes_paints_every_pixel_a_box_touches_per_frame():
    frames = np.full((2, 16, 16, 3), 200, dtype=np.uint8)
    boxes = [[[0.25, 0.25, 0.5, 0.75]], [[0.3, 0.0, 0.35, 0.1], [0.9, 0.9, 1.0, 1.0]]]
    out = apply_ops(frames, [{"op": "mask_boxes", "boxes": boxes, "fill": [1, 2, 3]}], seed=0)
    want = np.full((2, 16, 16), False)
    want[0, 4:12, 4:8] = True
    want[1, 0:2, 4:6] = True  # floor(0.3 * 16) = 4 .. ceil(0.35 * 16) = 6; rows 0 .. ceil(1.6) = 2
    want[1, 14:16, 14:16] = True
    assert np.array_equal((out == [1, 2, 3]).all(-1), want)
    assert (out[~want] == 200).all()
    one_for_all = apply_ops(frames, [{"op": "mask_boxes", "boxes": [[[0, 0, 0.5, 0.5]]]}], seed=0)
    assert (one_for_all[:, :8, :8] == 0).all() and (one_for_all[:, 8:, :] == 200).all()


@pytest.mark.parametrize("boxes, message", [
    ([[[0, 0, 1, 1]]] * 3, "3 entries but the clip has 2"),
    ([[[0.5, 0, 0.4, 1]]], "x0 <= x1"),
    ([[[0, 0, 1.2, 1]]], "x0 <= x1"),
    ([[0, 0, 1, 1]], "a box must be"),  # an entry of numbers, not of boxes
    ([5], "each entry must be a list"),
])
def test_mask_boxes_refuses_malformed_boxes(boxes, message):
    with pytest.raises(ValueError, match=message):
        apply_ops(np.zeros((2, 4, 4, 3), dtype=np.uint8), [{"op": "mask_boxes", "boxes": boxes}], seed=0)
