"""Done-markers without a model: a model-free TEMPLE pairs step runs in-process, is skipped on
--resume, and a changed config is refused rather than mixed with the finished step."""

import json
from pathlib import Path

import pytest

from mmalign.config import ConfigError, _build
from mmalign.world import build_world
from mmalign.pipelines.plan import PipelineConfig, expand
from mmalign.pipelines.run import PipelineExists, run_pipeline


def temple_pairs(tmp_path, kinds):
    return _build(PipelineConfig, {
        "output_dir": str(tmp_path / "run"), "model": {"tiny": "qwen2_5_vl"}, "videos": str(tmp_path / "world" / "videos"),
        "stages": [{"name": "pairs", "kind": "pairs", "config": {
            "generator": "temple", "temple": {"clip_captions": "truth", "summarizer": "join", "kinds": kinds}}}]}, "")


def test_finished_steps_are_skipped_and_a_changed_config_is_refused(tmp_path, capsys):
    build_world(tmp_path / "world", n_videos=4, seed=1, show_progress=False)
    cfg = temple_pairs(tmp_path, ["drop", "reverse"])
    summary = run_pipeline(cfg, expand(cfg))
    out = tmp_path / "run" / "00-pairs"
    records = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert sorted({r["difficulty"] for r in records}) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert summary["steps"][0]["numbers"]["records"] == len(records)
    marker = (out / "done.json").stat().st_mtime_ns

    with pytest.raises(PipelineExists, match="--resume"):
        run_pipeline(cfg, expand(cfg))
    run_pipeline(cfg, expand(cfg), resume=True)
    assert "pairs: done before, skipped" in capsys.readouterr().out
    assert (out / "done.json").stat().st_mtime_ns == marker

    changed = temple_pairs(tmp_path, ["drop"])
    plan = (tmp_path / "run" / "plan.json").read_text()
    with pytest.raises(ConfigError, match="made with another config"):
        run_pipeline(changed, expand(changed), resume=True)
    assert (tmp_path / "run" / "plan.json").read_text() == plan  # refused before writing anything


def test_a_pairs_step_that_makes_no_pair_is_one_line_with_the_reasons(tmp_path, capsys):
    """`mmalign run` whose pairs step makes nothing (here: truth captions asked of videos that
    have no truth files): one line with the reasons counted, exit 2 (it was a traceback)."""
    import shutil

    import yaml

    from mmalign.cli import main

    build_world(tmp_path / "world", n_videos=3, seed=1, show_progress=False)
    shutil.copytree(tmp_path / "world" / "videos", tmp_path / "raw")  # the videos alone, no truth beside them
    config = tmp_path / "pipe.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "model": {"tiny": "qwen2_5_vl"}, "videos": str(tmp_path / "raw"),
        "stages": [{"name": "pairs", "kind": "pairs", "config": {
            "generator": "temple", "temple": {"clip_captions": "truth", "summarizer": "join"}}}]}))
    assert main(["run", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mmalign: error: step pairs: no pair was made from 3 video(s) (3 x video skipped: ")
    assert line.endswith(f"see {tmp_path / 'run' / '00-pairs' / 'pairs.report.json'}")


def test_a_command_line_item_on_a_step_is_what_the_step_runs_and_what_the_folder_records(tmp_path):
    """`mmalign run pipe.yaml stages.pairs.config.temple.kinds=[reverse]`: the pairs step makes
    only reversal pairs, and pipeline.yaml in the run folder holds the item's value."""
    import yaml

    from mmalign.cli import main

    build_world(tmp_path / "world", n_videos=2, seed=1, show_progress=False)
    config = tmp_path / "pipe.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "model": {"tiny": "qwen2_5_vl"}, "videos": str(tmp_path / "world" / "videos"),
        "stages": [{"name": "pairs", "kind": "pairs", "config": {
            "generator": "temple", "temple": {"clip_captions": "truth", "summarizer": "join", "kinds": ["drop"]}}}]}))
    assert main(["run", str(config), "stages.pairs.config.temple.kinds=[reverse]"]) == 0
    lines = (tmp_path / "run" / "00-pairs" / "pairs.jsonl").read_text().splitlines()
    assert lines and {json.loads(line)["meta"]["perturbation"] for line in lines} == {"reverse"}
    written = yaml.safe_load((tmp_path / "run" / "pipeline.yaml").read_text())
    assert written["stages"][0]["config"]["temple"]["kinds"] == ["reverse"]


