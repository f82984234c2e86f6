"""The installed layout: perturb/, evals/ and pipelines/ live in the repository's top level but
install as mmalign.perturb, mmalign.evals and mmalign.pipelines, so that PyPI projects of those
names (OpenAI's `evals`, `perturb`, `pipelines`) cannot shadow them; data flows one way."""

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"perturb": "mmalign.perturb", "evals": "mmalign.evals", "pipelines": "mmalign.pipelines"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def python_files(*folders):
    return [p for f in folders for p in (ROOT / f).rglob("*.py")]


def test_the_core_never_imports_perturb_evals_or_pipelines():
    for path in python_files("mmalign"):
        bad = {m for m in imports(path) if m.split(".")[:2] in (["mmalign", "perturb"], ["mmalign", "evals"],
                                                                 ["mmalign", "pipelines"])}
        if path.name == "cli.py" and path.parent.name == "mmalign":
            continue  # the command line is the one place that registers their sub-commands
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_file_imports_a_top_level_name_another_project_owns():
    for path in python_files("mmalign", "perturb", "evals", "pipelines", "tests", "benchmarks"):
        bad = {m for m in imports(path) if m.split(".")[0] in EXTRAS}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: use mmalign.<name>"


def test_every_package_folder_is_installed_under_mmalign():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = setup["package-dir"]
    wanted = set()
    for top in ("mmalign", *EXTRAS):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            wanted.add(".".join([EXTRAS.get(rel[0], rel[0]), *rel[1:]]))
    assert set(setup["packages"]) == wanted
    assert {dirs[v]: v for v in EXTRAS.values()} == {k: v for k, v in EXTRAS.items()}


@pytest.mark.parametrize("command", [["--help"], ["pairs", "--help"], ["eval", "--help"], ["run", "--help"]])
def test_foreign_perturb_evals_pipelines_modules_do_not_break_the_cli(tmp_path, command):
    """Stand-ins for PyPI's `perturb`, OpenAI's `evals` and `pipelines`, first on sys.path and
    failing loudly when imported: the CLI must not touch them."""
    for name in EXTRAS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise RuntimeError('the foreign {name} was imported')\n")
        (tmp_path / name / "cli.py").write_text("def register(sub):\n    raise RuntimeError('foreign')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "mmalign.cli", *command], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "foreign" not in out.stdout + out.stderr
    if command == ["--help"]:
        assert all(c in out.stdout for c in ("train", "pairs", "eval", "run", "world"))
