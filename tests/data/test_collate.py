"""Char spans and sentence labels -> per-token weights, through the offset mapping."""

import pytest
import torch

from mmalign.data.collate import (AlignmentError, Sequence, collate_sequences, encode_response,
                                  sentence_keep_weights, span_weights)
from mmalign.models.tiny import _qwen_tokenizer

EOT = "<|im_end|>"


@pytest.fixture(scope="module")
def tok():
    return _qwen_tokenizer()


def weighted_text(tok, resp, weights, value=1.0):
    return tok.decode([i for i, w in zip(resp.ids, weights) if w == value])


def test_end_of_turn_is_the_last_token(tok):
    resp = encode_response(tok, "A red circle moves left.", EOT)
    assert resp.ids[-1] == tok.convert_tokens_to_ids(EOT)
    assert tok.decode(resp.ids[:-1]) == "A red circle moves left."


@pytest.mark.parametrize("text,span_words", [
    ("A red circle moves left. Then a blue square appears.", ["left"]),
    ("A red circle moves left. Then a blue square appears.", ["red", "blue square"]),
    ("Un cercle rouge bouge à gauche. Größe: 3.", ["à gauche", "Größe"]),
    ("動画には赤い円があります。", ["赤い円"]),
])
def test_span_tokens_decode_to_exactly_the_span(tok, text, span_words):
    spans = [(text.index(w), text.index(w) + len(w)) for w in span_words]
    resp = encode_response(tok, text, EOT)
    w = span_weights(resp, spans)
    # The weighted tokens, decoded together, are the span words (plus the leading space a
    # byte-level BPE token carries) and nothing else.
    # Runs of consecutive weighted tokens are decoded whole: a multi-byte character may be
    # split over tokens.
    runs, run = [], []
    for i, x in zip(resp.ids, w):
        if x == 1.0:
            run.append(i)
        elif run:
            runs, run = runs + [run], []
    got = "".join(tok.decode(r) for r in runs + [run] if r).replace(" ", "")
    assert got == "".join(span_words).replace(" ", "")
    assert w[-1] == 0.0  # end of turn is outside every span


def test_span_inside_a_multibyte_word(tok):
    text = "Le café bouge."
    start = text.index("é")
    resp = encode_response(tok, text, EOT)
    w = span_weights(resp, [(start, start + 1)])
    inside = tok.decode([i for i, x in zip(resp.ids, w) if x])
    outside = tok.decode([i for i, x in zip(resp.ids, w) if not x])
    assert "é" in inside and "é" not in outside
    assert "bouge" in outside and "Le" in outside


def test_sentence_keep_weights(tok):
    text = "A red circle moves left. A green cat sings. Then it stops."
    sents = [(0, 24), (25, 43), (44, 58)]
    assert [text[a:b] for a, b in sents] == ["A red circle moves left.", "A green cat sings.", "Then it stops."]
    resp = encode_response(tok, text, EOT)
    chosen = sentence_keep_weights(resp, sents, [1, 0, 1], keep=1)
    assert weighted_text(tok, resp, chosen, 0.0).strip() == "A green cat sings."
    rejected = sentence_keep_weights(resp, sents, [1, 0, 1], keep=0)
    kept = weighted_text(tok, resp, rejected, 1.0)
    assert kept.strip() == "A green cat sings." + EOT  # end of turn stays in on both sides
    assert chosen[-1] == rejected[-1] == 1.0


def test_misaligned_sentences_fail_loudly(tok):
    text = "Redcircle."
    resp = encode_response(tok, text, EOT)
    # A sentence boundary in the middle of one token cannot be honoured.
    cut = next(b for a, b in resp.offsets if b - a > 1) - 1
    with pytest.raises(AlignmentError):
        sentence_keep_weights(resp, [(0, cut), (cut, len(text))], [1, 0], keep=1)


def test_collate_pads_and_places_labels_and_weights():
    p1 = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
          "pixel_values": torch.ones(4, 2)}
    p2 = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2, dtype=torch.long),
          "pixel_values": torch.zeros(2, 2)}
    batch = collate_sequences([Sequence(p1, [8, 9], {"span": [1.0, 0.0]}), Sequence(p2, [10, 11, 12], {})], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 6, 10, 11, 12]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 8, 9], [-100, -100, 10, 11, 12]]
    assert batch["weights.span"].tolist() == [[0, 0, 0, 1, 0], [0, 0, 1, 1, 1]]
    assert batch["pixel_values"].shape == (6, 2)
    short = collate_sequences([Sequence(p2, [1], {})] * 2 + [Sequence(p1, [1, 2], {})], pad_id=0)
    assert short["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
