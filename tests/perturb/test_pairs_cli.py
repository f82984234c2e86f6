"""`mmalign pairs` from the command line: shipped configs, a kill -9 and resume, and one run
with the real tiny model whose records the trainer reads and replays."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmalign.config import ConfigError
from mmalign.perturb.config import build_pairs_config, load_pairs_config, needs_model
from mmalign.perturb.run import run_pairs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "pairs").glob("*.yaml"))


def cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "mmalign.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=300)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_pairs_config(path)
    assert cfg.generator == path.stem
    # the quickstart's SFT model: readable answers on a CPU (the random tiny preset writes noise)
    assert cfg.model.path == "runs/quickstart/stage0-sft/final" and cfg.model.tiny is None


def test_shipped_configs_cover_the_generators():
    assert {p.stem for p in CONFIGS} >= {"temple", "rrpo", "apasi", "ospo"}
    assert not needs_model(load_pairs_config(ROOT / "configs/pairs/inject.yaml"))


def test_config_mistakes_name_the_key():
    with pytest.raises(ConfigError, match="did you mean 'magnitudes'"):
        build_pairs_config({"temple": {"magnitude": [2]}})
    with pytest.raises(ConfigError, match=r"video.perturbations\[0\].name: 'blurr'.*did you mean 'blur'"):
        build_pairs_config({"video": {"perturbations": [{"name": "blurr", "strength": 0.5}]}})
    with pytest.raises(ConfigError, match="rrpo.mask_area"):
        build_pairs_config({"rrpo": {"mask_area": [0.6, 0.3]}})
    with pytest.raises(ConfigError, match="set model.path"):
        run_pairs(build_pairs_config({"generator": "rrpo"}), ROOT, ROOT / "never.jsonl")  # no model named


def test_help_lists_the_config_keys():
    proc = cli("pairs", "--help")
    assert proc.returncode == 0 and "temple.magnitudes" in proc.stdout and "apasi.replace_rates" in proc.stdout


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_records(world, tmp_path):
    config = ROOT / "configs" / "pairs" / "inject.yaml"
    common = ["pairs", "--videos", world / "videos", "--config", config, "--quiet", "videos_per_batch=2"]
    full = cli(*common, "--out", tmp_path / "full.jsonl")
    assert full.returncode == 0, full.stderr[-2000:]
    out = tmp_path / "resumed.jsonl"
    killed = cli(*common, "--out", out, env={"MMALIGN_KILL_AFTER_VIDEOS": "3"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists()
    done = [json.loads(l) for l in (tmp_path / "resumed.jsonl.parts" / "pairs-000-of-001.jsonl").read_text().splitlines()]
    assert sum(len(b["videos"]) for b in done) == 4  # two batches of two, then the kill
    resumed = cli(*common, "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["this_run"]["videos_processed"] == 2  # only the rest
    assert out.read_text() == (tmp_path / "full.jsonl").read_text()


def test_real_tiny_model_end_to_end(world, tmp_path):
    out = world / "rrpo_pairs.jsonl"
    proc = cli("pairs", "--videos", world / "videos", "--config", ROOT / "configs" / "pairs" / "rrpo.yaml",
               "--out", out, "--quiet", "model.path=null", "model.tiny=qwen2_5_vl", f"model.tiny_dir={tmp_path / 'tiny'}",
               "generation.max_new_tokens=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loading weights" not in proc.stderr  # --quiet silences transformers' bars too
    from mmalign.config import SamplingConfig
    from mmalign.data.encode import condition_video
    from mmalign.data.video import MediaLoader
    from mmalign.data.records import read_records
    from mmalign.data.video import load_video
    from mmalign.data.video_ops import apply_ops

    records, skipped = read_records(out, "pair")
    report = json.loads(out.with_name("rrpo_pairs.report.json").read_text())
    assert skipped == [] and len(records) == report["records"] >= 1
    assert len(records) + sum(report["filtered"].values()) == 6
    loader = MediaLoader(SamplingConfig(num_frames=8))
    for r in records:
        assert r.meta["generator"] == "perturb.rrpo" and r.rejected_spans
        # the trainer replays the condition exactly as the generator saw it
        replayed = condition_video(loader, r.rejected_video, r).frames
        from mmalign.perturb.pair import op_seed
        expected = apply_ops(load_video(r.video, num_frames=8).frames, r.rejected_video["ops"], op_seed(r.id))
        assert np.array_equal(replayed, expected)
    # a clip sampled to another length would move the frame-indexed ops: the record is refused
    with pytest.raises(ValueError, match=r"made on a 8-frame clip .* sampling.num_frames=8"):
        condition_video(MediaLoader(SamplingConfig(num_frames=4)), records[0].rejected_video, records[0])


def test_pairs_written_next_to_the_videos_train_as_they_are(world, tmp_path):
    """The output of `mmalign pairs` fed to `mmalign train`: relative media paths, no flag."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(world / "videos", raw / "videos")
    shutil.copytree(world / "truth", raw / "truth")
    out = raw / "pairs.jsonl"
    proc = cli("pairs", "--videos", raw / "videos", "--config", ROOT / "configs" / "pairs" / "inject.yaml",
               "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(not json.loads(line)["video"].startswith("/") for line in out.read_text().splitlines())
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"method: mask_dpo\noutput_dir: {tmp_path / 'run'}\nmodel: {{tiny: qwen2_5_vl, tiny_dir: "
                   f"{tmp_path / 'tiny'}}}\ndata: {{train_file: {out}}}\nsampling: {{num_frames: 4}}\n"
                   "train: {max_steps: 1, batch_size: 2}\n")
    trained = subprocess.run([sys.executable, "-m", "mmalign.cli", "train", str(cfg)], capture_output=True, text=True,
                             timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]["mask_dpo"]["skipped"] == 0


