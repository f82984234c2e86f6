"""benchmarks/gpu_check.py --cpu --tiny: every step of the GPU check runs (or says why it is
skipped) on the CPU, so the script cannot rot before a GPU run starts it."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_gpu_check_step_runs_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "gpu_check.json"
    result = mod.main(["--cpu", "--tiny", "--out", str(out)])
    steps = json.loads(out.read_text())["steps"]
    assert steps == json.loads(json.dumps(result["steps"]))
    assert set(steps) == {"attention/sdpa", "attention/flex_attention", "attention/flash_attention_2", "long_video",
                          "shared_prompt", "fsdp2", "deepspeed_zero3", "grpo"}
    failed = {k: v.get("error") for k, v in steps.items() if v["status"] == "failed"}
    assert not failed
    for name in ("attention/sdpa", "long_video", "shared_prompt", "fsdp2", "grpo"):
        assert steps[name]["status"] == "ok", name
    assert steps["fsdp2"]["reloaded_max_abs_logp_diff"] < 1e-4  # final/ reloads to the trained weights
    assert steps["long_video"]["video_tokens"] > 0 and steps["grpo"]["completions"] == 8
    assert all(v["reason"] for v in steps.values() if v["status"] == "skipped")