def test_multi_process_launch_is_refused_before_writing(tmp_path, monkeypatch):
    cfg = temple_pairs(tmp_path, ["drop"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="WORLD_SIZE=2"):
        run_pipeline(cfg, expand(cfg))
    assert not (tmp_path / "run").exists()


def test_a_training_step_killed_mid_run_continues_only_with_the_config_it_started_with(tmp_path, tiny_dir):
    from mmalign.config import build_config
    from mmalign.train.run import RunExists, run_identity

    build_world(tmp_path / "world", n_videos=4, seed=1, show_progress=False)
    cfg = _build(PipelineConfig, {
        "output_dir": str(tmp_path / "run"), "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
        "videos": str(tmp_path / "world" / "videos"),
        "stages": [{"name": "sft", "kind": "sft", "config": {
            "data": {"train_file": str(tmp_path / "world" / "sft_train.jsonl")}, "sampling": {"num_frames": 4},
            "train": {"batch_size": 2, "max_steps": 1, "lr": 1e-3}}}]}, "")
    (step,) = expand(cfg)
    started = run_identity(build_config(step.config, step.name))
    started["stages"]["sft"]["train"]["lr"] = 2e-3  # the run was started before the pipeline config was edited
    folder = tmp_path / "run" / step.folder
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(started))
    with pytest.raises(RunExists, match=r"train\.lr \(was 0\.002, now 0\.001\)"):
        run_pipeline(cfg, expand(cfg))
    assert not (folder / "metrics.jsonl").exists()  # refused before training

    (folder / "run.json").unlink()
    run_pipeline(cfg, expand(cfg), resume=True)  # a fresh start records its config, and resumes match it
    assert json.loads((folder / "run.json").read_text())["stages"]["sft"]["train"]["lr"] == 1e-3
    assert (folder / "done.json").exists()