def test_zero_pairs_exit_nonzero_with_the_reasons(world, tmp_path):
    videos = tmp_path / "videos"
    import shutil

    shutil.copytree(world / "videos", videos)  # no truth files beside them
    proc = cli("pairs", "--videos", videos, "--config", ROOT / "configs" / "pairs" / "inject.yaml",
               "--out", tmp_path / "p.jsonl", "--quiet")
    assert proc.returncode == 1
    assert "no pair was written" in proc.stderr and "video skipped: answers: truth, but the video has no truth file" \
        in proc.stderr


def test_rerun_after_the_model_is_retrained_in_place_does_not_reuse_its_old_answers(world, tmp_path, capsys):
    from mmalign.cli import main
    from mmalign.models.tiny import build_tiny

    model = build_tiny("qwen2_5_vl", tmp_path / "final", seed=0)
    args = ["pairs", "--videos", str(world / "videos"), "--config", str(ROOT / "configs" / "pairs" / "rrpo.yaml"),
            "--out", str(tmp_path / "pairs.jsonl"), "--quiet", f"model.path={model}", "generation.max_new_tokens=4"]
    assert main(args) == 0
    claimed = json.loads((tmp_path / "pairs.jsonl.parts" / "run.json").read_text())
    assert claimed["model_weights"]["model"].startswith("1 file(s), ")
    assert main(args) == 0  # the same weights: the finished run is reused

    build_tiny("qwen2_5_vl", model, seed=1)  # "retrained" into the same folder
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmalign: error: ") and "model_weights.model" in err and "--restart" in err
    assert len(err.splitlines()) == 1
    assert main(args + ["--restart"]) == 0
    run_json = tmp_path / "pairs.jsonl.parts" / "run.json"
    restarted = json.loads(run_json.read_text())
    assert restarted["model_weights"] != claimed["model_weights"]
    del restarted["model_weights"]  # as an older mmalign claimed it: that run still resumes
    run_json.write_text(json.dumps(restarted))
    assert main(args) == 0


