"""Two CPU processes (gloo) with the same global batch give the single process's losses."""

import os
import subprocess
import sys
import pytest
import yaml

from mmalign.io import iter_jsonl


def launch(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def one_and_two_processes(tmp_path, config, port: int):
    """Run `config(name, batch_size)` (a raw config) in one process at batch 4 and under
    torchrun in two at batch 2 (the same global batch); both must succeed."""
    paths = {}
    for name, batch in (("single", 4), ("ddp", 2)):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config(name, batch)))
    single = launch([sys.executable, "-m", "mmalign.cli", "train", str(paths["single"])], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    # torchrun starts the processes; on a CPU-only machine they join a gloo process group.
    ddp = launch([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                  "-m", "mmalign.cli", "train", str(paths["ddp"])], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]


def test_two_process_ddp_matches_single_process(tmp_path, world, tiny_dir):
    def config(name, batch_size):
        return {"output_dir": str(tmp_path / name), "method": "dpo",
                "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
                "data": {"train_file": str(world / "pairs_train.jsonl")}, "sampling": {"num_frames": 4},
                "train": {"batch_size": batch_size, "lr": 1e-3, "max_steps": 3, "warmup_ratio": 0.0}}

    one_and_two_processes(tmp_path, config, 29517)
    a = [r for _, r in iter_jsonl(tmp_path / "single" / "metrics.jsonl")]
    b = [r for _, r in iter_jsonl(tmp_path / "ddp" / "metrics.jsonl")]
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    for x, y in zip(a, b):
        for key in ("loss", "rewards/margin", "grad_norm"):
            assert y[key] == pytest.approx(x[key], abs=1e-5, rel=1e-5), (x["step"], key)
    assert a[-1]["loss"] != pytest.approx(a[0]["loss"], abs=1e-4)  # training moved the policy


def test_two_process_two_stage_config_from_an_empty_tiny_dir(tmp_path, world):
    """The README's torchrun line on a staged config: the process group survives the first
    stage's end, the tiny preset is built once by the main process before the other loads
    it (also for the LoRA-target check before anything is written), and every stage's losses
    equal the single process's."""
    def config(name, batch_size):
        return {"output_dir": str(tmp_path / name),
                "model": {"tiny": "qwen2_5_vl", "tiny_dir": str(tmp_path / f"tiny-{name}")},
                "sampling": {"num_frames": 4}, "train": {"batch_size": batch_size, "max_steps": 2, "warmup_ratio": 0.0},
                "stages": [{"name": "sft", "method": "sft", "data": {"train_file": str(world / "sft_train.jsonl")},
                            "train": {"lr": 1e-3}},
                           {"name": "dpo", "method": "dpo", "data": {"train_file": str(world / "pairs_train.jsonl")},
                            "lora": {"enabled": True, "r": 4, "alpha": 8}, "train": {"lr": 1e-3}}]}

    one_and_two_processes(tmp_path, config, 29519)
    for stage in ("stage0-sft", "stage1-dpo"):
        a = [r for _, r in iter_jsonl(tmp_path / "single" / stage / "metrics.jsonl")]
        b = [r for _, r in iter_jsonl(tmp_path / "ddp" / stage / "metrics.jsonl")]
        assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
        for x, y in zip(a, b):
            assert y["loss"] == pytest.approx(x["loss"], abs=1e-5, rel=1e-5), (stage, x["step"])
        resolved = yaml.safe_load((tmp_path / "ddp" / stage / "config.yaml").read_text())
        assert resolved["loss"]["beta"] == (0.1 if stage.endswith("dpo") else None)
