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
