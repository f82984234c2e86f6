"""Config loading: every shipped config validates; misspelt keys fail with their path."""

from pathlib import Path

import pytest

from mmalign.config import ConfigError, build_config, load_config, load_raw, stages_of

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "configs").rglob("*.yaml")
                 if "accelerate" not in p.parts and "eval" not in p.parts and "pairs" not in p.parts
                 and "pipelines" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_train_configs_validate(path):
    cfg = load_config(path)
    assert stages_of(cfg)


def test_misspelt_key_names_path_and_suggestion(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  tiny: qwen2_5_vl\ntrain:\n  learning_rate: 1e-5\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "train.learning_rate" in str(e.value) and str(p) in str(e.value)


def test_misspelt_key_inside_stage(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("stages:\n  - method: sft\n    trian: {lr: 1}\n")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.trian.*did you mean 'train'"):
        load_config(p)


def test_suggestion_for_nested_key():
    with pytest.raises(ConfigError, match=r"loss\.betta.*did you mean 'beta'"):
        build_config({"loss": {"betta": 0.1}})


def test_wrong_type_and_literal():
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected an integer"):
        build_config({"train": {"batch_size": "two"}})
    with pytest.raises(ConfigError, match=r"method: 'rrp' is not one of .*did you mean 'rrpo'"):
        build_config({"method": "rrp"})


def test_overrides_are_typed_and_validated(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: dpo\n")
    cfg = load_config(p, ["train.lr=1e-5", "lora.enabled=true", "loss.beta=0.5"])
    assert cfg.train.lr == pytest.approx(1e-5) and cfg.lora.enabled is True and cfg.loss.beta == 0.5
    with pytest.raises(ConfigError, match="train.lrr"):
        load_config(p, ["train.lrr=1"])


def test_stage_overrides_merge_over_top_level():
    cfg = build_config({"train": {"lr": 1.0, "batch_size": 3},
                        "stages": [{"name": "a", "method": "sft", "train": {"lr": 2.0}}, {"method": "rrpo"}]})
    (n0, s0), (n1, s1) = stages_of(cfg)
    assert (n0, s0.method, s0.train.lr, s0.train.batch_size) == ("a", "sft", 2.0, 3)
    assert (n1, s1.method, s1.train.lr) == ("1-rrpo", "rrpo", 1.0)


def test_yaml_is_safe_loaded(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_raw(p)


def test_readme_reference_is_generated_from_the_fields():
    from mmalign.config import README_MARKERS, reference_markdown

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(README_MARKERS[0], 1)[1].split(README_MARKERS[1], 1)[0].strip()
    assert block == reference_markdown(), "run `python -m mmalign.config` to refresh the README"


@pytest.mark.parametrize("path", sorted((ROOT / "configs/accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    import yaml

    raw = yaml.safe_load(path.read_text())
    assert raw["distributed_type"] in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert raw["num_processes"] >= raw["num_machines"] >= 1
