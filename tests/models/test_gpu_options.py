"""The model section's GPU-only options (FlashAttention-2, Liger) on a machine that cannot run
them: one line before anything is claimed; and Liger's patching logic, proven on CPU with a
stand-in for the liger_kernel package (its Triton kernels need CUDA)."""

from pathlib import Path
import sys
import types

import pytest
import torch

from mmalign.config import ConfigError, ModelConfig
from mmalign.models.backbone import load_backbone

ROOT = Path(__file__).resolve().parents[2]
FLASH = "model.attn_implementation=flash_attention_2"
LIGER = "model.liger_kernel=true"


@pytest.mark.parametrize("option", [FLASH, LIGER])
@pytest.mark.parametrize("command", ["train", "pairs", "eval", "run"])
def test_an_option_this_machine_cannot_run_is_one_line_before_anything_is_claimed(tmp_path, monkeypatch, capsys,
                                                                                  tiny_dir, command, option):
    """flash-attn missing was an ImportError traceback from inside the model load, after the
    run had claimed its folder; Liger could not be asked for at all."""
    from mmalign.cli import main
    from mmalign.world import build_world

    if option == LIGER and "liger_kernel" in sys.modules:
        pytest.skip("liger-kernel is installed here")
    monkeypatch.chdir(tmp_path)
    build_world("w", n_videos=4, show_progress=False)
    tiny = ["model.tiny=qwen2_5_vl", f"model.tiny_dir={tiny_dir}"]
    (tmp_path / "c.yaml").write_text("method: dpo\noutput_dir: run\ndata: {train_file: w/pairs_train.jsonl}\n")
    argv = {"train": ["train", "c.yaml", *tiny],
            "pairs": ["pairs", "--videos", "w/videos", "--config", str(ROOT / "configs/pairs/rrpo_qa.yaml"),
                      "--out", "run/pairs.jsonl", "model.path=null", *tiny],
            "eval": ["eval", "--config", str(ROOT / "configs/eval/synthetic.yaml"), "output_dir=run", "world.out=w",
                     "world.n_videos=4", *tiny],
            "run": ["run", str(ROOT / "configs/pipelines/temple_quickstart.yaml"), "output_dir=run",
                    f"model.tiny_dir={tiny_dir}"]}[command]
    assert main([*argv, option]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    package = "flash-attn" if option == FLASH else "liger-kernel"
    assert line.startswith("mmalign: error: ") and f"{option}: needs the {package} package" in line
    assert not (tmp_path / "run").exists()


def test_a_gpu_option_without_a_gpu_is_refused(monkeypatch, tiny_dir):
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"model\.liger_kernel=true: runs on a CUDA GPU only"):
        load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=tiny_dir, liger_kernel=True))


@pytest.fixture
def stand_in_liger(monkeypatch):
    """A liger_kernel package whose instance patcher records its calls, supporting two model types."""
    calls = []
    pkg = types.ModuleType("liger_kernel")
    transformers_mod = types.ModuleType("liger_kernel.transformers")
    patch_mod = types.ModuleType("liger_kernel.transformers.monkey_patch")
    patch_mod.MODEL_TYPE_TO_APPLY_LIGER_FN = {"qwen2_5_vl": None, "smolvlm": None}

    def apply(model, **kwargs):
        if kwargs.pop("fail", False):
            raise ImportError("cannot import name 'X' from 'liger_kernel.transformers.model.output_classes'")
        calls.append((model, kwargs))

    transformers_mod._apply_liger_kernel_to_instance = apply
    for name, mod in (("liger_kernel", pkg), ("liger_kernel.transformers", transformers_mod),
                      ("liger_kernel.transformers.monkey_patch", patch_mod)):
        monkeypatch.setitem(sys.modules, name, mod)
    import transformers.integrations.liger as hf_liger

    monkeypatch.setattr(hf_liger, "is_liger_kernel_available", lambda: True)  # no package metadata for a stand-in
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return calls


def test_liger_patches_the_loaded_model_without_its_fused_cross_entropy(stand_in_liger, tiny_dir):
    """Our scoring reads the last hidden state and scores through the LM head in chunks: Liger's
    fused linear cross-entropy (a replaced forward) would not be used, so it is asked off."""
    model, _ = load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=tiny_dir, liger_kernel=True))
    ((patched, kwargs),) = stand_in_liger
    assert patched is model
    assert kwargs == {"cross_entropy": False, "fused_linear_cross_entropy": False}
    load_backbone(ModelConfig(tiny="qwen2_5_vl", tiny_dir=tiny_dir))
    assert len(stand_in_liger) == 1  # off unless asked for


def test_liger_refuses_a_model_type_it_has_no_kernels_for_and_a_failed_patch(stand_in_liger, tiny_dir, monkeypatch):
    """Liger itself only logs an unsupported type and patches nothing: the run would go on
    believing it had Liger. A release behind transformers' model classes fails inside its patcher."""
    with pytest.raises(ConfigError, match=r"model\.liger_kernel: Liger has no kernels for model type 'llava_onevision'"):
        load_backbone(ModelConfig(tiny="llava_onevision", tiny_dir=tiny_dir, liger_kernel=True))
    import transformers.integrations.liger as hf_liger

    real = hf_liger.apply_liger_kernel
    monkeypatch.setattr(hf_liger, "apply_liger_kernel", lambda model, config: real(model, {**config, "fail": True}))
    with pytest.raises(ConfigError, match=r"Liger could not patch model type 'smolvlm' \(ImportError: cannot import"):
        load_backbone(ModelConfig(tiny="smolvlm", tiny_dir=tiny_dir, liger_kernel=True))
    assert stand_in_liger == []


def test_a_tracker_that_is_not_installed_is_one_line_before_anything_is_claimed(tmp_path, monkeypatch, capsys):
    """accelerate only warned, among the step logs, and the run logged nowhere."""
    import accelerate.utils

    from mmalign.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(accelerate.utils, "is_tensorboard_available", lambda: False)
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    (tmp_path / "c.yaml").write_text("method: dpo\noutput_dir: run\nmodel: {tiny: qwen2_5_vl}\n"
                                     "data: {train_file: d.jsonl}\ntrain: {report_to: [tensorboard]}\n")
    assert main(["train", "c.yaml"]) == 2
    assert capsys.readouterr().err.strip() == ("mmalign: error: train.report_to: tensorboard is not installed here "
                                               "(pip install -e '.[tracking]'); install it or leave it out")
    assert not (tmp_path / "run").exists()
