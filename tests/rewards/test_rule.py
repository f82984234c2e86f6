"""Rule-based terms on hand-made answers, each expected value worked out by hand."""

import pytest

from mmalign.rewards.registry import Sample
from mmalign.rewards.rule import (answer_match, choice_match, format_reward, object_precision, object_recall,
                                  reference_f1, temporal_iou, valid_choice)

COLORS = {"kind": "color", "choices": ["red", "green", "blue"]}


def s(completion, answer=None, **truth):
    return Sample(prompt="q", completion=completion, answer=answer, truth=truth, record_id="r1")


@pytest.mark.parametrize("completion, expected", [
    ("yes", 1.0), ("Yes.", 1.0), ("  YES!  ", 1.0),          # case, edge punctuation, whitespace
    ("<think>it is there</think> <answer>yes</answer>", 1.0),  # the <answer> part is the answer
    ("yes, there is", 0.0), ("no", 0.0), ("", 0.0),
])
def test_answer_match(completion, expected):
    assert answer_match(s(completion, "yes")) == expected


def test_answer_match_needs_an_answer():
    with pytest.raises(ValueError, match="no 'answer'"):
        answer_match(s("yes"))


@pytest.mark.parametrize("completion, expected", [
    ("blue", 1.0), ("It is blue.", 1.0),     # the one option named
    ("red", 0.0), ("blue or green", 0.0),    # the wrong one; two options: no pick
    ("purple", 0.0), ("bluesy", 0.0),        # no option (whole words only)
])
def test_choice_match_by_option_text(completion, expected):
    assert choice_match(s(completion, "blue", **COLORS)) == expected


@pytest.mark.parametrize("completion, expected", [
    ("C", 1.0), ("(c)", 1.0), ("c) blue", 1.0), ("C.", 1.0), ("B", 0.0),
    ("a cat", 0.0),  # "a" followed by text without a delimiter is not a letter pick
])
def test_choice_match_by_letter(completion, expected):
    assert choice_match(s(completion, "blue", **COLORS), letters=True) == expected
    assert choice_match(s(completion, "C", **COLORS), letters=True) == expected  # a letter answer too


def test_choice_match_options_from_the_term():
    assert choice_match(s("maybe", "maybe"), choices=["yes", "no", "maybe"]) == 1.0
    with pytest.raises(ValueError, match="no choices"):
        choice_match(s("yes", "yes"))


@pytest.mark.parametrize("completion, expected", [("green", 1.0), ("Red.", 1.0), ("red green", 0.0), ("pink", 0.0)])
def test_valid_choice_is_partial_credit_for_any_option(completion, expected):
    assert valid_choice(s(completion, "blue", **COLORS)) == expected


@pytest.mark.parametrize("completion, expected", [
    ("<think>a red circle</think><answer>yes</answer>", 1.0),
    ("<think>a</think>\n <answer>yes</answer>\n", 1.0),
    ("<answer>yes</answer>", 0.0), ("<think></think><answer>yes</answer>", 0.0), ("yes", 0.0),
    ("<think>a</think><answer>yes</answer> more", 0.0),
])
def test_format_think_answer(completion, expected):
    assert format_reward(s(completion)) == expected


def test_format_custom_pattern():
    assert format_reward(s("blue"), pattern=r"\w+") == 1.0
    assert format_reward(s("light blue"), pattern=r"\w+") == 0.0


@pytest.mark.parametrize("completion, expected", [
    ("from 2.5 to 7 seconds", 0.4),      # overlap [4, 7] = 3, union [2.5, 10] = 7.5
    ("[4, 10]", 1.0),
    ("4.0 - 6.0", 1 / 3),                # inside: 2 / 6
    ("0 to 3", 0.0),                     # disjoint
    ("8 to 5", 0.0), ("at 5 s", 0.0),   # ends before it starts; one number
    ("<answer>6 to 12</answer>", 4 / 8),
])
def test_temporal_iou(completion, expected):
    assert temporal_iou(s(completion, span=[4, 10])) == pytest.approx(expected)


def test_temporal_iou_span_from_the_answer_and_missing_span():
    assert temporal_iou(s("5 to 10", "4 - 10")) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="ground-truth span"):
        temporal_iou(s("5 to 10"))


