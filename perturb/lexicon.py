"""Word lists and word finding for text edits: colours, object nouns, directions and actions
with their opposites, numbers, temporal words.

Two vocabularies of objects: the synthetic world's ("red circle": a colour and a shape, as
its captions name things) and the 80 COCO categories (what CHAIR, POPE and APASI count as
objects in real descriptions). Matching is by whole word, case-insensitive; a replacement
takes the capitalisation of the word it replaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmalign.world import COLORS, SHAPES

EXTRA_COLORS = ("black", "orange", "pink", "brown", "gray", "grey", "cyan")
ALL_COLORS = tuple(COLORS) + EXTRA_COLORS

COCO_OBJECTS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)

# Direction and action words with the word that states the opposite.
OPPOSITES = {
    "left": "right", "right": "left", "up": "down", "down": "up",
    "forward": "backward", "backward": "forward", "clockwise": "counterclockwise",
    "counterclockwise": "clockwise", "appears": "disappears", "disappears": "appears",
    "opens": "closes", "closes": "opens", "enters": "leaves", "leaves": "enters",
    "rises": "falls", "falls": "rises", "starts": "stops", "stops": "starts",
    "pushes": "pulls", "pulls": "pushes", "raises": "lowers", "lowers": "raises",
}
TEMPORAL_OPPOSITES = {"before": "after", "after": "before", "first": "last", "last": "first",
                      "earlier": "later", "later": "earlier"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    text: str


def find_words(text: str, words) -> list[Match]:
    """Whole-word, case-insensitive occurrences of any of `words` (multi-word phrases too),
    longest first where two start at one place, in text order, never overlapping."""
    if not words:
        return []
    alternatives = sorted({w.lower() for w in words}, key=len, reverse=True)
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in alternatives) + r")\b", re.IGNORECASE)
    return [Match(m.start(), m.end(), m.group()) for m in pattern.finditer(text)]


def like_case(new: str, old: str) -> str:
    """`new` capitalised as `old` is (Capitalised or lower case)."""
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


IRREGULAR_PLURALS = {"person": "people", "man": "men", "woman": "women", "child": "children", "knife": "knives",
                     "mouse": "mice", "sheep": "sheep", "skis": "skis", "scissors": "scissors", "broccoli": "broccoli"}


def plural(noun: str) -> str:
    *head, last = noun.split(" ")
    if last in IRREGULAR_PLURALS:
        return " ".join([*head, IRREGULAR_PLURALS[last]])
    if last.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def object_names(vocabulary: str) -> tuple[str, ...]:
    """The object names of a vocabulary: "world" (colour + shape) or "coco"."""
    if vocabulary == "world":
        return tuple(f"{c} {s}" for c in COLORS for s in SHAPES)
    if vocabulary == "coco":
        return COCO_OBJECTS
    raise ValueError(f"unknown vocabulary {vocabulary!r}; known: world, coco")


def find_objects(text: str, vocabulary: str) -> list[Match]:
    """Mentions of the vocabulary's objects (singular or plural), canonical name in .text."""
    names = object_names(vocabulary)
    forms = {n: n for n in names} | {plural(n): n for n in names}
    return [Match(m.start, m.end, forms[m.text.lower()]) for m in find_words(text, forms)]
