"""`mmalign eval` end to end with the tiny offline Qwen2.5-VL on a 4-video world, the shipped
eval configs, and config errors."""

import json
from pathlib import Path

import pytest
import yaml

from mmalign.evals.benchmarks.base import pair_scores
from mmalign.evals.config import load_eval_config, model_specs, parse_model_args
from mmalign.cli import main
from mmalign.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs" / "eval").glob("*.yaml"))


def test_tiny_model_end_to_end_and_rerun_resumes(tmp_path, tiny_dir):
    cfg = tmp_path / "synthetic.yaml"
    raw = yaml.safe_load((ROOT / "configs" / "eval" / "synthetic.yaml").read_text())
    cfg.write_text(yaml.safe_dump(raw))
    args = ["eval", "--config", str(cfg), f"world.out={tmp_path / 'world'}", "world.n_videos=4",
            f"model.tiny_dir={tiny_dir}", f"output_dir={tmp_path / 'out'}", "data.limit=2",
            "sampling.num_frames=4", "generation.max_new_tokens=4", "generation.batch_size=4"]
    assert main(args) == 0
    out = tmp_path / "out"
    assert (out / "report.html").is_file() and (out / "metrics.md").is_file()
    results = json.loads((out / "results.json").read_text())
    (model,) = results["models"]
    assert model["name"] == "tiny-qwen2_5_vl" and model["counts"]["items"] == 4  # 2 pairs (data.limit)
    rows = model["items"]
    assert all(set(r) >= {"prompt", "prediction", "parsed", "correct"} for r in rows)
    for cat, metrics in model["categories"].items():
        assert metrics == pair_scores([r for r in rows if r["category"] == cat])
    shard = out / "tiny-qwen2_5_vl" / "predictions.shard0-of-1.jsonl"
    lines = shard.read_text()
    assert main(args) == 0  # rerun: everything is done, nothing is generated again
    assert shard.read_text() == lines
    assert json.loads((out / "results.json").read_text())["models"][0]["items"] == rows


def test_rerun_after_retraining_into_the_same_folder_does_not_reuse_the_old_predictions(tmp_path, capsys):
    from mmalign.models.tiny import build_tiny

    model = build_tiny("qwen2_5_vl", tmp_path / "final", seed=0)
    cfg = ROOT / "configs" / "eval" / "synthetic.yaml"
    args = ["eval", "--config", str(cfg), f"world.out={tmp_path / 'world'}", "world.n_videos=4",
            f"model.path={model}", f"output_dir={tmp_path / 'out'}", "data.limit=1",
            "sampling.num_frames=4", "generation.max_new_tokens=2", "generation.batch_size=4"]
    assert main(args) == 0
    (run,) = (tmp_path / "out").glob("*/run.json")
    before = json.loads(run.read_text())["model_weights"]
    assert before.startswith("1 file(s), ")
    assert main(args) == 0  # same weights: resumes

    build_tiny("qwen2_5_vl", model, seed=1)  # "retrained" into the same folder
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmalign: error: ") and "model_weights" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert main(args[:1] + ["--overwrite"] + args[1:]) == 0
    assert json.loads(run.read_text())["model_weights"] != before


def test_a_checkpoint_moved_with_its_folder_keeps_its_predictions(tmp_path, capsys):
    """A rerun after `mv runs/a runs/b` (the project moved, a run folder renamed) reuses the
    predictions: same weight files, only the path changed. It used to stop with 'holds
    predictions made with other settings', the model's old path against its new one."""
    from mmalign.models.tiny import build_tiny

    build_tiny("qwen2_5_vl", tmp_path / "a" / "sft" / "final", seed=0)
    cfg = ROOT / "configs" / "eval" / "synthetic.yaml"

    def args(folder):
        return ["eval", "--config", str(cfg), f"world.out={tmp_path / 'world'}", "world.n_videos=4",
                f"model.path={tmp_path / folder / 'sft' / 'final'}", f"output_dir={tmp_path / 'out'}", "data.limit=1",
                "sampling.num_frames=4", "generation.max_new_tokens=2", "generation.batch_size=4"]

    assert main(args("a")) == 0
    shard = tmp_path / "out" / "sft-final" / "predictions.shard0-of-1.jsonl"
    answers = shard.read_text()
    (tmp_path / "a").rename(tmp_path / "b")
    assert main(args("b")) == 0
    assert shard.read_text() == answers  # nothing generated again
    run = json.loads((tmp_path / "out" / "sft-final" / "run.json").read_text())
    assert run["model"] == str(tmp_path / "b" / "sft" / "final")
    build_tiny("qwen2_5_vl", tmp_path / "b" / "sft" / "final", seed=1)  # other weights at the new path: refused
    capsys.readouterr()
    assert main(args("b")) == 2 and "model_weights" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["missing.json", "a-folder"])
def test_a_predictions_file_that_cannot_be_read_is_one_line(tmp_path, capsys, name):
    (tmp_path / "a-folder").mkdir()
    args = ["eval", "--config", str(ROOT / "configs/eval/synthetic.yaml"), "--predictions", str(tmp_path / name),
            f"world.out={tmp_path / 'world'}", "world.n_videos=4", f"output_dir={tmp_path / 'out'}"]
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"mmalign: error: {tmp_path / name}: cannot be read as a predictions file (")


