"""The sub-sequence differ and the span rules every pair obeys."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmalign.perturb.diff import apply_spans, changed_fraction, check_spans, diff_spans, sentences_touched


def test_one_word_changed_gives_that_word_on_both_sides():
    chosen, rejected = "A red circle moves left.", "A red circle moves right."
    assert diff_spans(chosen, rejected) == ([(19, 23)], [(19, 24)])


def test_an_insertion_is_an_empty_span_on_the_side_without_it():
    c_spans, r_spans = diff_spans("a red car", "a big red car")
    assert len(c_spans) == 1 and c_spans[0][0] == c_spans[0][1]
    assert "a big red car"[slice(*r_spans[0])].strip() == "big"
    assert apply_spans("a red car", c_spans, "a big red car", r_spans) == "a big red car"


def test_neighbouring_changes_merge_into_one_phrase():
    chosen, rejected = "Then the red circle leaves.", "Then the blue square leaves."
    assert diff_spans(chosen, rejected) == ([(9, 19)], [(9, 20)])
    # "," matches on both sides, yet only punctuation stands between the two changes
    assert diff_spans("a red, round ball", "a blue, square ball") == ([(2, 12)], [(2, 14)])
    # A word in between keeps two phrases apart.
    assert len(diff_spans("red big circle", "blue big square")[0]) == 2


def test_identical_texts_have_no_spans():
    assert diff_spans("Same text.", "Same text.") == ([], [])


def test_check_spans_catches_text_outside_the_spans_that_differs():
    check_spans("a b c", [(2, 3)], "a X c", [(2, 3)])
    with pytest.raises(ValueError, match="outside the spans"):
        check_spans("aa", [(0, 1)], "aa", [(1, 2)])  # concatenation agrees, the pieces do not
    with pytest.raises(ValueError, match="ordered"):
        check_spans("abc", [(2, 3), (0, 1)], "abc", [(2, 3), (0, 1)])


def test_changed_fraction_and_touched_sentences():
    assert changed_fraction("ab", [(0, 1)], "xb", [(0, 1)]) == 0.5
    sentences = [(0, 10), (11, 20)]
    assert sentences_touched(sentences, [(12, 14)]) == {1}
    assert sentences_touched(sentences, [(10, 10)]) == set()  # an insertion between sentences
    assert sentences_touched(sentences, [(5, 5)]) == {0}


WORDS = st.sampled_from(["a", "red", "blue", "circle", "moves", "left", "then", ".", ",", "big"])
TEXT = st.lists(WORDS, max_size=14).map(lambda ws: " ".join(ws))


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT)
def test_differ_spans_always_rebuild_the_rejected_text(chosen, rejected):
    c_spans, r_spans = diff_spans(chosen, rejected)
    check_spans(chosen, c_spans, rejected, r_spans)
    assert apply_spans(chosen, c_spans, rejected, r_spans) == rejected
    assert all(chosen[a:b] != rejected[c:d] for (a, b), (c, d) in zip(c_spans, r_spans))
