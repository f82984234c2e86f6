"""The README's commands and snippets work as written."""

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_test_command_is_self_contained_and_ci_runs_exactly_it():
    block = README.split("## Tests", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    assert block == ".venv/bin/python -m pytest tests"  # no `activate` needed in a fresh shell
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == block


def test_the_caption_snippet_runs_as_written(tmp_path, world, tiny_dir):
    from mmalign.config import ModelConfig
    from mmalign.models.backbone import model_path

    code = README.split("## Caption a video with your trained model", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    video = next((world / "videos").glob("*.mp4"))
    code = code.replace('"runs/quickstart/stage1-rrpo/final"', repr(str(model_path(ModelConfig(tiny="qwen2_5_vl",
                                                                                                tiny_dir=tiny_dir)))))
    code = code.replace('"data/world/videos/vid0000.mp4"', repr(str(video)))
    assert "path = '/" in code and "av.open('/" in code  # both substitutions landed
    script = tmp_path / "snippet.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_main_results_table_is_the_one_the_default_command_wrote():
    """The README's table under "Does alignment reduce hallucination?" is the committed results file
    of the default command, as it wrote it (a stale table, or one from another recipe, fails)."""
    import json

    start, end = "<!-- main-table:start -->", "<!-- main-table:end -->"
    block = README.split(start, 1)[1].split(end, 1)[0].strip()
    results = ROOT / "benchmarks" / "results"
    assert block == (results / "synthetic_alignment.md").read_text(encoding="utf-8").strip()
    meta = json.loads((results / "synthetic_alignment.json").read_text(encoding="utf-8"))["meta"]
    assert meta["command"] == "python benchmarks/synthetic_alignment.py"
    assert not meta["reused"]  # made from nothing, so its wall time is the harness's
    import importlib.util

    # The default command's rows and recipe must be the table's. Loaded under a name of its own and
    # not registered, so no other test finds this copy in sys.modules.
    spec = importlib.util.spec_from_file_location("_readme_harness", ROOT / "benchmarks" / "synthetic_alignment.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)

    table = json.loads((results / "synthetic_alignment.json").read_text(encoding="utf-8"))["table"]
    assert set(table) == {"sft", *harness.FULL["methods"]}
    keys = ("vision_steps", "base_steps", "base_seed", "sft_steps", "sft_mislabels", "align_steps", "primary", "guard",
            "held_out_world", "held_out_videos", "lr_on_all_seeds")
    assert {k: meta["size"][k] for k in keys} == {k: harness.FULL[k] for k in keys}
    lists = ("seeds", "align_lrs", "methods")
    assert {k: meta["size"][k] for k in lists} == {k: list(harness.FULL[k]) for k in lists}
    assert meta["held_out_world"] == harness.FULL["held_out_world"] != 0  # scored on the unseen world


def test_links_and_result_paths_in_the_readmes_exist():
    """The links and images of README.md and benchmarks/README.md resolve from the file that holds
    them, and so do the results folders and files they name (the record moved from one to the
    other once: its images and links had to follow it)."""
    import re

    missing = []
    for doc in (ROOT / "README.md", ROOT / "benchmarks" / "README.md"):
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" not in target and not target.startswith("#") and not (doc.parent / target).exists():
                missing.append(f"{doc.name}: link {target}")
        # A path written from the repository root; a pattern ({1,2}, *) or a file the GPU check
        # writes once a GPU has run it are not files.
        for path in re.findall(r"`(benchmarks/results/[^`\s]+)`", text):
            if not any(c in path for c in "*{") and "gpu_check" not in path and not (ROOT / path).exists():
                missing.append(f"{doc.name}: path {path}")
    assert not missing


def test_every_benchmark_script_has_a_line_in_the_benchmarks_readme():
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))
    assert scripts and not [s for s in scripts if f"| `{s}` |" not in text]
