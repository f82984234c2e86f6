"""benchmarks/synthetic_sft_probe.py --quick end to end: every SFT variant trained as it says,
each scored per question kind on the two held-in splits, results without machine paths."""

import importlib.util
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_quick_probe_trains_each_variant_and_scores_both_held_in_splits(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("synthetic_sft_probe", ROOT / "benchmarks/synthetic_sft_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    rows = probe.main(["--quick", "--work", str(tmp_path / "w"), "--results", str(tmp_path / "r")])
    assert set(rows) == set(probe.VARIANTS) and all(set(r) == {"seen", "val"} for r in rows.values())
    for splits in rows.values():
        for s in splits.values():
            assert set(s["by_kind"]) <= set(probe.KINDS) and s["by_kind"]
            assert all(0 <= v <= 1 for v in [s["pair_accuracy"], *s["by_kind"].values()])
    steps = {name: json.loads((tmp_path / "w" / f"sft-{name}" / "summary.json").read_text())["stages"]["sft"]["steps"]
             for name in ("steps_x2", "layers_3")}
    assert steps["steps_x2"] == 2 * steps["layers_3"]
    layers = json.loads((tmp_path / "w" / "sft-layers_3" / "final" / "config.json").read_text())
    assert layers["text_config"]["num_hidden_layers"] == 3
    frozen = {name: yaml.safe_load((tmp_path / "w" / f"sft-{name}" / "config.yaml").read_text())["model"]["freeze_vision"]
              for name in ("vision_trained", "steps_x2")}
    assert frozen == {"vision_trained": False, "steps_x2": True}
    text = (tmp_path / "r" / "synthetic_sft_probe.json").read_text()
    assert str(tmp_path) not in text and str(ROOT) not in text
    assert "| layers_3 | val |" in (tmp_path / "r" / "synthetic_sft_probe.md").read_text()
