"""What the generators know when a video comes with truth (the synthetic world's
truth/<name>.json): the true caption, per-clip captions, object boxes, and a checker that
labels the sentences of a text factual or not (Mask-DPO's sentence labels).

The checker reads the world's own sentence forms ("A red circle moves left.", "Then the blue
square disappears.", "There is a green triangle.", ...) and the forms perturb's edits write.
A sentence it cannot read has no label, and then the text gets none: a label is only written
where the truth decides it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmalign.data.records import sentence_spans
from mmalign.world import COLORS, SHAPES, Scene, caption
from mmalign.world.text import motion_phrase

from .lexicon import NUMBER_WORDS


@dataclass
class Truth:
    scene: Scene
    path: str

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Truth":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "scene" not in data:
            raise ValueError(f"{path}: not a world truth file (no 'scene')")
        return cls(Scene.from_dict(data["scene"]), str(path))

    @property
    def caption(self) -> str:
        return caption(self.scene)

    def present(self) -> set[str]:
        return {o.name for o in self.scene.objects}

    def boxes(self, frame_indices: list[int], object_ids: list[int]) -> list[list[list[float]]]:
        """For each sampled frame (an index into the file's frames), the boxes of the given
        objects visible there, as [x0, y0, x1, y1] fractions of the width and height (the
        `mask_boxes` op's format)."""
        w, h = self.scene.width, self.scene.height
        out = []
        for t in frame_indices:
            visible = self.scene.boxes(int(t))
            out.append([[b[0] / w, b[1] / h, b[2] / w, b[3] / h] for i, b in sorted(visible.items()) if i in object_ids])
        return out


# ---------------------------------------------------------------- per-clip captions (TEMPLE)


def clip_captions(scene: Scene, n_clips: int) -> list[str]:
    """One caption per clip, the file's frames cut into `n_clips` consecutive runs
    (np.array_split, as the `temple` op cuts a clip): every object seen in the clip with
    where it is when first seen there and its motion, and a disappearance inside the clip.
    "Nothing is visible." for an empty clip."""
    captions = []
    for frames in np.array_split(np.arange(scene.n_frames), min(n_clips, scene.n_frames)):
        a, b = int(frames[0]), int(frames[-1]) + 1
        sentences = []
        for o in sorted(scene.objects, key=lambda o: o.id):
            seen = [t for t in range(a, b) if o.visible(t)]
            if not seen:
                continue
            verb = "appears" if 0 < o.appear_frame == seen[0] else "is"
            sentences.append(f"A {o.name} {verb} {_where(scene, o, seen[0])} and {motion_phrase(o.direction)}.")
            if a < o.disappear_frame <= b and o.disappear_frame < scene.n_frames:
                sentences.append(f"Then the {o.name} disappears.")
        captions.append(" ".join(sentences) or "Nothing is visible.")
    return captions


def _where(scene: Scene, obj, t: int) -> str:
    x0, y0, x1, y1 = scene.boxes(t)[obj.id]
    third = lambda v, extent: min(2, int(3 * v / extent))  # noqa: E731
    v = ("top", "middle", "bottom")[third((y0 + y1) / 2, scene.height)]
    h = ("left", "centre", "right")[third((x0 + x1) / 2, scene.width)]
    if v == "middle" and h == "centre":
        return "in the centre"
    if v == "middle":
        return f"at the {h}"
    if h == "centre":
        return f"at the {v}"
    return f"at the {v} {h}"


# ---------------------------------------------------------------- the checker


_NAME = rf"(?P<color>{'|'.join(COLORS)}) (?P<shape>{'|'.join(SHAPES)})"
_NUM = rf"(?P<num>{'|'.join(NUMBER_WORDS[2:])}|\d+)"
_MOTION = r"(?:moves (?P<dir>left|right|up|down)|(?P<still>stays still))"
_FORMS = [
    ("motion", re.compile(rf"(?:then )?(?:a|the) {_NAME} {_MOTION}\.")),
    ("appears", re.compile(rf"(?:then )?(?:a|the) {_NAME} appears\.")),
    ("disappears", re.compile(rf"(?:then )?(?:a|the) {_NAME} disappears\.")),
    ("exists", re.compile(rf"there is (?:also )?an? {_NAME}(?P<rest>\b.*)")),
    ("count", re.compile(rf"(?:then )?{_NUM} {_NAME}s (?:move (?:left|right|up|down)|stay still|appear|disappear)\.")),
]


def check_sentence(sentence: str, scene: Scene) -> int | None:
    """1 if the sentence is true of the scene, 0 if false, None if it is not a form we read."""
    text = " ".join(sentence.strip().lower().split())
    for kind, form in _FORMS:
        m = form.fullmatch(text)
        if m is None:
            continue
        obj = next((o for o in scene.objects if o.color == m["color"] and o.shape == m["shape"]), None)
        if kind == "count":  # names are unique in a scene: two or more of one is never true
            return 0
        if obj is None:
            return 0
        if kind == "motion":
            return int(obj.direction == ("static" if m["still"] else m["dir"]))
        if kind == "appears":
            return int(obj.appear_frame > 0)
        if kind == "disappears":
            return int(obj.disappear_frame < scene.n_frames)
        # "There is a red circle." is true; what a model adds after the name is not checked.
        return 1 if m["rest"].strip() in ("", ".") else None
    return None


def event_frame(sentence: str, scene: Scene) -> int | None:
    """The frame of the event an "appears" / "disappears" sentence states about an object of
    the scene, else None (the checker's order knowledge: events on different frames have an
    order; facts true from the first frame do not)."""
    text = " ".join(sentence.strip().lower().split())
    for kind, form in _FORMS[1:3]:
        m = form.fullmatch(text)
        obj = m and next((o for o in scene.objects if o.color == m["color"] and o.shape == m["shape"]), None)
        if obj is not None:
            frame = obj.appear_frame if kind == "appears" else obj.disappear_frame
            return frame if 0 < frame < scene.n_frames else None
    return None


def label_sentences(text: str, scene: Scene) -> list[int] | None:
    """Labels (1 = factual) for every sentence `sentence_spans` finds, or None if any
    sentence is not one the checker reads."""
    labels = [check_sentence(text[s:e], scene) for s, e in sentence_spans(text)]
    return None if any(v is None for v in labels) else labels
