"""Config loading: every shipped config validates; misspelt keys fail with their path."""

import re
from pathlib import Path

import pytest

from mmalign.config import ConfigError, build_config, load_config, load_raw, stages_of, to_dict

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


@pytest.mark.parametrize("text", ["train: {lr: .inf}", "train: {lr: inf}", "loss: {beta: .nan}", "train: {weight_decay: -.inf}"])
def test_a_number_that_is_not_finite_is_refused(text, tmp_path):
    """lr=inf was accepted and trained NaNs; keys without bounds took nan too."""
    p = tmp_path / "c.yaml"
    p.write_text(f"model: {{tiny: qwen2_5_vl}}\n{text}\n")
    with pytest.raises(ConfigError, match=r"(lr|beta|weight_decay): expected a finite number"):
        load_config(p)


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


@pytest.mark.parametrize("text, where, problem", [
    ("steps: [\n", ":2:1", "expected the node content, but found '<stream end>'"),
    ("a: 1\n  b: 2\n", ":2:4", "mapping values are not allowed here"),
    ("a: *nope\n", ":1:4", "found undefined alias 'nope'"),
])
def test_a_yaml_error_is_one_line_with_its_line_and_column(tmp_path, capsys, text, where, problem):
    """PyYAML's message runs over several lines with a drawing of the spot; the user gets one
    line: file:line:column and the problem."""
    from mmalign.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    for command in (["train", str(cfg)], ["run", str(cfg)]):
        assert main(command) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"mmalign: error: {cfg}{where}: not valid YAML: ") and line.endswith(problem)


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


# ---------------------------------------------------------------- the command line on a staged config

STAGED = ("model: {tiny: qwen2_5_vl}\nstages:\n"
          "  - {name: sft, method: sft, data: {train_file: sft.jsonl}, train: {lr: 2.0e-3}}\n"
          "  - {name: rrpo, method: rrpo, data: {train_file: pairs.jsonl}, loss: {beta: 0.1}}\n")


def staged(tmp_path):
    p = tmp_path / "staged.yaml"
    p.write_text(STAGED)
    return p


def test_stage_override_by_name_and_index_lands(tmp_path):
    cfg = load_config(staged(tmp_path), ["stages.rrpo.loss.beta=0.5", "stages.0.train.lr=1e-4",
                                         "stages.rrpo.data.train_file=/data/mine.jsonl"])
    (_, sft), (_, rrpo) = stages_of(cfg)
    assert (sft.train.lr, rrpo.loss.beta, rrpo.data.train_file) == (1e-4, 0.5, "/data/mine.jsonl")


def test_an_override_of_one_stage_does_not_reach_a_stage_that_shares_its_yaml_anchor(tmp_path):
    """`train: &t {...}` in one stage and `train: *t` in the next load as one dict; the override
    of stage a set stage b's lr too (copy.deepcopy keeps the sharing)."""
    p = tmp_path / "anchored.yaml"
    p.write_text("model: {tiny: qwen2_5_vl}\ndata: {train_file: x.jsonl}\nstages:\n"
                 "  - {name: a, method: dpo, train: &t {lr: 1.0e-4, max_steps: 2}}\n"
                 "  - {name: b, method: rrpo, train: *t}\n")
    cfg = load_config(p, ["stages.a.train.lr=0.5", "stages.b.train.max_steps=3"])
    (_, a), (_, b) = stages_of(cfg)
    assert (a.train.lr, a.train.max_steps, b.train.lr, b.train.max_steps) == (0.5, 2, 1e-4, 3)


def test_a_flow_mapping_typed_without_the_space_after_a_colon_says_so(tmp_path, capsys):
    """`{name:nope}` is YAML for the key 'name:nope' with no value: the reward check then said
    "expected a mapping with a 'name', got {'name:nope': None}"."""
    from mmalign.cli import main

    config = ROOT / "configs/train/grpo_hybrid_quickstart.yaml"
    item = "stages.grpo.grpo.rewards=[{name: answer_match, weight:2}]"
    assert main(["train", str(config), item, "--plan"]) == 2
    assert capsys.readouterr().err.strip() == (f"mmalign: error: command line: {item!r}: 'weight:2' reads as one key "
                                               "with no value; YAML needs a space after the colon (weight: 2)")
    cfg = load_config(staged(tmp_path), ["stages.rrpo.data.train_file=C:/data/pairs.jsonl"])  # a colon in a value is fine
    assert stages_of(cfg)[1][1].data.train_file == "C:/data/pairs.jsonl"


