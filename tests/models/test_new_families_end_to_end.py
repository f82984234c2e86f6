"""The newer families' tiny presets through what a user runs: `mmalign pairs`, `mmalign train`
and `mmalign eval`, each end to end on the synthetic world."""

import json
from pathlib import Path

import pytest
import yaml

from mmalign.cli import main
from mmalign.world import build_world

ROOT = Path(__file__).resolve().parents[2]
NEW_FAMILIES = ["qwen3_vl", "qwen3_5", "llava_onevision", "internvl", "glm4v", "smolvlm"]  # the issue-18 families' tiny presets


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_pairs_train_eval_on_the_tiny_preset(tmp_path, family, monkeypatch, capsys):
    """Pairs from raw videos, then the README's quickstart line with `model.tiny=<family>` (both
    stages, on a small world) with its RRPO stage on those pairs, then eval of what it wrote.
    The commands run through the CLI's `main` in this process (as a subprocess, each paid
    torch's and transformers' imports again: 15 s a family instead of 2)."""
    def cli(*args):
        rc = main([str(a) for a in args])
        return rc, capsys.readouterr().err[-2000:]

    monkeypatch.chdir(tmp_path)  # the quickstart's world lands under tmp_path/data
    raw = tmp_path / "raw"
    build_world(raw, n_videos=4, seed=2, show_progress=False)
    tiny = [f"model.tiny={family}", f"model.tiny_dir={tmp_path / 'tiny'}"]
    out = raw / "pairs.jsonl"
    rc, err = cli("pairs", "--videos", raw / "videos", "--config", ROOT / "configs/pairs/rrpo_qa.yaml", "--out", out,
                  "--quiet", "model.path=null", *tiny, "generation.max_new_tokens=4", "rrpo_qa.types=[yes_no]")
    assert rc == 0, err
    steps = [f"stages.{s}.train.max_steps=2" for s in ("sft", "rrpo")]
    rc, err = cli("train", ROOT / "configs/quickstart.yaml", *tiny, "world.n_videos=6", f"output_dir={tmp_path / 'run'}",
                  f"stages.rrpo.data.train_file={out}", *steps)
    assert rc == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]
    assert [summary[s]["steps"] for s in ("sft", "rrpo")] == [2, 2] and summary["rrpo"]["skipped"] == 0
    rrpo = tmp_path / "run" / "stage1-rrpo"
    assert yaml.safe_load((rrpo / "config.yaml").read_text())["data"]["train_file"] == str(out)
    assert (rrpo / "final" / "config.json").is_file()
    rc, err = cli("eval", "--config", ROOT / "configs/eval/synthetic.yaml", f"model.path={rrpo / 'final'}",
                  f"data.root={raw}", "data.splits=[train]", "data.limit=2", f"output_dir={tmp_path / 'eval'}",
                  "generation.max_new_tokens=4", "world.enabled=false")
    assert rc == 0, err
    (model,) = json.loads((tmp_path / "eval" / "results.json").read_text())["models"]
    assert model["counts"]["scored"] == model["counts"]["items"] > 0


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_grpo_rollouts_from_precomputed_vision_equal_the_pixel_path(tmp_path, family):
    """GRPO runs the vision tower once per prompt and hands the features to generate
    (`mm_encoder_outputs`; Qwen3-VL's DeepStack features too): the same greedy rollouts."""
    from mmalign.config import GrpoConfig, ModelConfig
    from mmalign.data.video import MediaLoader
    from mmalign.config import SamplingConfig
    from mmalign.models.backbone import encode_prompt, family_of, load_backbone
    from mmalign.train.grpo import encode_visual, rollout, stop_ids, takes_features

    world = tmp_path / "w"
    build_world(world, n_videos=2, seed=3, show_progress=False)
    model, processor = load_backbone(ModelConfig(tiny=family, tiny_dir=str(tmp_path / "tiny")))
    model.eval()
    media = MediaLoader(SamplingConfig(num_frames=4))
    prompts = [encode_prompt(processor, "How many objects are there?", video=media.video(str(v)))
               for v in sorted((world / "videos").glob("*.mp4"))]
    g = GrpoConfig(max_new_tokens=5)
    eos = stop_ids(model, processor.tokenizer, family_of(model).end_of_turn)
    pad = processor.tokenizer.pad_token_id
    assert takes_features(model)
    feats = [encode_visual(model, p, "cpu") for p in prompts]
    with_features, _ = rollout(model, prompts, feats, g, 2, pad, eos, "cpu", greedy=True)
    from_pixels, _ = rollout(model, prompts, None, g, 2, pad, eos, "cpu", greedy=True)
    assert with_features == from_pixels