def test_predictions_recorded_before_the_weights_were_recorded_still_resume(tmp_path):
    from mmalign.evals.runner import check_settings

    (tmp_path / "predictions.shard0-of-1.jsonl").write_text('{"id": "a", "prediction": "yes"}\n')
    (tmp_path / "run.json").write_text(json.dumps({"model": "m", "max_new_tokens": 4}))  # an older mmalign's record
    check_settings(tmp_path, {"model": "m", "model_weights": "1 file(s), 10 bytes", "max_new_tokens": 4}, False)
    assert json.loads((tmp_path / "run.json").read_text())["model_weights"] == "1 file(s), 10 bytes"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_eval_configs_load(path):
    cfg = load_eval_config(path)
    assert cfg.benchmark == path.stem and model_specs(cfg)


def test_config_errors_name_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("benchmark: videohallucer\ndata: {root: x, splitz: [temporal]}\n")
    with pytest.raises(ConfigError, match=r"data\.splitz.*did you mean 'splits'"):
        load_eval_config(p)
    p.write_text("benchmark: videohalucer\n")
    with pytest.raises(ConfigError, match="did you mean 'videohallucer'"):
        load_eval_config(p)
    p.write_text("benchmark: videohallucer\n")
    with pytest.raises(ConfigError, match="score.mode"):
        load_eval_config(p, ["score.mode=lmms_eval"])
    with pytest.raises(ConfigError, match="data.splits"):
        load_eval_config(p, ["data.splits=[temporl]"])
    with pytest.raises(ConfigError, match=r"data\.options\.tsk.*did you mean 'task'"):
        load_eval_config(p, ["benchmark=vidhal", "data.options={tsk: mcqa}"])
    with pytest.raises(ConfigError, match="remove data.limit"):
        load_eval_config(p, ["official=true", "data.limit=3"])
    with pytest.raises(ConfigError, match=r"models\[1\].*dtyp"):
        load_eval_config(p, ["models=[{name: a, path: x}, {name: b, dtyp: float32}]"])
    assert main(["eval", "--config", str(p), "model.pth=x"]) == 2  # the CLI prints it, no traceback


def test_models_from_the_command_line(tmp_path):
    assert parse_model_args(["base=", "rrpo=runs/rrpo/final", "/ckpt/m"]) == [
        {"name": "base"}, {"name": "rrpo", "path": "runs/rrpo/final"}, {"path": "/ckpt/m"}]
    with pytest.raises(ConfigError, match="put the overrides before --models"):
        parse_model_args(["a=x", "data.root=/data"])  # argparse gives --models everything after it
    p = tmp_path / "c.yaml"
    p.write_text("benchmark: pope\nmodel: {tiny: qwen2_5_vl}\n")
    specs = model_specs(load_eval_config(p, models=["base=", "rrpo=runs/rrpo/final", "/ckpt/m"]))
    assert [(s.name, s.model.path, s.model.tiny) for s in specs] == [
        ("base", None, "qwen2_5_vl"), ("rrpo", "runs/rrpo/final", "qwen2_5_vl"), ("ckpt-m", "/ckpt/m", "qwen2_5_vl")]


def test_a_name_clash_among_models_from_the_command_line_is_blamed_on_them(tmp_path, capsys):
    """Two `--models` of one name were reported against the config file, which names no model;
    a file that lists models of its own is replaced by --models, not checked against them."""
    p = tmp_path / "c.yaml"
    p.write_text("benchmark: pope\nmodel: {tiny: qwen2_5_vl}\nmodels: [{name: x}, {name: x}]\n")
    assert main(["eval", "--config", str(p), "--models", "a-final=runs/x", "runs/a/final"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mmalign: error: command line: --models: models: names must be distinct, got ['a-final', 'a-final']")
    with pytest.raises(ConfigError, match=f"^{p}: models: names must be distinct"):
        load_eval_config(p)  # the file's own clash is the file's
    assert [s.name for s in model_specs(load_eval_config(p, models=["a=", "b="]))] == ["a", "b"]


@pytest.mark.parametrize("key, said", [("judge_model", "no such folder"),
                                       ("embedding_model", "not a model folder (a local folder with config.json)"),
                                       ("judge_model", "model type 'qwen2_5_vl' is not a text chat model")])
def test_a_scoring_model_folder_that_is_not_there_is_refused_before_any_answer(tmp_path, capsys, tiny_dir, key, said):
    """The judge and the embedder load to score, after every answer was generated (hours on a
    GPU): a mistyped folder, or a VLM as the text judge, was found only then."""
    from mmalign.config import ModelConfig
    from mmalign.models.backbone import model_path

    folder = model_path(ModelConfig(tiny="qwen2_5_vl", tiny_dir=tiny_dir)) if "model type" in said else tmp_path / "nope"
    args = ["eval", "--config", str(ROOT / "configs/eval/synthetic.yaml"), f"world.out={tmp_path / 'world'}",
            "world.n_videos=4", f"output_dir={tmp_path / 'out'}", f"model.tiny_dir={tmp_path / 'tiny'}",
            f"score.{key}={folder}"]
    capsys.readouterr()
    assert main(args) == 2
    assert capsys.readouterr().err.strip().startswith(f"mmalign: error: score.{key}: {folder}: {said}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "tiny").exists()
