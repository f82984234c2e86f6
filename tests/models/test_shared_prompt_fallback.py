"""A backbone that cannot share the prompt (Qwen3.5's linear-attention layers) trains with one
pass per response: the trainer says so once and the losses equal shared_prompt=false's."""

import pytest
import yaml

from mmalign.config import build_config
from mmalign.io import iter_jsonl
from mmalign.train.run import train
from mmalign.world import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    build_world(out, n_videos=4, seed=1, show_progress=False)
    return out


def test_qwen3_5_falls_back_once_and_trains_the_same(tmp_path, world, capsys):
    def run(name, shared):
        raw = {"output_dir": str(tmp_path / name), "method": "dpo",
               "model": {"tiny": "qwen3_5", "tiny_dir": str(tmp_path / "tiny")},
               "data": {"train_file": str(world / "pairs_train.jsonl")}, "sampling": {"num_frames": 4},
               "train": {"batch_size": 2, "max_steps": 2, "lr": 1e-3, "shared_prompt": shared}}
        train(build_config(raw))
        return [r["loss"] for _, r in iter_jsonl(tmp_path / name / "metrics.jsonl")]

    fallback = run("fallback", True)
    said = capsys.readouterr().out
    assert said.count("cannot share the prompt (its language model has linear_attention layers)") == 1
    assert yaml.safe_load((tmp_path / "fallback" / "config.yaml").read_text())["train"]["shared_prompt"] is False
    assert fallback == pytest.approx(run("two_pass", False), rel=1e-6, abs=1e-7)
