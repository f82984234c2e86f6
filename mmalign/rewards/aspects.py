"""Multi-aspect instruction adherence: does the answer follow the prompt's explicit constraints?

Aspects (each active only when configured, in the term's options or per record in
truth['constraints'] with the same keys; a record's lists add to the term's, its limits
replace the term's):
- required phrases:  the share of them present (whole words, case-insensitive by default),
- forbidden phrases: the share of them absent,
- word limits:       1 if min_words <= words <= max_words, else 0,
- sentence limits:   1 if min_sentences <= sentences <= max_sentences, else 0.
The reward is the mean over the active aspects, in [0, 1]. Checked on the final answer (the
<answer> part when there is one); sentences are split as everywhere in mmalign
(`mmalign.data.records.sentence_spans`).
"""

from __future__ import annotations

import re

from mmalign.data.records import sentence_spans
from mmalign.rewards.registry import Sample, reward
from mmalign.rewards.rule import final_answer

LIMITS = ("min_words", "max_words", "min_sentences", "max_sentences")


def _present(text: str, phrase: str, case_sensitive: bool) -> bool:
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, flags) is not None


def _within(n: int, low: int | None, high: int | None) -> float:
    return float((low is None or n >= low) and (high is None or n <= high))


@reward("instruction_adherence")
def instruction_adherence(sample: Sample, required: list[str] = (), forbidden: list[str] = (),
                          min_words: int | None = None, max_words: int | None = None,
                          min_sentences: int | None = None, max_sentences: int | None = None,
                          case_sensitive: bool = False) -> float:
    """Mean over the active aspects (see the module docstring)."""
    own = (sample.truth or {}).get("constraints") or {}
    required = list(required) + list(own.get("required", []))
    forbidden = list(forbidden) + list(own.get("forbidden", []))
    limits = dict(zip(LIMITS, (min_words, max_words, min_sentences, max_sentences)))
    limits.update({k: own[k] for k in LIMITS if k in own})
    text = final_answer(sample.completion).strip()
    scores = []
    if required:
        scores.append(sum(_present(text, p, case_sensitive) for p in required) / len(required))
    if forbidden:
        scores.append(sum(not _present(text, p, case_sensitive) for p in forbidden) / len(forbidden))
    if limits["min_words"] is not None or limits["max_words"] is not None:
        scores.append(_within(len(text.split()), limits["min_words"], limits["max_words"]))
    if limits["min_sentences"] is not None or limits["max_sentences"] is not None:
        scores.append(_within(len(sentence_spans(text)), limits["min_sentences"], limits["max_sentences"]))
    if not scores:
        raise ValueError("no constraints: give required / forbidden phrases or word / sentence limits")
    return sum(scores) / len(scores)
