"""The record schema (mmalign/data/records.py): validation with file:line, foreign formats,
the sentence splitter, <MASK> tags, writing back."""

import json

import numpy as np
import pytest

from mmalign.data.records import (Record, RecordError, Skipped, mask_tags_to_spans, read_records, sentence_spans,
                                  spans_to_mask_tags, write_records)

CHOSEN = "A red circle moves left. Then a blue square appears."
REJECTED = "A red circle moves right. Then a blue square appears."


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    (data / "images").mkdir()
    for name in ("videos/v1.mp4", "videos/v2.mp4", "images/a.jpg", "images/b.jpg"):
        (data / name).write_bytes(b"x")  # existence is all the reader checks
    (tmp_path / "outside.mp4").write_bytes(b"x")
    (data / "videos" / "link.mp4").symlink_to(tmp_path / "outside.mp4")  # leads out of the folder
    return data


def pair(id, **kw):
    return {"id": id, "video": "videos/v1.mp4", "prompt": "Describe the video.", "chosen": CHOSEN,
            "rejected": REJECTED, **kw}


def write_lines(path, lines):
    raw = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


GOOD = [
    pair("video-pair"),
    {"id": "image-pair", "images": ["images/a.jpg", "images/b.jpg"], "prompt": "Compare.", "chosen": "Same.",
     "rejected": "Different."},
    {"id": "text-only", "prompt": "Say hi.", "chosen": "Hi.", "rejected": "Bye."},
    pair("spans", chosen_spans=[[19, 23]], rejected_spans=[[19, 24]]),
    pair("insertion", chosen_spans=[[24, 24]], rejected_spans=[[24, 40]]),  # an empty span marks where text went in
    pair("labels", chosen_sentence_labels=[1, 1], rejected_sentence_labels=[0, 1]),
    pair("conditional", rejected_video={"source": "videos/v1.mp4", "ops": [{"op": "reverse"}]}),
    pair("other-video", rejected_video={"video": "videos/v2.mp4"}, difficulty=0.4, meta={"seed": 7}),
    pair(17),  # integer ids are read as strings
    {"prompt": "No id here.", "chosen": "Yes.", "rejected": "No."},
    {"id": "trl", "prompt": "Hi", "chosen": "Hello.", "rejected": "Go away.", "images": []},
]

# (what is wrong, the line, words the reason must contain)
BAD = [
    ("malformed JSON", b'{"id": "x", "prompt": ', "not valid JSON"),
    ("not an object", b"[1, 2, 3]", "a line must be a JSON object, got an array"),
    ("not UTF-8", b'{"id": "latin1", "prompt": "caf\xe9"}', "not UTF-8 text (byte 0xe9"),
    ("lone surrogate", b'{"id": "sur", "prompt": "\\ud800", "chosen": "a", "rejected": "b"}', "lone UTF-16 surrogate"),
    ("missing chosen", {"id": "m", "prompt": "p", "rejected": "r"}, "missing required field 'chosen'"),
    ("missing prompt", {"id": "m2", "chosen": "c", "rejected": "r"}, "missing required field 'prompt'"),
    ("prompt not a string", pair("t1", prompt=5), "'prompt' must be a string, got a number"),
    ("images not a list", pair("t2", images="images/a.jpg"), "'images' must be a list of paths"),
    ("meta not an object", pair("t3", meta=[1]), "'meta' must be an object"),
    ("id a float", pair(1.5), "'id' must be a string or an integer"),
    ("difficulty NaN", b'{"id": "nan", "prompt": "p", "chosen": "c", "rejected": "r", "difficulty": NaN}',
     "'difficulty' must be a finite number"),
    ("unknown field", pair("u", vidoe="videos/v1.mp4"), "unknown field 'vidoe' (did you mean 'video'?)"),
    ("unknown field, no near name", pair("u2", zzz=1), "unknown field 'zzz'; put extra data under 'meta'"),
    ("empty chosen", pair("e1", chosen="   "), "'chosen' is empty"),
    ("empty rejected", pair("e2", rejected=""), "'rejected' is empty"),
    ("chosen == rejected", pair("same", rejected=CHOSEN), "chosen and rejected are identical"),
    ("span not a pair", pair("s1", chosen_spans=[[3]]), "'chosen_spans': items must be [start, end] integer pairs"),
    ("span not ints", pair("s2", chosen_spans=[[0.5, 3]]), "integer pairs"),
    ("span bool", pair("s3", chosen_spans=[[True, 3]]), "integer pairs"),
    ("span past the end", pair("s4", rejected_spans=[[40, 99]]),
     "'rejected_spans': span [40, 99] is not inside 0..53 with start <= end"),
    ("span negative", pair("s5", chosen_spans=[[-1, 3]]), "is not inside 0..52"),
    ("span start > end", pair("s6", chosen_spans=[[9, 4]]), "span [9, 4] is not inside"),
    ("spans overlap", pair("s7", chosen_spans=[[10, 20], [0, 12]]), "spans [0, 12] and [10, 20] overlap"),
    ("spans not a list", pair("s8", chosen_spans="0-3"), "'chosen_spans' must be a list"),
    ("spans without text", {"id": "s9", "prompt": "p", "response": "r", "chosen_spans": [[0, 1]]},
     "missing required field 'chosen'"),
    ("label count", pair("l1", chosen_sentence_labels=[1]),
     "'chosen_sentence_labels' has 1 labels but 'chosen' has 2 sentences"),
    ("label not 0/1", pair("l2", rejected_sentence_labels=[0, 2]), "must be a list of 0 or 1"),
    ("label bool", pair("l3", rejected_sentence_labels=[False, True]), "must be a list of 0 or 1"),
    ("path escapes", pair("p1", video="../outside.mp4"), "'video' path '../outside.mp4' leaves the record file's folder"),
    ("path absolute", pair("p2", video="/etc/hostname"), "'video' path '/etc/hostname' is absolute"),
    ("image escapes", pair("p3", video=None, images=["images/a.jpg", "../../x.jpg"]), "'images[1]' path"),
    ("media missing", pair("p4", video="videos/nope.mp4"), "'video' file not found:"),
    ("empty path", pair("p5", video=""), "'video' must be a non-empty path string"),
    ("rejected_video missing ops", pair("r1", rejected_video={"source": "videos/v1.mp4"}),
     "'rejected_video' needs"),
    ("rejected_video bad key", pair("r2", rejected_video={"source": "videos/v1.mp4", "opps": []}),
     "unknown 'rejected_video' key 'opps' (did you mean 'ops'?)"),
    ("rejected_video ops malformed", pair("r3", rejected_video={"source": "videos/v1.mp4", "ops": ["reverse"]}),
     "'rejected_video.ops' must be a list of {'op': name, ...} objects"),
    ("rejected_video escapes", pair("r4", rejected_video={"video": "../outside.mp4"}), "'rejected_video.video' path"),
    ("symlink out", pair("p6", video="videos/link.mp4"), "is a symbolic link (or in a linked folder) that leads out"),
    ("NUL in a path", pair("p7", video="videos/v1\u0000.mp4"), "holds a NUL character"),
    ("50 MB line", b'{"id": "huge", "prompt": "' + b"x" * (9 * 2**20) + b'", "chosen": "a", "rejected": "b"}',
     "over the 8 MiB bound of a record"),
    ("duplicate id", pair("video-pair"), "duplicate id 'video-pair' (first on line 1)"),
]


def test_every_bad_line_is_skipped_with_its_reason_and_good_lines_are_all_read(folder):
    lines, expected = [], []  # good lines around every bad one: G B G B ... G
    for i, (_, bad, reason) in enumerate(BAD):
        lines.append(GOOD[i % len(GOOD)] if i < len(GOOD) else pair(f"filler-{i}"))
        lines.append(bad)
        expected.append((len(lines), reason))
    lines += GOOD[len(BAD):] + [pair("last")]
    path = write_lines(folder / "records.jsonl", lines)

    records, skipped = read_records(path, "pair")

    assert len(skipped) == len(BAD), [s.reason for s in skipped]
    for (what, _, reason), (line, _), s in zip(BAD, expected, skipped):
        assert s.source == f"{path}:{line}", what
        assert reason in s.reason, (what, s.reason)
    n_good = len(lines) - len(BAD)
    assert len(records) == n_good and all(isinstance(r, Record) for r in records)
    assert records[0].source == f"{path}:1"


def test_skipped_lines_keep_their_id_when_they_have_one(folder):
    path = write_lines(folder / "r.jsonl", [pair("ok"), pair("bad", chosen=""), b"{oops", pair(42, zzz=1)])
    _, skipped = read_records(path, "pair")
    assert [s.id for s in skipped] == ["bad", None, "42"]


@pytest.mark.parametrize("what,bad,reason", BAD[:-1], ids=[b[0] for b in BAD[:-1]])
def test_strict_mode_raises_at_the_first_bad_line(folder, what, bad, reason):
    path = write_lines(folder / "strict.jsonl", [pair("first"), bad, pair("third")])
    with pytest.raises(RecordError) as info:
        read_records(path, "pair", strict=True)
    assert str(info.value).startswith(f"{path}:2: ") and reason in str(info.value)


def test_strict_mode_reads_a_clean_file(folder):
    path = write_lines(folder / "clean.jsonl", GOOD)
    records, skipped = read_records(path, "pair", strict=True)
    assert len(records) == len(GOOD) and skipped == []


def test_fields_are_converted_and_paths_resolved(folder):
    path = write_lines(folder / "records.jsonl", GOOD)
    by_id = {r.id: r for r in read_records(path, "pair")[0]}
    assert by_id["video-pair"].video == str(folder / "videos/v1.mp4")
    assert by_id["image-pair"].images == [str(folder / "images/a.jpg"), str(folder / "images/b.jpg")]
    assert by_id["text-only"].video is None and by_id["text-only"].images is None
    assert by_id["spans"].chosen_spans == [(19, 23)] and CHOSEN[19:23] == "left"
    assert by_id["labels"].rejected_sentence_labels == [0, 1]
    assert by_id["conditional"].rejected_video == {"source": str(folder / "videos/v1.mp4"), "ops": [{"op": "reverse"}]}
    assert by_id["other-video"].rejected_video == {"video": str(folder / "videos/v2.mp4")}
    assert by_id["other-video"].difficulty == 0.4 and by_id["other-video"].meta == {"seed": 7}
    assert "17" in by_id and by_id["trl"].images is None
    hashed = [i for i in by_id if i.startswith("sha1:")]
    assert len(hashed) == 1 and len(hashed[0]) == len("sha1:") + 12


def test_ids_from_content_survive_reordering(folder):
    lines = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(3)]
    a = read_records(write_lines(folder / "a.jsonl", lines), "pair")[0]
    b = read_records(write_lines(folder / "b.jsonl", lines[::-1]), "pair")[0]
    assert {r.prompt: r.id for r in a} == {r.prompt: r.id for r in b}


def test_identical_lines_without_ids_are_duplicates(folder):
    line = {"prompt": "q", "chosen": "a", "rejected": "b"}
    records, skipped = read_records(write_lines(folder / "d.jsonl", [line, line]), "pair")
    assert len(records) == 1 and "duplicate id" in skipped[0].reason


def test_path_rules_can_be_relaxed(folder):
    outside = str(folder.parent / "outside.mp4")
    lines = [pair("up", video="../outside.mp4"), pair("abs", video=outside), pair("gone", video="videos/none.mp4")]
    path = write_lines(folder / "p.jsonl", lines)
    records, skipped = read_records(path, "pair", allow_absolute_paths=True, check_media=False)
    assert [r.video for r in records] == [outside, outside, str(folder / "videos/none.mp4")] and not skipped
    records, skipped = read_records(path, "pair", check_media=False)
    assert [r.id for r in records] == ["gone"] and len(skipped) == 2


@pytest.mark.parametrize("kind,line,reason", [
    ("sft", {"id": "s", "prompt": "p", "chosen": "c", "rejected": "r"}, "missing required field 'response'"),
    ("sft", {"id": "s", "prompt": "p", "response": " "}, "'response' is empty"),
    ("grpo", {"id": "g", "answer": "yes"}, "missing required field 'prompt'"),
    ("grpo", {"id": "g", "prompt": "p", "truth": "yes"}, "'truth' must be an object"),
    ("sft", {"question": "q", "answer_masked": "a", "pred_masked": "b"},
     "RRPO release lines are preference pairs, but this file is read as sft"),
])
def test_kind_specific_rules(folder, kind, line, reason):
    path = write_lines(folder / "k.jsonl", [line])
    records, skipped = read_records(path, kind, check_media=False)
    assert not records and reason in skipped[0].reason


def test_sft_and_grpo_records(folder):
    lines = [{"id": "s", "video": "videos/v1.mp4", "prompt": "Describe.", "response": "A red circle."},
             {"id": "g", "prompt": "How many?", "answer": "2", "truth": {"kind": "count"}}]
    path = write_lines(folder / "sg.jsonl", lines)
    (s,), _ = read_records(path, "sft")
    assert s.response == "A red circle." and s.video == str(folder / "videos/v1.mp4")
    records, skipped = read_records(path, "grpo")
    assert [r.id for r in records] == ["s", "g"] and records[1].truth == {"kind": "count"}


