"""The trainer end to end on the tiny Qwen2.5-VL and the synthetic world."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmalign.config import build_config
from mmalign.io import iter_jsonl
from mmalign.train.run import RunExists, train


def config(tmp_path, world, tiny_dir, **over):
    raw = {"output_dir": str(tmp_path / "run"), "method": "dpo",
           "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
           "data": {"train_file": str(world / "pairs_train.jsonl")}, "sampling": {"num_frames": 4},
           "train": {"batch_size": 2, "lr": 1e-3, "max_steps": 6, "save_every": 3, "warmup_ratio": 0.0}}
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return raw


def metrics(run: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(run / "metrics.jsonl")]


def run_cli(raw: dict, tmp_path: Path, *extra, env=None) -> subprocess.CompletedProcess:
    path = tmp_path / f"cfg-{len(list(tmp_path.glob('cfg-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "mmalign.cli", "train", str(path), *extra],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600)


def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path, world, tiny_dir):
    full = config(tmp_path / "a", world, tiny_dir)
    train(build_config(full))
    expected = metrics(Path(full["output_dir"]))
    assert [r["step"] for r in expected] == [1, 2, 3, 4, 5, 6]

    killed = config(tmp_path / "b", world, tiny_dir)
    proc = run_cli(killed, tmp_path, env={"MMALIGN_KILL_AFTER_STEP": "5"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = Path(killed["output_dir"])
    assert [r["step"] for r in metrics(run)] == [1, 2, 3, 4, 5]  # step 5 logged, its checkpoint never written
    proc = run_cli(killed, tmp_path, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = metrics(run)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(expected, resumed):
        for key in ("loss", "rewards/margin", "rewards/accuracy", "grad_norm", "lr"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key)
    final = run / "final"
    from transformers import AutoModelForImageTextToText
    assert AutoModelForImageTextToText.from_pretrained(final).config.model_type == "qwen2_5_vl"
    from PIL import Image

    with Image.open(run / "metrics.png") as png:  # the curves of the whole run, resumed or not
        assert png.format == "PNG" and png.size[0] > png.size[1] > 100


def test_existing_run_needs_resume(tmp_path, world, tiny_dir):
    raw = config(tmp_path, world, tiny_dir, train={"max_steps": 1, "batch_size": 2})
    train(build_config(raw))
    with pytest.raises(RunExists, match="--resume"):
        train(build_config(raw))


def test_resume_with_other_settings_or_records_is_refused_and_names_them(tmp_path, world, tiny_dir):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({**r, "video": str(world / r["video"])}) + "\n"
                             for _, r in iter_jsonl(world / "pairs_train.jsonl")))
    data = {"train_file": str(pairs), "allow_absolute_paths": True}
    raw = config(tmp_path, world, tiny_dir, data=data, train={"max_steps": 1, "batch_size": 2, "lr": 1e-3})
    train(build_config(raw))
    proc = run_cli(raw, tmp_path, "--resume", "train.lr=2e-3")  # an override may follow the flag
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mmalign: error: ")
    assert "run.json: --resume with other settings: train.lr (was 0.001, now 0.002)" in err
    # how often things are written may change; the run's own settings are kept
    quieter = config(tmp_path, world, tiny_dir, data=data,
                     train={"max_steps": 1, "batch_size": 2, "lr": 1e-3, "log_every": 5})
    train(build_config(quieter), resume=True)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["lr"] == 1e-3
    # the same path with other records in it (pairs regenerated into the same file)
    pairs.write_text("".join(pairs.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(RunExists, match=f"{pairs}: other records"):
        train(build_config(raw), resume=True)


def test_resume_of_a_staged_config_names_the_stage_whose_override_changed(tmp_path):
    from mmalign.config import load_config
    from mmalign.train.run import check_same_run, run_identity

    quickstart = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
    (tmp_path / "run.json").write_text(json.dumps(run_identity(load_config(quickstart))))
    check_same_run(tmp_path, run_identity(load_config(quickstart, ["stages.rrpo.train.save_every=10"])))
    with pytest.raises(RunExists, match=r"rrpo\.loss\.beta \(was 0\.1, now 0\.2\)"):
        check_same_run(tmp_path, run_identity(load_config(quickstart, ["stages.rrpo.loss.beta=0.2"])))
    # typed: the file's 5.0e-4 and the command line's 5e-4 are the same lr
    check_same_run(tmp_path, run_identity(load_config(quickstart, ["stages.rrpo.train.lr=5e-4"])))
    with pytest.raises(RunExists, match=r"rrpo\.train\.lr \(was 0\.0005, now 0\.0001\)"):
        check_same_run(tmp_path, run_identity(load_config(quickstart, ["stages.rrpo.train.lr=1e-4"])))


def test_bad_records_are_skipped_counted_and_the_run_goes_on(tmp_path, world, tiny_dir):
    good = [json.loads(line) for line in (world / "pairs_train.jsonl").read_text().splitlines()][:4]
    for r in good:
        r["video"] = str(world / r["video"])
    data = tmp_path / "data"
    data.mkdir()
    (data / "corrupt.mp4").write_bytes(b"\x00\x00\x00 ftypisom" + os.urandom(500))
    bad = [
        {**good[0], "id": "corrupt-video", "video": "corrupt.mp4"},
        {**good[0], "id": "missing-video", "video": "nope.mp4"},
        {**good[1], "id": "same", "rejected": good[1]["chosen"]},
        {**good[2], "id": "empty", "chosen": ""},
        {**good[3], "id": "span-out", "chosen_spans": [[0, 10_000]]},
    ]
    lines = [json.dumps(r) for r in good[:2]] + ["{not json"] + [json.dumps(r) for r in bad] + \
        [json.dumps(r) for r in good[2:]]
    (data / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    raw = config(tmp_path, world, tiny_dir, method="rrpo", allow=None)
    raw.pop("allow")
    raw["data"].update(train_file=str(data / "pairs.jsonl"), allow_absolute_paths=True)
    raw["train"].update(max_steps=None, epochs=1, save_every=0)
    summary = train(build_config(raw))["rrpo"]
    reasons = {s["id"]: s["reason"] for s in summary["skipped_records"]}
    assert summary["records"] == 4  # those that trained: the corrupt video, found when decoded, is not one
    assert set(reasons) >= {"corrupt-video", "missing-video", "same", "empty", "span-out"}
    assert summary["skipped"] == 6  # the five above plus the malformed line (no id)
    assert any("pairs.jsonl:3" in s["source"] for s in summary["skipped_records"])
    assert summary["steps"] >= 2


def test_strict_turns_a_skip_into_a_failure(tmp_path, world, tiny_dir):
    rows = [json.loads(line) for line in (world / "pairs_train.jsonl").read_text().splitlines()][:3]
    for r in rows:
        r["video"] = str(world / r["video"])
    rows[1]["video"] = str(tmp_path / "missing.mp4")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = config(tmp_path, world, tiny_dir)
    raw["data"].update(train_file=str(tmp_path / "pairs.jsonl"), allow_absolute_paths=True)
    proc = run_cli(raw, tmp_path, "--strict")
    assert proc.returncode == 2
    assert "pairs.jsonl:2" in proc.stderr and "missing.mp4" in proc.stderr


def test_nan_steps_are_skipped_then_the_run_stops(tmp_path, world, tiny_dir):
    raw = config(tmp_path, world, tiny_dir, train={"max_steps": 6, "batch_size": 2, "lr": 1e30,
                                                   "max_bad_steps": 2, "warmup_ratio": 0.0})
    # A learning rate of 1e30 makes the weights overflow after the first update: from then on every loss
    # is NaN; the guard skips those steps and stops after two in a row.
    with pytest.raises(FloatingPointError, match="2 consecutive steps"):
        train(build_config(raw))
    rows = metrics(Path(raw["output_dir"]))
    assert [r.get("nonfinite_step_skipped", False) for r in rows] == [False, True, True]
    assert not (Path(raw["output_dir"]) / "final").exists()  # nothing written from a NaN state


def test_max_steps_beyond_the_epochs_runs_every_step(tmp_path, world, tiny_dir):
    """train.max_steps overrides epochs (as in transformers' Trainer): the records are visited
    again until the last step, and the schedule reaches its end there."""
    n_records = sum(1 for _ in iter_jsonl(world / "pairs_train.jsonl"))
    steps = n_records // 2 + 3  # past the end of the one configured epoch at batch size 2
    raw = config(tmp_path, world, tiny_dir, train={"max_steps": steps, "epochs": 1, "batch_size": 2, "lr": 1e-3,
                                                   "save_every": 0, "warmup_ratio": 0.0})
    train(build_config(raw))
    rows = metrics(Path(raw["output_dir"]))
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert rows[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the decay ends at the last step


def test_bad_media_is_a_skipped_batch_counted_once_per_record(tmp_path, world, tiny_dir):
    """First batches that are all 0-byte videos are skipped batches, not NaN steps; over three
    epochs each bad record is counted once, and `records` counts only those that trained."""
    rows = [json.loads(line) for line in (world / "pairs_train.jsonl").read_text().splitlines()][:4]
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    (data / "videos" / "empty.mp4").write_bytes(b"")
    import shutil

    for r in rows:
        shutil.copy(world / r["video"], data / "videos" / Path(r["video"]).name)
        r["video"] = f"videos/{Path(r['video']).name}"
    bad = [{**rows[0], "id": f"bad{i}", "video": "videos/empty.mp4"} for i in range(2)]
    raw = config(tmp_path, world, tiny_dir, data__train_file=str(data / "pairs.jsonl"), train__epochs=3,
                 train__max_steps=None, train__save_every=0, data__curriculum="ordered")
    for r in bad + rows:
        r["difficulty"] = 0.0 if r["id"].startswith("bad") else 1.0
    (data / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in bad + rows) + "\n")
    summary = train(build_config(raw))["dpo"]
    rows_logged = metrics(tmp_path / "run")
    assert not any(r.get("nonfinite_step_skipped") for r in rows_logged)
    assert (summary["skipped"], summary["records"]) == (2, 4)
    (reason, n), = summary["skipped_by_reason"].items()
    assert n == 2 and reason.endswith("empty file (0 bytes)")


def test_loader_workers_train_the_same_steps_as_the_main_process(tmp_path, world, tiny_dir):
    """train.num_workers (the GPU configs decode videos in 6 workers, as RRPO's run.sh) hands
    the trainer the same batches in the same order: the same losses step by step, RRPO's spans
    and a corrupt video's skip included."""
    rows = [json.loads(line) for line in (world / "pairs_train.jsonl").read_text().splitlines()][:9]
    (tmp_path / "empty.mp4").write_bytes(b"")
    for r in rows:
        r["video"] = str(world / r["video"])
    rows.insert(3, {**rows[0], "id": "bad", "video": str(tmp_path / "empty.mp4")})
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runs = []
    for workers in (0, 2):
        raw = config(tmp_path / f"w{workers}", world, tiny_dir, method="rrpo", data={
            "train_file": str(tmp_path / "pairs.jsonl"), "allow_absolute_paths": True},
            train={"batch_size": 2, "lr": 1e-3, "max_steps": 5, "save_every": 0, "warmup_ratio": 0.0,
                   "num_workers": workers})
        summary = train(build_config(raw))["rrpo"]
        runs.append((metrics(Path(raw["output_dir"])), summary["skipped"]))
    (main, skipped), (workers, skipped_in_workers) = runs
    assert [r["step"] for r in workers] == [r["step"] for r in main] == [1, 2, 3, 4, 5]
    assert skipped == skipped_in_workers == 1
    for a, b in zip(main, workers):
        for key in ("loss", "rewards/margin", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["step"], key)


def test_a_full_disk_names_the_checkpoint_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    import errno

    import torch

    import mmalign.train.checkpoint as ck

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    ck.save_checkpoint(tmp_path, model, opt, sched, {"step": 1})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(ck.CheckpointWriteError, match=r"step-0000002: writing the checkpoint failed \(No space left on "
                                                      r"device\); earlier checkpoints are intact: step-0000001"):
        ck.save_checkpoint(tmp_path, model, opt, sched, {"step": 2})
    assert ck.latest_checkpoint(tmp_path).name == "step-0000001" and not list(tmp_path.glob(".tmp-*"))


def test_a_kill_while_final_is_written_resumes_to_a_finished_run(tmp_path, world, tiny_dir, monkeypatch):
    """summary.json goes first and final/'s DONE marker last: a kill in between leaves a stage
    that --resume runs to the end again, rewriting both (before, summary.json could be missing
    beside a complete final/, and --resume failed)."""
    import mmalign.train.stage as stage

    raw = config(tmp_path, world, tiny_dir, train__max_steps=2, train__save_every=1)
    real = stage.save_final

    def killed(*a, **k):
        raise KeyboardInterrupt("killed while writing final/")

    monkeypatch.setattr(stage, "save_final", killed)
    with pytest.raises(KeyboardInterrupt):
        train(build_config(raw))
    assert (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "final" / "DONE.json").exists()
    monkeypatch.setattr(stage, "save_final", real)
    summary = train(build_config(raw), resume=True)
    assert summary["dpo"]["steps"] == 2 and (tmp_path / "run" / "final" / "DONE.json").exists()


def test_resume_removes_partial_checkpoints_a_kill_left(tmp_path):
    from types import SimpleNamespace

    from mmalign.train.stage import resume

    partial = tmp_path / "checkpoints" / ".tmp-k1ll3d"
    partial.mkdir(parents=True)
    (partial / "trainable.safetensors").write_bytes(b"half a checkpoint")
    accelerator = SimpleNamespace(is_main_process=True, print=print)
    state, latest = resume(tmp_path, True, accelerator, None, None, None, {"step": 0})
    assert latest is None and state == {"step": 0} and not partial.exists()


def test_text_that_cannot_fit_is_refused_before_the_tokenizer(world, tiny_dir, monkeypatch):
    """A response longer than max_length x the longest token's characters cannot fit: refused
    without tokenizing (a 50 MB prompt once took 104 s and 7 GB to find that out)."""
    from mmalign.config import DataConfig, ModelConfig, SamplingConfig
    from mmalign.data.encode import RecordDataset
    from mmalign.data.records import read_records
    from mmalign.models.backbone import family_of, load_backbone

    model, processor = load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=tiny_dir))
    records, _ = read_records(world / "pairs_train.jsonl", "pair")
    r = records[0]
    r.chosen = "word " * 20000
    dataset = RecordDataset([r], processor, family_of(model), "dpo", DataConfig(max_length=512), SamplingConfig())
    calls = []
    monkeypatch.setattr(dataset, "encode", lambda rec: calls.append(rec))
    skipped = dataset[0]
    assert calls == [] and "characters cannot fit in data.max_length=512 tokens" in skipped.reason


