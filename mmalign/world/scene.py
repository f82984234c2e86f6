"""Scenes of the synthetic video world: what is in a video, and the exact truth about it.

A scene is a few flat-coloured shapes on a dark background. Each object has one colour,
one shape, one straight motion at constant speed, and a visible interval of frames. Every
fact a caption, a question or a benchmark asks about is derived from this record, so the
answers are exact by construction.

Coordinates are pixels, x to the right and y downwards ("up" = decreasing y). An object's
`start` is the top-left corner of its size x size box at `appear_frame`; boxes are
half-open: (x0, y0, x1, y1) covers columns x0..x1-1 and rows y0..y1-1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

# Far apart in RGB so a colour survives yuv420p compression and a resize. All names start
# with a consonant: captions always say "a", so swapping a colour never changes the article.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 90, 230),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
    "purple": (150, 60, 200),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down", "static")
BACKGROUND = (24, 24, 24)

_VELOCITY = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "static": (0, 0)}


@dataclass(frozen=True)
class WorldObject:
    id: int
    shape: str
    color: str
    size: int
    start: tuple[int, int]
    direction: str = "static"
    speed: int = 0
    appear_frame: int = 0
    disappear_frame: int | None = None  # exclusive; None = stays to the end (set by Scene)

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    def visible(self, frame: int) -> bool:
        return self.appear_frame <= frame < self.disappear_frame

    def box(self, frame: int) -> tuple[int, int, int, int]:
        """Unclipped box at `frame` (the motion extrapolates outside the visible interval)."""
        dx, dy = _VELOCITY[self.direction]
        steps = (frame - self.appear_frame) * self.speed
        x0, y0 = self.start[0] + dx * steps, self.start[1] + dy * steps
        return (x0, y0, x0 + self.size, y0 + self.size)


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[WorldObject, ...] = ()
    n_frames: int = 16
    width: int = 64
    height: int = 64
    fps: int = 8
    background: tuple[int, int, int] = BACKGROUND

    def __post_init__(self):
        # Normalise "stays to the end" so the stored record says n_frames explicitly.
        objects = tuple(
            replace(o, disappear_frame=self.n_frames) if o.disappear_frame is None else o
            for o in self.objects
        )
        object.__setattr__(self, "objects", objects)
        _validate(self)

    def by_id(self, obj_id: int) -> WorldObject:
        return next(o for o in self.objects if o.id == obj_id)

    def boxes(self, frame: int) -> dict[int, tuple[int, int, int, int]]:
        """Ground-truth boxes, clipped to the frame, of every object visible at `frame`."""
        out = {}
        for o in self.objects:
            if o.visible(frame):
                box = _clip(o.box(frame), self.width, self.height)
                if box is not None:
                    out[o.id] = box
        return out

    def events(self) -> list[tuple[int, str, int]]:
        """(frame, "appears" | "disappears", obj_id) in time order. Being there from the first
        frame or staying to the last is not an event."""
        found = []
        for o in self.objects:
            if o.appear_frame > 0:
                found.append((o.appear_frame, "appears", o.id))
            if o.disappear_frame < self.n_frames:
                found.append((o.disappear_frame, "disappears", o.id))
        return sorted(found)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        objects = tuple(WorldObject(**{**o, "start": tuple(o["start"])}) for o in d["objects"])
        return cls(**{**d, "objects": objects, "background": tuple(d["background"])})


def _clip(box, width, height):
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _validate(scene: Scene) -> None:
    if scene.width % 2 or scene.height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {scene.width}x{scene.height}")
    if scene.n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {scene.n_frames}")
    ids = [o.id for o in scene.objects]
    if len(set(ids)) != len(ids):
        raise ValueError(f"object ids must be unique, got {ids}")
    names = [o.name for o in scene.objects]
    if len(set(names)) != len(names):
        raise ValueError(f"(colour, shape) pairs must be distinct so captions are unambiguous: {names}")
    for o in scene.objects:
        if o.color not in COLORS or o.shape not in SHAPES or o.direction not in DIRECTIONS:
            raise ValueError(f"object {o.id}: unknown colour/shape/direction in {o}")
        if o.size < 1 or o.speed < 0:
            raise ValueError(f"object {o.id}: size must be >= 1 and speed >= 0, got {o}")
        if not 0 <= o.appear_frame < o.disappear_frame <= scene.n_frames:
            raise ValueError(
                f"object {o.id}: need 0 <= appear_frame < disappear_frame <= n_frames, got "
                f"{o.appear_frame}, {o.disappear_frame}, {scene.n_frames}"
            )


# ---------------------------------------------------------------------------- sampling


def sample_scene(
    seed: int,
    *,
    n_frames: int = 16,
    width: int = 64,
    height: int = 64,
    fps: int = 8,
    min_objects: int = 1,
    max_objects: int = 3,
    sizes: tuple[int, int] = (14, 20),
    speeds: tuple[int, ...] = (1, 2),
    p_static: float = 0.2,
    p_late_appear: float = 0.5,
    p_early_disappear: float = 0.35,
    max_overlap: float = 0.25,
) -> Scene:
    """A random scene, the same for the same seed and knobs on any machine.

    Objects stay fully inside the frame for their whole visible interval, no two overlap by
    more than `max_overlap` of the smaller box in any frame (so none is hidden and the truth
    stays visible), and appear / disappear events fall on distinct frames (so their order is
    well defined). Object 0 is always there from the first frame, so a caption has a start.
    """
    rng = np.random.default_rng(seed)
    n_objects = int(rng.integers(min_objects, max_objects + 1))
    # Retry a bounded number of times (deterministic: the same rng stream); if the frame is
    # too crowded, drop the last object and try again.
    while True:
        for _ in range(100):
            scene = Scene(
                seed=seed,
                objects=_sample_objects(
                    rng, n_objects, n_frames, width, height, sizes, speeds,
                    p_static, p_late_appear, p_early_disappear,
                ),
                n_frames=n_frames, width=width, height=height, fps=fps,
            )
            if _max_overlap_fraction(scene) <= max_overlap:
                return scene
        if n_objects == 1:
            return scene
        n_objects -= 1


def _sample_objects(rng, n, n_frames, width, height, sizes, speeds,
                    p_static, p_late_appear, p_early_disappear) -> tuple[WorldObject, ...]:
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    chosen = rng.choice(len(pairs), size=n, replace=False)
    event_frames = _EventFrames(n_frames)
    objects = []
    for i, k in enumerate(chosen):
        color, shape = pairs[int(k)]
        appear = event_frames.take_early(rng) if i > 0 and rng.random() < p_late_appear else 0
        disappear = event_frames.take_late(rng) if rng.random() < p_early_disappear else n_frames
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        direction, speed = _sample_motion(rng, size, disappear - appear, width, height, speeds, p_static)
        start = _sample_start(rng, size, direction, speed * max(disappear - appear - 1, 0), width, height)
        objects.append(WorldObject(i, shape, color, size, start, direction, speed, appear, disappear))
    return tuple(objects)


class _EventFrames:
    """Hands out distinct frames for appear events (first half) and disappear events (second
    half), leaving every object visible for at least a few frames; None when exhausted."""

    def __init__(self, n_frames: int):
        half = n_frames // 2
        self.early = list(range(2, half + 1))
        self.late = list(range(half + 2, n_frames - 1))
        self.n_frames = n_frames

    def take_early(self, rng) -> int:
        return self._take(rng, self.early, default=0)

    def take_late(self, rng) -> int:
        return self._take(rng, self.late, default=self.n_frames)

    @staticmethod
    def _take(rng, pool, default):
        if not pool:
            return default
        return pool.pop(int(rng.integers(len(pool))))


def _sample_motion(rng, size, duration, width, height, speeds, p_static):
    if rng.random() < p_static:
        return "static", 0
    direction = str(rng.choice(["left", "right", "up", "down"]))
    room = (width if direction in ("left", "right") else height) - size
    fitting = [s for s in speeds if s * max(duration - 1, 0) <= room]
    if not fitting:  # too little room for any motion: stay still rather than leave the frame
        return "static", 0
    return direction, int(rng.choice(fitting))


def _sample_start(rng, size, direction, travel, width, height) -> tuple[int, int]:
    """Top-left corner such that the whole path stays inside the frame."""
    dx, dy = _VELOCITY[direction]
    return _axis_start(rng, width, size, travel, dx), _axis_start(rng, height, size, travel, dy)


def _axis_start(rng, extent, size, travel, sign) -> int:
    # Moving towards low coordinates needs `travel` pixels of room before the start, moving
    # towards high coordinates needs it after the box.
    lo = travel if sign < 0 else 0
    hi = extent - size - (travel if sign > 0 else 0)
    return int(rng.integers(lo, max(hi, lo) + 1))


def _max_overlap_fraction(scene: Scene) -> float:
    worst = 0.0
    for t in range(scene.n_frames):
        boxes = list(scene.boxes(t).values())
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                worst = max(worst, _overlap_fraction(boxes[i], boxes[j]))
    return worst


def _overlap_fraction(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller
