"""`mmalign pairs` and `mmalign eval` under torchrun, as the README's "Many GPUs" section runs
them: two CPU processes (gloo) shard the videos / items and the main process merges them, to
the single process's records and answers. (Training under two processes: train/test_ddp.py.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def single_and_two_processes(tmp_path, args: list[str], out_key: str, port: int) -> tuple[Path, Path]:
    """`mmalign <args> <out_key> <tmp>/one|two` in one process, then under torchrun in two."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = []
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                   "--master_port", str(port)])):
        out = tmp_path / name
        cmd = [sys.executable, *launcher, "-m", "mmalign.cli", *args]
        cmd += [out_key, str(out)] if out_key.startswith("--") else [f"{out_key}={out}"]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        outs.append(out)
    return outs[0], outs[1]


def test_pairs_under_two_processes_are_the_single_process_records(tmp_path, world, tiny_dir):
    one, two = single_and_two_processes(
        tmp_path, ["pairs", "--videos", str(world / "videos"), "--config", str(ROOT / "configs/pairs/rrpo_qa.yaml"),
                   "--quiet", "model.path=null", "model.tiny=qwen2_5_vl", f"model.tiny_dir={tiny_dir}",
                   "generation.max_new_tokens=4", "rrpo_qa.per_video=4"], "--out", 29541)
    records = one.read_text().splitlines()
    assert records and two.read_text().splitlines() == records
    reports = [json.loads(p.with_suffix(".report.json").read_text()) for p in (one, two)]
    assert reports[0]["records"] == reports[1]["records"] == len(records)
    assert reports[0]["filtered"] == reports[1]["filtered"]


def test_eval_under_two_processes_gives_the_single_process_answers(tmp_path, world, tiny_dir):
    one, two = single_and_two_processes(
        tmp_path, ["eval", "--config", str(ROOT / "configs/eval/synthetic.yaml"), "model.tiny=qwen2_5_vl",
                   f"model.tiny_dir={tiny_dir}", f"data.root={world}", "world.enabled=false", "data.splits=[train]",
                   "data.limit=12", "generation.max_new_tokens=4"], "output_dir", 29542)
    (a,), (b,) = (json.loads((out / "results.json").read_text())["models"] for out in (one, two))
    answers = [(r["id"], r["prediction"]) for r in a["items"]]
    assert len(answers) == a["counts"]["items"] > 0
    assert [(r["id"], r["prediction"]) for r in b["items"]] == answers
    assert b["metrics"] == a["metrics"] and b["counts"] == a["counts"]
    assert sorted(p.name for p in (two / a["name"]).glob("predictions.shard*")) == [
        "predictions.shard0-of-2.jsonl", "predictions.shard1-of-2.jsonl"]
