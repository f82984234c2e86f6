"""Seeded, pure operations on a clip's frames [T, H, W, C]: the perturbed condition of a
conditional pair, named in the record as data:

    "rejected_video": {"source": "videos/v.mp4", "ops": [{"op": "mask", "area": 0.3},
                                                         {"op": "shuffle", "window": 4}]}

`apply_ops` runs the ops in order; op i draws from its own generator seeded by (seed, i),
and the trainer derives `seed` from the record id, so a record always sees the same video.
An op is `fn(frames, rng, **params) -> new frames`; it never writes into its input, and its
identity parameters (area 0, window 1, ...) give back the frames unchanged. Ops work on the
sampled clip: "frame" means a sampled frame, not one of the file's. perturb/ registers more
ops with `register_op`.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import numpy as np

VideoOp = Callable[..., np.ndarray]
VIDEO_OPS: dict[str, VideoOp] = {}


def register_op(name: str) -> Callable[[VideoOp], VideoOp]:
    """Decorator adding `fn(frames, rng, **params)` to VIDEO_OPS under `name`."""

    def add(fn: VideoOp) -> VideoOp:
        if name in VIDEO_OPS:
            raise ValueError(f"video op {name!r} is already registered")
        VIDEO_OPS[name] = fn
        return fn

    return add


def apply_ops(frames: np.ndarray, ops: list[dict], seed: int) -> np.ndarray:
    """Apply `ops` (dicts like {"op": "reverse", **params}) in order. ValueError for an unknown
    op (the message lists the known ones) or parameters the op does not accept."""
    frames = _check_frames(frames)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(ops, list):
        raise ValueError(f"ops must be a list of {{'op': name, ...}} objects, got {type(ops).__name__}")
    for i, spec in enumerate(ops):
        name, params = _split_spec(spec)
        op = _lookup(name)
        _check_signature(name, op, params)
        frames = op(frames, np.random.default_rng([int(seed), i]), **params)
    return frames


def _split_spec(spec) -> tuple[str, dict]:
    if not isinstance(spec, dict) or not isinstance(spec.get("op"), str):
        raise ValueError(f"each op must be an object with a string 'op', got {spec!r:.80}")
    params = {k: v for k, v in spec.items() if k != "op"}
    return spec["op"], params


def _lookup(name: str) -> VideoOp:
    if name not in VIDEO_OPS:
        raise ValueError(f"unknown video op {name!r}; known: {', '.join(sorted(VIDEO_OPS))}")
    return VIDEO_OPS[name]


def _check_signature(name: str, op: VideoOp, params: dict) -> None:
    try:
        inspect.signature(op).bind(None, None, **params)
    except TypeError as e:
        accepted = [p for p in inspect.signature(op).parameters if p not in ("frames", "rng")]
        raise ValueError(f"video op {name!r}: {e}; it accepts {accepted or 'no parameters'}") from None


def _check_frames(frames) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or len(frames) == 0:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise ValueError(f"frames must be a non-empty array [T, H, W, C], got {shape}")
    return frames


# ---------------------------------------------------------------- parameter checks


def _int_param(op: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"video op {op!r}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _fraction_param(op: str, name: str, value, allow_zero: bool) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    low_ok = ok and (value >= 0 if allow_zero else value > 0)
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"video op {op!r}: {name} must be a number in {interval}, got {value!r}")
    return float(value)


def _exactly_one(op: str, **named) -> str:
    given = [k for k, v in named.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"video op {op!r}: give exactly one of {', '.join(named)}, got {given or 'none'}")
    return given[0]


# ---------------------------------------------------------------- temporal ops


def _groups(n: int, size: int) -> list[np.ndarray]:
    """Consecutive runs of `size` indices (the last may be shorter)."""
    return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]


@register_op("reverse")
def reverse(frames: np.ndarray, rng: np.random.Generator, block: int = 1) -> np.ndarray:
    """Play the clip backwards. With block=b the clip is cut into runs of b frames and the
    order of the runs is reversed, each run keeping its own order (TEMPLE's reverse of clips);
    block=1 reverses every frame, block >= T is the identity."""
    block = _int_param("reverse", "block", block, 1)
    return frames[np.concatenate(_groups(len(frames), block)[::-1])]


@register_op("shuffle")
def shuffle(frames: np.ndarray, rng: np.random.Generator, window: int | None = None,
            block: int | None = None) -> np.ndarray:
    """Shuffle time. window=w: frames are permuted inside consecutive windows of w frames, so
    no frame moves by w or more (RRPO's local shuffle). block=b: the clip is cut into runs of
    b frames and the runs are reordered, each keeping its frames in order (TEMPLE). Exactly one
    of the two. A draw that leaves every frame in place is rotated by one step, so a shuffle
    with anything to move always changes the clip. window=1 or block >= T: identity."""
    mode = _exactly_one("shuffle", window=window, block=block)
    if mode == "window":
        groups = _groups(len(frames), _int_param("shuffle", "window", window, 1))
        order = _shuffle_within(groups, rng)
    else:
        groups = _groups(len(frames), _int_param("shuffle", "block", block, 1))
        order = np.concatenate(_shuffle_order(groups, rng))
    return frames[order]


def _shuffle_within(windows: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    shuffled = [rng.permutation(w) for w in windows]
    if all((s == w).all() for s, w in zip(shuffled, windows)):
        movable = [i for i, w in enumerate(windows) if len(w) > 1]
        if movable:
            shuffled[movable[0]] = np.roll(windows[movable[0]], 1)
    return np.concatenate(shuffled)


def _shuffle_order(blocks: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(blocks))
    if (order == np.arange(len(blocks))).all():
        order = np.roll(order, 1)
    return [blocks[i] for i in order]


@register_op("drop")
def drop(frames: np.ndarray, rng: np.random.Generator, every: int | None = None,
         keep: float | None = None) -> np.ndarray:
    """Drop frames, the rest keep their order (the clip gets shorter). every=k keeps frames
    0, k, 2k, ...; keep=f keeps round(f * T) frames (at least one) spread evenly over the clip
    (np.linspace, as frame sampling). Exactly one of the two. every=1 or keep=1: identity."""
    mode = _exactly_one("drop", every=every, keep=keep)
    n = len(frames)
    if mode == "every":
        return frames[:: _int_param("drop", "every", every, 1)].copy()
    kept = max(1, round(_fraction_param("drop", "keep", keep, allow_zero=False) * n))
    return frames[np.linspace(0, n - 1, kept).round().astype(int)]


@register_op("freeze")
def freeze(frames: np.ndarray, rng: np.random.Generator, start: int) -> np.ndarray:
    """The clip stalls: from frame `start` on, frame `start` is shown again and again.
    start >= T - 1 is the identity."""
    start = _int_param("freeze", "start", start, 0)
    order = np.minimum(np.arange(len(frames)), start)
    return frames[order]


# ---------------------------------------------------------------- spatial ops


@register_op("mask")
def mask(frames: np.ndarray, rng: np.random.Generator, area: float = 0.0) -> np.ndarray:
    """Black out one rectangle covering `area` (0..1) of the frame, with the frame's aspect
    ratio (sides rounded to whole pixels, so the area is exact to one row and one column),
    at a seeded position, the same box on every frame as a fixed occluder (RRPO masks 25-50%).
    area=0 (or a box that rounds to nothing) is the identity."""
    area = _fraction_param("mask", "area", area, allow_zero=True)
    height, width = frames.shape[1:3]
    side = np.sqrt(area)
    box_h, box_w = round(height * side), round(width * side)
    out = frames.copy()
    if box_h == 0 or box_w == 0:
        return out
    top = int(rng.integers(0, height - box_h + 1))
    left = int(rng.integers(0, width - box_w + 1))
    out[:, top : top + box_h, left : left + box_w] = 0
    return out


# ---------------------------------------------------------------- ops added for pair generation
# (perturb/ writes these into records; they live here because the trainer replays them and
# mmalign never imports perturb.) Parameters are relative where the trainer's clip may differ
# in size from the one the pairs were made on: areas and blur widths are fractions of the
# frame, boxes are fractions of the width and height.


@register_op("repeat")
def repeat(frames: np.ndarray, rng: np.random.Generator, fraction: float = 0.0) -> np.ndarray:
    """Stutter: round(fraction * (T - 1)) frames, drawn at random from frames 1..T-1, show the
    frame before them (of the input) instead, so those moments are never seen and the clip
    keeps its length. fraction=0 (or a one-frame clip) is the identity."""
    fraction = _fraction_param("repeat", "fraction", fraction, allow_zero=True)
    n = len(frames)
    order = np.arange(n)
    k = round(fraction * (n - 1))
    if k:
        order[rng.choice(np.arange(1, n), size=k, replace=False)] -= 1
    return frames[order]


@register_op("speed")
def speed(frames: np.ndarray, rng: np.random.Generator, factor: float = 1.0) -> np.ndarray:
    """Play the same content `factor` times as fast: output frame j shows input frame
    floor(j * factor), for the ceil(T / factor) frames that fit (at least one). factor=2 keeps
    every other frame, factor=0.5 shows every frame twice; factor=1 is the identity."""
    ok = isinstance(factor, (int, float, np.floating)) and not isinstance(factor, bool)
    if not (ok and math.isfinite(factor) and factor > 0):
        raise ValueError(f"video op 'speed': factor must be a positive number, got {factor!r}")
    n = len(frames)
    count = max(1, math.ceil(n / factor - 1e-9))
    # The epsilon keeps 3 * (1 / 3) * 3 style products from flooring one frame short.
    order = np.minimum(np.floor(np.arange(count) * float(factor) + 1e-9).astype(int), n - 1)
    return frames[order]


@register_op("temple")
def temple(frames: np.ndarray, rng: np.random.Generator, kind: str, m: int, clips: int | None = None) -> np.ndarray:
    """TEMPLE's clip-level perturbation with strength m: the clip is cut into `clips`
    consecutive clips (np.array_split over the frames; default and at most: one clip per
    frame), then `temple_clip_order` drops, shuffles or reverses them. m=1 is the identity;
    a larger m is a coarser, more visible perturbation."""
    n = len(frames)
    clips = n if clips is None else min(_int_param("temple", "clips", clips, 1), n)
    groups = np.array_split(np.arange(n), clips)
    return frames[np.concatenate([groups[i] for i in temple_clip_order(clips, kind, m, rng)])]


TEMPLE_KINDS = ("drop", "shuffle", "reverse")


def temple_clip_order(n_clips: int, kind: str, m: int, rng: np.random.Generator) -> np.ndarray:
    """Which of n clips a TEMPLE perturbation shows, in order (official code,
    generate_rejected_response). With b = max(1, n // m): drop keeps b clips drawn at random,
    in their order; shuffle cuts runs of b clips and reorders the runs (never leaving them all
    in place, as `shuffle` does); reverse reverses the order of the runs. Shared by the pixel
    op above and by perturb's caption-list perturbation, so both see one permutation."""
    if kind not in TEMPLE_KINDS:
        raise ValueError(f"video op 'temple': kind must be one of {', '.join(TEMPLE_KINDS)}, got {kind!r}")
    m = _int_param("temple", "m", m, 1)
    n = _int_param("temple", "n_clips", n_clips, 1)
    b = max(1, n // m)
    if kind == "drop":
        return np.sort(rng.choice(n, size=b, replace=False))
    runs = _groups(n, b)
    if kind == "shuffle":
        return np.concatenate(_shuffle_order(runs, rng))
    return np.concatenate(runs[::-1])


@register_op("crop")
def crop(frames: np.ndarray, rng: np.random.Generator, area: float = 1.0) -> np.ndarray:
    """Zoom in: keep one rectangle covering `area` (0..1] of the frame, with the frame's aspect
    ratio, at a seeded position (the same on every frame), and scale it back to the full size
    by nearest neighbour (output pixel (y, x) shows crop pixel (y * h // H, x * w // W)).
    area=1 is the identity."""
    area = _fraction_param("crop", "area", area, allow_zero=False)
    height, width = frames.shape[1:3]
    side = math.sqrt(area)
    crop_h, crop_w = max(1, round(height * side)), max(1, round(width * side))
    if (crop_h, crop_w) == (height, width):
        return frames.copy()
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    rows = top + np.arange(height) * crop_h // height
    cols = left + np.arange(width) * crop_w // width
    return frames[:, rows][:, :, cols]


@register_op("blur")
def blur(frames: np.ndarray, rng: np.random.Generator, sigma: float = 0.0) -> np.ndarray:
    """Gaussian blur of every frame. `sigma` is a fraction of the frame's shorter side, so the
    look does not depend on the resolution (0.02: soft, 0.1: heavy). Separable kernel of
    radius ceil(3 sigma) pixels, edges mirrored, float arithmetic rounded back to uint8.
    sigma=0 is the identity."""
    ok = isinstance(sigma, (int, float, np.floating)) and not isinstance(sigma, bool)
    if not (ok and math.isfinite(sigma) and 0 <= sigma <= 1):
        raise ValueError(f"video op 'blur': sigma must be a number in [0, 1] (a fraction of the shorter side), "
                         f"got {sigma!r}")
    sigma_px = float(sigma) * min(frames.shape[1:3])
    if sigma_px == 0:
        return frames.copy()
    radius = math.ceil(3 * sigma_px)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    taps /= taps.sum()
    out = frames.astype(np.float32)
    for axis in (1, 2):
        out = _convolve_axis(out, taps, axis)
    return np.clip(np.rint(out), 0, 255).astype(frames.dtype)


def _convolve_axis(x: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    radius = len(taps) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(x, pad, mode="symmetric")
    size = x.shape[axis]
    out = np.zeros_like(x)
    for k, w in enumerate(taps):
        out += w * np.take(padded, np.arange(k, k + size), axis=axis)
    return out


@register_op("noise")
def noise(frames: np.ndarray, rng: np.random.Generator, std: float = 0.0) -> np.ndarray:
    """Add Gaussian noise with standard deviation `std` in pixel levels (0..255 scale),
    drawn independently for every pixel, channel and frame, then round and clip to 0..255.
    std=0 is the identity."""
    ok = isinstance(std, (int, float, np.floating)) and not isinstance(std, bool)
    if not (ok and math.isfinite(std) and std >= 0):
        raise ValueError(f"video op 'noise': std must be a number >= 0, got {std!r}")
    if std == 0:
        return frames.copy()
    noisy = frames.astype(np.float32) + rng.normal(0.0, float(std), size=frames.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(frames.dtype)


@register_op("mask_boxes")
def mask_boxes(frames: np.ndarray, rng: np.random.Generator, boxes: list, fill=0) -> np.ndarray:
    """Paint over given boxes, e.g. an object's ground-truth boxes (masking the object).
    `boxes` holds one entry per frame of the clip, or a single entry for every frame; an entry
    is a list of [x0, y0, x1, y1] in fractions of the width and height (0 <= x0 <= x1 <= 1),
    painted over every pixel it touches (columns floor(x0 W) .. ceil(x1 W) - 1). `fill` is a
    grey level or [r, g, b]. boxes=[] is the identity."""
    n, height, width = frames.shape[:3]
    if not isinstance(boxes, list):
        raise ValueError(f"video op 'mask_boxes': boxes must be a list (one entry per frame), got {boxes!r:.60}")
    if boxes and len(boxes) not in (1, n):
        raise ValueError(f"video op 'mask_boxes': boxes has {len(boxes)} entries but the clip has {n} frames "
                         "(give one per frame, or one for all)")
    colour = _fill_param(fill, frames.shape[3])
    out = frames.copy()
    for t in range(n) if boxes else ():
        for box in _frame_boxes(boxes[t if len(boxes) == n else 0]):
            x0, y0, x1, y1 = box
            c0, c1 = math.floor(x0 * width), math.ceil(x1 * width)
            r0, r1 = math.floor(y0 * height), math.ceil(y1 * height)
            out[t, r0:r1, c0:c1] = colour
    return out


def _frame_boxes(entry) -> list[list[float]]:
    if not isinstance(entry, list):
        raise ValueError(f"video op 'mask_boxes': each entry must be a list of [x0, y0, x1, y1] boxes, got {entry!r:.60}")
    for box in entry:
        numbers = isinstance(box, (list, tuple)) and len(box) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        if not (numbers and 0 <= box[0] <= box[2] <= 1 and 0 <= box[1] <= box[3] <= 1):
            raise ValueError(f"video op 'mask_boxes': a box must be [x0, y0, x1, y1] with 0 <= x0 <= x1 <= 1 "
                             f"and 0 <= y0 <= y1 <= 1, got {box!r:.60}")
    return entry


def _fill_param(fill, channels: int) -> np.ndarray:
    values = [fill] if isinstance(fill, (int, np.integer)) and not isinstance(fill, bool) else fill
    ok = (isinstance(values, (list, tuple)) and len(values) in (1, channels)
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in values))
    if not ok:
        raise ValueError(f"video op 'mask_boxes': fill must be a level 0..255 or [r, g, b], got {fill!r}")
    return np.asarray(values * (channels if len(values) == 1 else 1), dtype=np.uint8)
