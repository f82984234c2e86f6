"""Rule-based rewards: checks of a completion against the record's answer and ground truth.

Every rule reads the final answer: the text inside the last <answer>...</answer> when the
completion has one (R1-style "think, then answer" outputs), else the whole completion.
Comparisons are on normalised text: lower case, whitespace collapsed, surrounding punctuation
stripped ("Yes." == "yes").
"""

from __future__ import annotations

import re

from mmalign.rewards.registry import Sample, reward

THINK_ANSWER = r"<think>.+?</think>\s*<answer>.+?</answer>"
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_EDGE_PUNCT = " \t\n.,!?;:\"'`()[]{}"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def final_answer(text: str) -> str:
    tagged = _ANSWER_TAG.findall(text)
    return tagged[-1] if tagged else text


def normalise(text: str) -> str:
    return " ".join(text.lower().split()).strip(_EDGE_PUNCT)


def _gold(sample: Sample) -> str:
    if sample.answer is None:
        raise ValueError("the record has no 'answer'")
    return normalise(sample.answer)


def _contains_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


@reward("answer_match")
def answer_match(sample: Sample) -> float:
    """1 if the final answer equals the record's answer (normalised), else 0."""
    return float(normalise(final_answer(sample.completion)) == _gold(sample))


def _choices(sample: Sample, choices: list[str] | None) -> list[str]:
    found = choices if choices is not None else (sample.truth or {}).get("choices")
    if not found:
        raise ValueError("no choices: give the term a `choices` option or the record truth['choices']")
    return [normalise(str(c)) for c in found]


def picked_choice(text: str, choices: list[str], letters: bool = False) -> str | None:
    """The one option a (normalised) answer picks, or None when it picks none or several.
    With `letters`, "b", "(b)", "b." and "b) red" pick choices[1]."""
    if letters:
        m = re.fullmatch(r"\(?([a-z])(?:[.:)].*)?", text, re.DOTALL)
        if m and ord(m.group(1)) - ord("a") < len(choices):
            return choices[ord(m.group(1)) - ord("a")]
    hits = [c for c in choices if _contains_phrase(text, c)]
    return hits[0] if len(hits) == 1 else None


@reward("choice_match")
def choice_match(sample: Sample, choices: list[str] | None = None, letters: bool = False) -> float:
    """Multiple choice: 1 if the final answer picks exactly one option (its text, or with
    `letters` its letter A, B, ...) and that option is the record's answer, else 0. Options come
    from `choices` or the record's truth['choices']; the answer may be the option or its letter."""
    opts = _choices(sample, choices)
    gold = _gold(sample)
    if letters and len(gold) == 1 and gold.isalpha() and ord(gold) - ord("a") < len(opts):
        gold = opts[ord(gold) - ord("a")]
    return float(picked_choice(normalise(final_answer(sample.completion)), opts, letters) == gold)


@reward("valid_choice")
def valid_choice(sample: Sample, choices: list[str] | None = None) -> float:
    """Partial credit for answering in the expected form: 1 if the whole final answer is one of
    the options (right or wrong), else 0."""
    return float(normalise(final_answer(sample.completion)) in _choices(sample, choices))


@reward("format")
def format_reward(sample: Sample, pattern: str = THINK_ANSWER) -> float:
    """1 if the whole completion (stripped) matches the regex `pattern` (default: <think>...
    </think> then <answer>...</answer>), else 0."""
    return float(re.fullmatch(pattern, sample.completion.strip(), re.DOTALL) is not None)


def _video_r1_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length (at least 1), as Video-R1's wer."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], prev if r == h else 1 + min(row[j], row[j - 1], prev)
    return row[-1] / max(1, len(ref))