def test_training_curves_draw_what_the_method_logs(tmp_path):
    from mmalign.train.curves import plot_curves

    rows = [{"step": s, "loss": 0.7 - 0.1 * s, "lr": 1e-5, "grad_norm": float("nan") if s == 2 else 1.0,
             "rewards/margin": 0.1 * s, "rewards/accuracy": 0.5, "seconds": 0.1} for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')
    drawn = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "metrics.png", "dpo")  # a torn last line, as a kill leaves
    assert drawn == ["loss", "rewards/margin", "rewards/accuracy", "grad_norm", "lr"]  # in CURVES' order; not seconds
    assert (tmp_path / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "empty.jsonl").write_text("")
    assert plot_curves(tmp_path / "empty.jsonl", tmp_path / "none.png", "dpo") == []
    assert not (tmp_path / "none.png").exists()


def test_trl_and_llamafactory_pair_files_train_as_ours(tmp_path, world, tiny_dir):
    """The same pairs in TRL's conversational format (a video part, assistant messages) and in
    LLaMA-Factory's sharegpt format (a <video> placeholder, `videos`; with its {from, value} tags
    or its OpenAI {role, content} ones) train to the same losses as in our schema."""
    trl = tmp_path / "trl.jsonl"
    rows = [json.loads(line) for line in (world / "pairs_train.jsonl").read_text().splitlines()[:8]]
    trl.write_text("".join(json.dumps({
        "video": str(world / r["video"]),
        "prompt": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": r["prompt"]}]}],
        "chosen": [{"role": "assistant", "content": r["chosen"]}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": r["rejected"]}]}]}) + "\n" for r in rows))
    ours = tmp_path / "ours.jsonl"
    ours.write_text("".join(json.dumps({k: (str(world / v) if k == "video" else v) for k, v in r.items()
                                        if k in ("video", "prompt", "chosen", "rejected")}) + "\n" for r in rows))
    llamafactory = tmp_path / "llamafactory.jsonl"
    llamafactory.write_text("".join(json.dumps({
        "videos": [str(world / r["video"])], "conversations": [{"from": "human", "value": "<video>" + r["prompt"]}],
        "chosen": {"from": "gpt", "value": r["chosen"]}, "rejected": {"from": "gpt", "value": r["rejected"]}}) + "\n"
        for r in rows))
    # LLaMA-Factory's OpenAI tags (its multimodal demos' shape): read as TRL's messages, the video
    # went to meta and the pairs trained on the text alone
    openai_tags = tmp_path / "llamafactory_openai.jsonl"
    openai_tags.write_text("".join(json.dumps({
        "videos": [str(world / r["video"])], "messages": [{"role": "user", "content": "<video>" + r["prompt"]}],
        "chosen": {"role": "assistant", "content": r["chosen"]},
        "rejected": {"role": "assistant", "content": r["rejected"]}}) + "\n" for r in rows))
    # LLaMA-Factory's own data files are one pretty-printed JSON array (.json); each line of it
    # was read as a record, and all of them were skipped as invalid JSON
    array = tmp_path / "llamafactory_array.json"
    array.write_text(json.dumps([json.loads(line) for line in llamafactory.read_text().splitlines()], indent=2))
    # a dataset from the Hugging Face hub is Parquet; each row was read as a line of text
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist([json.loads(line) for line in ours.read_text().splitlines()]), parquet)
    runs = []
    for name, path in (("ours", ours), ("trl", trl), ("llamafactory", llamafactory), ("openai_tags", openai_tags),
                       ("array", array), ("parquet", parquet)):
        raw = config(tmp_path / name, world, tiny_dir, train__max_steps=2, train__save_every=0,
                     data={"train_file": str(path), "allow_absolute_paths": True})
        train(build_config(raw))
        runs.append(metrics(Path(raw["output_dir"])))
    assert all([r["step"] for r in run] == [1, 2] for run in runs)
    for a, *others in zip(*runs):
        for b in others:
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)


def test_a_glob_train_file_trains_on_every_file_it_matches(tmp_path, world, tiny_dir, capsys):
    """`data.train_file: "pairs/*/part-*.json*"` (a dataset shipped as many files): the records
    of every file it matches train as one set, a file added to what it matches is other records
    for --resume, and a glob that matches nothing is one line. A folder was, and still is,
    refused, now with the glob that reads it."""
    from mmalign.cli import main
    from mmalign.train.plan import plan

    rows = [{**r, "video": str(world / r["video"])} for _, r in iter_jsonl(world / "pairs_train.jsonl")]
    for part, chunk in enumerate((rows[:30], rows[30:])):
        (tmp_path / "pairs" / f"s{part}").mkdir(parents=True)
        (tmp_path / "pairs" / f"s{part}" / f"part-{part}.json").write_text(json.dumps(chunk, indent=1))
    spec = str(tmp_path / "pairs" / "*" / "part-*.json*")
    raw = config(tmp_path, world, tiny_dir, data={"train_file": spec, "allow_absolute_paths": True},
                 train={"max_steps": 1, "batch_size": 2, "lr": 1e-3})
    assert plan(build_config(raw))["dpo"]["records"] == len(rows)
    train(build_config(raw))
    (tmp_path / "pairs" / "s1" / "part-2.jsonl").write_text(json.dumps(rows[0] | {"id": "new"}) + "\n")
    with pytest.raises(RunExists, match=r"\*/part-\*\.json\*: other records"):
        train(build_config(raw), resume=True)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    capsys.readouterr()  # the runs' progress bars
    for value, error in ((str(tmp_path / "none" / "*.jsonl"), "matches no file"),
                         (str(tmp_path / "pairs"), f"a folder, not a record file (a glob such as "
                                                   f"{tmp_path / 'pairs' / '*.jsonl'} reads the files in it)")):
        assert main(["train", str(path), f"data.train_file={value}", f"output_dir={tmp_path / 'other'}"]) == 2
        assert capsys.readouterr().err.strip() == f"mmalign: error: data.train_file: {value}: {error}"
