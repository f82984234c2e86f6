"""The RRPO release format: our records out and back, and a release file in."""

import json

from mmalign.data.records import read_records, write_records, Record
from mmalign.perturb.rrpo_format import export_rrpo, import_rrpo, to_rrpo


def records(folder):
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    for name in ("a.mp4", "b.mp4"):
        (folder / "videos" / name).write_bytes(b"not decoded here")
    v = str(folder / "videos")
    return [
        Record("r1", "", "Describe the video.", video=f"{v}/a.mp4", chosen="A red circle moves left.",
               rejected="A red circle moves right.", chosen_spans=[(19, 23)], rejected_spans=[(19, 24)],
               rejected_video={"source": f"{v}/a.mp4", "ops": [{"op": "reverse"}]}, difficulty=0.4,
               meta={"generator": "perturb.inject"}),
        Record("r2", "", "Describe the video.", video=f"{v}/b.mp4", chosen="A cat sits.",
               rejected="A cat sits. There is also a dog.", chosen_spans=[(11, 11)], rejected_spans=[(11, 32)]),
        Record("r3", "", "What moves?", video=f"{v}/b.mp4", chosen="The red ball.", rejected="The blue ball."),
    ]


def test_export_reads_back_as_the_same_pairs(tmp_path):
    ours = tmp_path / "pairs.jsonl"
    write_records(ours, records(tmp_path))
    out = tmp_path / "rrpo.json"
    assert export_rrpo(ours, out) == []
    rows = json.loads(out.read_text())
    assert rows[0]["answer_masked"] == "A red circle moves <MASK> left </MASK>."
    assert rows[0]["pred_masked"] == "A red circle moves <MASK> right </MASK>."
    assert rows[0]["question"] == "<image>\nDescribe the video."
    assert rows[0]["video"] == rows[0]["media_path"] == "videos/a.mp4"
    assert rows[2]["answer_masked"] == "The <MASK> red </MASK> ball."  # spans from the differ
    back = tmp_path / "back.jsonl"
    back.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got, skipped = read_records(back, "pair")
    assert skipped == []
    for a, b in zip(records(tmp_path), got):
        assert (b.id, b.prompt, b.chosen, b.rejected, b.video) == (a.id, a.prompt, a.chosen, a.rejected, a.video)
        assert b.chosen_spans == (a.chosen_spans or [(4, 7)]) and b.rejected_spans == (a.rejected_spans or [(4, 8)])
        assert b.rejected_video == a.rejected_video and b.difficulty == a.difficulty
        assert b.meta["format"] == "rrpo"


def test_import_a_release_file(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "v1.mp4").write_bytes(b"x")
    release = [
        {"question": "<image>\nWhat happens?", "answer": "A man opens a door.", "pred": "A man closes a door.",
         "answer_masked": "A man <MASK> opens </MASK> a door.", "pred_masked": "A man <MASK> closes </MASK> a door.",
         "src": "tvqa", "sample_id": 7, "media_path": "v1.mp4"},
        {"question": "Q", "answer": "different text", "pred": "p", "answer_masked": "a <MASK> b </MASK>",
         "pred_masked": "p", "sample_id": 8, "media_path": "v1.mp4"},
    ]
    src = tmp_path / "release" / "train.json"
    src.parent.mkdir()
    src.write_text(json.dumps(release))
    out = tmp_path / "ours.jsonl"
    got, skipped = import_rrpo(src, out, media_root=media)
    assert [s.source for s in skipped] == [f"{src}:2"] and "is not 'answer'" in skipped[0].reason
    (r,) = got
    assert (r.id, r.prompt, r.chosen_spans, r.rejected_spans) == ("7", "What happens?", [(6, 11)], [(6, 12)])
    assert r.meta == {"src": "tvqa", "format": "rrpo"}
    back, bad = read_records(out, "pair")
    assert bad == [] and back[0].video == str(media / "v1.mp4")


def test_to_rrpo_refuses_texts_with_tags(tmp_path):
    r = Record("x", "", "p", chosen="a <MASK> b", rejected="c")
    try:
        to_rrpo(r, tmp_path)
    except ValueError as e:
        assert "MASK" in str(e)
    else:
        raise AssertionError("expected a ValueError")
