"""Instruction adherence and the length terms on hand-made answers."""

import pytest

from mmalign.rewards.length import length_penalty, overlong_penalty
from mmalign.rewards.registry import Sample
from mmalign.rewards.aspects import instruction_adherence


def s(completion, constraints=None, tokens=0, **scores):
    return Sample(prompt="q", completion=completion, truth={"constraints": constraints} if constraints else {},
                  num_tokens=tokens, scores=scores)


def test_instruction_adherence_each_aspect():
    text = "The red circle moves left. It stops."  # 7 words, 2 sentences
    assert instruction_adherence(s(text), required=["red circle", "square"]) == 0.5
    # absent: "blue" and "stop" (whole words: "stops" is not "stop"); present: "LEFT" (case-insensitive)
    assert instruction_adherence(s(text), forbidden=["blue", "LEFT", "stop"]) == pytest.approx(2 / 3)
    assert instruction_adherence(s(text), max_words=7) == 1.0
    assert instruction_adherence(s(text), max_words=6) == 0.0
    assert instruction_adherence(s(text), min_words=8) == 0.0
    assert instruction_adherence(s(text), min_sentences=1, max_sentences=2) == 1.0
    assert instruction_adherence(s(text), max_sentences=1) == 0.0
    assert instruction_adherence(s(text), required=["Red"], case_sensitive=True) == 0.0


def test_instruction_adherence_is_the_mean_of_active_aspects():
    text = "The red circle moves left. It stops."
    # required 1/2, forbidden 1 (no "blue"), words 0 (> 5), sentences 1 -> (0.5 + 1 + 0 + 1) / 4
    got = instruction_adherence(s(text), required=["red", "green"], forbidden=["blue"], max_words=5, max_sentences=2)
    assert got == pytest.approx(0.625)


def test_record_constraints_add_lists_and_replace_limits():
    sample = s("yes", constraints={"required": ["no"], "max_words": 3})
    # required: term's "yes" (present) + record's "no" (absent) -> 1/2; words: record's limit 3 replaces 0 -> 1
    assert instruction_adherence(sample, required=["yes"], max_words=0) == pytest.approx(0.75)
    assert instruction_adherence(s("<think>long reasoning here</think><answer>yes</answer>"), max_words=1) == 1.0
    with pytest.raises(ValueError, match="no constraints"):
        instruction_adherence(s("yes"))


def test_length_penalty_kimi_formula():
    # lengths 2, 4, 6, 10: min 2, max 10 -> lambda = 0.5 - (L - 2) / 8 = 0.5, 0.25, 0, -0.5
    group = [s("a", tokens=2, m=1.0), s("b", tokens=4, m=0.0), s("c", tokens=6, m=1.0), s("d", tokens=10, m=1.0)]
    assert length_penalty(group, correct_term="m") == [0.5, 0.0, 0.0, -0.5]  # wrong answer: min(0, 0.25)
    wrong_long = [s("a", tokens=2, m=1.0), s("b", tokens=10, m=0.0)]
    assert length_penalty(wrong_long, correct_term="m") == [0.5, -0.5]


def test_length_penalty_only_when_the_group_has_a_correct_sample():
    group = [s("a", tokens=2, m=0.0), s("b", tokens=10, m=0.5)]
    assert length_penalty(group, correct_term="m") == [0.0, 0.0]
    assert length_penalty(group, correct_term="m", only_if_group_correct=False) == [0.0, -0.5]
    assert length_penalty(group, correct_term="m", threshold=0.5) == [0.0, -0.5]  # b correct at 0.5
    assert length_penalty(group, correct_term=None) == [0.5, -0.5]                 # plain length penalty


def test_length_penalty_in_words_and_equal_lengths():
    group = [s("one two three", m=1.0), s("one", m=1.0)]
    assert length_penalty(group, correct_term="m", unit="words") == [-0.5, 0.5]
    assert length_penalty([s("a", tokens=3, m=1), s("b", tokens=3, m=1)], correct_term="m") == [0.0, 0.0]
    with pytest.raises(ValueError, match="unit"):
        length_penalty(group, correct_term="m", unit="chars")


@pytest.mark.parametrize("tokens, expected", [(10, 0.0), (12, 0.0), (14, -0.5), (16, -1.0), (17, -1.0)])
def test_overlong_penalty_dapo(tokens, expected):
    # max 16, buffer 4: free up to 12, then (12 - L) / 4
    assert overlong_penalty(s("x", tokens=tokens), max_tokens=16, buffer=4) == expected


def test_video_r1_length_control():
    """+0.2 to each correct sample (accuracy > 0.1) of 320-512 tokens, where more than one of
    the group is correct; nothing where at most one is."""
    from mmalign.rewards.length import video_r1_length

    def group(*pairs):
        return [Sample("q", "c", num_tokens=n, scores={"video_r1_accuracy": acc}) for acc, n in pairs]

    assert video_r1_length(group((1.0, 400), (0.5, 320), (1.0, 513), (0.1, 400), (0.0, 450))) == [0.2, 0.2, 0.0, 0.0,
                                                                                                 0.0]
    assert video_r1_length(group((1.0, 400), (0.0, 400), (0.05, 400))) == [0.0, 0.0, 0.0]
