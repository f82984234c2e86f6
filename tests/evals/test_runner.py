"""The generation runner with a stand-in for `generate`: a killed run resumes without
regenerating finished items, shards cover every item once and merge in order, missing media
is recorded per item while the batch goes on, and changed settings are not mixed in."""

import re

import pytest
from eval_helpers import make_cfg

from mmalign.evals.benchmarks import Item
from mmalign.evals.runner import (RunMismatch, check_settings, generate_predictions, merged_predictions, read_predictions,
                          shard_path)


class FakeGenerate:
    """Answers "answer to <prompt>"; records every batch; can die on the Nth call."""

    def __init__(self, die_on_call=None):
        self.batches, self.die_on_call = [], die_on_call

    def __call__(self, model, processor, prompts, max_new_tokens, do_sample, system):
        assert do_sample is False  # greedy
        if self.die_on_call == len(self.batches) + 1:
            raise KeyboardInterrupt("killed")
        self.batches.append([p.text for p in prompts])
        return [[f" answer to {p.text} "] for p in prompts]

    @property
    def prompts(self):
        return [t for b in self.batches for t in b]


class Shard:
    def __init__(self, index, count):
        self.process_index, self.num_processes = index, count
        self.is_main_process = self.is_local_main_process = index == 0


def text_items(n):
    return [Item(id=f"q{i}", prompt=f"question {i}", target="yes", category="c") for i in range(n)]


CFG = make_cfg("synthetic", generation={"batch_size": 3})


def loader():
    return "model", "processor"


def test_killed_run_resumes_without_regenerating(tmp_path):
    items = text_items(8)
    dying = FakeGenerate(die_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        generate_predictions(items, tmp_path, loader, CFG, generate_fn=dying)
    assert len(read_predictions(tmp_path)) == 6  # two batches of 3 were written before the kill
    again = FakeGenerate()
    assert generate_predictions(items, tmp_path, loader, CFG, generate_fn=again) == 2
    assert again.prompts == ["question 6", "question 7"]
    rows = merged_predictions(items, tmp_path)
    assert [r["id"] for r in rows] == [it.id for it in items]
    assert rows[0]["prediction"] == "answer to question 0"  # stripped
    never = FakeGenerate()
    loads = []
    assert generate_predictions(items, tmp_path, lambda: loads.append(1), CFG, generate_fn=never) == 0
    assert never.batches == [] and loads == []  # finished: the model is not even loaded


def test_a_torn_last_line_is_regenerated(tmp_path):
    items = text_items(3)
    generate_predictions(items, tmp_path, loader, CFG, generate_fn=FakeGenerate())
    path = shard_path(tmp_path, 0, 1)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:15])  # killed mid-write
    again = FakeGenerate()
    generate_predictions(items, tmp_path, loader, CFG, generate_fn=again)
    assert again.prompts == ["question 2"]


def test_shards_cover_every_item_once_and_merge_in_order(tmp_path):
    items = text_items(7)
    fakes = [FakeGenerate(), FakeGenerate()]
    for index, fake in enumerate(fakes):
        generate_predictions(items, tmp_path, loader, CFG, process=Shard(index, 2), generate_fn=fake)
    assert fakes[0].prompts == [f"question {i}" for i in (0, 2, 4, 6)]
    assert fakes[1].prompts == [f"question {i}" for i in (1, 3, 5)]
    assert [r["id"] for r in merged_predictions(items, tmp_path)] == [it.id for it in items]
    single = FakeGenerate()
    assert generate_predictions(items, tmp_path, loader, CFG, generate_fn=single) == 0  # other process count


def test_changed_prompt_is_regenerated(tmp_path):
    items = text_items(2)
    generate_predictions(items, tmp_path, loader, CFG, generate_fn=FakeGenerate())
    items[1].prompt = "question 1, reworded"
    again = FakeGenerate()
    generate_predictions(items, tmp_path, loader, CFG, generate_fn=again)
    assert again.prompts == ["question 1, reworded"]


def test_missing_media_is_recorded_and_the_batch_goes_on(tmp_path):
    items = text_items(3)
    items[1].media, items[1].media_kind = str(tmp_path / "gone.mp4"), "video"
    fake = FakeGenerate()
    generate_predictions(items, tmp_path / "out", loader, CFG, generate_fn=fake)
    assert fake.prompts == ["question 0", "question 2"]
    rows = merged_predictions(items, tmp_path / "out")
    assert rows[1]["prediction"] is None and "gone.mp4: file not found" in rows[1]["error"]
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    items[1].media = str(tmp_path / "bad.mp4")
    retry = FakeGenerate()
    generate_predictions(items, tmp_path / "out", loader, CFG, generate_fn=retry)
    assert retry.batches == []  # tried again (a media error is not "done"), failed again, nothing generated
    assert "not a readable video" in merged_predictions(items, tmp_path / "out")[1]["error"]


def test_system_message_reaches_generate(tmp_path):
    items = text_items(2)
    for it in items:
        it.system = "Be brief."
    seen = []

    def fake(model, processor, prompts, max_new_tokens, do_sample, system):
        seen.append(system)
        return [["x"] for _ in prompts]

    generate_predictions(items, tmp_path, loader, CFG, generate_fn=fake)
    assert seen == ["Be brief."]


