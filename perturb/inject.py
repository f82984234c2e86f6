"""Hallucination injection into text (RRPO / APASI patterns), every edit with its spans.

An edit is a list of substitutions on the chosen text; the rejected text and the paired
spans follow from it (`Injection`), so the spans are exactly what changed. Types:

- object: an object noun becomes one that is not there (world: the shape of a "red circle").
- attribute: a colour becomes another (world: to a colour-shape not in the scene).
- count: a number changes, or "A red circle moves" becomes "Two red circles move".
- direction: a direction or action word becomes its opposite ("left" -> "right",
  "appears" -> "disappears"), or "stays still" <-> "moves <d>".
- order: two sentences trade places (same opening word first, e.g. two "Then ..." events),
  or before/after, first/last swap.
- cooccurrence: a sentence about a plausible absent object is inserted ("There is also a
  blue circle."): one that co-occurs with a mentioned object in a co-occurrence table, or in
  the world a colour-shape that shares a colour or shape with a mentioned one.
- prior: a sentence (never the first) is replaced by what a language model writes after the
  text before it, without the video (`complete_fn`): the language prior's continuation.

With truth, an edit whose changed sentences the checker finds all true is not used (it would
not be a hallucination); objects are taken from outside the scene.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mmalign.data.records import sentence_spans
from mmalign.world import COLORS, SHAPES

from .diff import Span, sentences_touched
from .facts import Truth, check_sentence, event_frame
from .lexicon import (ALL_COLORS, NUMBER_WORDS, OPPOSITES, TEMPORAL_OPPOSITES, Match, find_objects, find_words,
                      like_case, object_names, plural)
from .pair import (Item, PairBuilder, Result, chosen_answers, edit_difficulty, make_record, record_rng,
                   sentence_labels, vocabulary_of)

INJECTION_TYPES = ("object", "attribute", "count", "direction", "order", "cooccurrence", "prior")

Sub = tuple[int, int, str]  # replace chosen[start:end] with the string


@dataclass
class Injection:
    type: str
    chosen: str
    rejected: str
    chosen_spans: list[Span]
    rejected_spans: list[Span]
    detail: dict = field(default_factory=dict)


def make_injection(chosen: str, kind: str, subs: list[Sub], detail: dict | None = None) -> Injection:
    """Apply ordered, disjoint substitutions; the spans are where each one sits on each side."""
    out, chosen_spans, rejected_spans, pos, length = [], [], [], 0, 0
    for start, end, new in sorted(subs):
        if start < pos or end < start:
            raise ValueError(f"substitutions overlap or are reversed: {subs}")
        out.append(chosen[pos:start])
        length += start - pos
        chosen_spans.append((start, end))
        rejected_spans.append((length, length + len(new)))
        out.append(new)
        length += len(new)
        pos = end
    out.append(chosen[pos:])
    return Injection(kind, chosen, "".join(out), chosen_spans, rejected_spans, detail or {})


@dataclass
class InjectContext:
    vocabulary: str = "world"  # "world" or "coco": which object names edits know
    truth: Truth | None = None
    cooccurrence: dict[str, list[str]] | None = None  # object -> co-occurring objects, most frequent first
    top_k: int = 10


def inject(text: str, kind: str, rng: np.random.Generator, ctx: InjectContext) -> Injection | None:
    """One edit of type `kind` drawn uniformly from those that apply (None if none does).
    "prior" needs a model: use `prior_request` / `prior_injection`."""
    if kind not in EDIT_FINDERS:
        raise ValueError(f"unknown injection type {kind!r}; known: {', '.join(EDIT_FINDERS)} (and 'prior')")
    options = [c for c in EDIT_FINDERS[kind](text, ctx) if _is_false(c, ctx)]
    if not options:
        return None
    return options[int(rng.integers(len(options)))]


def _is_false(inj: Injection, ctx: InjectContext) -> bool:
    """Without truth every edit counts; with truth, at least one changed sentence must not be
    found true (unreadable sentences are given the benefit of the doubt)."""
    if inj.rejected == inj.chosen:
        return False
    if ctx.truth is None:
        return True
    if "swapped" in inj.detail:  # two sentences traded places: false only if their events have an order
        frames = [event_frame(inj.chosen[s:e], ctx.truth.scene)
                  for s, e in (sentence_spans(inj.chosen)[i] for i in inj.detail["swapped"])]
        return None not in frames and frames[0] != frames[1]
    sentences = sentence_spans(inj.rejected)
    touched = sentences_touched(sentences, inj.rejected_spans)
    return any(check_sentence(inj.rejected[s:e], ctx.truth.scene) != 1
               for i, (s, e) in enumerate(sentences) if i in touched)


def _absent(names, text: str, ctx: InjectContext) -> list[str]:
    mentioned = {m.text for m in find_objects(text, ctx.vocabulary)}
    present = ctx.truth.present() if ctx.truth else set()
    return [n for n in names if n not in mentioned and n not in present]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# ---------------------------------------------------------------- the edit types


def _object_edits(text: str, ctx: InjectContext) -> list[Injection]:
    edits = []
    for m in find_objects(text, ctx.vocabulary):
        said = text[m.start:m.end]
        is_plural = said.lower() != m.text
        if ctx.vocabulary == "world":
            color, shape = m.text.split(" ")
            start = m.start + len(color) + 1
            for new in _absent([f"{color} {s}" for s in SHAPES if s != shape], text, ctx):
                word = new.split(" ")[1]
                edits.append(make_injection(text, "object", [(start, m.end, plural(word) if is_plural else word)],
                                            {"old": m.text, "new": new}))
        else:
            for new in _absent([n for n in object_names(ctx.vocabulary) if n != m.text], text, ctx):
                word = like_case(plural(new) if is_plural else new, said)
                edits.append(make_injection(text, "object", [(m.start, m.end, word)], {"old": m.text, "new": new}))
    return edits


def _attribute_edits(text: str, ctx: InjectContext) -> list[Injection]:
    edits = []
    if ctx.vocabulary == "world":
        for m in find_objects(text, "world"):
            color, shape = m.text.split(" ")
            for new in _absent([f"{c} {shape}" for c in COLORS if c != color], text, ctx):
                word = like_case(new.split(" ")[0], text[m.start:m.end])
                edits.append(make_injection(text, "attribute", [(m.start, m.start + len(color), word)],
                                            {"old": color, "new": new.split(" ")[0]}))
        return edits
    mentioned = {m.text.lower() for m in find_words(text, ALL_COLORS)}
    for m in find_words(text, ALL_COLORS):
        for c in ALL_COLORS:
            if c not in mentioned and {c, m.text.lower()} != {"gray", "grey"}:
                edits.append(make_injection(text, "attribute", [(m.start, m.end, like_case(c, m.text))],
                                            {"old": m.text.lower(), "new": c}))
    return edits


_VERB_PLURAL = {"moves": "move", "stays": "stay", "appears": "appear", "disappears": "disappear", "is": "are",
                "runs": "run", "walks": "walk", "sits": "sit", "stands": "stand"}


def _count_edits(text: str, ctx: InjectContext) -> list[Injection]:
    edits = []
    for m in find_words(text, NUMBER_WORDS) + [_match(m) for m in re.finditer(r"\b\d+\b", text)]:
        value = int(m.text) if m.text.isdigit() else NUMBER_WORDS.index(m.text.lower())
        for new in (value - 1, value + 1):
            if 0 <= new < len(NUMBER_WORDS) or (m.text.isdigit() and new >= 0):
                word = str(new) if m.text.isdigit() else like_case(NUMBER_WORDS[new], m.text)
                edits.append(make_injection(text, "count", [(m.start, m.end, word)], {"old": value, "new": new}))
    # "A red circle moves" -> "Two red circles move": three substitutions, one claim.
    nouns = SHAPES if ctx.vocabulary == "world" else object_names(ctx.vocabulary)
    pattern = re.compile(rf"\b([Aa]n?) ((?:(?:{'|'.join(ALL_COLORS)}) )?)({'|'.join(map(re.escape, nouns))}) "
                         rf"({'|'.join(_VERB_PLURAL)})\b")
    for m in pattern.finditer(text):
        subs = [(m.start(1), m.end(1), like_case("two", m.group(1))),
                (m.start(3), m.end(3), plural(m.group(3))),
                (m.start(4), m.end(4), _VERB_PLURAL[m.group(4)])]
        edits.append(make_injection(text, "count", subs, {"old": 1, "new": 2}))
    return edits


def _match(m: re.Match) -> Match:
    return Match(m.start(), m.end(), m.group())


_MOVE = re.compile(r"\b(moves|stays) (left|right|up|down|still)\b", re.IGNORECASE)


def _direction_edits(text: str, ctx: InjectContext) -> list[Injection]:
    edits = []
    for m in _MOVE.finditer(text):  # the world's "moves left" / "stays still"
        old = m.group().lower()
        for new in ["moves left", "moves right", "moves up", "moves down", "stays still"]:
            if new != old:
                start, end, word = _minimal_sub(m.start(), old, new)
                edits.append(make_injection(text, "direction", [(start, end, like_case(word, text[start:end]))],
                                            {"old": old, "new": new}))
    moved = {(m.start(2), m.end(2)) for m in _MOVE.finditer(text)}
    for m in find_words(text, OPPOSITES):
        if (m.start, m.end) not in moved:
            new = like_case(OPPOSITES[m.text.lower()], m.text)
            edits.append(make_injection(text, "direction", [(m.start, m.end, new)], {"old": m.text.lower(), "new": new.lower()}))
    return edits


def _minimal_sub(start: int, old: str, new: str) -> Sub:
    """Keep a shared first word out of the span: "moves left" -> "moves up" changes one word."""
    if old.split(" ")[0] == new.split(" ")[0]:
        skip = len(old.split(" ")[0]) + 1
        return start + skip, start + len(old), new[skip:]
    return start, start + len(old), new


def _order_edits(text: str, ctx: InjectContext) -> list[Injection]:
    sentences = sentence_spans(text)
    pieces = [text[s:e] for s, e in sentences]
    first_word = [p.split(" ")[0].lower() for p in pieces]
    pairs = [(i, j) for i in range(len(pieces)) for j in range(i + 1, len(pieces))
             if first_word[i] == first_word[j] and pieces[i] != pieces[j]]
    if not pairs:
        pairs = [(i, i + 1) for i in range(len(pieces) - 1) if pieces[i] != pieces[i + 1]]
    edits = [make_injection(text, "order", [(*sentences[i], pieces[j]), (*sentences[j], pieces[i])],
                            {"swapped": [i, j]}) for i, j in pairs]
    for m in find_words(text, TEMPORAL_OPPOSITES):
        new = like_case(TEMPORAL_OPPOSITES[m.text.lower()], m.text)
        edits.append(make_injection(text, "order", [(m.start, m.end, new)], {"old": m.text.lower(), "new": new.lower()}))
    return edits


def _cooccurrence_edits(text: str, ctx: InjectContext) -> list[Injection]:
    mentioned = [m.text for m in find_objects(text, ctx.vocabulary)]
    if ctx.cooccurrence is not None:
        plausible = [o for key in mentioned for o in ctx.cooccurrence.get(key, [])[: ctx.top_k]]
    elif ctx.vocabulary == "world":  # a near miss: shares a colour or a shape with a mentioned object
        plausible = [f"{c} {s}" for key in mentioned for c in COLORS for s in SHAPES
                     if (c == key.split(" ")[0]) != (s == key.split(" ")[1])]
    else:
        plausible = list(object_names(ctx.vocabulary))
    candidates = list(dict.fromkeys(_absent(plausible, text, ctx)))
    edits = []
    for s, e in sentence_spans(text):
        for obj in candidates:
            edits.append(make_injection(text, "cooccurrence", [(e, e, f" There is also {_article(obj)} {obj}.")],
                                        {"object": obj}))
    return edits


EDIT_FINDERS: dict[str, Callable[[str, InjectContext], list[Injection]]] = {
    "object": _object_edits,
    "attribute": _attribute_edits,
    "count": _count_edits,
    "direction": _direction_edits,
    "order": _order_edits,
    "cooccurrence": _cooccurrence_edits,
}


# ---------------------------------------------------------------- language-prior continuation


def prior_request(text: str, rng: np.random.Generator) -> tuple[int, str] | None:
    """(sentence index, text before it) for a language-prior edit: a sentence other than the
    first, drawn uniformly; None for a text of one sentence."""
    sentences = sentence_spans(text)
    if len(sentences) < 2:
        return None
    k = int(rng.integers(1, len(sentences)))
    return k, text[: sentences[k][0]]


def prior_injection(text: str, k: int, continuation: str) -> Injection | None:
    """Sentence k replaced by the model's continuation (cut at its first "." by the caller,
    ended with "." here); None when that gives the sentence back or nothing."""
    s, e = sentence_spans(text)[k]
    new = continuation.strip()
    if not new:
        return None
    new = new if new.endswith(".") else new + "."
    if new == text[s:e] or len(sentence_spans(new)) != 1:
        return None
    return make_injection(text, "prior", [(s, e, new)], {"sentence": k})


# ---------------------------------------------------------------- the pair builder


class InjectPairs(PairBuilder):
    """generator: inject — chosen = the truth caption or the model's answer; one rejected per
    edit type (`inject.types`, or `inject.per_video` of them drawn per video). Difficulty is
    1 - the changed share of the texts: the smaller the edit, the harder the pair."""

    name = "inject"

    def run(self, phase: str, items: list[Item]) -> list[Result]:
        c = self.cfg.inject
        results = {it.key: Result(it.key) for it in items}
        chosen = chosen_answers(self.cfg, self.backend, items, results)
        priors = []
        for it in items:
            if it.key not in chosen:
                continue
            text, ctx = chosen[it.key], InjectContext(vocabulary_of(self.cfg, it), it.truth)
            types = list(c.types)
            if c.per_video is not None and c.per_video < len(types):
                picked = np.random.default_rng([it.seed, 1]).choice(len(types), size=c.per_video, replace=False)
                types = [types[i] for i in sorted(picked)]
            for kind in types:
                tag, result = f"inject-{kind}", results[it.key]
                rng = record_rng(it, tag)
                if kind == "prior":
                    request = prior_request(text, rng)
                    if request is None:
                        result.drop("prior: a one-sentence text")
                    else:
                        priors.append((it, tag, ctx, text, *request))
                    continue
                injection = inject(text, kind, rng, ctx)
                if injection is None:
                    result.drop(f"no {kind} edit applies")
                else:
                    self._add(result, it, tag, injection)
        if priors:
            complete = self.backend.need("complete", "injection type prior")
            continuations = complete([(self.cfg.prompt, prefix) for *_, prefix in priors],
                                     max_new_tokens=c.max_new_tokens, repetition_penalty=1.0)
            for (it, tag, ctx, text, k, _), continuation in zip(priors, continuations):
                injection = prior_injection(text, k, continuation)
                if injection is None or not _is_false(injection, ctx):
                    results[it.key].drop("prior: the continuation is empty, the same, or true")
                else:
                    self._add(results[it.key], it, tag, injection)
        return list(results.values())

    def _add(self, result: Result, item: Item, tag: str, inj: Injection) -> None:
        spans = (inj.chosen, inj.chosen_spans, inj.rejected, inj.rejected_spans)
        result.records.append(make_record(
            self.cfg, item, tag, *spans, generator="inject",
            labels=sentence_labels(item, inj.chosen, inj.rejected, inj.rejected_spans),
            difficulty=edit_difficulty(*spans), meta={"perturbation": inj.type, **inj.detail}))
