"""The expanded plan (no model runs): TEMPLE's stage-per-strength schedule, APASI's rounds
and their schedule, the data flow between steps, and config errors."""

import math
from pathlib import Path

import pytest

from mmalign.config import ConfigError, _build
from mmalign.pipelines.plan import PipelineConfig, expand, load_pipeline, scheduled_value

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs", "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_pipeline_config_expands(path):
    cfg, steps = load_pipeline(path)
    assert steps and len({s.folder for s in steps}) == len(steps)


def test_temple_quickstart_is_dpo_m16_8_4_2_then_sft_each_from_the_last():
    cfg, steps = load_pipeline(Path(__file__).resolve().parents[2] / "configs/pipelines/temple_quickstart.yaml")
    kinds = [(s.name, s.kind) for s in steps]
    assert kinds == [("base-eval", "eval"), ("pairs", "pairs"), ("dpo-m16", "preference"), ("dpo-m8", "preference"),
                     ("dpo-m4", "preference"), ("dpo-m2", "preference"), ("sft", "sft"), ("eval", "eval")]
    out = Path(cfg.output_dir)
    train = [s for s in steps if s.kind in ("preference", "sft")]
    # each stage starts from the previous one's merged model; the reference is that same model
    assert train[0].init is None
    for before, after in zip(train, train[1:]):
        assert after.init == str(out / before.folder / "final")
        assert after.reference is None  # reference = the stage's own starting (merged) model
    # each preference stage reads the pairs file, only records of its strength: d(m) = 1 - log2(m) / 5
    for s, m, d in zip(train[:4], (16, 8, 4, 2), (0.2, 0.4, 0.6, 0.8)):
        data = s.config["data"]
        assert data["train_file"] == str(out / "01-pairs" / "pairs.jsonl")
        assert data["difficulty_min"] < d < data["difficulty_max"]
        assert data["difficulty_max"] - data["difficulty_min"] < 1e-5
        assert s.config["method"] == "rpo" and s.config["loss"]["alpha"] == 1.0
    assert steps[-1].config["model"]["path"] == str(out / "06-sft" / "final")
    assert steps[0].config["model"]["path"] is None  # the base model


def test_strength_windows_select_exactly_the_generator_difficulties():
    from mmalign.perturb.video import temple_difficulty

    cfg = _build(PipelineConfig, {"output_dir": "o", "stages": [
        {"name": "p", "kind": "preference", "strengths": [16, 8, 4, 2], "config": {"data": {"train_file": "x"}}}]}, "")
    steps = expand(cfg)
    ds = [temple_difficulty(m) for m in (16, 8, 4, 2)]
    for s, d in zip(steps, ds):
        lo, hi = s.config["data"]["difficulty_min"], s.config["data"]["difficulty_max"]
        assert [x for x in ds if lo <= x <= hi] == [d]
    # as --plan and each stage's config.yaml show them (they showed 0.19999899999999995)
    assert [str(s.config["data"]["difficulty_min"]) for s in steps] == ["0.199999", "0.399999", "0.599999", "0.799999"]


def apasi_raw(**block):
    return {"output_dir": "out", "model": {"tiny": "qwen2_5_vl"}, "stages": [
        {"name": "round", "rounds": 3, **block, "stages": [
            {"name": "pairs", "kind": "pairs", "config": {"generator": "apasi", "answers": "truth"}},
            {"name": "dpo", "kind": "preference", "config": {"train": {"reference": "copy"}}},
            {"name": "eval", "kind": "eval", "config": {"benchmark": "synthetic"}}]}]}


def test_apasi_rounds_schedule_rate_and_chain_policy_with_kept_reference():
    steps = expand(_build(PipelineConfig, apasi_raw(reference="keep", schedule={
        "pairs.apasi.replace_rates": {"start": 0.1, "step": 0.15}}), ""))
    assert [s.name for s in steps] == [f"round{r}-{k}" for r in (1, 2, 3) for k in ("pairs", "dpo", "eval")]
    pairs = [s for s in steps if s.kind == "pairs"]
    # start + (r - 1) * step, a scalar into the list field becoming a one-element list
    assert [p.config["apasi"]["replace_rates"] for p in pairs] == [[0.1], [0.25], [0.4]]
    dpo = [s for s in steps if s.kind == "preference"]
    assert [d.init for d in dpo] == [None, "out/01-round1-dpo/final", "out/04-round2-dpo/final"]
    assert [d.reference for d in dpo] == [None, "base", "base"]  # kept: the policy the block started from
    # each round's pairs come from the current policy and feed that round's DPO
    assert [p.config["model"]["path"] for p in pairs] == [None, "out/01-round1-dpo/final", "out/04-round2-dpo/final"]
    assert [d.config["data"]["train_file"] for d in dpo] == [f"out/{p.folder}/pairs.jsonl" for p in pairs]