def test_missing_or_unreadable_file_is_a_record_error(tmp_path):
    with pytest.raises(RecordError, match="cannot read record file"):
        read_records(tmp_path / "nope.jsonl", "pair")
    with pytest.raises(RecordError, match="cannot read record file"):
        read_records(tmp_path, "pair")


def test_blank_lines_bom_and_crlf_are_tolerated(folder):
    path = folder / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(pair("a")).encode() + b"\r\n\r\n  \n" + json.dumps(pair("b")).encode())
    records, skipped = read_records(path, "pair")
    assert [r.id for r in records] == ["a", "b"] and [r.source for r in records] == [f"{path}:1", f"{path}:4"]


def test_unknown_kind_is_a_value_error(folder):
    with pytest.raises(ValueError, match="kind must be one of"):
        read_records(folder / "x.jsonl", "dpo")


# ---------------------------------------------------------------- sentence splitter


@pytest.mark.parametrize("text,sentences", [
    (CHOSEN, ["A red circle moves left.", "Then a blue square appears."]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
    ("No final stop", ["No final stop"]),
    ("  Lead.   Trail.  ", ["Lead.", "Trail."]),
    ("It costs 3.5 dollars. Ok", ["It costs 3.5 dollars.", "Ok"]),
    ('He said "hi." Then left.', ['He said "hi."', "Then left."]),
    ("One.\nTwo.\tThree...", ["One.", "Two.", "Three..."]),
    ("Dr. Smith came.", ["Dr.", "Smith came."]),  # documented: no abbreviation list
    ("", []),
    ("   ", []),
])
def test_sentence_spans(text, sentences):
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == sentences
    assert all(a < b for a, b in spans) and all(p[1] < q[0] for p, q in zip(spans, spans[1:]))


def test_world_captions_split_into_their_sentences():
    from mmalign.world.scene import sample_scene
    from mmalign.world.text import caption, caption_sentences

    for seed in range(20):
        scene = sample_scene(seed)
        text = caption(scene)
        assert [text[a:b] for a, b in sentence_spans(text)] == caption_sentences(scene)


def test_world_pairs_are_valid_records(tmp_path):
    """The synthetic world's pairs (empty spans for insertions included) pass validation."""
    from mmalign.world.scene import sample_scene
    from mmalign.world.text import hallucinated_caption

    lines = [{"id": f"w{seed}", "prompt": "Describe.", **{k: v for k, v in hallucinated_caption(
        sample_scene(seed), np.random.default_rng(seed)).items() if k != "kind"}} for seed in range(30)]
    records, skipped = read_records(write_lines(tmp_path / "w.jsonl", lines), "pair")
    assert skipped == [] and len(records) == 30


# ---------------------------------------------------------------- RRPO tags


@pytest.mark.parametrize("tagged,text,phrases", [
    ("This is a <MASK> correct </MASK> or <MASK> preferred </MASK> answer.",
     "This is a correct or preferred answer.", ["correct", "preferred"]),
    ("a <MASK>red</MASK> car", "a red car", ["red"]),
    ("<MASK> The </MASK> cat", "The cat", ["The"]),
    ("It moves <MASK> left </MASK>.", "It moves left.", ["left"]),
    ("no tags at all", "no tags at all", []),
    ("x <MASK> </MASK>y", "x y", [""]),
])
def test_mask_tags_to_spans(tagged, text, phrases):
    plain, spans = mask_tags_to_spans(tagged)
    assert plain == text and [plain[a:b] for a, b in spans] == phrases
    assert mask_tags_to_spans(spans_to_mask_tags(plain, spans)) == (plain, spans)


def test_spans_to_mask_tags_writes_padded_tags():
    assert spans_to_mask_tags("a red car", [(2, 5)]) == "a <MASK> red </MASK> car"


@pytest.mark.parametrize("tagged,error", [
    ("a <MASK> b <MASK> c </MASK>", "nested"),
    ("a </MASK> b", "without <MASK>"),
    ("a <MASK> b", "never closed"),
])
def test_bad_mask_tags(tagged, error):
    with pytest.raises(ValueError, match=error):
        mask_tags_to_spans(tagged)


@pytest.mark.parametrize("text,spans,error", [
    ("abc", [(0, 5)], "not inside"), ("abcdef", [(0, 3), (2, 4)], "overlap"), ("a <MASK> b", [(0, 1)], "already"),
])
def test_spans_to_mask_tags_rejects_bad_spans(text, spans, error):
    with pytest.raises(ValueError, match=error):
        spans_to_mask_tags(text, spans)


def rrpo_line(**kw):
    return {"question": "<image>\nWhat happens?", "answer": "The ball rolls left.", "pred": "The ball rolls right.",
            "answer_masked": "The ball rolls <MASK> left </MASK>.", "pred_masked": "The ball rolls <MASK> right </MASK>.",
            "src": "sharegpt", "sample_id": 3, "media_path": "videos/v1.mp4", **kw}


def test_rrpo_release_lines_are_converted(folder):
    path = write_lines(folder / "rrpo.jsonl", [rrpo_line()])
    (r,), skipped = read_records(path, "pair")
    assert not skipped
    assert (r.id, r.prompt, r.chosen, r.rejected) == ("3", "What happens?", "The ball rolls left.", "The ball rolls right.")
    assert r.chosen[slice(*r.chosen_spans[0])] == "left" and r.rejected[slice(*r.rejected_spans[0])] == "right"
    assert r.video == str(folder / "videos/v1.mp4") and r.meta == {"src": "sharegpt", "format": "rrpo"}


@pytest.mark.parametrize("change,reason", [
    (dict(answer="The ball rolls  left."), "'answer_masked' without its tags is not 'answer'"),
    (dict(pred_masked="The ball <MASK> rolls right."), "'pred_masked': <MASK> never closed"),
    (dict(question=None), "'question' must be a string"),
    (dict(pred_masked=None, pred=None), "'pred_masked' must be a string"),
    (dict(media_path="../outside.mp4"), "leaves the record file's folder"),
])
def test_bad_rrpo_lines_are_skipped(folder, change, reason):
    path = write_lines(folder / "rrpo.jsonl", [rrpo_line(sample_id="ok"), rrpo_line(**change)])
    records, skipped = read_records(path, "pair")
    assert [r.id for r in records] == ["ok"] and reason in skipped[0].reason


def assert_only_the_bad_line_skipped(folder, make_line, change, reason):
    """A file of a good line and the same line with `change`: the good one reads, the bad one is
    skipped with `reason`."""
    path = write_lines(folder / "lines.jsonl", [make_line(id="ok"), make_line(id="bad", **change)])
    records, skipped = read_records(path, "pair")
    assert [r.id for r in records] == ["ok"] and skipped[0].id == "bad"
    assert reason in skipped[0].reason, skipped[0].reason


# ---------------------------------------------------------------- Mask-DPO


def mask_dpo_line(**kw):
    return {"prompt": [{"role": "system", "content": "Be factual."}, {"role": "user", "content": "Who was Ada?"}],
            "chosen": [{"role": "assistant", "content": "Ada wrote programs. She lived in London."}],
            "rejected": [{"role": "assistant", "content": "Ada wrote poems. She lived in London."}],
            "chosen_item": {"sents": ["Ada wrote programs. ", "She lived in London."],
                            "type": ["no_hallucination", "no_hallucination"]},
            "rejected_item": {"sents": ["Ada wrote poems.", "She lived in London."],
                              "type": ["hallucination", "no_hallucination"]},
            "domain": "people", **kw}


def test_mask_dpo_lines_are_converted(folder):
    path = write_lines(folder / "mdpo.jsonl", [mask_dpo_line(id="m1")])
    (r,), skipped = read_records(path, "pair")
    assert not skipped
    assert r.prompt == "Who was Ada?" and r.chosen == "Ada wrote programs. She lived in London."
    assert r.chosen_sentence_labels == [1, 1] and r.rejected_sentence_labels == [0, 1]
    assert r.meta == {"domain": "people", "format": "mask_dpo"} and r.system == "Be factual."
    assert r.video is None


@pytest.mark.parametrize("change,reason", [
    # "Dr." ends a sentence for sentence_spans: 2 sents would become 3 sentences
    (dict(rejected_item={"sents": ["Dr. Ada wrote poems.", "She lived in London."], "type": ["hallucination",
                                                                                            "no_hallucination"]},
          rejected=None), "splits into 3 sentences, 'sents' has 2"),
    # same count, other boundaries: the labels would land on other sentences
    (dict(rejected_item={"sents": ["Ada wrote. poems", "She lived in London."], "type": ["hallucination",
                                                                                        "no_hallucination"]},
          rejected=None), "sentence 0 splits as 'Ada wrote.', 'sents' has 'Ada wrote. poems'"),
    (dict(chosen_item={"sents": ["A.", "B."], "type": ["no_hallucination"]}), "has 2 sents but 1 types"),
    (dict(chosen_item={"sents": ["A."], "type": ["maybe"]}), "'chosen_item.type' must be a list of"),
    (dict(chosen_item=["A."]), "'chosen_item' must be an object"),
    (dict(chosen=[{"role": "assistant", "content": "Something else."}]), "'chosen' differs from the joined"),
    (dict(prompt=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
     "prompt messages must be [system?, user, (assistant, user)*]"),
    (dict(prompt=None), "'prompt' must be a string or a list of chat messages"),
])
def test_bad_mask_dpo_lines_are_skipped(folder, change, reason):
    assert_only_the_bad_line_skipped(folder, mask_dpo_line, change, reason)


def test_mask_dpo_question_and_string_fields(folder):
    line = mask_dpo_line(id="q", question="Who?", chosen="Ada wrote programs.  She lived in London.")
    del line["prompt"]
    (r,), _ = read_records(write_lines(folder / "q.jsonl", [line]), "pair")
    assert r.prompt == "Who?" and r.meta == {"domain": "people", "format": "mask_dpo"}


def trl_line(**kw):
    """TRL's conversational preference format, as its vision-language examples write it."""
    return {"images": ["images/a.jpg", "images/b.jpg"],
            "prompt": [{"role": "system", "content": "Be exact."},
                       {"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                    {"type": "text", "text": "Which is "}, {"type": "text", "text": "red?"}]}],
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "The first."}]}],
            "rejected": [{"role": "assistant", "content": "The second."}], "source": "rlaif-v", **kw}