@reward("video_r1_accuracy")
def video_r1_accuracy(sample: Sample) -> float:
    """Video-R1's accuracy reward (tulerfeng/Video-R1 @ 59d65c3, src/r1-v/src/open_r1/grpo.py,
    accuracy_reward) by the record's problem type, truth['kind'], on the first <answer> of the
    completion ("" without one) against the record's answer:
    - multiple choice: 1 if they are equal;
    - numerical: 0 if one has a decimal point or comma and the other not, else 1 if they are
      equal rounded to 2 decimals;
    - OCR: 1 - word error rate, within [0, 1];
    - free-form: the mean F of ROUGE-1, -2 and -L with stemming (rouge-score, as theirs);
    - regression: 1 - the relative error, within [0, 1]; 0 where a number does not parse.
    Theirs takes the type of a batch's first record for all of it; here each record's own."""
    from mmalign.data.records import VIDEO_R1_ANSWER

    kind, gold = (sample.truth or {}).get("kind"), sample.answer
    if gold is None:
        raise ValueError("the record has no 'answer'")
    found = VIDEO_R1_ANSWER.search(sample.completion)
    out = found.group(1).strip() if found else ""
    if kind == "multiple choice":
        return float(out == gold.strip())
    if kind in ("numerical", "regression"):
        if kind == "numerical" and any(c in gold for c in ".,") != any(c in out for c in ".,"):
            return 0.0
        g, o = _video_r1_number(gold), _video_r1_number(out)
        if g is None or o is None:
            return 0.0
        if kind == "numerical":
            return float(round(g, 2) == round(o, 2))
        return 1.0 - min(1.0, max(0.0, (abs(o - g) + 1e-9) / (abs(g) + 1e-9)))
    if kind == "OCR":
        return min(1.0, max(0.0, 1.0 - word_error_rate(gold, out)))
    if kind == "free-form":
        try:
            from rouge_score import rouge_scorer
        except ImportError:
            raise ValueError("free-form answers are scored with ROUGE: pip install -e '.[r1]' (rouge-score)") from None
        scores = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(gold, out)
        return min(1.0, max(0.0, sum(v.fmeasure for v in scores.values()) / 3))
    raise ValueError(f"truth['kind'] {kind!r} is no Video-R1 problem type")


def parse_span(text: str) -> tuple[float, float] | None:
    """The first two numbers of `text` as a time span, e.g. "from 2.5 to 7 s" -> (2.5, 7.0)."""
    nums = [float(x) for x in _NUMBER.findall(text)]
    return (nums[0], nums[1]) if len(nums) >= 2 else None


@reward("temporal_iou")
def temporal_iou(sample: Sample) -> float:
    """Grounding: intersection over union of the predicted [start, end] (the first two numbers
    of the final answer) and truth['span'] (or the record's answer). 0 when nothing parses or
    the prediction ends before it starts."""
    gold = (sample.truth or {}).get("span") or parse_span(sample.answer or "")
    if not gold or len(gold) != 2 or gold[1] <= gold[0]:
        raise ValueError("the record has no valid ground-truth span (truth['span'] = [start, end])")
    pred = parse_span(final_answer(sample.completion))
    if pred is None or pred[1] <= pred[0]:
        return 0.0
    inter = max(0.0, min(pred[1], gold[1]) - max(pred[0], gold[0]))
    return inter / (max(pred[1], gold[1]) - min(pred[0], gold[0]))


def mentioned_objects(text: str, vocabulary: list[str]) -> set[str]:
    """Vocabulary phrases present as whole words, longest first: "red circle" is one object,
    not also a "circle"."""
    text = normalise(text)
    found = set()
    for phrase in sorted({normalise(v) for v in vocabulary}, key=len, reverse=True):
        pattern = rf"(?<!\w){re.escape(phrase)}(?!\w)"
        if re.search(pattern, text):
            found.add(phrase)
            text = re.sub(pattern, " ", text)
    return found


def _objects(sample: Sample, vocabulary: list[str] | None) -> tuple[set[str], set[str]]:
    truth = sample.truth or {}
    if "objects" not in truth:
        raise ValueError("the record has no truth['objects']")
    vocab = vocabulary or truth.get("vocabulary")
    if not vocab:
        raise ValueError("no object vocabulary: give the term a `vocabulary` option or truth['vocabulary']")
    gold = {normalise(o) for o in truth["objects"]}
    return mentioned_objects(final_answer(sample.completion), list(vocab) + sorted(gold)), gold


@reward("object_precision")
def object_precision(sample: Sample, vocabulary: list[str] | None = None) -> float:
    """Of the vocabulary objects the answer mentions, the share that truth['objects'] has
    (1 - CHAIR_i); 0 when it mentions none."""
    said, gold = _objects(sample, vocabulary)
    return len(said & gold) / len(said) if said else 0.0


@reward("object_recall")
def object_recall(sample: Sample, vocabulary: list[str] | None = None) -> float:
    """Of the objects in truth['objects'], the share the answer mentions; 1 when there are none."""
    said, gold = _objects(sample, vocabulary)
    return len(said & gold) / len(gold) if gold else 1.0


def _words(text: str) -> list[str]:
    return [w for w in (w.strip(_EDGE_PUNCT) for w in text.lower().split()) if w]


@reward("reference_f1")
def reference_f1(sample: Sample) -> float:
    """Open-ended answers without a reward model: SQuAD-style word F1 between the final answer
    and truth['reference'] (else the record's answer)."""
    ref = (sample.truth or {}).get("reference") or sample.answer
    if not ref:
        raise ValueError("the record has no truth['reference'] or 'answer'")
    pred, gold = _words(final_answer(sample.completion)), _words(ref)
    common = sum(min(pred.count(w), gold.count(w)) for w in set(pred))
    if not common:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)
