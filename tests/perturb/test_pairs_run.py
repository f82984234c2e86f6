"""The runner: records the trainer reads, skipped videos with reasons, resume after a crash
or a torn write, shards, and a config change refused."""

import json
import re
import shutil

import pytest

from mmalign.data.records import read_records
from mmalign.data.video import MediaError
from mmalign.perturb.config import build_pairs_config
from mmalign.perturb.pair import Backend
from mmalign.perturb.run import RunConflict, _Processes, list_videos, report_path, run_pairs

from perturb_stubs import stub_complete, stub_generate, stub_yes_prob


@pytest.fixture
def videos(world, tmp_path):
    """The world's videos and truth, plus a corrupt file, an empty file, and a nested clip."""
    root = tmp_path / "data"
    shutil.copytree(world / "videos", root / "videos")
    shutil.copytree(world / "truth", root / "truth")
    (root / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00 ftypisom" + bytes(range(256)) * 4)
    (root / "videos" / "empty.mp4").write_bytes(b"")
    (root / "videos" / "notes.txt").write_text("not a video")
    (root / "videos" / "sub").mkdir()
    shutil.copy(world / "videos" / "vid0002.mp4", root / "videos" / "sub" / "clip.mp4")
    return root


def cfg(generator="temple", **over):
    raw = {"generator": generator, "videos_per_batch": 2,
           "temple": {"summarizer": "join", "kinds": ["drop", "reverse"], "magnitudes": [2, 8]}}
    raw.update(over)
    return build_pairs_config(raw)


def backend():
    return Backend(stub_generate, stub_complete, stub_yes_prob)


def lines(path):
    return path.read_text().splitlines()


def test_listing_is_sorted_recursive_and_videos_only(videos):
    keys = list_videos(videos / "videos")
    assert keys == sorted(keys) and "notes.txt" not in keys and "sub/clip.mp4" in keys
    assert len(keys) == 6 + 3


def test_output_reads_back_and_unreadable_videos_are_reported(videos):
    out = videos / "pairs.jsonl"
    report = run_pairs(cfg(), videos / "videos", out, backend=backend(), show_progress=False)
    records, skipped = read_records(out, "pair")
    assert skipped == [] and len(records) == report["records"] > 0
    assert [r.video for r in records] == sorted(r.video for r in records)  # in video order
    assert {s["video"] for s in report["skipped"]} == {"broken.mp4", "empty.mp4", "sub/clip.mp4"}
    reasons = {s["video"]: s["reason"] for s in report["skipped"]}
    assert "empty file" in reasons["empty.mp4"] and "not a readable video" in reasons["broken.mp4"]
    assert "no truth file" in reasons["sub/clip.mp4"]  # truth/sub/clip.json does not exist
    assert json.loads(report_path(out).read_text())["records"] == len(records)
    assert json.loads(lines(out)[0])["video"].startswith("videos/")  # relative to the output


def test_strict_stops_at_the_first_unusable_video(videos):
    with pytest.raises(MediaError, match="broken.mp4"):
        run_pairs(cfg(), videos / "videos", videos / "p.jsonl", backend=backend(), strict=True, show_progress=False)


def test_decoding_ahead_gives_the_same_pairs_and_skips_and_may_change_on_resume(videos):
    """generation.decode_workers decode the next batches while the model answers this one: the
    same records byte for byte, the same unreadable videos reported; a run resumed with another
    count continues (it changes when videos decode, not what they give)."""
    model = {"temple": {"summarizer": "model"}}
    outs = {}
    for workers in (0, 3):
        out = videos / f"w{workers}.jsonl"
        report = run_pairs(cfg(**model, generation={"decode_workers": workers}), videos / "videos", out,
                           backend=backend(), show_progress=False)
        # the decoder's message names its context's address, which differs per attempt
        outs[workers] = out.read_bytes(), sorted((s["video"], re.sub(r"0x[0-9a-f]+", "0x", s["reason"]))
                                                 for s in report["skipped"])
    assert outs[0] == outs[3] and outs[3][0] and len(outs[3][1]) == 3
    out = videos / "resumed.jsonl"
    with pytest.raises(Crash):
        run_pairs(cfg(**model), videos / "videos", out, backend=crashing(2), show_progress=False)
    run_pairs(cfg(**model, generation={"decode_workers": 0}), videos / "videos", out, backend=backend(),
              show_progress=False)
    assert out.read_bytes() == outs[0][0]


class Crash(Exception):
    pass


def crashing(after_calls):
    calls = []

    def generate(prompts):
        calls.append(1)
        if len(calls) > after_calls:
            raise Crash()
        return stub_generate(prompts)
    return Backend(generate, stub_complete, stub_yes_prob)


@pytest.mark.parametrize("generator, extra", [("temple", {"temple": {"summarizer": "model"}}),
                                              ("apasi", {"answers": "model"})])
def test_crash_then_rerun_gives_the_uninterrupted_records(videos, generator, extra):
    config = cfg(generator, **extra)
    full = videos / "full.jsonl"
    run_pairs(config, videos / "videos", full, backend=backend(), show_progress=False)
    out = videos / "crashed.jsonl"
    with pytest.raises(Crash):
        run_pairs(config, videos / "videos", out, backend=crashing(2), show_progress=False)
    assert not out.exists()  # nothing half-written
    parts = sorted((videos / "crashed.jsonl.parts").glob("*-000-of-001.jsonl"))
    finished = [row["video"] for line in lines(parts[0]) for row in json.loads(line)["videos"]]
    assert 2 <= len(finished) < 9  # some batches finished before the crash, not all
    with open(parts[0], "a") as f:  # and one more was torn mid-write
        f.write('{"videos": [{"video": "vid0004.mp4", "rec')
    run_pairs(config, videos / "videos", out, backend=backend(), show_progress=False)
    assert out.read_bytes() == full.read_bytes()


def test_shards_together_give_the_single_process_records(videos):
    config = cfg("apasi", answers="model")
    single = videos / "single.jsonl"
    run_pairs(config, videos / "videos", single, backend=backend(), show_progress=False)
    sharded = videos / "sharded.jsonl"
    # Process 1 of 2 first: process 0 merges when it finishes (under accelerate they meet at a barrier).
    for rank in (1, 0):
        run_pairs(config, videos / "videos", sharded, backend=backend(), show_progress=False,
                  processes=_Processes(rank, 2))
    assert sharded.read_bytes() == single.read_bytes()
    parts = sorted(p.name for p in (videos / "sharded.jsonl.parts").iterdir())
    assert "describe-001-of-002.jsonl" in parts and "pairs-000-of-002.jsonl" in parts


def test_a_different_config_is_refused_unless_restarted(videos):
    out = videos / "p.jsonl"
    run_pairs(cfg(), videos / "videos", out, backend=backend(), show_progress=False)
    with pytest.raises(RunConflict, match="temple.magnitudes"):
        run_pairs(cfg(temple={"summarizer": "join", "magnitudes": [4]}), videos / "videos", out, backend=backend(),
                  show_progress=False)
    run_pairs(cfg(videos_per_batch=3), videos / "videos", out, backend=backend(), show_progress=False)  # batching may change
    report = run_pairs(cfg(temple={"summarizer": "join", "magnitudes": [4]}), videos / "videos", out,
                       backend=backend(), restart=True, show_progress=False)
    assert {json.loads(l)["meta"]["m"] for l in lines(out)} == {4} and report["this_run"]["videos_processed"] == 9


def test_videos_outside_the_output_folder_are_named_absolutely(videos, tmp_path):
    out = tmp_path / "elsewhere" / "p.jsonl"
    report = run_pairs(cfg("inject", answers="truth"), videos / "videos", out, backend=backend(), show_progress=False)
    assert report["absolute_media_paths"]
    records, skipped = read_records(out, "pair", allow_absolute_paths=True)
    assert skipped == [] and records[0].video == str(videos / "videos" / "vid0000.mp4")


def test_a_folder_of_links_to_videos_elsewhere_writes_pairs_and_says_how_to_train(videos, tmp_path, capsys):
    """`mmalign pairs --videos work/videos` where the videos are symbolic links into a dataset
    folder (linked in, not copied): every pair was written, then the run ended in a
    RuntimeError traceback, "75 written records do not read back", since the trainer checks
    links by where they lead. Now the records name the videos by their links, the run ends
    well, and says that training needs data.allow_absolute_paths=true."""
    from mmalign.cli import main

    work = tmp_path / "work"
    (work / "videos").mkdir(parents=True)
    for video in sorted((videos / "videos").glob("vid000[0-2].mp4")):
        (work / "videos" / video.name).symlink_to(video)
    shutil.copytree(videos / "truth", work / "truth")
    config = tmp_path / "inject.yaml"
    config.write_text("generator: inject\nanswers: truth\n")
    out = work / "pairs.jsonl"
    assert main(["pairs", "--videos", str(work / "videos"), "--config", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "videos under --videos are symbolic links to files outside the output's folder" in err
    assert "train with data.allow_absolute_paths=true" in err
    records, skipped = read_records(out, "pair", allow_absolute_paths=True)
    assert skipped == [] and {r.video for r in records} == {str(work / "videos" / f"vid000{i}.mp4") for i in range(3)}
    assert json.loads(lines(out)[0])["video"].startswith("videos/")  # by its link, relative
    records, skipped = read_records(out, "pair")  # what training reads without the key
    assert records == [] and all("symbolic link" in s.reason for s in skipped)
    assert json.loads(report_path(out).read_text())["media_links_lead_out"]
