"""Reference kinds and memory switches change how, not what: equal losses step by step."""

from pathlib import Path

import pytest

from mmalign.config import build_config
from mmalign.io import iter_jsonl
from mmalign.train.run import train


def run(tmp_path, world, tiny_dir, name, **sections):
    raw = {"output_dir": str(tmp_path / name), "method": "dpo",
           "model": {"tiny": "qwen2_5_vl", "tiny_dir": tiny_dir},
           "data": {"train_file": str(world / "pairs_train.jsonl")}, "sampling": {"num_frames": 4},
           "train": {"batch_size": 2, "lr": 5e-3, "max_steps": 3, "warmup_ratio": 0.0}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    train(build_config(raw))
    return [row for _, row in iter_jsonl(Path(raw["output_dir"]) / "metrics.jsonl")]


def assert_same(a, b, keys=("loss", "rewards/margin", "grad_norm")):
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        for k in keys:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), (x["step"], k)
    assert a[-1]["rewards/margin"] != pytest.approx(0.0, abs=1e-6)  # the policy moved off the reference


def test_precomputed_reference_equals_frozen_copy(tmp_path, world, tiny_dir):
    copy = run(tmp_path, world, tiny_dir, "copy", train={"reference": "copy"})
    cached = run(tmp_path, world, tiny_dir, "cached", train={"reference": "precomputed"})
    assert_same(copy, cached)
    assert list((tmp_path / "cached" / "ref_cache").glob("*.safetensors"))


def test_lora_reference_by_disabling_adapters_equals_frozen_copy(tmp_path, world, tiny_dir):
    lora = {"enabled": True, "r": 4, "alpha": 8}
    disabled = run(tmp_path, world, tiny_dir, "disabled", lora=lora, train={"reference": "lora_disabled"})
    copy = run(tmp_path, world, tiny_dir, "copy", lora=lora, train={"reference": "copy"})
    assert_same(disabled, copy)
    final = tmp_path / "disabled" / "final"
    assert (final / "adapter" / "adapter_config.json").exists()
    from transformers import AutoModelForImageTextToText
    model = AutoModelForImageTextToText.from_pretrained(final)
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged


def test_gradient_checkpointing_changes_nothing_but_memory(tmp_path, world, tiny_dir):
    plain = run(tmp_path, world, tiny_dir, "plain")
    ckpt = run(tmp_path, world, tiny_dir, "ckpt", model={"gradient_checkpointing": True})
    assert_same(plain, ckpt)