def test_trl_conversational_lines_read_as_the_same_records_as_ours(folder):
    """DESIGN.md promises TRL's preference columns; TRL's vision-language datasets are
    conversational (messages with image parts), and each line was skipped: 'prompt' must be a string."""
    ours = {"id": "t", "images": ["images/a.jpg", "images/b.jpg"], "prompt": "Which is red?", "chosen": "The first.",
            "rejected": "The second."}
    (a,), _ = read_records(write_lines(folder / "ours.jsonl", [ours]), "pair")
    (b,), skipped = read_records(write_lines(folder / "trl.jsonl", [trl_line(id="t")]), "pair")
    assert skipped == []
    assert (b.prompt, b.chosen, b.rejected, b.images) == (a.prompt, a.chosen, a.rejected, a.images)
    assert b.meta == {"source": "rlaif-v", "format": "trl"} and b.system == "Be exact."

    sft = [{"id": "m", "video": "videos/v1.mp4", "messages": [
               {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What moves?"}]},
               {"role": "assistant", "content": "A red circle."}]},
           {"id": "c", "prompt": "What moves?", "completion": "A red circle."},  # TRL's standard prompt-completion
           {"id": "cc", "prompt": [{"role": "user", "content": "What moves?"}],
            "completion": [{"role": "assistant", "content": "A red circle."}]}]
    records, skipped = read_records(write_lines(folder / "sft.jsonl", sft), "sft")
    assert skipped == [] and [(r.id, r.prompt, r.response) for r in records] == [
        ("m", "What moves?", "A red circle."), ("c", "What moves?", "A red circle."), ("cc", "What moves?", "A red circle.")]
    (g,), _ = read_records(write_lines(folder / "grpo.jsonl", [{"prompt": [{"role": "user", "content": "2+2?"}],
                                                                  "answer": "4"}]), "grpo")
    assert (g.prompt, g.answer) == ("2+2?", "4")


def test_trl_implicit_prompt_lines_read_as_the_same_records_as_ours(folder):
    """TRL's implicit-prompt preference format (trl-lib/ultrafeedback_binarized: chosen and
    rejected each the whole conversation, sometimes beside a string copy of the prompt) was
    skipped ("'chosen' must be a string or [assistant message]"). The shared leading messages are
    the prompt, as trl.extract_prompt takes them."""
    user = {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which is red?"}]}
    lines = [{"id": "i", "images": ["images/a.jpg", "images/b.jpg"],
              "chosen": [user, {"role": "assistant", "content": "The first."}],
              "rejected": [user, {"role": "assistant", "content": "The second."}]},
             {"id": "p", "images": ["images/a.jpg", "images/b.jpg"], "prompt": "Which is red?",
              "chosen": [user, {"role": "assistant", "content": "The first."}],
              "rejected": [user, {"role": "assistant", "content": "The second."}]},
             {"id": "multi", "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
              "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                           {"role": "user", "content": "c"}, {"role": "assistant", "content": "e"}]}]
    ours = {"id": "t", "images": ["images/a.jpg", "images/b.jpg"], "prompt": "Which is red?", "chosen": "The first.",
            "rejected": "The second."}
    (a,), _ = read_records(write_lines(folder / "ours.jsonl", [ours]), "pair")
    records, skipped = read_records(write_lines(folder / "implicit.jsonl", lines), "pair")
    assert [(r.id, r.prompt, r.chosen, r.rejected, r.images) for r in records[:2]] == [
        (i, a.prompt, a.chosen, a.rejected, a.images) for i in ("i", "p")]
    # a conversation: the messages before the last user turn are its history
    assert skipped == [] and (records[2].history, records[2].prompt, records[2].chosen, records[2].rejected) == (
        [("a", "b")], "c", "d", "e")


def test_a_trl_line_with_one_image_column_reads_it(folder):
    """TRL's older vision datasets name their one image `image`: the line was skipped ("the prompt
    has 1 image part(s) but 'images' lists 0") and its path went to meta."""
    line = {"image": "images/a.jpg", "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}],
            "chosen": [{"role": "assistant", "content": "A."}], "rejected": [{"role": "assistant", "content": "B."}]}
    (r,), skipped = read_records(write_lines(folder / "one.jsonl", [line]), "pair")
    assert skipped == [] and r.images == [str(folder / "images" / "a.jpg")] and "image" not in r.meta


@pytest.mark.parametrize("change,reason", [
    (dict(images=["images/a.jpg"]), "the prompt has 2 image part(s) but 'images' lists 1"),
    (dict(prompt=[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q"}]}]),
     "the prompt has 1 video part(s); a record holds one 'video' path"),
    (dict(prompt=[{"role": "user", "content": "a"}, {"role": "user", "content": "c"}]),
     "prompt messages must be [system?, user, (assistant, user)*]"),
    (dict(prompt=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                  {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "c"}]}]),
     "media parts in turn 3; a record's media go with its first user turn"),
    (dict(chosen=[{"role": "assistant", "content": [{"type": "image"}]}]),
     "TRL line: 'chosen' must be a string or [{'role': 'assistant', 'content': text}]"),
    (dict(rejected=[{"role": "user", "content": "x"}]), "TRL line: 'rejected' must be a string or"),
    (dict(prompt=[{"role": "user", "content": [{"type": "audio"}]}]), "parts of type text / image / video"),
])
def test_bad_trl_lines_are_skipped(folder, change, reason):
    assert_only_the_bad_line_skipped(folder, trl_line, change, reason)


def sharegpt_line(**kw):
    """LLaMA-Factory's sharegpt preference format, multimodal."""
    return {"conversations": [{"from": "human", "value": "<image><image>Which is red?"}],
            "chosen": {"from": "gpt", "value": "The first."}, "rejected": {"from": "gpt", "value": "The second."},
            "images": ["images/a.jpg", "images/b.jpg"], "system": "Be exact.", **kw}


def test_llamafactory_lines_read_as_the_same_records_as_ours(folder):
    ours = {"id": "t", "images": ["images/a.jpg", "images/b.jpg"], "prompt": "Which is red?", "chosen": "The first.",
            "rejected": "The second."}
    (a,), _ = read_records(write_lines(folder / "ours.jsonl", [ours]), "pair")
    alpaca = {"instruction": "<image><image>Which", "input": "is red?", "chosen": "The first.",
              "rejected": "The second.", "images": ["images/a.jpg", "images/b.jpg"]}
    records, skipped = read_records(write_lines(folder / "lf.jsonl", [sharegpt_line(), alpaca]), "pair")
    assert skipped == []
    assert [(r.prompt, r.chosen, r.rejected, r.images) for r in records] == [
        (a.prompt, a.chosen, a.rejected, a.images), ("Which\nis red?", a.chosen, a.rejected, a.images)]
    assert records[0].meta == {"format": "llamafactory"} and records[0].system == "Be exact."

    sft = [{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "<video>What moves?"},
                              {"from": "gpt", "value": "A red circle."}], "videos": ["videos/v1.mp4"]},
           {"instruction": "What moves?", "input": "", "output": "A red circle."}]
    records, skipped = read_records(write_lines(folder / "sft.jsonl", sft), "sft")
    assert skipped == [] and [(r.prompt, r.response, r.video) for r in records] == [
        ("What moves?", "A red circle.", str(folder / "videos" / "v1.mp4")), ("What moves?", "A red circle.", None)]
    assert records[0].system == "S"

    # Its OpenAI tags, as in its data/mllm_video_demo.json: read as TRL's messages, the video was
    # dropped into meta and the record trained on the text alone.
    openai = [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "<video>What moves?"},
                            {"role": "assistant", "content": "A red circle."}], "videos": ["videos/v1.mp4"]},
              {"messages": [{"role": "user", "content": "<image><image>Which is red?"}],
               "chosen": {"role": "assistant", "content": "The first."},
               "rejected": {"role": "assistant", "content": "The second."}, "images": ["images/a.jpg", "images/b.jpg"]}]
    (sft_record,), skipped = read_records(write_lines(folder / "openai.jsonl", openai[:1]), "sft")
    assert skipped == [] and (sft_record.prompt, sft_record.response, sft_record.video) == (
        "What moves?", "A red circle.", str(folder / "videos" / "v1.mp4"))
    assert sft_record.meta == {"format": "llamafactory"} and sft_record.system == "S"
    (pair,), skipped = read_records(write_lines(folder / "openai_pair.jsonl", openai[1:]), "pair")
    assert skipped == [] and (pair.prompt, pair.chosen, pair.rejected, pair.images) == (a.prompt, a.chosen, a.rejected,
                                                                                      a.images)


