"""Property tests: read_records never fails on a bad line, only reports it; <MASK> tags round-trip."""

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmalign.data.records import (SCHEMA_FIELDS, Record, RecordError, Skipped, mask_tags_to_spans, read_records,
                                  sentence_spans, spans_to_mask_tags, write_records)

FOREIGN_FIELDS = ["question", "answer_masked", "pred_masked", "pred", "media_path", "sample_id", "chosen_item",
                  "rejected_item", "sents", "type"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
sentences = st.lists(st.sampled_from(["A red ball.", "It moves left!", "Dr. Who", "3.5 apples?", " ", ""]),
                     min_size=1, max_size=4).map(" ".join)
plausible = st.one_of(
    sentences,
    st.sampled_from(["v.mp4", "../v.mp4", "/abs/v.mp4", "", "a\x00b", "<MASK> x </MASK> y", "x </MASK>"]),
    st.lists(st.lists(st.integers(-2, 40), min_size=0, max_size=3), max_size=3),  # span-like
    st.lists(st.integers(-1, 2), max_size=4),  # label-like
    st.fixed_dictionaries({"sents": st.lists(sentences, max_size=3),
                           "type": st.lists(st.sampled_from(["hallucination", "no_hallucination", "x"]), max_size=3)}),
    st.fixed_dictionaries({"source": st.sampled_from(["v.mp4", 3]), "ops": st.lists(json_values, max_size=2)}),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]),
                                    "content": sentences}), max_size=3),
)
REQUIRED_TEXT = ("prompt", "chosen", "rejected", "response")
field_names = st.sampled_from(list(SCHEMA_FIELDS) + FOREIGN_FIELDS)
record_like = st.one_of(
    st.dictionaries(st.one_of(field_names, field_names, st.text(max_size=6)), plausible | json_values, max_size=10),
    # Mostly well-formed records with a few optional fields, to reach the deeper checks.
    st.fixed_dictionaries({name: sentences for name in REQUIRED_TEXT},
                          optional={name: plausible | json_values for name in SCHEMA_FIELDS if name not in REQUIRED_TEXT}),
)
json_line = (record_like | json_values).map(lambda v: json.dumps(v).encode())
any_line = json_line | st.binary(max_size=60)


def _write(folder: Path, lines: list[bytes]) -> Path:
    (folder / "v.mp4").write_bytes(b"x")
    path = folder / "records.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path


def _check_record(r: Record) -> None:
    assert isinstance(r.id, str) and r.id and isinstance(r.prompt, str) and isinstance(r.meta, dict)
    for text, spans, labels in ((r.chosen, r.chosen_spans, r.chosen_sentence_labels),
                                (r.rejected, r.rejected_spans, r.rejected_sentence_labels)):
        for start, end in spans or []:
            assert 0 <= start <= end <= len(text)
        if labels is not None:
            assert len(labels) == len(sentence_spans(text)) and set(labels) <= {0, 1}
    assert r.difficulty is None or math.isfinite(r.difficulty)


@FUZZ
@given(lines=st.lists(any_line, max_size=8), kind=st.sampled_from(["pair", "sft", "grpo"]),
       check_media=st.booleans(), allow_absolute=st.booleans())
def test_every_nonblank_line_becomes_a_record_or_a_skip(lines, kind, check_media, allow_absolute):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), lines)
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
        nonblank = [raw for raw in data.split(b"\n") if raw.strip()]
        # A file that is one JSON array is read element by element; one that starts an array
        # but is not one, and whose first line is no JSON value either, is refused whole.
        array, refused = None, data[:4] == b"PAR1"  # starts as Parquet: read (here: refused) as Parquet
        if data.lstrip()[:1] == b"[":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                array = _json(text)
                refused = not isinstance(array, list) and _json(nonblank[0].decode("utf-8")) is NOT_JSON
        if refused:
            with pytest.raises(RecordError, match="a JSON array file, but not valid JSON|a Parquet file that cannot"):
                read_records(path, kind, check_media=check_media, allow_absolute_paths=allow_absolute)
            return
        records, skipped = read_records(path, kind, check_media=check_media, allow_absolute_paths=allow_absolute)
        assert len(records) + len(skipped) == (len(array) if isinstance(array, list) else len(nonblank))
        assert all(isinstance(s, Skipped) and s.reason and ".jsonl:" in s.source for s in skipped)
        for r in records:
            _check_record(r)
        assert len({r.id for r in records}) == len(records)

        # What was read writes back and reads again unchanged.
        out = Path(tmp) / "sub" / "again.jsonl"
        write_records(out, records)
        again, skipped_again = read_records(out, kind, check_media=check_media, allow_absolute_paths=True)
        assert skipped_again == []
        assert [_fields(r) for r in again] == [_fields(r) for r in records]


@FUZZ
@given(lines=st.lists(any_line, max_size=6), kind=st.sampled_from(["pair", "sft", "grpo"]))
def test_strict_mode_raises_only_record_error(lines, kind):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), lines)
        try:
            records, skipped = read_records(path, kind, strict=True)
        except RecordError as e:
            assert str(e).startswith(f"{path}:")
        else:
            assert skipped == []


NOT_JSON = object()


def _json(text: str):
    """The JSON value of `text`, NOT_JSON when it is not one (the reader's view: NaN is a value)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return NOT_JSON


def _fields(r: Record) -> dict:
    d = dict(vars(r))
    d.pop("source")
    return d


# ---------------------------------------------------------------- <MASK> tags

tag_text = st.text(alphabet=st.sampled_from("ab <>/MASK.\n"), max_size=30)


@st.composite
def text_and_spans(draw):
    text = draw(tag_text)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    spans = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    return text, spans


@FUZZ
@given(text_and_spans())
def test_spans_survive_tagging_and_untagging(case):
    text, spans = case
    try:
        tagged = spans_to_mask_tags(text, spans)
    except ValueError:
        assert "<MASK>" in text or "</MASK>" in text  # the only refusal for well-formed spans
        return
    assert mask_tags_to_spans(tagged) == (text, spans)


@FUZZ
@given(st.text(alphabet=st.sampled_from("ab <>/MASK"), max_size=40))
def test_untagging_any_string_is_valid_or_a_value_error(tagged):
    try:
        text, spans = mask_tags_to_spans(tagged)
    except ValueError:
        return
    assert all(0 <= a <= b <= len(text) for a, b in spans)
    assert all(p[1] <= q[0] for p, q in zip(spans, spans[1:]))
    if "<MASK>" not in text and "</MASK>" not in text:
        assert mask_tags_to_spans(spans_to_mask_tags(text, spans)) == (text, spans)