def test_a_top_level_override_a_stage_shadows_is_an_error_naming_the_stage(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: 'loss.beta=0.5': stage\(s\) rrpo set loss.beta themselves.*"
                                          r"stages.rrpo.loss.beta="):
        load_config(staged(tmp_path), ["loss.beta=0.5"])
    with pytest.raises(ConfigError, match=r"stage\(s\) sft, rrpo set data.train_file"):
        load_config(staged(tmp_path), ["data.train_file=x.jsonl"])
    cfg = load_config(staged(tmp_path), ["train.batch_size=3"])  # no stage sets it: every stage gets it
    assert [s.train.batch_size for _, s in stages_of(cfg)] == [3, 3]


def test_a_typo_on_the_command_line_names_the_command_line_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(staged(tmp_path), ["train.lerning_rate=1e-5"])
    assert str(e.value).startswith("command line: 'train.lerning_rate=1e-5': unknown key 'train.lerning_rate' "
                                   "(did you mean 'train.lr'?)")
    assert "staged.yaml" not in str(e.value)
    with pytest.raises(ConfigError, match=r"command line: .*no stage 'rrop' \(did you mean 'rrpo'\?\)"):
        load_config(staged(tmp_path), ["stages.rrop.loss.beta=1"])
    with pytest.raises(ConfigError, match=r"command line: .*unknown key 'data.num_frames': it is now 'sampling.num_frames'"):
        load_config(staged(tmp_path), ["data.num_frames=4"])