@pytest.mark.parametrize("change,reason", [
    (dict(images=["images/a.jpg"]), "the prompt has 2 <image> placeholder(s) for 1 listed"),
    (dict(conversations=[{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]),
     "'conversations' must be [human, (gpt, human)*] (the answers in chosen / rejected)"),
    (dict(conversations=[{"from": "human", "value": "<image><image>a"}, {"from": "gpt", "value": "b"},
                         {"from": "human", "value": "<image>c"}]),
     "a media placeholder in user turn 2; a record's media go with its first user turn"),
    (dict(chosen="The first."), "'chosen' must be {'from': 'gpt', 'value': text}"),
    (dict(videos=["videos/v1.mp4", "videos/v2.mp4"]), "'videos' must list at most one video"),
    (dict(conversations="hi"), "'conversations' must be a list of {from, value} turns"),
])
def test_bad_llamafactory_lines_are_skipped(folder, change, reason):
    assert_only_the_bad_line_skipped(folder, sharegpt_line, change, reason)


def test_llava_data_lines_read_as_ours(folder):
    """LLaVA's own data files (llava_v1_5_mix665k.json, LLaVA-Video-178K) share the sharegpt turns
    but name one `image` or one `video`, and LLaVA-NeXT's video lines mark the video's place with
    <image>. Both were refused ("1 <image> placeholder(s) for 0 listed")."""
    lines = [{"id": "img", "image": "images/a.jpg",
              "conversations": [{"from": "human", "value": "<image>\nWhat is red?"}, {"from": "gpt", "value": "A."}]},
             {"id": "vid", "video": "videos/v1.mp4",
              "conversations": [{"from": "human", "value": "<image>\nWhat moves?"}, {"from": "gpt", "value": "B."}]},
             {"id": "tagged", "video": "videos/v1.mp4",
              "conversations": [{"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "B."}]},
             {"id": "two", "image": "images/a.jpg", "images": ["images/b.jpg"],
              "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A."}]}]
    records, skipped = read_records(write_lines(folder / "llava.jsonl", lines), "sft")
    assert [(r.id, r.prompt, r.images, r.video) for r in records] == [
        ("img", "What is red?", [str(folder / "images" / "a.jpg")], None),
        ("vid", "What moves?", None, str(folder / "videos" / "v1.mp4")),
        ("tagged", "What moves?", None, str(folder / "videos" / "v1.mp4"))]
    assert [s.id for s in skipped] == ["two"] and "'image' must be one path, without 'images'" in skipped[0].reason


def test_conversations_read_with_their_earlier_turns_in_every_format(folder):
    """Multi-turn lines (LLaVA-Video-178K's QA, LLaMA-Factory's sharegpt, alpaca's `history`,
    TRL's messages) were refused as "one turn": the record is its last turn, with the turns
    before it as `history` and the media with the first of them."""
    ours = {"id": "o", "video": "videos/v1.mp4", "history": [["What moves?", "A circle."]], "prompt": "Which way?",
            "response": "Left."}
    llava = {"id": "l", "video": "videos/v1.mp4", "conversations": [
        {"from": "human", "value": "<image>\nWhat moves?"}, {"from": "gpt", "value": "A circle."},
        {"from": "human", "value": "Which way?"}, {"from": "gpt", "value": "Left."}]}
    alpaca = {"id": "a", "videos": ["videos/v1.mp4"], "instruction": "Which way?", "input": "", "output": "Left.",
              "history": [["<video>What moves?", "A circle."]]}
    trl = {"id": "t", "video": "videos/v1.mp4", "messages": [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What moves?"}]},
        {"role": "assistant", "content": "A circle."}, {"role": "user", "content": "Which way?"},
        {"role": "assistant", "content": "Left."}]}
    records, skipped = read_records(write_lines(folder / "sft.jsonl", [ours, llava, alpaca, trl]), "sft")
    assert skipped == []
    assert {(r.prompt, r.response, tuple(r.history), r.video) for r in records} == {
        ("Which way?", "Left.", (("What moves?", "A circle."),), str(folder / "videos" / "v1.mp4"))}
    pair = {"id": "p", "video": "videos/v1.mp4", "chosen": {"from": "gpt", "value": "Left."},
            "rejected": {"from": "gpt", "value": "Right."}, "conversations": llava["conversations"][:3]}
    (r,), skipped = read_records(write_lines(folder / "pair.jsonl", [pair]), "pair")
    assert (r.history, r.prompt, r.chosen, r.rejected) == ([("What moves?", "A circle.")], "Which way?", "Left.", "Right.")
    # written back and read again, the same; a GRPO prompt is one turn
    write_records(folder / "again.jsonl", records)
    again, _ = read_records(folder / "again.jsonl", "sft")
    assert [(r.history, r.prompt) for r in again] == [(r.history, r.prompt) for r in records]
    _, skipped = read_records(write_lines(folder / "grpo.jsonl", [{**ours, "response": None}]), "grpo")
    assert "'history': a GRPO prompt is one user turn" in skipped[0].reason


# ---------------------------------------------------------------- writing back


def test_write_then_read_gives_the_same_records(folder):
    lines = GOOD + [rrpo_line(media_path="videos/v2.mp4"), mask_dpo_line(id="md")]
    records, _ = read_records(write_lines(folder / "in.jsonl", lines), "pair")
    for out in (folder / "out.jsonl", folder / "videos" / "nested.jsonl", folder.parent / "up.jsonl"):
        write_records(out, records)
        again, skipped = read_records(out, "pair", allow_absolute_paths=True)
        assert not skipped
        assert [_without_source(r) for r in again] == [_without_source(r) for r in records]


def test_written_paths_are_relative_inside_the_folder_and_absolute_outside(folder):
    outside = str(folder.parent / "outside.mp4")
    records, _ = read_records(write_lines(folder / "in.jsonl", [pair("in"), pair("out", video=outside)]), "pair",
                              allow_absolute_paths=True)
    write_records(folder / "out.jsonl", records)
    rows = [json.loads(line) for line in (folder / "out.jsonl").read_text().splitlines()]
    assert rows[0]["video"] == "videos/v1.mp4" and rows[1]["video"] == outside
    assert "source" not in rows[0] and list(rows[0])[0] == "id"


def _without_source(r: Record) -> dict:
    d = dict(vars(r))
    d.pop("source")
    return d


def test_skipped_is_a_plain_record_of_the_problem():
    s = Skipped("f.jsonl:3", None, "why")
    assert (s.source, s.id, s.reason) == ("f.jsonl:3", None, "why")


def test_a_symlink_out_of_the_record_folder_is_refused(tmp_path):
    """A video that is a symlink to a file outside, or sits in a linked folder that points
    outside, is refused unless allow_absolute_paths (which lets it through)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    data = tmp_path / "data"
    data.mkdir()
    (data / "v.mp4").symlink_to(outside / "secret.mp4")
    (data / "linked").symlink_to(outside)
    (data / "inside.mp4").write_bytes(b"x")
    (data / "alias.mp4").symlink_to(data / "inside.mp4")  # a link that stays inside is fine
    lines = [{"id": str(i), "prompt": "p", "response": "r", "video": v}
             for i, v in enumerate(["v.mp4", "linked/secret.mp4", "alias.mp4"])]
    path = data / "sft.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    records, skipped = read_records(path, "sft")
    assert [r.id for r in records] == ["2"]
    assert [s.id for s in skipped] == ["0", "1"] and all("symbolic link" in s.reason for s in skipped)
    records, _ = read_records(path, "sft", allow_absolute_paths=True)
    assert len(records) == 3


def test_a_json_array_file_reads_as_its_lines_would(folder):
    """LLaMA-Factory's data files are one pretty-printed JSON array: its elements read as the
    same records as the same objects one per line, and a bad element is skipped and named by
    the line it starts on. Each line of the array was read as a record: nothing was usable."""
    lines = [GOOD[0], GOOD[1], {"id": "bad", "prompt": "p", "rejected": "r"}, GOOD[2]]
    jsonl, _ = read_records(write_lines(folder / "lines.jsonl", lines), "pair")
    path = folder / "array.json"
    path.write_text("\ufeff" + json.dumps(lines, indent=2))  # with the byte-order mark some editors write
    records, skipped = read_records(path, "pair")
    assert [(r.id, r.prompt, r.chosen, r.video) for r in records] == [(r.id, r.prompt, r.chosen, r.video) for r in jsonl]
    starts = [i + 1 for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines()) if line == "  {"]
    assert [(s.source, s.id) for s in skipped] == [(f"{path}:{starts[2]}", "bad")]
    assert "missing required field 'chosen'" in skipped[0].reason
    assert [r.source for r in records] == [f"{path}:{starts[i]}" for i in (0, 1, 3)]
    compact = folder / "compact.json"
    compact.write_text(json.dumps(lines))  # one line: every element on line 1
    assert [r.id for r in read_records(compact, "pair")[0]] == [r.id for r in jsonl]
    assert read_records(write_lines(folder / "empty.json", [[]]), "pair") == ([], [])
    # a JSONL file whose first line is an array is still JSONL: that line is skipped, not the file
    records, skipped = read_records(write_lines(folder / "lines2.jsonl", [[1, 2], GOOD[0]]), "pair")
    assert [r.id for r in records] == ["video-pair"] and "got an array" in skipped[0].reason


@pytest.mark.parametrize("text, line, reason", [
    ('[\n  {"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}\n  {"id": "b"}\n]', 3, "Expecting ',' or ']'"),
    ('[\n  {"id": "a", "prompt": "p",\n', 3, "Expecting property name"),  # cut short: the end
    ('[\n  {"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}\n]\n[]', 4, "Extra data after the array"),
])
def test_a_broken_json_array_file_is_one_error_naming_its_line(folder, text, line, reason):
    """A syntax error in an array leaves no way to find where the next element starts: the file
    is refused in one line naming where, rather than read in part. (A JSONL file whose first
    line is an array is still read line by line: the fuzz tests.)"""
    path = folder / "broken.json"
    path.write_text(text)
    with pytest.raises(RecordError) as e:
        read_records(path, "pair")
    assert str(e.value).startswith(f"{path}:{line}: a JSON array file, but not valid JSON ({reason}")


def test_a_parquet_file_reads_row_by_row(folder):
    """A dataset from the Hugging Face hub is Parquet: each row reads as the same record as the
    same object on a JSONL line, named by its row (every 'line' of it was not UTF-8 text). An
    image stored in the file as bytes is no path: that row is skipped, saying so; an Image cell
    that holds only its path is that path."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    rows = [{"id": "a", "images": [{"bytes": None, "path": "images/a.jpg"}], "prompt": "Red?", "chosen": "Yes.",
             "rejected": "No."},
            {"id": "b", "images": [{"bytes": b"\xff\xd8 jpeg", "path": None}], "prompt": "Red?", "chosen": "Yes.",
             "rejected": "No."},
            {"id": "c", "images": None, "prompt": "Say hi.", "chosen": "Hi.", "rejected": "Bye."}]
    path = folder / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    records, skipped = read_records(path, "pair")
    expected, _ = read_records(write_lines(folder / "same.jsonl", [
        {**rows[0], "images": ["images/a.jpg"]}, {k: v for k, v in rows[2].items() if k != "images"}]), "pair")
    assert [(r.id, r.images, r.prompt, r.chosen, r.rejected) for r in records] == \
        [(r.id, r.images, r.prompt, r.chosen, r.rejected) for r in expected]
    assert [r.source for r in records] == [f"{path}:1", f"{path}:3"]
    assert [(s.source, s.id) for s in skipped] == [(f"{path}:2", "b")]
    assert "is stored in the file (a Hugging Face Image with its bytes), not a path" in skipped[0].reason
    (folder / "torn.parquet").write_bytes(path.read_bytes()[:40])
    with pytest.raises(RecordError, match=r"torn.parquet: a Parquet file that cannot be read \("):
        read_records(folder / "torn.parquet", "pair")


