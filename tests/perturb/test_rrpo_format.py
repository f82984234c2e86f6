"""The RRPO release format: our records out and back, and a release file in."""

import json

import pytest

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
        Record("r3", "", "What moves?", video=f"{v}/b.mp4", chosen="The red ball.", rejected="The blue ball.",
               history=[("Is anything there?", "Two balls.")], system="Be brief."),
    ]


def test_export_reads_back_as_the_same_pairs(tmp_path):
    ours = tmp_path / "pairs.jsonl"
    write_records(ours, records(tmp_path))
    out = tmp_path / "rrpo.json"
    assert export_rrpo(ours, out) == (3, [])
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
        assert (b.history, b.system) == (a.history, a.system)  # a conversation's turns were dropped
        assert b.meta["format"] == "rrpo"


def test_sentence_labels_survive_export_and_import(tmp_path, monkeypatch, capsys):
    """`pairs-export` then `pairs-import` of Mask-DPO-labelled pairs: the labels come back, so
    Mask-DPO trains on the round-tripped file as on the original (export dropped them)."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.mp4").write_bytes(b"x")
    ours = [Record("a", "", "Describe.", video=str(tmp_path / "v.mp4"), chosen="A red circle moves left. It stops.",
                   rejected="A red circle moves right. It stops.", chosen_sentence_labels=[1, 1],
                   rejected_sentence_labels=[0, 1]),
            Record("b", "", "Describe.", video=str(tmp_path / "v.mp4"), chosen="A cat sits.", rejected="A dog sits.")]
    write_records(tmp_path / "ours.jsonl", ours)
    assert main(["pairs-export", "ours.jsonl", "--out", "release.json"]) == 0
    assert capsys.readouterr().out.strip() == "2 records written to release.json, 0 lines skipped"
    assert main(["pairs-import", "release.json", "--out", "back.jsonl"]) == 0
    back, skipped = read_records(tmp_path / "back.jsonl", "pair")
    assert skipped == []
    assert [(r.chosen_sentence_labels, r.rejected_sentence_labels) for r in back] == [([1, 1], [0, 1]), (None, None)]
    assert "chosen_sentence_labels" not in back[0].meta  # a field of the record, not an unknown key kept in meta


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
    assert [s.source for s in skipped] == [f"{src}: item 2"] and "is not 'answer'" in skipped[0].reason
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


def test_import_of_json_lines_names_the_user_files_lines(tmp_path, capsys):
    """`mmalign pairs-import` on JSON lines with a blank line, a torn line and a bad record: the
    torn line is skipped by its line (it was a JSONDecodeError traceback), and the bad record is
    named by its line in the user's file (blank lines used to shift it by one)."""
    from mmalign.cli import main

    (tmp_path / "v1.mp4").write_bytes(b"x")
    good = {"question": "Q", "answer": "a red car", "pred": "a blue car", "answer_masked": "a <MASK> red </MASK> car",
            "pred_masked": "a <MASK> blue </MASK> car", "sample_id": 1, "media_path": "v1.mp4"}
    bad = {**good, "sample_id": 2, "answer": "other text"}
    src = tmp_path / "train.jsonl"
    src.write_text(json.dumps(good) + "\n\n" + '{"question": "torn' + "\n" + json.dumps(bad) + "\n")
    assert main(["pairs-import", str(src), "--out", str(tmp_path / "ours.jsonl")]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"1 records written to {tmp_path / 'ours.jsonl'}, 2 lines skipped"
    lines = out.err.strip().splitlines()
    assert lines[0].startswith(f"skipped {src}:3: not JSON (JSONDecodeError: ")
    assert lines[1].startswith(f"skipped {src}:4: ") and "is not 'answer'" in lines[1]


@pytest.mark.parametrize("text", ["[{\"question\": ", "\x00\xff garbage"])
def test_import_of_a_file_that_is_not_json_is_one_line(tmp_path, capsys, text):
    from mmalign.cli import main

    src = tmp_path / "release.json"
    src.write_bytes(text.encode("latin-1"))
    assert main(["pairs-import", str(src), "--out", str(tmp_path / "o.jsonl")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"mmalign: error: {src}: ")
    assert not (tmp_path / "o.jsonl").exists()


def test_export_to_a_place_that_cannot_be_written_is_one_line_naming_it(tmp_path, capsys):
    """An output under a file (or a read-only folder, a full disk): one line naming the file the
    user asked for (it was a traceback naming the temporary file beside it)."""
    from mmalign.cli import main

    src = tmp_path / "ours.jsonl"
    write_records(src, [Record("a", "", "Q", chosen="a red car", rejected="a blue car")])
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "release.json"
    assert main(["pairs-export", str(src), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"mmalign: error: {out}: a file stands where its folder should be"


@pytest.mark.parametrize("command", ["pairs-import", "pairs-export"])
def test_no_usable_line_writes_nothing_and_fails(tmp_path, capsys, command):
    """Every line skipped: the command wrote an empty file over what `--out` held and exited 0."""
    from mmalign.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text('{"question": "Q"}\n' if command == "pairs-import" else '{"prompt": "p"}\n')
    out = tmp_path / ("o.jsonl" if command == "pairs-import" else "o.json")
    out.write_text("what an earlier run wrote\n")
    assert main([command, str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"mmalign: error: {src}: no usable records (1 skipped): top reasons:" in err
    assert out.read_text() == "what an earlier run wrote\n"


@pytest.mark.parametrize("command", ["pairs-import", "pairs-export"])
def test_out_naming_the_input_is_refused_and_the_input_kept(tmp_path, monkeypatch, capsys, command):
    """`--out` the input file itself (here through a link): the conversion replaced the file it read."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.mp4").write_bytes(b"x")
    write_records(tmp_path / "ours.jsonl", [Record("a", "", "Q", video=str(tmp_path / "v.mp4"), chosen="a red car",
                                                   rejected="a blue car")])
    src = "ours.jsonl"
    if command == "pairs-import":
        assert main(["pairs-export", "ours.jsonl", "--out", "release.jsonl"]) == 0
        src = "release.jsonl"
    before = (tmp_path / src).read_text()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / src)
    capsys.readouterr()
    assert main([command, src, "--out", "link.jsonl"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mmalign: error: --out link.jsonl: is the input file; write the converted records elsewhere")
    assert (tmp_path / src).read_text() == before


def test_import_media_root_that_is_not_there_is_refused_and_missing_media_name_it(tmp_path, monkeypatch, capsys):
    """A misspelt --media-root wrote every record pointing at nothing (exit 0); with
    --check-media, the fix hint named the record file's folder, which import does not use."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    row = {"question": "Q", "answer": "a red car", "pred": "a blue car", "answer_masked": "a <MASK> red </MASK> car",
           "pred_masked": "a <MASK> blue </MASK> car", "sample_id": 1, "media_path": "v1.mp4"}
    (tmp_path / "release.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["pairs-import", "release.jsonl", "--out", "o.jsonl", "--media-root", "medai"]) == 2
    assert capsys.readouterr().err.strip() == "mmalign: error: --media-root medai: no such folder"
    assert not (tmp_path / "o.jsonl").exists()
    (tmp_path / "media").mkdir()
    assert main(["pairs-import", "release.jsonl", "--out", "o.jsonl", "--media-root", "media", "--check-media"]) == 2
    err = capsys.readouterr().err
    assert f"[fix: the release's media paths are read under --media-root {tmp_path / 'media'}]" in err
