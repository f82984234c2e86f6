"""`evaluate` end to end with a stand-in model: results.json agrees with its own items, bad
media and missing files are counted and shown, several models are compared, and an
official run refuses to start on an incomplete benchmark folder."""

import json
import shutil

import pytest
from eval_helpers import FIXTURES, make_cfg

from mmalign.evals.benchmarks import BenchmarkFilesMissing
from mmalign.evals.benchmarks.base import pair_scores
from mmalign.evals.benchmarks.synthetic import load
from mmalign.evals.run import evaluate
from mmalign.world import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world8")
    build_world(root, n_videos=8, seed=2, show_progress=False)  # test split: vid0006, vid0007
    return root


def truth_table(cfg):
    return {(it.media, it.prompt): it.target for it in load(cfg).items}


def answering(truth, policy):
    """A generate stand-in: `policy(model, truth)` -> the answer text."""
    def fake(model, processor, prompts, max_new_tokens, do_sample, system):
        return [[policy(model, truth[(p.video.path, p.text)])] for p in prompts]
    return fake


def stand_in_model(spec, process):
    return spec.name, None


def test_results_agree_with_their_items_and_count_what_went_wrong(tmp_path, world):
    data = tmp_path / "world"
    shutil.copytree(world, data)
    (data / "videos" / "vid0007.mp4").write_bytes(b"corrupt")
    cfg = make_cfg("synthetic", data, output_dir=str(tmp_path / "out"))
    truth = truth_table(cfg)

    def policy(model, target):  # right, except "maybe" for every third "no" question
        policy.n += target == "no"
        return "maybe" if target == "no" and policy.n % 3 == 0 else {"yes": "Yes.", "no": "No, it is not."}[target]
    policy.n = 0

    evaluate(cfg, generate_fn=answering(truth, policy), load_model_fn=stand_in_model)
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    (model,) = results["models"]
    items = model["items"]
    bad = [r for r in items if r["media"].endswith("vid0007.mp4")]
    assert bad and all(r["error"].startswith("media: ") and r["correct"] is None for r in bad)
    assert model["counts"]["media_errors"] == len(bad) == len(model["media_errors"])
    assert model["counts"]["unparsable"] == sum(r["unparsable"] for r in items) > 0
    assert all(r["prediction"] == "maybe" and not r["correct"] for r in items if r["unparsable"])
    ok = [r for r in items if r["error"] is None]
    for cat, metrics in model["categories"].items():
        assert metrics == pair_scores([r for r in ok if r["category"] == cat])  # recomputed from the rows
    assert model["metrics"]["accuracy"] == pytest.approx(
        sum(m["accuracy"] for m in model["categories"].values()) / len(model["categories"]))
    html = (out / "report.html").read_text()
    assert "<img" in html and bad[0]["id"] in html and "unusable media" in html
    assert "| model | accuracy |" in (out / "metrics.md").read_text()


def test_several_models_are_compared(tmp_path, world):
    cfg = make_cfg("synthetic", world, output_dir=str(tmp_path / "out"), models=[{"name": "honest"}, {"name": "yes"}])
    truth = truth_table(cfg)
    results = evaluate(cfg, load_model_fn=stand_in_model, generate_fn=answering(
        truth, lambda model, target: "Yes" if model == "yes" else target))
    honest, yes = results["models"]
    assert (honest["name"], yes["name"]) == ("honest", "yes")
    assert honest["metrics"]["pair_accuracy"] == 1.0 and yes["metrics"]["pair_accuracy"] == 0.0
    assert yes["metrics"]["basic_accuracy"] == 1.0
    assert (tmp_path / "out" / "honest" / "predictions.shard0-of-1.jsonl").is_file()
    assert (tmp_path / "out" / "report.html").read_text().count("<img") == 2  # per category + comparison


def test_missing_files_and_media_are_reported_and_official_refuses(tmp_path):
    root = tmp_path / "vh"
    for cat in ("object_relation", "temporal"):
        shutil.copytree(FIXTURES / "videohallucer" / cat, root / cat)

    def never(*args, **kwargs):
        raise AssertionError("no video exists, so nothing reaches the model")

    cfg = make_cfg("videohallucer", root, output_dir=str(tmp_path / "out"))
    results = evaluate(cfg, generate_fn=never, load_model_fn=stand_in_model)
    assert len(results["missing_files"]) == 3
    assert results["models"][0]["counts"] == {"items": 8, "scored": 0, "media_errors": 8, "unparsable": 0}
    md = (tmp_path / "out" / "metrics.md").read_text()
    assert "missing official file" in md and "8 of 8 items had unusable media" in md
    official = make_cfg("videohallucer", root, official=True, output_dir=str(tmp_path / "official"))
    with pytest.raises(BenchmarkFilesMissing, match="official: true.*semantic_detail"):
        evaluate(official, generate_fn=never, load_model_fn=stand_in_model)