def test_a_link_to_a_record_file_reads_media_beside_the_file_it_leads_to(folder, tmp_path):
    """`ln -s /data/ds/pairs.jsonl mine.jsonl`: the media are the dataset's, beside the real
    file. They were looked for beside the link ('file not found' on every line), and, found
    there, refused as leading out of the link's folder. Written back through a linked folder,
    the paths stay relative and read back."""
    real = write_lines(folder / "pairs.jsonl", [GOOD[0], GOOD[1]])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "pairs.jsonl").symlink_to(real)
    records, skipped = read_records(mine / "pairs.jsonl", "pair")
    assert skipped == [] and [r.video for r in records] == [str(folder / "videos" / "v1.mp4"), None]
    assert records[1].images == [str(folder / "images" / "a.jpg"), str(folder / "images" / "b.jpg")]
    assert [r.source for r in records] == [f"{mine / 'pairs.jsonl'}:1", f"{mine / 'pairs.jsonl'}:2"]
    linked = tmp_path / "linked"
    linked.symlink_to(folder)
    through, _ = read_records(linked / "pairs.jsonl", "pair")
    write_records(linked / "again.jsonl", through)
    assert json.loads((folder / "again.jsonl").read_text().splitlines()[0])["video"] == "videos/v1.mp4"
    again, skipped = read_records(linked / "again.jsonl", "pair")
    assert skipped == [] and [r.video for r in again] == [r.video for r in through]


