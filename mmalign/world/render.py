"""Pixels of a scene, and writing them as an H.264 mp4 that decord reads back."""

from __future__ import annotations

import io
import os
from functools import lru_cache

import av
import numpy as np

from mmalign.io import atomic_write_bytes

from .scene import COLORS, Scene


def render(scene: Scene) -> np.ndarray:
    """[T, H, W, 3] uint8 frames: flat colours, crisp edges, objects drawn in id order
    (a later id covers an earlier one). Deterministic: integer geometry only."""
    frames = np.empty((scene.n_frames, scene.height, scene.width, 3), dtype=np.uint8)
    frames[:] = scene.background
    for t in range(scene.n_frames):
        for obj in scene.objects:
            if obj.visible(t):
                _paint(frames[t], shape_mask(obj.shape, obj.size), obj.box(t)[:2], COLORS[obj.color])
    return frames


@lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """[size, size] bool mask of a shape inscribed in its box, tested at pixel centres."""
    centre = (np.arange(size) + 0.5) / size  # pixel centres in box units, 0..1
    y, x = np.meshgrid(centre, centre, indexing="ij")
    if shape == "square":
        mask = np.ones((size, size), dtype=bool)
    elif shape == "circle":
        mask = (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25
    elif shape == "triangle":  # apex at the top middle, base on the bottom row
        mask = np.abs(x - 0.5) <= y / 2
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.flags.writeable = False  # shared by the cache
    return mask


def _paint(frame: np.ndarray, mask: np.ndarray, top_left, rgb) -> None:
    """Paint `mask` at `top_left`, clipping whatever falls outside the frame."""
    x0, y0 = top_left
    h, w = frame.shape[:2]
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + mask.shape[1], w), min(y0 + mask.shape[0], h)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    visible = mask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    frame[fy0:fy1, fx0:fx1][visible] = rgb


def encode_mp4(frames: np.ndarray, fps: int, crf: int = 12) -> bytes:
    """H.264 (libx264, yuv420p) mp4 bytes, the same bytes for the same frames. A low crf keeps
    flat colours close to their RGB at these tiny sizes; the files stay a few kB."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even width and height, got {w}x{h}")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # x264's macroblock-tree rate control gave the same frames other bytes (pixels off by up to
        # 3 levels) on ~10% of these tiny scenes, single-threaded too: two builds of one world
        # then differed, and so did every model trained on it. Without it the encode is a function
        # of the frames (checked: 3,200 encodes of 400 scenes). The files grow by ~1.6x.
        stream.options = {"crf": str(crf), "x264-params": "mbtree=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush delayed frames
    return buf.getvalue()


def count_decodable_frames(data: bytes) -> int:
    import decord  # imported here: only writing needs it, and it is a heavy native module

    return len(decord.VideoReader(io.BytesIO(data)))


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: int) -> None:
    """Encode and write atomically (temp file in the same folder, then rename), after
    checking that decord reads back every frame: a file that exists is a good file."""
    data = encode_mp4(frames, fps)
    n = count_decodable_frames(data)
    if n != len(frames):
        raise RuntimeError(f"{path}: encoded {len(frames)} frames but decord reads {n}")
    atomic_write_bytes(path, data)
