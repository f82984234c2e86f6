"""A 2-round APASI pipeline on the tiny model, end to end through `mmalign run`: killed right
after round 1 (MMALIGN_KILL_AFTER_STAGE), continued with --resume, killed again inside round 2's
DPO (MMALIGN_KILL_AFTER_STEP), and continued from that stage's checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def pipeline(tmp_path: Path, tiny_dir: str) -> dict:
    return {
        "output_dir": str(tmp_path / "run"),
        "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
        "world": {"enabled": True, "out": str(tmp_path / "world"), "n_videos": 4, "seed": 1},
        "stages": [{
            "name": "round", "rounds": 2, "reference": "keep",
            "schedule": {"pairs.apasi.replace_rates": {"start": 0.2, "step": 0.2}},
            "stages": [
                {"name": "pairs", "kind": "pairs",
                 "config": {"generator": "apasi", "answers": "truth", "sampling": {"num_frames": 4},
                            "apasi": {"max_new_tokens": 8}}},
                {"name": "dpo", "kind": "preference",
                 "config": {"lora": {"enabled": True, "r": 4, "alpha": 8}, "sampling": {"num_frames": 4},
                            "train": {"batch_size": 2, "max_steps": 2, "lr": 1e-3, "warmup_ratio": 0.0,
                                      "reference": "copy", "save_every": 1}}},
                {"name": "eval", "kind": "eval",
                 "config": {"benchmark": "synthetic", "data": {"splits": ["test"]}, "sampling": {"num_frames": 4},
                            "generation": {"max_new_tokens": 2}}},
            ]}],
    }


def run(cfg_path: Path, *extra, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmalign.cli", "run", str(cfg_path), *extra],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600)


def mtimes(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_two_apasi_rounds_killed_between_rounds_and_mid_stage_continue_rather_than_restart(tmp_path, tiny_dir):
    raw = pipeline(tmp_path, tiny_dir)
    cfg = tmp_path / "apasi.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = Path(raw["output_dir"])

    proc = run(cfg, env={"MMALIGN_KILL_AFTER_STAGE": "round1-eval"})
    assert proc.returncode == -9, proc.stderr[-3000:]
    round1 = ["00-round1-pairs", "01-round1-dpo", "02-round1-eval"]
    assert all((out / f / "done.json").exists() for f in round1)
    assert not (out / "03-round2-pairs").exists()
    before = {f: mtimes(out / f) for f in round1}

    proc = run(cfg)  # an existing run is never silently restarted
    assert proc.returncode == 2 and "--resume" in proc.stderr

    # continue; killed again inside round 2's DPO, right after its step-1 checkpoint
    proc = run(cfg, "--resume", env={"MMALIGN_KILL_AFTER_STEP": "1"})
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert "round1-dpo: done before, skipped" in proc.stdout
    assert (out / "03-round2-pairs" / "done.json").exists() and not (out / "04-round2-dpo" / "done.json").exists()
    pairs2 = mtimes(out / "03-round2-pairs")

    proc = run(cfg, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout + proc.stderr and "(step 1)" in proc.stdout + proc.stderr
    steps = [json.loads(line)["step"] for line in (out / "04-round2-dpo" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # step 2 continued from the checkpoint, step 1 not redone
    for f in round1:  # round 1 untouched: nothing rewritten, nothing retrained
        assert mtimes(out / f) == before[f], f
    assert mtimes(out / "03-round2-pairs") == pairs2

    # both rounds' pairs, checkpoints and eval results
    for r, (pairs, dpo, ev) in enumerate([round1, ["03-round2-pairs", "04-round2-dpo", "05-round2-eval"]], start=1):
        assert (out / pairs / "pairs.jsonl").read_text().strip()
        report = json.loads((out / pairs / "pairs.report.json").read_text())
        assert report["config"]["apasi"]["replace_rates"] == [0.2 * r]  # strength rising with the round
        assert (out / dpo / "final" / "model.safetensors").exists()
        assert sorted(p.name for p in (out / dpo / "checkpoints").iterdir())
        assert json.loads((out / ev / "results.json").read_text())["models"][0]["metrics"]
    # round 2's pairs come from round 1's policy; its DPO starts there and keeps round 1's reference
    report2 = json.loads((out / "03-round2-pairs" / "pairs.report.json").read_text())
    assert report2["config"]["model"]["path"] == str(out / "01-round1-dpo" / "final")
    margin = [json.loads((out / d / "summary.json").read_text())["before"]["rewards/margin"]
              for d in ("01-round1-dpo", "04-round2-dpo")]
    assert margin[0] == 0.0 and margin[1] != 0.0  # policy == reference only where the round starts at the base

    summary = json.loads((out / "pipeline_summary.json").read_text())
    assert summary["rounds"] == [1, 2]
    assert [c["step"] for c in summary["curve"]] == ["round1-eval", "round2-eval"]
    table = (out / "pipeline_summary.md").read_text().splitlines()
    rows = [line for line in table[2:] if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in rows] == [f"round{r}-{k}" for r in (1, 2)
                                                            for k in ("pairs", "dpo", "eval")]
    assert table[-1].startswith("Smoke-test numbers: a tiny model")  # the base model is the tiny preset
    assert (out / "pipeline_summary.png").stat().st_size > 0