def test_media_dir_is_where_relative_media_paths_are_read(folder, tmp_path):
    """LLaVA-Video-178K's annotation files live apart from the videos and name them under the
    video root: every line was 'file not found', since paths were read beside the file only."""
    ann = tmp_path / "annotations"
    ann.mkdir()
    path = write_lines(ann / "0_30_s_academic.jsonl", [GOOD[0], {**GOOD[0], "id": "out", "video": "../outside.mp4"}])
    _, skipped = read_records(path, "pair")
    assert skipped[0].reason.startswith("'video' file not found")
    records, skipped = read_records(path, "pair", media_dir=folder)
    assert [r.video for r in records] == [str(folder / "videos" / "v1.mp4")]
    assert "'video' path '../outside.mp4' leaves data.media_dir (allow_absolute_paths permits it)" in skipped[0].reason
    with pytest.raises(RecordError, match=r"data.media_dir: .*nowhere: not a folder"):
        read_records(path, "pair", media_dir=tmp_path / "nowhere")


def test_a_glob_reads_a_dataset_shipped_as_many_files_as_one(folder):
    """LLaVA-Video-178K ships dozens of annotation files, a hub dataset its Parquet shards: a
    glob reads the files it matches, in name order, each line named by its own file; an id an
    earlier file gave is skipped (strict: refused) as within one file."""
    from mmalign.data.records import read_record_files, record_files

    (folder / "ann" / "b").mkdir(parents=True)
    write_lines(folder / "ann" / "a_oe.jsonl", [GOOD[0], GOOD[1]])
    (folder / "ann" / "b" / "b_oe.json").write_text(json.dumps([GOOD[2], {**GOOD[3], "id": "video-pair"}], indent=2))
    write_lines(folder / "ann" / "b" / "b_cap.jsonl", [GOOD[4]])
    spec = str(folder / "ann" / "**" / "*_oe.json*")
    assert record_files(spec) == [str(folder / "ann" / "a_oe.jsonl"), str(folder / "ann" / "b" / "b_oe.json")]
    records, skipped = read_record_files(spec, "pair", media_dir=folder)
    assert [r.id for r in records] == ["video-pair", "image-pair", "text-only"]
    second = [i + 1 for i, t in enumerate((folder / "ann" / "b" / "b_oe.json").read_text().splitlines()) if t == "  {"][1]
    assert [(s.source, s.reason) for s in skipped] == [(f"{folder / 'ann' / 'b' / 'b_oe.json'}:{second}",
                                                        f"duplicate id 'video-pair' (first at {folder / 'ann' / 'a_oe.jsonl'}:1)")]
    with pytest.raises(RecordError, match="duplicate id 'video-pair'"):
        read_record_files(spec, "pair", media_dir=folder, strict=True)
    assert record_files(str(folder / "none" / "*.jsonl")) == [] and record_files("plain.jsonl") == ["plain.jsonl"]


