"""Paired char spans of what differs between two responses, and the rules they obey.

A pair's spans are two lists of equal length, [start, end) offsets into chosen and into
rejected, in text order, paired one to one: span i of chosen became span i of rejected, and
everything outside the spans is the same text on both sides. So
`apply_spans(chosen, chosen_spans, rejected, rejected_spans) == rejected` always holds; an
insertion is an empty span on the side it is missing from. Edits (perturb.inject) know their
spans; when the rejected side came from a model, `diff_spans` finds them.
"""

from __future__ import annotations

import difflib
import re

Span = tuple[int, int]

# Words, runs of whitespace, and single other characters: whitespace is a token so that the
# spans account for every character and the text outside them matches exactly.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def diff_spans(chosen: str, rejected: str) -> tuple[list[Span], list[Span]]:
    """The sub-sequences that differ, aligned word by word (difflib's longest matching blocks,
    anchored on words and punctuation). Differences separated by nothing but whitespace and punctuation are
    merged into one phrase ("red circle" -> "blue square" is one span, not two), as RRPO marks
    phrases. Identical texts give no spans."""
    a = [(m.start(), m.end()) for m in _TOKEN.finditer(chosen)]
    b = [(m.start(), m.end()) for m in _TOKEN.finditer(rejected)]
    # Whitespace tokens are "junk" to difflib: never the anchor of a match (they are half of all
    # tokens, and anchoring on them is slow and aligns nothing), yet still matched next to words.
    matcher = difflib.SequenceMatcher(str.isspace, [chosen[s:e] for s, e in a], [rejected[s:e] for s, e in b],
                                      autojunk=False)
    pairs: list[list[int]] = []  # [i1, i2, j1, j2] token ranges
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if pairs and _only_separators(chosen, a[pairs[-1][1]:i1]) and _only_separators(rejected, b[pairs[-1][3]:j1]):
            pairs[-1][1], pairs[-1][3] = i2, j2
        else:
            pairs.append([i1, i2, j1, j2])
    return [_char_span(a, i1, i2, len(chosen)) for i1, i2, _, _ in pairs], \
           [_char_span(b, j1, j2, len(rejected)) for _, _, j1, j2 in pairs]


def _only_separators(text: str, tokens: list[Span]) -> bool:
    return all(not re.search(r"\w", text[s:e]) for s, e in tokens)


def _char_span(tokens: list[Span], i1: int, i2: int, length: int) -> Span:
    if i1 == i2:  # nothing on this side: the insertion point
        point = tokens[i1][0] if i1 < len(tokens) else length
        return (point, point)
    return (tokens[i1][0], tokens[i2 - 1][1])


def apply_spans(chosen: str, chosen_spans: list[Span], rejected: str, rejected_spans: list[Span]) -> str:
    """chosen with each chosen span replaced by its paired rejected span's text."""
    if len(chosen_spans) != len(rejected_spans):
        raise ValueError(f"{len(chosen_spans)} chosen spans but {len(rejected_spans)} rejected spans")
    out, pos = [], 0
    for (c0, c1), (r0, r1) in zip(chosen_spans, rejected_spans):
        if c0 < pos or c1 < c0:
            raise ValueError(f"chosen spans must be in order and not overlap, got {chosen_spans}")
        out += [chosen[pos:c0], rejected[r0:r1]]
        pos = c1
    out.append(chosen[pos:])
    return "".join(out)


def check_spans(chosen: str, chosen_spans: list[Span], rejected: str, rejected_spans: list[Span]) -> None:
    """ValueError unless the spans are paired, ordered, inside their texts, and the text
    outside them is identical on both sides."""
    for name, spans, text in (("chosen", chosen_spans, chosen), ("rejected", rejected_spans, rejected)):
        last = 0
        for s, e in spans:
            if not last <= s <= e <= len(text):
                raise ValueError(f"{name} spans {spans} are not ordered, disjoint and inside 0..{len(text)}")
            last = e
    if len(chosen_spans) != len(rejected_spans):
        raise ValueError(f"{len(chosen_spans)} chosen spans but {len(rejected_spans)} rejected spans")
    if _outside(chosen, chosen_spans) != _outside(rejected, rejected_spans):
        raise ValueError("the text outside the spans differs between chosen and rejected")


def _outside(text: str, spans: list[Span]) -> list[str]:
    pieces, pos = [], 0
    for s, e in spans:
        pieces.append(text[pos:s])
        pos = e
    return pieces + [text[pos:]]


def changed_fraction(chosen: str, chosen_spans: list[Span], rejected: str, rejected_spans: list[Span]) -> float:
    """Share of the two texts' characters inside spans (0 = identical, 1 = all changed)."""
    inside = sum(e - s for s, e in chosen_spans) + sum(e - s for s, e in rejected_spans)
    return inside / max(1, len(chosen) + len(rejected))


def sentences_touched(sentences: list[Span], spans: list[Span]) -> set[int]:
    """Indices of the sentences a span changes: overlapping a non-empty span, or holding an
    empty span (an insertion point) strictly inside."""
    touched = set()
    for i, (s, e) in enumerate(sentences):
        for a, b in spans:
            if (a < b and a < e and b > s) or (a == b and s < a < e):
                touched.add(i)
    return touched