def test_replaced_reference_is_the_rounds_own_start_and_list_schedules_apply_per_round():
    steps = expand(_build(PipelineConfig, apasi_raw(schedule={"pairs.apasi.replace_rates": [[0.2], [0.3, 0.5], [0.4]],
                                                              "dpo.loss.beta": [0.1, 0.2, 0.3]}), ""))
    assert all(s.reference is None for s in steps)
    assert [s.config["apasi"]["replace_rates"] for s in steps if s.kind == "pairs"] == [[0.2], [0.3, 0.5], [0.4]]
    assert [s.config["loss"]["beta"] for s in steps if s.kind == "preference"] == [0.1, 0.2, 0.3]


def test_scheduled_value_formula():
    assert [scheduled_value({"start": 0.2, "step": 0.2}, r, 3, "k") for r in (1, 2, 3)] == [0.2, 0.4, 0.6]
    assert scheduled_value([5, 6], 2, 2, "k") == 6
    with pytest.raises(ConfigError, match="2 values for 3 rounds"):
        scheduled_value([1, 2], 1, 3, "k")


@pytest.mark.parametrize("raw, match", [
    ({"stages": [{"name": "a", "kind": "preferance"}]}, "did you mean 'preference'"),
    ({"stages": [{"name": "a", "kind": "eval", "confg": {}}]}, "did you mean 'config'"),
    ({"stages": [{"name": "a", "kind": "preference"}]}, "needs data.train_file or a pairs stage"),
    ({"stages": [{"name": "a", "kind": "sft", "config": {"method": "dpo", "data": {"train_file": "x"}}}]},
     "does not fit a sft stage"),
    ({"stages": [{"name": "a", "kind": "eval"}, {"name": "a", "kind": "eval"}]}, "used twice"),
    ({"stages": [{"name": "a", "kind": "eval", "config": {"benchmark": "synthetc"}}]}, "synthetic"),
    ({"stages": [{"name": "r", "rounds": 2, "reference": "keep", "stages": [
        {"name": "d", "kind": "preference", "config": {"data": {"train_file": "x"}}}]}]}, "train.reference: copy"),
    ({"stages": [{"name": "r", "rounds": 2, "schedule": {"dop.loss.beta": [1, 2]}, "stages": [
        {"name": "dpo", "kind": "preference", "config": {"data": {"train_file": "x"}}}]}]}, "<stage>.<key.path>"),
    # a key the schedule or the strengths set per round / strength would be replaced without a word
    ({"stages": [{"name": "r", "rounds": 2, "schedule": {"dpo.loss.beta": [1, 2]}, "stages": [
        {"name": "dpo", "kind": "preference", "config": {"loss": {"beta": 0.1}, "data": {"train_file": "x"}}}]}]},
     r"stages\[0\].schedule.dpo.loss.beta: stage 'dpo' sets config.loss.beta itself"),
    ({"stages": [{"name": "d", "kind": "preference", "strengths": [16, 8],
                  "config": {"data": {"train_file": "x", "difficulty_max": 0.5}}}]},
     r"stages\[0\].config.data.difficulty_max: `strengths` sets it per strength"),
])
def test_config_errors_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        expand(_build(PipelineConfig, {"output_dir": "o", **raw}, ""))