def video_r1_line(**kw):
    return {"problem_id": 7, "problem": "Which object moves first?", "data_type": "video",
            "problem_type": "multiple choice", "options": ["A. the ball", "B. the cup"], "process": "<think>..</think>",
            "solution": "<answer>B</answer>", "path": "./videos/v1.mp4", "data_source": "LLaVA-Video-178K", **kw}


def test_video_r1_lines_read_as_the_grpo_prompts_its_training_code_builds(folder):
    """Video-R1-260k (the video GRPO dataset) was refused field by field. Its prompt is the
    question, its options one per line, Video-R1's template and the problem type's instruction,
    written out here from its grpo.py; the answer is what its solution's <answer> holds."""
    numerical = video_r1_line(problem_id=8, problem="How many cups?", problem_type="numerical", options=None,
                              solution="<answer> 3 </answer>", data_type="image", path="images/a.jpg")
    records, skipped = read_records(write_lines(folder / "r1.jsonl", [video_r1_line(), numerical]), "grpo")
    assert skipped == []
    think = ("Please think about this question as if you were a human pondering deeply. Engage in an internal "
             "dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', "
             "etc, or other natural language thought expressions It's encouraged to include self-reflection or "
             "verification in the reasoning process. Provide your detailed reasoning between the <think> </think> "
             "tags, and then give your final answer between the <answer> </answer> tags.")
    mc, num = records
    assert mc.prompt == ("Which object moves first?Options:\nA. the ball\nB. the cup\n\n" + think + " Please provide "
                         "only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags.")
    assert (mc.id, mc.answer, mc.video, mc.truth) == ("7", "B", str(folder / "videos" / "v1.mp4"),
                                                      {"kind": "multiple choice", "choices": ["A. the ball", "B. the cup"]})
    assert mc.meta == {"process": "<think>..</think>", "data_source": "LLaVA-Video-178K", "format": "video_r1"}
    assert num.prompt == ("How many cups?\n" + think + " Please provide the numerical value (e.g., 42 or 3.14) within "
                          "the <answer> </answer> tags.")
    assert (num.answer, num.images, num.truth) == ("3", [str(folder / "images" / "a.jpg")], {"kind": "numerical"})
    _, skipped = read_records(write_lines(folder / "r1_pairs.jsonl", [video_r1_line()]), "pair")
    assert "Video-R1 lines are GRPO prompts or SFT records, but this file is read as pair" in skipped[0].reason
    # Video-R1-COT as SFT (its sft_video.py): the reasoning, a newline, the solution, under its system message
    (sft,), _ = read_records(write_lines(folder / "cot.jsonl", [video_r1_line(process="<think>The cup.</think>")]),
                             "sft")
    assert (sft.prompt, sft.response, sft.system) == (mc.prompt, "<think>The cup.</think>\n<answer>B</answer>",
                                                      "You are a helpful assistant")
    _, skipped = read_records(write_lines(folder / "no_cot.jsonl", [video_r1_line(process=None)]), "sft")
    assert "'process' (its reasoning, Video-R1-COT) must be a string" in skipped[0].reason


@pytest.mark.parametrize("change,reason", [
    (dict(problem_type="essay"), "'problem_type' 'essay' is not one of"),
    (dict(options=[]), "'options' must be a list of strings (a multiple-choice line has some)"),
    (dict(solution="B"), "'solution' holds no <answer>...</answer>"),
    (dict(data_type="audio"), "'data_type' must be video or image"),
])
def test_bad_video_r1_lines_are_skipped(folder, change, reason):
    path = write_lines(folder / "lines.jsonl", [video_r1_line(), video_r1_line(problem_id=9, **change)])
    records, skipped = read_records(path, "grpo")
    assert [r.id for r in records] == ["7"] and [s.source for s in skipped] == [f"{path}:2"]
    assert reason in skipped[0].reason