def test_other_settings_are_not_mixed_in(tmp_path):
    items = text_items(2)
    check_settings(tmp_path, {"max_new_tokens": 8}, overwrite=False)
    generate_predictions(items, tmp_path, loader, CFG, generate_fn=FakeGenerate())
    check_settings(tmp_path, {"max_new_tokens": 8}, overwrite=False)  # same: fine
    with pytest.raises(RunMismatch, match="max_new_tokens"):
        check_settings(tmp_path, {"max_new_tokens": 16}, overwrite=False)
    check_settings(tmp_path, {"max_new_tokens": 16}, overwrite=True)
    assert read_predictions(tmp_path) == {}


def test_resuming_after_a_torn_line_appends_after_the_last_complete_line(tmp_path):
    """A kill mid-write leaves torn bytes at the end of the shard; the resumed run cuts them
    before appending, so every line of the file is a whole prediction afterwards."""
    import json

    items = text_items(4)
    generate_predictions(items[:2], tmp_path, loader, CFG, generate_fn=FakeGenerate())
    path = shard_path(tmp_path, 0, 1)
    path.write_bytes(path.read_bytes() + b'{"id": "q2", "prompt": "quest')
    generate_predictions(items, tmp_path, loader, CFG, generate_fn=FakeGenerate())
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]


def test_a_garbage_line_is_named_skipped_and_regenerated(tmp_path, capsys):
    items = text_items(3)
    generate_predictions(items, tmp_path, loader, CFG, generate_fn=FakeGenerate())
    path = shard_path(tmp_path, 0, 1)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage!", lines[2]]) + "\n")
    again = FakeGenerate()
    assert generate_predictions(items, tmp_path, loader, CFG, generate_fn=again) == 1
    assert again.prompts == ["question 1"]
    assert f"{path}:2: not a prediction row" in capsys.readouterr().err


def video_items(world, n):
    videos = sorted((world / "videos").glob("*.mp4"))[:n]
    return [Item(id=f"v{i}", prompt=f"question {i}", target="yes", category="c", media=str(v), media_kind="video")
            for i, v in enumerate(videos)]


def test_the_next_batch_decodes_while_this_one_generates(tmp_path, world, monkeypatch):
    """The model never waits for the CPU between batches: batch 2's video is being decoded (in
    a worker process, which leaves a mark) before batch 1's generation returns. The old runner
    decoded it only afterwards."""
    import time

    import mmalign.data.video as video

    items = video_items(world, 4)  # batches of 3: [v0 v1 v2] [v3]
    mark = tmp_path / "second batch decoding"
    real = video.MediaLoader.video

    def watched(self, path):
        if path == items[3].media:
            mark.touch()
        return real(self, path)

    monkeypatch.setattr(video.MediaLoader, "video", watched)  # forked workers inherit it
    seen = []

    def generate(model, processor, prompts, max_new_tokens, do_sample, system):
        deadline = time.time() + 20
        while not seen and not mark.exists() and time.time() < deadline:
            time.sleep(0.05)
        seen.append(mark.exists())
        return [["yes"] for _ in prompts]

    generate_predictions(items, tmp_path / "out", loader, CFG, generate_fn=generate)
    assert seen == [True, True]
    assert [r["prediction"] for r in merged_predictions(items, tmp_path / "out")] == ["yes"] * 4


def test_decoding_ahead_changes_no_answer_or_error(tmp_path, world):
    """In worker processes or in turn: the same frames reach the model, the same media errors
    are recorded, paired questions on one video decode it once per batch."""
    items = video_items(world, 5)
    items.insert(2, Item(id="shared", prompt="again", target="no", category="c", media=items[0].media,
                         media_kind="video"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    items.append(Item(id="bad", prompt="q", target="yes", category="c", media=str(tmp_path / "bad.mp4"),
                      media_kind="video"))

    def frames_digest(model, processor, prompts, max_new_tokens, do_sample, system):
        import hashlib

        return [[hashlib.sha1(p.video.frames.tobytes()).hexdigest()] for p in prompts]

    rows = {}
    for workers in (0, 4):
        cfg = make_cfg("synthetic", generation={"batch_size": 3, "decode_workers": workers})
        generate_predictions(items, tmp_path / str(workers), loader, cfg, generate_fn=frames_digest)
        # the decoder's message names its context's address, which differs per attempt
        rows[workers] = [{**r, "error": re.sub(r"0x[0-9a-f]+", "0x", r["error"] or "")}
                         for r in merged_predictions(items, tmp_path / str(workers))]
    assert rows[0] == rows[4]
    assert rows[4][0]["prediction"] == rows[4][2]["prediction"]  # the shared video
    assert rows[4][-1]["prediction"] is None and "not a readable video" in rows[4][-1]["error"]


def test_a_bug_while_decoding_ahead_still_stops_the_run(tmp_path, world, monkeypatch):
    import mmalign.data.video as video

    def broken(self, path):
        raise KeyError("a bug, not a media error")

    monkeypatch.setattr(video.MediaLoader, "video", broken)
    with pytest.raises(KeyError, match="a bug"):
        generate_predictions(video_items(world, 2), tmp_path, loader, CFG, generate_fn=FakeGenerate())