VOCAB = ["red circle", "blue square", "green triangle", "circle", "square"]


@pytest.mark.parametrize("completion, precision, recall", [
    # mentions: red circle (true), blue square (false) -> P 1/2; truth {red circle, green triangle} -> R 1/2
    ("A red circle and a blue square.", 0.5, 0.5),
    ("A red circle moves. A green triangle appears.", 1.0, 1.0),
    ("A circle.", 0.0, 0.0),  # "circle" is in the vocabulary but not the truth; no "red circle" double count
    ("Nothing happens.", 0.0, 0.0),  # no mentions: precision 0 by definition
])
def test_object_precision_and_recall(completion, precision, recall):
    sample = s(completion, objects=["red circle", "green triangle"])
    assert object_precision(sample, vocabulary=VOCAB) == pytest.approx(precision)
    assert object_recall(sample, vocabulary=VOCAB) == pytest.approx(recall)


def test_object_vocabulary_from_the_record_and_errors():
    sample = s("a red circle", objects=["red circle"], vocabulary=VOCAB)
    assert object_precision(sample) == 1.0
    with pytest.raises(ValueError, match="vocabulary"):
        object_precision(s("a red circle", objects=["red circle"]))
    with pytest.raises(ValueError, match="objects"):
        object_recall(s("a red circle"), vocabulary=VOCAB)
    assert object_recall(s("a red circle", objects=[]), vocabulary=VOCAB) == 1.0


def test_reference_f1():
    # pred: the red circle moves left (5 words); ref: a red circle moves right (5); common: red circle moves = 3
    sample = s("The red circle moves left.", reference="A red circle moves right.")
    assert reference_f1(sample) == pytest.approx(2 * 0.6 * 0.6 / 1.2)
    assert reference_f1(s("blue", "red")) == 0.0
    assert reference_f1(s("red red", "red")) == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts clipped


def _r1(kind, answer, completion):
    from mmalign.rewards.rule import video_r1_accuracy

    return video_r1_accuracy(Sample("q", completion, answer=answer, truth={"kind": kind}))


@pytest.mark.parametrize("kind, answer, completion, expected", [
    ("multiple choice", "B", "<think>hmm</think><answer> B </answer>", 1.0),
    ("multiple choice", "B", "<answer>B.</answer>", 0.0),             # exact, as theirs
    ("multiple choice", "B", "B", 0.0),                                # no tag: "" (theirs), not the text
    ("multiple choice", "B", "<answer>B</answer> then <answer>C</answer>", 1.0),  # the first tag
    ("numerical", "1,000", "<answer>1000.0</answer>", 1.0),           # both have a decimal mark
    ("numerical", "3", "<answer>3.0</answer>", 0.0),                  # one has one, the other not
    ("numerical", "3.14159", "<answer>3.139</answer>", 1.0),           # equal at 2 decimals
    ("numerical", "3", "<answer>three</answer>", 0.0),
    ("regression", "10", "<answer>12</answer>", 0.8),                  # 1 - |12-10| / 10
    ("regression", "10", "<answer>40</answer>", 0.0),                  # relative error clipped at 1
    ("OCR", "stop here now", "<answer>stop her now please</answer>", 1 / 3),  # 1 substitution + 1 insertion over 3
    ("OCR", "a", "<answer>x y z</answer>", 0.0),
])
def test_video_r1_accuracy_by_problem_type(kind, answer, completion, expected):
    assert _r1(kind, answer, completion) == pytest.approx(expected)


def test_video_r1_free_form_needs_rouge_score_and_its_kind():
    try:
        import rouge_score  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"scored with ROUGE: pip install -e .\.\[r1\]. \(rouge-score\)"):
            _r1("free-form", "a red ball", "<answer>a red ball</answer>")
    else:  # stems: move / roll; ROUGE-1 F 3/5, ROUGE-2 F 1/4 (red ball), ROUGE-L F 3/5 (red ball left)
        assert _r1("free-form", "a red ball moves left", "<answer>the red ball rolls left</answer>") == pytest.approx(
            (0.6 + 0.25 + 0.6) / 3)
    with pytest.raises(ValueError, match="no Video-R1 problem type"):
        _r1("essay", "x", "<answer>x</answer>")