@pytest.mark.parametrize("key, value, message", [
    ("train.lr", "0", r"train\.lr: must be > 0, got 0"),
    ("train.lr", "-1e-5", r"train\.lr: must be > 0"),
    ("train.batch_size", "0", r"train\.batch_size: must be >= 1, got 0"),
    ("train.grad_accum", "0", r"train\.grad_accum: must be >= 1, got 0"),
    ("train.max_steps", "-3", r"train\.max_steps: must be >= 1, got -3"),
    ("sampling.num_frames", "0", r"sampling\.num_frames: must be >= 1, got 0"),
    ("loss.beta", "0", r"loss\.beta: must be > 0, got 0"),
])
def test_out_of_range_values_are_refused_by_key(tmp_path, key, value, message):
    p = tmp_path / "c.yaml"
    p.write_text("method: dpo\n")
    with pytest.raises(ConfigError, match=message):
        load_config(p, [f"{key}={value}"])


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(['*a%d' % (i - 1)] * 9)}]" for i in range(1, 9)]
    lines.append("stages: [{name: *a8, method: sft}]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    t0 = time.time()
    with pytest.raises(ConfigError, match=r"aliases expand to .* values"):
        load_raw(p)
    assert time.time() - t0 < 5


def test_the_cli_prints_one_line_for_a_config_error(tmp_path, capsys):
    from mmalign.cli import main

    assert main(["train", str(staged(tmp_path)), "train.grad_accum=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmalign: error: ") and "train.grad_accum" in err[0]


def test_version_flag(capsys):
    from mmalign.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("mmalign 0.")


def test_written_files_take_the_users_umask(tmp_path):
    import os
    import stat

    from mmalign.io import FILE_MODE, atomic_write_text

    atomic_write_text(tmp_path / "a.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == FILE_MODE == 0o666 & ~mask
    assert FILE_MODE != 0o600 or mask == 0o066  # not mkstemp's private mode


def test_a_stage_without_a_name_or_method_is_addressed_by_the_name_it_runs_under(tmp_path):
    """`<index>-<method>` with the top level's method when the stage names none (the command
    line once looked for `1-dpo` while the stage ran as `1-rrpo`)."""
    p = tmp_path / "c.yaml"
    p.write_text("method: rrpo\nmodel: {tiny: qwen2_5_vl}\nstages:\n  - {method: sft}\n  - {loss: {beta: 0.2}}\n")
    cfg = load_config(p, ["stages.1-rrpo.loss.beta=0.5"])
    assert [name for name, _ in stages_of(cfg)] == ["0-sft", "1-rrpo"]
    assert stages_of(cfg)[1][1].loss.beta == 0.5
    with pytest.raises(ConfigError, match=r"stage\(s\) 1-rrpo set loss.beta themselves"):
        load_config(p, ["loss.beta=0.3"])


def test_overrides_may_follow_a_flag_and_anything_else_stays_an_error():
    from mmalign.cli import parse

    args = parse(["train", "c.yaml", "train.lr=1e-5", "--resume", "train.lr=2e-5", "--strict", "model.tiny=x"])
    assert args.resume and args.strict and args.overrides == ["train.lr=1e-5", "train.lr=2e-5", "model.tiny=x"]
    for argv in (["train", "c.yaml", "--resume", "--bogus"], ["train", "c.yaml", "--resume", "stray"],
                 ["world", "--out", "w", "n=3"]):  # `world` takes no overrides
        with pytest.raises(SystemExit) as e:
            parse(argv)
        assert e.value.code == 2


@pytest.mark.parametrize("argv", [
    ["train", "configs/quickstart.yaml", "--plan"],
    ["pairs", "--videos", ".", "--config", "configs/pairs/rrpo_qa.yaml", "--out", "{tmp}/p.jsonl"],
    ["eval", "--config", "configs/eval/synthetic.yaml"],
    ["run", "configs/pipelines/apasi_quickstart.yaml", "--plan"],
], ids=lambda a: a[0])
def test_a_value_the_command_line_set_is_refused_naming_that_item_not_the_file(argv, tmp_path, capsys, monkeypatch):
    """An unknown tiny preset, a method or a bound broken on the command line: one line that names
    the item the user typed (it named the config file, which holds no such value), before any
    model loads. `model.tiny` is checked with the config (it was a ValueError traceback from the
    model builder)."""
    from mmalign.cli import main

    monkeypatch.chdir(ROOT)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*argv, "model.tiny=qwen3vl"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmalign: error: command line: 'model.tiny=qwen3vl': model.tiny: 'qwen3vl' is not one of")
    assert err.endswith("(did you mean 'qwen3_vl'?)") and "\n" not in err
    assert not (tmp_path / "p.jsonl").exists()


def test_a_staged_value_from_the_command_line_names_the_item_and_a_bad_file_value_the_file(tmp_path, capsys):
    from mmalign.cli import main

    assert main(["train", str(staged(tmp_path)), "train.batch_size=2", "stages.rrpo.train.max_steps=-1", "--plan"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mmalign: error: command line: 'stages.rrpo.train.max_steps=-1': stages[1]: train.max_steps: must be >= 1, "
        "got -1")
    # Each item is fine alone; the second, after the first, is what the config refuses.
    assert main(["train", str(staged(tmp_path)), "stages.rrpo.method=dpo", "stages.rrpo.loss.alpha=0.5", "--plan"]) == 2
    assert capsys.readouterr().err.startswith(
        "mmalign: error: command line: 'stages.rrpo.loss.alpha=0.5': stages[1].loss.alpha: method dpo does not read it")
    bad = tmp_path / "bad.yaml"
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a b", "rejected": "a c"}\n')
    bad.write_text(f"method: dpo\nmodel: {{tiny: qwen25vl}}\ndata: {{train_file: {tmp_path / 'pairs.jsonl'}}}\n")
    assert main(["train", str(bad), "train.lr=1e-5", "--plan"]) == 2
    assert capsys.readouterr().err.startswith(f"mmalign: error: {bad}: model.tiny: 'qwen25vl' is not one of")
    assert main(["train", str(bad), "model.tiny=qwen2_5_vl", f"output_dir={tmp_path}/run", "--plan"]) == 0  # mended


@pytest.mark.parametrize("argv", [
    ["train", "configs/quickstart.yaml", "output_dir={out}"],
    ["eval", "--config", "configs/eval/synthetic.yaml", "model.tiny=qwen2_5_vl", "output_dir={out}"],
    ["run", "configs/pipelines/apasi_quickstart.yaml", "output_dir={out}"],
    ["world", "--out", "{out}", "--n", "2"],
    ["pairs", "--videos", "configs", "--config", "configs/pairs/rrpo_qa.yaml", "--out", "{out}/p.jsonl"],
], ids=lambda a: a[0])
@pytest.mark.parametrize("under", [False, True], ids=["on-a-file", "under-a-file"])
def test_an_output_folder_where_a_file_stands_is_one_line_before_any_work(argv, under, tmp_path, capsys, monkeypatch):
    """A file where the run's folder (or a folder above it) should be: one line naming the key,
    before any model loads or video is read. Train and eval named a file inside it, the pipeline
    said "File exists", pairs named the folder's temporary file after answering every video."""
    from mmalign.cli import main

    monkeypatch.chdir(ROOT)
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    folder = afile / "run" if under else afile
    argv = [a.replace("{out}", str(folder)) for a in argv]
    assert main(argv) == 2
    key = "--out" if argv[0] in ("world", "pairs") else "output_dir"
    named = folder / "p.jsonl" if argv[0] == "pairs" else folder
    said = "a file, not a folder" if named == afile else f"{afile} is a file, not a folder"
    assert capsys.readouterr().err.strip() == f"mmalign: error: {key} {named}: {said}"
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("loader, config, item, message", [
    ("pairs", "pairs/rrpo_qa.yaml", "generation.temperature=-1", "generation.temperature: must be > 0, got -1.0"),
    ("pairs", "pairs/rrpo_qa.yaml", "generation.top_p=2", "generation.top_p: must be <= 1, got 2.0"),
    ("pairs", "pairs/rrpo_qa.yaml", "generation.max_new_tokens=0", "generation.max_new_tokens: must be >= 1, got 0"),
    ("pairs", "pairs/rrpo_qa.yaml", "rrpo.max_changed_fraction=-1", "rrpo.max_changed_fraction: must be > 0, got -1.0"),
    ("pairs", "pairs/temple.yaml", "temple.max_length_ratio=0.5", "temple.max_length_ratio: must be >= 1, got 0.5"),
    ("pairs", "pairs/apasi.yaml", "apasi.top_k=0", "apasi.top_k: must be >= 1, got 0"),
    ("eval", "eval/synthetic.yaml", "data.limit=-3", "data.limit: must be >= 1, got -3"),
    ("train", "train/grpo_hybrid_quickstart.yaml", "stages.grpo.grpo.eval_records=-1",
     "stages[1]: grpo.eval_records: must be >= 1, got -1"),
    # numpy's seeds: a traceback when the world was built, or when the run seeded itself
    ("train", "quickstart.yaml", "world.seed=-1", "world.seed: must be >= 0, got -1"),
    ("train", "quickstart.yaml", "train.seed=-1", "train.seed: must be >= 0, got -1"),
    ("train", "quickstart.yaml", "train.seed=4294967296", "train.seed: must be <= 4294967295, got 4294967296"),
    ("pairs", "pairs/rrpo_qa.yaml", "seed=-2", "seed: must be >= 0, got -2"),
    # empty: every video was read and answered, then "no pair was written ... (no video found)"
    ("pairs", "pairs/inject.yaml", "inject.types=[]", "inject.types: needs at least one edit type"),
    ("pairs", "pairs/video.yaml", "video.perturbations=[]", "video.perturbations: needs at least one perturbation"),
    # settings of one stage that cannot run together: a traceback when that stage began, after the
    # stages before it had trained
    ("train", "quickstart.yaml", "stages.rrpo.train.reference=precomputed",
     "stages[1]: train.reference: rrpo needs the reference's full distribution at every chosen token (token-wise KL), "
     "which precomputed log-probs do not keep; use copy or lora_disabled"),
    ("train", "quickstart.yaml", "stages.rrpo.train.reference=lora_disabled",
     "stages[1]: train.reference: lora_disabled is the policy with its LoRA adapters off, and lora.enabled is false; "
     "use copy (or enable lora)"),
    ("train", "train/grpo_hybrid_quickstart.yaml", "stages.grpo.train.grad_accum=2",
     "stages[1]: train.grad_accum: grpo needs 1 (train.batch_size is the prompts per step; grpo.micro_batch_size "
     "bounds the sequences per forward)"),
    ("train", "quickstart.yaml", "train.report_to=[tensorbord]",  # accelerate's ValueError when a stage began
     "train.report_to[0]: 'tensorbord' is not one of ['tensorboard', 'wandb', 'trackio', 'comet_ml', 'aim', 'mlflow', "
     "'clearml', 'dvclive', 'swanlab'] (did you mean 'tensorboard'?)"),
    ("train", "train/grpo_hybrid_quickstart.yaml", "stages.grpo.train.reference=none",
     "stages[1]: train.reference: none gives no reference to score new rollouts, and grpo.kl_beta=0.1 needs one; use "
     "copy or lora_disabled, or set grpo.kl_beta: 0"),
])
def test_values_outside_their_range_are_refused_with_the_range(loader, config, item, message):
    """Each was taken: eval_records=-1 scored all but the last record, data.limit=-3 all but the
    last three, max_changed_fraction=-1 dropped every rewrite, max_length_ratio<1 every pair,
    and a bad temperature / top_p failed inside generate, after the model had loaded."""
    from mmalign.evals.config import load_eval_config
    from mmalign.perturb.config import load_pairs_config

    load = {"pairs": load_pairs_config, "eval": load_eval_config, "train": load_config}[loader]
    with pytest.raises(ConfigError) as e:
        load(ROOT / "configs" / config, [item])
    assert str(e.value) == f"command line: {item!r}: {message}"


@pytest.mark.parametrize("raw, error", [
    ({"method": "simpo", "train": {"reference": "copy"}}, "train.reference: copy: simpo reads no reference model"),
    ({"method": "grpo", "grpo": {"kl_beta": 0.0}, "train": {"reference": "lora_disabled"}, "lora": {"enabled": True}},
     "train.reference: lora_disabled: grpo with grpo.kl_beta: 0 reads no reference model"),
    ({"method": "dpo", "train": {"reference": "precomputed"},
      "stages": [{"name": "sft", "method": "sft"}, {"name": "simpo", "method": "simpo"}]},
     "train.reference: precomputed: sft and simpo read no reference model"),
    ({"method": "dpo", "stages": [{"name": "sft", "method": "sft", "train": {"reference": "copy"}}, {"name": "dpo"}]},
     "stages[0].train.reference: copy: sft reads no reference model"),
    ({"method": "simpo", "grpo": {"kl_beta": 0.1}}, "grpo: set, but no stage runs grpo (method: simpo)"),
    ({"method": "dpo", "stages": [{"method": "sft"}, {"method": "dpo", "grpo": {"num_generations": 8}}]},
     "stages[1].grpo: set, but no stage runs grpo (method: dpo)"),
])
def test_a_setting_no_stage_reads_is_refused(raw, error):
    """SimPO, SFT, OSPO and GRPO without its KL term read no reference model, and only GRPO reads
    the grpo: section: a train.reference asking for a reference, or a grpo: section, was ignored
    without a word (the user believed the loss kept the model near a copy). 'auto' and 'none'
    stay allowed, and a top-level value that some stage reads."""
    with pytest.raises(ConfigError, match=re.escape(error) + "; leave it"):
        build_config(raw)
    for ok in ({"method": "simpo", "train": {"reference": "none"}}, {"method": "simpo"},
               {"method": "dpo", "train": {"reference": "copy"}, "stages": [{"method": "sft"}, {"method": "dpo"}]},
               {"method": "sft", "grpo": {"kl_beta": 0.0}, "stages": [{"method": "sft"}, {"method": "grpo"}]},
               to_dict(build_config({"method": "dpo"}))):  # a stage's written config.yaml: every section
        build_config(ok)


def test_a_choice_yaml_reads_as_a_boolean_is_the_choice(tmp_path):
    """`train.mixed_precision=no` (and `mixed_precision: no` in a file), a choice the help lists,
    was refused: YAML 1.1 reads `no` as False ("False is not one of ['auto', 'no', ...]")."""
    assert load_config(staged(tmp_path), ["train.mixed_precision=no"]).train.mixed_precision == "no"
    (tmp_path / "c.yaml").write_text("method: dpo\ntrain: {mixed_precision: no}\n")
    assert load_config(tmp_path / "c.yaml", []).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match=r"train.mixed_precision: True is not one of"):
        load_config(tmp_path / "c.yaml", ["train.mixed_precision=yes"])