def test_an_eval_steps_missing_annotation_files_stop_the_pipeline_before_its_first_step(tmp_path, capsys):
    """A POPE eval after a pairs step, POPE's files not under data.root: the pipeline ran the
    steps before it (training, hours on a GPU) and failed when the eval began."""
    from mmalign.cli import main

    build_world(tmp_path / "world", n_videos=4, seed=1, show_progress=False)
    (tmp_path / "pope").mkdir()
    (tmp_path / "p.yaml").write_text(
        f"output_dir: {tmp_path / 'run'}\nmodel: {{tiny: qwen2_5_vl}}\nvideos: {tmp_path / 'world' / 'videos'}\n"
        "stages:\n"
        "  - {name: pairs, kind: pairs, config: {generator: temple, temple: {clip_captions: truth, summarizer: join}}}\n"
        f"  - {{name: pope, kind: eval, config: {{benchmark: pope, data: {{root: {tmp_path / 'pope'}, "
        "splits: [random]}}}\n")
    assert main(["run", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmalign: error: step pope: pope: no annotation file found:") and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_a_train_steps_missing_record_file_stops_the_pipeline_before_its_first_step(tmp_path, capsys):
    """A file no step makes is read before the first step runs; the pairs file an earlier step
    makes is left to its step."""
    from mmalign.cli import main

    build_world(tmp_path / "world", n_videos=4, seed=1, show_progress=False)
    (tmp_path / "p.yaml").write_text(
        f"output_dir: {tmp_path / 'run'}\nmodel: {{tiny: qwen2_5_vl}}\nvideos: {tmp_path / 'world' / 'videos'}\n"
        "stages:\n"
        "  - {name: pairs, kind: pairs, config: {generator: temple, temple: {clip_captions: truth, summarizer: join}}}\n"
        "  - {name: dpo, kind: preference, config: {method: dpo}}\n"
        f"  - {{name: sft, kind: sft, config: {{data: {{train_file: {tmp_path / 'sft.jsonl'}}}}}}}\n")
    assert main(["run", str(tmp_path / "p.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (f"mmalign: error: step sft: data.train_file: {tmp_path / 'sft.jsonl'}: "
                                               "file not found")
    assert not (tmp_path / "run").exists()


def test_a_base_model_that_is_no_checkpoint_stops_the_pipeline_before_it_writes(tmp_path, capsys):
    """The model was checked when the first step loaded it, after plan.json had claimed the
    output folder."""
    from mmalign.cli import main

    config = Path(__file__).resolve().parents[2] / "configs/pipelines/apasi_quickstart.yaml"
    assert main(["run", str(config), f"model.path={tmp_path / 'nope'}", f"output_dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err.strip() == f"mmalign: error: model.path: {tmp_path / 'nope'}: no such folder"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("item, message", [
    ("videos={tmp}/nope", "step round1-pairs: videos: {tmp}/nope: not a folder"),  # it stopped after warmup and eval
    ("stages=[]", "command line: 'stages=[]': stages: a pipeline needs at least one stage"),  # ran nothing, exit 0
    ("stages.warmup.config.data=null", "command line: 'stages.warmup.config.data=null': stages[0].config.data."
                                       "train_file: not set (a sft stage reads a JSONL of sft records)"),
])
def test_what_the_pipeline_cannot_run_is_one_line_before_its_first_step(tmp_path, capsys, monkeypatch, item, message):
    """The APASI quickstart with a pairs video folder that is not there, no stage at all, or an
    SFT stage without records: each was found only when its step began (the SFT one as
    "None: no usable records"), or not at all."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[2] / "configs/pipelines/apasi_quickstart.yaml"
    assert main(["run", str(config), item.format(tmp=tmp_path), f"output_dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err.strip() == "mmalign: error: " + message.format(tmp=tmp_path)
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()  # not even the world


def test_a_plot_metric_the_benchmark_does_not_report_stops_at_the_first_eval_and_resumes(tmp_path, tiny_dir, capsys):
    """`metric: acuracy` plotted None for every eval step, and the run exited 0."""
    import yaml

    from mmalign.cli import main

    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "model": {"tiny": "qwen2_5_vl", "tiny_dir": str(tiny_dir)},
        "world": {"enabled": True, "out": str(tmp_path / "world"), "n_videos": 2}, "metric": "acuracy",
        "stages": [{"name": "e", "kind": "eval", "config": {"benchmark": "synthetic", "data": {"splits": ["train"], "limit": 4},
                                                            "sampling": {"num_frames": 4},
                                                            "generation": {"max_new_tokens": 4}}}]}))
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the tiny model's progress bar
    assert err.startswith("mmalign: error: step e: metric: 'acuracy' is not a metric of synthetic; it reports "
                          "accuracy, ")
    assert not (tmp_path / "run" / "00-e" / "done.json").exists()
    assert main(["run", str(config), "metric=pair_accuracy", "--resume"]) == 0
    summary = json.loads((tmp_path / "run" / "pipeline_summary.json").read_text())
    results = json.loads((tmp_path / "run" / "00-e" / "results.json").read_text())
    assert summary["metric"] == "pair_accuracy"
    assert summary["curve"][0]["value"] == results["models"][0]["metrics"]["pair_accuracy"]


def test_lora_targets_a_training_step_cannot_use_stop_the_pipeline_before_its_first_step(tmp_path, tiny_dir, capsys,
                                                                                         monkeypatch):
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)  # the pipeline's world (data/world-pipeline) lands here, made by the run
    config = Path(__file__).resolve().parents[2] / "configs/pipelines/apasi_quickstart.yaml"
    assert main(["run", str(config), "stages.dpo.config.lora.target_modules=[qproj]", f"model.tiny_dir={tiny_dir}",
                 f"output_dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "mmalign: error: step round1-dpo: lora.target_modules: ['qproj'] name no module of ")
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_a_world_too_small_for_a_step_stops_the_quickstart_pipeline_before_its_first_step(tmp_path, monkeypatch,
                                                                                        capsys):
    """`mmalign run configs/pipelines/apasi_quickstart.yaml world.n_videos=1`: the world the
    pipeline builds has no test split for its base-eval step. The warmup SFT trained first, and
    the pipeline stopped at the eval in a claimed folder. Now the world is built and what the
    steps read of it is checked before anything is claimed."""
    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[2] / "configs" / "pipelines" / "apasi_quickstart.yaml"
    assert main(["run", str(config), "world.n_videos=1", f"model.tiny_dir={tmp_path / 'tiny'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (  # after the tiny preset's progress bars
        "mmalign: error: step base-eval: synthetic: data/world-pipeline/bench.jsonl has no pairs in split(s) ['test'] "
        "(written by the world of world.n_videos=1: too few videos for it?)")
    assert not (tmp_path / "runs").exists()
