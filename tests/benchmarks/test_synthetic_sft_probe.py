"""benchmarks/synthetic_sft_probe.py --quick end to end: every SFT recipe trained as it says (its
vision stand-in, lr and starting point), each scored per question kind on the two held-in
splits, both vision stand-ins scored per token, results without machine paths."""

import importlib.util
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_quick_probe_trains_each_recipe_and_scores_both_held_in_splits(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("synthetic_sft_probe", ROOT / "benchmarks/synthetic_sft_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    work = tmp_path / "w"
    rows = probe.main(["--quick", "--work", str(work), "--results", str(tmp_path / "r")])
    assert set(rows) == set(probe.VARIANTS) and all(set(r) == {"seen", "val"} for r in rows.values())
    for splits in rows.values():
        for s in splits.values():
            assert set(s["by_kind"]) <= set(probe.KINDS) and s["by_kind"]
            assert all(0 <= v <= 1 for v in [s["pair_accuracy"], *s["by_kind"].values()])
    config = {name: yaml.safe_load((work / f"probe-sft-{name}" / "config.yaml").read_text())
              for name in ("previous", "pretrain_world_vision", "lower_lr")}
    assert {n: c["train"]["lr"] for n, c in config.items()} == {"previous": 2e-3, "pretrain_world_vision": 2e-3,
                                                                 "lower_lr": 5e-4}
    towers = {n: Path(c["model"]["path"]).name for n, c in config.items()}
    assert towers == {"previous": "vision-held-in", "pretrain_world_vision": "vision", "lower_lr": "vision"}
    # The previous stand-in saw the held-in videos less the validation ones; the harness's, the pretraining world.
    held_in = json.loads((work / "vision-held-in" / "built.json").read_text())["videos"]
    n = probe.harness.QUICK["n_videos"]
    assert held_in == n - n // 4 - probe.harness.QUICK["val_videos"]
    assert json.loads((work / "vision" / "built.json").read_text())["videos"] == probe.harness.QUICK["pretrain_videos"]
    sft = yaml.safe_load((work / "sft-seed0" / "config.yaml").read_text())
    assert Path(sft["model"]["path"]).resolve() == (work / "base-lm" / "final").resolve()
    # the probe's SFT is on the exact truth, whatever the harness's default SFT data (purple as blue)
    assert sft["data"]["train_file"].endswith("/sft_mix_train.jsonl")
    result = json.loads((tmp_path / "r" / "synthetic_sft_probe.json").read_text())
    for scores in result["vision_tokens"].values():
        assert 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
    text = (tmp_path / "r" / "synthetic_sft_probe.json").read_text()
    assert str(tmp_path) not in text and str(ROOT) not in text
    assert "| base_then_sft | val |" in (tmp_path / "r" / "synthetic_sft_probe.md").read_text()


def test_probe_takes_the_harness_recipe_and_its_work_folder(tmp_path):
    """`--base-steps` / `--base-seed` on the probe mean what they mean on the harness: its seed-0
    SFT model starts from that base, trained in the harness's work folder for that recipe (where a
    harness run with the same flags left it), and the report's command names them. Without them
    the probe would score the default base's SFT model under another recipe's name."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("synthetic_sft_probe", ROOT / "benchmarks/synthetic_sft_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    probe.ROOT = tmp_path
    probe.main(["--quick", "--base-steps", "3", "--base-seed", "2"])
    work = tmp_path / "runs/synthetic_alignment_quick_base_steps3_base_seed2"
    assert len((work / "base-lm/metrics.jsonl").read_text().splitlines()) == 3
    assert yaml.safe_load((work / "base-lm/config.yaml").read_text())["train"]["seed"] == 2
    sft = yaml.safe_load((work / "sft-seed0/config.yaml").read_text())
    assert Path(sft["model"]["path"]).resolve() == (work / "base-lm/final").resolve()
    meta = json.loads((work / "synthetic_sft_probe.json").read_text())["meta"]
    assert meta["command"] == "python benchmarks/synthetic_sft_probe.py --quick --base-steps 3 --base-seed 2"
    assert (meta["size"]["base_steps"], meta["size"]["base_seed"]) == (3, 2)
    assert not (tmp_path / "runs/synthetic_alignment_quick").exists()
    assert not list(tmp_path.glob("runs/*sft-purple-as-blue*"))  # the exact-truth work folder, not the default's
