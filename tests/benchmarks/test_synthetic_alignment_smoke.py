"""benchmarks/synthetic_alignment.py: the scoring helpers against hand counts, and the
`--quick` path end to end (tiny sizes, one seed) writing the json / md / png."""

import importlib.util
import json
import numpy as np
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("synthetic_alignment", ROOT / "benchmarks/synthetic_alignment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_object_precision_counts_mentions(tmp_path):
    from mmalign.world import build_world

    sa = _module()
    world = tmp_path / "world"
    build_world(world, n_videos=4, seed=0, show_progress=False)
    truth = json.loads((world / "truth/vid0000.json").read_text())
    present = sorted({f"{o['color']} {o['shape']}" for o in truth["scene"]["objects"]})
    absent = next(f"{c} {s}" for c in ("red", "green", "blue", "yellow", "white", "purple", "orange", "cyan")
                  for s in ("circle", "square", "triangle") if f"{c} {s}" not in present)
    text = f"A {present[0]} moves. A {absent} appears. The {present[0]} stays."
    out = sa.object_precision({"vid0000": text}, world)
    assert out["mentions"] == 3
    assert out["object_precision"] == pytest.approx(2 / 3)
    assert out["chair_s"] == 1.0
    assert out["object_recall"] == pytest.approx(1 / len(present))


def test_aggregate_spread_rule():
    sa = _module()
    metrics = {**dict.fromkeys(sa.HEADLINE, 0.5), "mentions": 3}
    per_seed = {s: {m: dict(metrics) for m in ("sft",) + sa.METHODS} for s in range(3)}
    for s, gain in enumerate((0.10, 0.12, 0.11)):
        per_seed[s]["sft"]["accuracy"] = 0.50 + 0.01 * s
        per_seed[s]["rrpo"]["accuracy"] = 0.50 + 0.01 * s + gain
        per_seed[s]["dpo"]["accuracy"] = 0.50 + 0.01 * s + (0.02 if s else -0.01)
    table = sa.aggregate(per_seed)
    assert table["rrpo"]["accuracy"]["delta_mean"] == pytest.approx(0.11)
    assert table["rrpo"]["accuracy"]["beats_sft_beyond_spread"]
    assert not table["dpo"]["accuracy"]["beats_sft_beyond_spread"]  # one seed got worse
    assert not table["mask_dpo"]["accuracy"]["beats_sft_beyond_spread"]  # no change


def test_beyond_spread_needs_every_seed_and_a_mean_over_twice_the_std():
    sa = _module()
    assert sa.beyond_spread([0.10, 0.12, 0.11])  # mean 0.11 > 2 x 0.01
    assert not sa.beyond_spread([0.01, 0.10, 0.02])  # all positive, but mean 0.043 < 2 x 0.049
    assert not sa.beyond_spread([0.10, 0.12, -0.01])
    assert sa.beyond_spread([-0.05, -0.06, -0.05], lower_is_better=True)  # CHAIR_s going down


def test_quick_run_writes_results(tmp_path):
    sa = _module()
    table = sa.main(["--quick", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "res")])
    assert set(table) == {"sft", *sa.METHODS}
    stem = tmp_path / "res/synthetic_alignment"
    data = json.loads(Path(f"{stem}.json").read_text())
    assert data["meta"]["seeds"] == [0]
    stages = data["meta"]["pair_stages"]["0"]
    assert stages["asked"] == stages["kept"] + sum(stages["filtered"].values()) > 0
    assert str(ROOT) not in Path(f"{stem}.json").read_text()
    assert "| RRPO |" in Path(f"{stem}.md").read_text()
    assert Path(f"{stem}.png").stat().st_size > 0


def test_token_labels_mark_the_cells_an_object_covers():
    """A red square in the top-left 32x32 cell of a 64 px frame for frames 0-3, then gone: with
    8 sampled frames [0, 2, ..., 14] and a 2x2 token grid, only the top-left token of the first
    two time steps (frames 0+2, 4+6: frame 4 has no box) names it."""
    sa = _module()
    boxes = [{"0": [2, 2, 30, 30]} if f < 4 else {} for f in range(16)]
    truth = {"scene": {"objects": [{"id": 0, "color": "red", "shape": "square", "direction": "static"}]},
             "boxes": boxes}
    labels = sa.token_labels(truth, list(range(0, 16, 2)), grid_t=4, grid_hw=(2, 2), frame_size=64)
    assert labels.shape == (16, 18 + 5)
    red_square, static = 1, 18 + 4  # combos are colour-major (red circle, red square, ...); static is last
    on = {tuple(x) for x in np.argwhere(labels > 0)}
    assert on == {(0, red_square), (0, static)}  # frames 0, 2 -> time step 0, top-left cell only
    # A box straddling the vertical middle line lights both cells of its row, but only where the
    # overlap is a real area (a 1-pixel sliver is not).
    truth["boxes"] = [{"0": [20, 0, 44, 20]}] * 2 + [{"0": [31, 0, 60, 20]}] * 14
    labels = sa.token_labels(truth, list(range(0, 16, 2)), grid_t=4, grid_hw=(2, 2), frame_size=64)
    assert labels[0, red_square] == labels[1, red_square] == 1 and labels[2:4].sum() == 0
    assert labels[4, red_square] == 0 and labels[5, red_square] == 1