def test_out_naming_a_folder_is_refused_before_any_video_is_answered(world, tmp_path, capsys):
    """`--out runs/pairs/` (a folder): the run answered every video, then failed to write, naming
    a temporary file; its progress lay in a .parts folder no later run with a file name reads."""
    from mmalign.cli import main

    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["pairs", "--videos", str(world / "videos"), "--config", str(ROOT / "configs/pairs/rrpo_qa.yaml"),
                 "--out", str(folder), "--quiet", "model.tiny=qwen2_5_vl", "model.path=null"]) == 2
    assert capsys.readouterr().err.strip() == (f"mmalign: error: --out {folder}: a folder; name the JSONL file to "
                                               f"write in it, e.g. {folder / 'pairs.jsonl'}")
    assert not Path(f"{folder}.parts").exists()
    ours = {"prompt": "Q", "chosen": "a red car", "rejected": "a blue car"}
    release = {"question": "Q", "answer": "a red car", "pred": "a blue car", "answer_masked": "a <MASK> red </MASK> car",
               "pred_masked": "a <MASK> blue </MASK> car", "sample_id": 1}
    for command, row in (("pairs-export", ours), ("pairs-import", release)):  # one file written at the end
        records = tmp_path / "r.jsonl"
        records.write_text(json.dumps(row) + "\n")
        assert main([command, str(records), "--out", str(folder)]) == 2
        assert capsys.readouterr().err.strip() == f"mmalign: error: {folder}: Is a directory"
        assert list(tmp_path.glob(".out.*")) == []


def test_a_model_path_that_is_no_checkpoint_claims_no_progress_folder(world, tmp_path, capsys):
    """The model was checked when it loaded, after the run had claimed <out>.parts: the rerun
    with the mended path was refused ("holds a run with a different config.model.path") until
    --restart."""
    from mmalign.cli import main

    for config, key, more in (("temple", "model.path", []),
                              ("rrpo_qa", "rrpo_qa.judge_model", ["model.path=null", "model.tiny=qwen2_5_vl"])):
        argv = ["pairs", "--videos", str(world / "videos"), "--config", str(ROOT / f"configs/pairs/{config}.yaml"),
                "--out", str(tmp_path / "p.jsonl"), "--quiet", *more, f"{key}={tmp_path / 'nope'}"]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"mmalign: error: {key}: {tmp_path / 'nope'}: no such folder"
        assert list(tmp_path.iterdir()) == []


def test_a_truth_setting_on_videos_without_truth_says_which_setting_reads_the_model_instead(world, tmp_path, capsys):
    """Real videos have no truth files: the shipped configs' truth settings skip every one, and
    the reason now names the setting that asks the model (or a QA file) instead."""
    import shutil

    from mmalign.cli import main

    videos = tmp_path / "videos"
    shutil.copytree(world / "videos", videos)  # no truth files beside them
    for config, fix in (("temple", "temple.clip_captions=model"), ("rrpo_qa", "rrpo_qa.questions=qa.jsonl"),
                        ("inject", "answers=model")):
        assert main(["pairs", "--videos", str(videos), "--config", str(ROOT / "configs" / "pairs" / f"{config}.yaml"),
                     "--out", str(tmp_path / f"{config}.jsonl"), "--quiet", "model.path=null",
                     "model.tiny=qwen2_5_vl", f"model.tiny_dir={tmp_path / 'tiny'}"]) == 1
        err = capsys.readouterr().err
        assert f"{len(list(videos.iterdir()))} x video skipped:" in err and fix in err, (config, err[-600:])


def test_no_pair_without_a_reason_does_not_say_no_video_was_found():
    """Videos read, no candidate made and none dropped: the explanation said "(no video found)"."""
    from mmalign.perturb.cli import top_reasons

    assert top_reasons({"videos": 3, "skipped": [], "filtered": {}}) == "  (no candidate pair was made, and none dropped)"
    assert top_reasons({"videos": 0, "skipped": [], "filtered": {}}) == "  (no video found)"
