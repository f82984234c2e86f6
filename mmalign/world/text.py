"""Words about a scene: captions, short-answer QA, paired yes/no benchmark questions, and
minimally edited (hallucinated) captions. Everything is derived from the scene's truth.

Captions hold one fact per sentence, sentences joined by one space, each ending with ".":
the objects there from the first frame with their motion, then the events in time order
("Then a green triangle appears. The green triangle moves up. Then the red circle disappears.").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import COLORS, DIRECTIONS, SHAPES, Scene, WorldObject

MOVING = tuple(d for d in DIRECTIONS if d != "static")
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
_EVENT_VERB = {"appears": "appear", "disappears": "disappear"}


def motion_phrase(direction: str) -> str:
    return "stays still" if direction == "static" else f"moves {direction}"


# ---------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class _Sentence:
    text: str
    obj: WorldObject
    has_motion: bool  # the sentence states the object's motion phrase


def _sentences(scene: Scene) -> list[_Sentence]:
    out = [
        _Sentence(f"A {o.name} {motion_phrase(o.direction)}.", o, True)
        for o in sorted(scene.objects, key=lambda o: o.id)
        if o.appear_frame == 0
    ]
    for _, kind, obj_id in scene.events():
        o = scene.by_id(obj_id)
        if kind == "appears":
            # "Then" only when something came before; a scene may start empty.
            out.append(_Sentence(f"{'Then a' if out else 'A'} {o.name} appears.", o, False))
            out.append(_Sentence(f"The {o.name} {motion_phrase(o.direction)}.", o, True))
        else:
            out.append(_Sentence(f"Then the {o.name} disappears.", o, False))
    return out


def caption_sentences(scene: Scene) -> list[str]:
    return [s.text for s in _sentences(scene)]


def caption(scene: Scene) -> str:
    return " ".join(caption_sentences(scene))


# ---------------------------------------------------------------------------- helpers


def _scene_rng(scene: Scene, salt: int) -> np.random.Generator:
    """Choices that are not part of the truth (which absent object to ask about) are seeded
    from the scene, so questions are deterministic without an rng argument."""
    return np.random.default_rng([scene.seed, salt])


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _absent_names(scene: Scene, near: WorldObject | None = None) -> list[str]:
    """(colour shape) names not in the scene; with `near`, only those sharing its colour or
    its shape (a near miss is a harder hallucination than a random object)."""
    present = {o.name for o in scene.objects}
    return [
        f"{c} {s}"
        for c in COLORS
        for s in SHAPES
        if f"{c} {s}" not in present and (near is None or c == near.color or s == near.shape)
    ]


def _unique_shapes(scene: Scene) -> list[WorldObject]:
    return [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]


def _unique_colors(scene: Scene) -> list[WorldObject]:
    return [o for o in scene.objects if sum(p.color == o.color for p in scene.objects) == 1]


def _order_pairs(scene: Scene) -> list[tuple[tuple, tuple]]:
    """Neighbouring events in time (the tightest order to get right), where the two are
    about different objects and on different frames (an object appearing before it
    disappears is no test; events on one frame have no order)."""
    events = scene.events()
    return [(a, b) for a, b in zip(events, events[1:]) if a[2] != b[2] and a[0] < b[0]]


def _order_question(scene: Scene, first: tuple, second: tuple) -> str:
    a, b = scene.by_id(first[2]), scene.by_id(second[2])
    return f"Does the {a.name} {_EVENT_VERB[first[1]]} before the {b.name} {second[1]}?"


def _count_question(n: int) -> str:
    if n == 1:
        return "Is there exactly 1 object in the video?"
    return f"Are there exactly {n} objects in the video?"


def _existence_question(name: str) -> str:
    return f"Is there a {name} in the video?"


def _motion_question(name: str, direction: str) -> str:
    verb = "stay still" if direction == "static" else f"move {direction}"
    return f"Does the {name} {verb}?"


# ---------------------------------------------------------------------------- QA


ANSWER_CHOICES = {
    "existence": ["yes", "no"],
    "color": list(COLORS),
    "shape": list(SHAPES),
    "direction": list(MOVING) + ["no"],
    "count": [str(n) for n in range(10)],
    "order": ["yes", "no"],
}


def qa_pairs(scene: Scene) -> list[dict]:
    """Short-answer questions with exact one-word answers (for SFT and rule rewards).
    kind in existence | color | shape | direction | count | order; see ANSWER_CHOICES."""
    rng = _scene_rng(scene, salt=1)
    qa = []

    def add(kind, question, answer):
        qa.append({"question": question, "answer": answer, "kind": kind})

    for o in scene.objects:
        add("existence", _existence_question(o.name), "yes")
    absent = _absent_names(scene)
    if absent:
        add("existence", _existence_question(_pick(rng, absent)), "no")
    for o in _unique_shapes(scene):
        add("color", f"What color is the {o.shape}?", o.color)
    for o in _unique_colors(scene):
        add("shape", f"What shape is the {o.color} object?", o.shape)
    for o in scene.objects:
        if o.direction == "static":
            add("direction", f"Does the {o.name} move?", "no")
        else:
            add("direction", f"Which direction does the {o.name} move?", o.direction)
    add("count", "How many objects are in the video?", str(len(scene.objects)))
    for first, second in _order_pairs(scene):
        # Ask in the true or the reversed order at random, so "yes" is not always right.
        if rng.random() < 0.5:
            add("order", _order_question(scene, first, second), "yes")
        else:
            add("order", _order_question(scene, second, first), "no")
    return qa


# ---------------------------------------------------------------------------- benchmark


def benchmark_items(scene: Scene) -> list[dict]:
    """Paired yes/no questions in the VideoHallucer style: the basic question's answer is
    "yes", its hallucinated twin's is "no"; a model scores on a pair only if both are right.
    type in existence | attribute | direction | count | order; a type the scene cannot
    support (e.g. order without two events of different objects) is skipped."""
    rng = _scene_rng(scene, salt=2)
    items = []

    def add(kind, basic, hallucination):
        n = sum(it["type"] == kind for it in items)
        items.append({
            "id": f"{kind}{n}",
            "type": kind,
            "basic": {"question": basic, "answer": "yes"},
            "hallucination": {"question": hallucination, "answer": "no"},
        })

    for o in scene.objects:
        near = _absent_names(scene, near=o)
        if near:
            add("existence", _existence_question(o.name), _existence_question(_pick(rng, near)))
    unique_shapes = _unique_shapes(scene)
    for o in unique_shapes:
        other = _pick(rng, [c for c in COLORS if c != o.color])
        add("attribute", f"Is the {o.shape} {o.color}?", f"Is the {o.shape} {other}?")
    for o in _unique_colors(scene):
        if o not in unique_shapes:  # already asked about by its colour above
            other = _pick(rng, [s for s in SHAPES if s != o.shape])
            add("attribute", f"Is the {o.color} object a {o.shape}?", f"Is the {o.color} object a {other}?")
    for o in scene.objects:
        wrong = _pick(rng, list(MOVING)) if o.direction == "static" else _OPPOSITE[o.direction]
        add("direction", _motion_question(o.name, o.direction), _motion_question(o.name, wrong))
    n = len(scene.objects)
    wrong = n + 1 if n == 1 or rng.random() < 0.5 else n - 1
    add("count", _count_question(n), _count_question(wrong))
    for first, second in _order_pairs(scene):
        add("order", _order_question(scene, first, second), _order_question(scene, second, first))
    return items


# ---------------------------------------------------------------------------- hallucinated captions


@dataclass(frozen=True)
class _Edit:
    kind: str  # color | shape | direction | add_object
    sentence: int  # index of the sentence edited, or the one the new sentence follows
    offset: int  # char offset of `old` inside that sentence
    old: str
    new: str


def _candidate_edits(scene: Scene, sentences: list[_Sentence]) -> list[_Edit]:
    """Every single-phrase edit that makes the caption false: a colour or shape swapped to a
    combination absent from the scene, a motion changed, or a sentence about an absent
    object inserted after a sentence."""
    present = {o.name for o in scene.objects}
    edits = []
    for i, s in enumerate(sentences):
        o, at = s.obj, s.text.index(s.obj.name)
        edits += [_Edit("color", i, at, o.color, c) for c in COLORS if f"{c} {o.shape}" not in present]
        edits += [
            _Edit("shape", i, at + len(o.color) + 1, o.shape, sh)
            for sh in SHAPES
            if f"{o.color} {sh}" not in present
        ]
        if s.has_motion:
            edits += _motion_edits(i, s.text, o.direction)
    n_start = sum(o.appear_frame == 0 for o in scene.objects)
    for i, s in enumerate(sentences):
        # Inside the opening block a new object is introduced like the others (with a
        # motion); after it, as an event. The leading space belongs to the inserted text.
        if i < n_start:
            inserts = [f" A {name} {motion_phrase(d)}." for name in _absent_names(scene) for d in DIRECTIONS]
        else:
            inserts = [f" Then a {name} appears." for name in _absent_names(scene)]
        edits += [_Edit("add_object", i, len(s.text), "", new) for new in inserts]
    return edits


def _motion_edits(i: int, text: str, direction: str) -> list[_Edit]:
    phrase = motion_phrase(direction)
    at = text.index(phrase)
    if direction == "static":
        return [_Edit("direction", i, at, phrase, motion_phrase(d)) for d in MOVING]
    # Keep the edit to the one differing word where both sides say "moves ...".
    at_word = at + len("moves ")
    edits = [_Edit("direction", i, at_word, direction, d) for d in MOVING if d != direction]
    return edits + [_Edit("direction", i, at, phrase, motion_phrase("static"))]


def hallucinated_caption(scene: Scene, rng: np.random.Generator) -> dict:
    """A minimal edit of the true caption: pick an edit kind uniformly among those the scene
    supports, then one edit of that kind. Spans are [start, end) char offsets of the
    differing text in each caption, so that
    `chosen[:c0] + rejected[r0:r1] + chosen[c1:] == rejected`; an inserted sentence has an
    empty chosen span at the insertion point (spans stay paired one to one). Sentence
    labels: 1 = factual, 0 = hallucinated (only the edited or inserted sentence)."""
    sentences = _sentences(scene)
    if not sentences:
        raise ValueError("an empty scene has no caption to edit")
    edits = _candidate_edits(scene, sentences)
    kind = _pick(rng, sorted({e.kind for e in edits}))
    edit = _pick(rng, [e for e in edits if e.kind == kind])

    texts = [s.text for s in sentences]
    chosen = " ".join(texts)
    start = sum(len(t) + 1 for t in texts[: edit.sentence]) + edit.offset
    rejected = chosen[:start] + edit.new + chosen[start + len(edit.old) :]
    labels = [1] * len(texts)
    if edit.kind == "add_object":
        rejected_labels = labels[: edit.sentence + 1] + [0] + labels[edit.sentence + 1 :]
    else:
        rejected_labels = [0 if i == edit.sentence else 1 for i in range(len(texts))]
    return {
        "chosen": chosen,
        "rejected": rejected,
        "chosen_spans": [[start, start + len(edit.old)]],
        "rejected_spans": [[start, start + len(edit.new)]],
        "kind": edit.kind,
        "chosen_sentence_labels": labels,
        "rejected_sentence_labels": rejected_labels,
    }