def test_temple_difficulty_formula_matches_the_paper_values():
    from mmalign.pipelines.plan import temple_difficulty

    assert [temple_difficulty(m) for m in (16, 8, 4, 2)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert temple_difficulty(8) == pytest.approx(1 - math.log2(8) / 5)


APASI = CONFIGS[0].parent / "apasi_quickstart.yaml"
TEMPLE = CONFIGS[0].parent / "temple_quickstart.yaml"


def test_command_line_items_reach_the_stage_they_name_and_no_other():
    """`stages.<stage>.<key>` on `mmalign run`: a stage by name, index, or through its rounds
    block; a block's own keys; the schedule as one key. It was "'stages' is not a section"."""
    def values(path, items, key):
        return {s.name: s.config.get(key[0], {}).get(key[1]) for s in load_pipeline(path, items)[1]}

    plain = values(APASI, [], ("loss", "beta"))
    assert values(APASI, ["stages.dpo.config.loss.beta=0.3"], ("loss", "beta")) == {
        **plain, "round1-dpo": 0.3, "round2-dpo": 0.3}
    assert values(APASI, ["stages.round.stages.dpo.config.loss.beta=0.4"], ("loss", "beta"))["round2-dpo"] == 0.4
    assert values(APASI, ["stages.0.config.train.max_steps=5"], ("train", "max_steps"))["warmup"] == 5
    steps = load_pipeline(APASI, ["stages.round.rounds=3", "stages.round.schedule.pairs.apasi.replace_rates=[0.1,0.2,0.5]"])[1]
    assert [s.config["apasi"]["replace_rates"] for s in steps if s.kind == "pairs"] == [[0.1], [0.2], [0.5]]
    # TEMPLE's two eval stages share one YAML anchor (`config: &eval` ... `config: *eval`)
    batch = values(TEMPLE, ["stages.eval.config.generation.batch_size=2"], ("generation", "batch_size"))
    assert (batch["base-eval"], batch["eval"]) == (8, 2)


@pytest.mark.parametrize("item, message", [
    ("stages.dpoo.config.loss.beta=1", "no stage 'dpoo' (did you mean 'dpo'?); stages: warmup, base-eval, round, "
                                       "round.stages.pairs, round.stages.dpo, round.stages.eval"),
    ("stages.dpo.config.loss.betta=1", "unknown key 'loss.betta' (did you mean 'loss.beta'?)"),
    ("stages.pairs.config.apasi.topk=1", "unknown key 'apasi.topk' (did you mean 'apasi.top_k'?)"),
    ("stages.warmup.cnfig.x=1", "unknown stage key 'cnfig' (did you mean 'config'?)"),
    ("stages.round.rouns=3", "unknown block key 'rouns' (did you mean 'rounds'?)"),
    ("stages.warmup.kind.x=1", "'kind' is a value, not a section"),
    ("stages.warmup=1", "name a key of the stage, e.g. stages.warmup.config.train.lr="),
    ("stages.round.schedule.pairs.apasi.top_k=[1,2]",
     "stages[2].schedule.pairs.apasi.top_k: stage 'pairs' sets config.apasi.top_k itself"),
    ("stages.dpo.config.train.max_steps=0", "stages[2].stages[1] (round 1): train.max_steps: must be >= 1, got 0"),
])
def test_a_bad_stage_item_is_one_line_naming_it(item, message, capsys):
    from mmalign.cli import main

    assert main(["run", str(APASI), item, "--plan"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"mmalign: error: command line: {item!r}: ") and message in line, line


def test_a_top_level_model_key_a_stage_sets_itself_is_refused_naming_the_stage():
    from mmalign.pipelines.plan import apply_pipeline_overrides

    raw = {"model": {"tiny": "qwen2_5_vl"}, "stages": [
        {"name": "e", "kind": "eval", "config": {"model": {"dtype": "float32"}}},
        {"name": "r", "rounds": 2, "stages": [{"name": "p", "kind": "pairs", "config": {"model": {"dtype": "bfloat16"}}}]}]}
    with pytest.raises(ConfigError, match=r"'model.dtype=float16': stages.e, stages.r.stages.p set config.model.dtype "
                                          r"themselves.*stages.e.config.model.dtype=\.\.\. stages.r.stages.p.config"):
        apply_pipeline_overrides(raw, ["model.dtype=float16"])
    assert apply_pipeline_overrides(raw, ["model.tiny=qwen2_vl"])["model"]["tiny"] == "qwen2_vl"  # no stage sets it


def test_the_plan_shows_each_steps_settings_with_the_command_lines_values(capsys):
    """--plan printed each step's folder and inputs only: an override could not be seen to land."""
    from mmalign.cli import main

    assert main(["run", str(APASI), "stages.dpo.config.loss.beta=0.3", "stages.warmup.config.train.max_steps=7",
                 "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    settings = {head.split()[0]: dict(kv.split("=", 1) for kv in body.split()) for head, body in zip(lines[::2], lines[1::2])}
    assert [settings[f][k] for f, k in [("00-warmup", "train.max_steps"), ("03-round1-dpo", "loss.beta"),
                                        ("06-round2-dpo", "loss.beta"), ("05-round2-pairs", "apasi.replace_rates")]] == [
        "7", "0.3", "0.3", "[0.4]"]
    assert settings["04-round1-eval"]["model.path"] == '"runs/pipelines/apasi_quickstart/03-round1-dpo/final"'
    assert "loss.beta" not in settings["00-warmup"] and "output_dir" not in settings["03-round1-dpo"]
