"""A pipeline YAML -> the flat, fully resolved list of steps it runs (no model is loaded here).

    output_dir: runs/pipelines/apasi            # one folder per step below it
    model: {tiny: qwen2_5_vl}                   # the base model every step starts from
    world: {enabled: true, out: data/world}     # optional: build the synthetic world first
    videos: null                                # pairs stages' video folder (default <world.out>/videos)
    stages:
      - {name: base, kind: eval, config: {...}}             # an EvalConfig dict
      - name: round                                        # a block of stages run `rounds` times
        rounds: 2
        reference: keep                                    # keep | replace (see below)
        schedule: {pairs.apasi.replace_rates: {start: 0.1, step: 0.1}}
        stages:
          - {name: pairs, kind: pairs, config: {...}}      # a PairsConfig dict (+ `videos`)
          - {name: dpo, kind: preference, config: {...}}   # a RunConfig dict (one stage)
          - {name: eval, kind: eval, config: {...}}

Kinds: `pairs` (perturb), `sft` / `preference` / `grpo` (mmalign's trainer, one stage each),
`eval` (evals). Data flow, resolved here so that the plan is a pure function of the YAML:

- the policy is the base model until a training step ends; after it, `<its folder>/final` (the
  trainer merges LoRA into it). Every later step uses it: `model.path` of pairs and eval steps,
  the init weights of the next training step.
- the reference of a training step is its own starting policy (`reference: replace`, the
  default: TEMPLE's "merged model = next policy and next reference"), or, with `reference: keep`
  in a rounds block, the policy the block started from (it needs `train.reference: copy`).
- a `preference` step without `data.train_file` reads the last `pairs` step's `pairs.jsonl`.
- an `eval` step without `data.root` scores the pipeline's world.

`rounds: N` repeats its stages, named `<block>1-<stage>`, `<block>2-<stage>`, ... `schedule`
sets `<stage>.<key.path>` per round r = 1..N: a list (entry r-1), or `{start, step}` giving
start + (r-1) * step. A scalar scheduled into a list field becomes a one-element list (APASI's
`apasi.replace_rates`).

`strengths: [16, 8, 4, 2]` on a preference stage is TEMPLE's curriculum: one stage per strength
m, in the order given, named `<stage>-m<m>`, each training only on the records of that strength
(difficulty d(m) = 1 - log2(m) / 5, selected with data.difficulty_min/max = d(m) -+ 1e-6).
Within a stage, `data.curriculum` (shuffle | ordered | bucketed | rising_cap) orders the records
(mmalign/train/curriculum.py gives each formula).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.config import ConfigError, ModelConfig, WorldConfig, _build, _f, build_overridden, deep_merge, load_raw

KINDS = ("pairs", "sft", "preference", "grpo", "eval")
TRAINING = ("sft", "preference", "grpo")
STAGE_KEYS = ("name", "kind", "config", "videos", "strengths", "metric")
BLOCK_KEYS = ("name", "rounds", "schedule", "reference", "stages")
DIFFICULTY_TOLERANCE = 1e-6
BASE = "base"  # Step.reference naming the pipeline's base model


@dataclass
class PipelineConfig:
    output_dir: str = _f("runs/pipeline", "Pipeline folder: one sub-folder per step, pipeline_summary.{json,md,png}.")
    model: ModelConfig = _f(None, "The base model (each step's `config.model` may override its keys).",
                            nested=ModelConfig)
    world: WorldConfig = _f(None, "Build (or reuse) the synthetic world first when `enabled`.", nested=WorldConfig)
    videos: str | None = _f(None, "Video folder of pairs stages without their own `videos` (None = <world.out>/videos).")
    metric: str | None = _f(None, "Eval metric of the summary plot (None = the benchmark's first headline).")
    stages: list[dict] = _f([], "Stages in order: {name, kind, config, ...} or rounds blocks {name, rounds, "
                               "schedule, reference, stages} (see pipelines/plan.py).")

    def __post_init__(self):
        for name in ("model", "world"):
            if getattr(self, name) is None:
                setattr(self, name, self.__dataclass_fields__[name].metadata["nested"]())


@dataclass
class Step:
    """One unit of work with its own folder and done-marker."""
    index: int
    name: str
    kind: str
    config: dict                      # the resolved standalone config (PairsConfig / RunConfig / EvalConfig dict)
    round: int | None = None
    block: str | None = None
    init: str | None = None           # training: the weights it starts from (None = the base model)
    reference: str | None = None      # training: a reference other than `init` (reference: keep); "base" = the base model
    videos: str | None = None         # pairs: the video folder
    metric: str | None = None         # eval: the metric plotted

    @property
    def folder(self) -> str:
        return f"{self.index:02d}-{self.name}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def temple_difficulty(m: int) -> float:
    from mmalign.perturb.video import temple_difficulty as d

    return d(m)


# ---------------------------------------------------------------- loading

def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> tuple[PipelineConfig, list[Step]]:
    return build_overridden(load_raw(path), overrides or [], None, build_pipeline, str(path))


def build_pipeline(raw: dict, source: str = "config") -> tuple[PipelineConfig, list[Step]]:
    try:
        cfg = _build(PipelineConfig, raw, "")
        return cfg, expand(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _check_keys(entry: Any, known: tuple, where: str) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in entry:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            raise ConfigError(f"unknown key '{where}.{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                              + f"; known keys here: {', '.join(known)}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_")


# ---------------------------------------------------------------- expansion

def expand(cfg: PipelineConfig) -> list[Step]:
    """The steps in order, each with its config resolved (models, data files, output dirs)."""
    entries = []  # (stage entry, round, block name, block reference mode, where)
    for i, entry in enumerate(cfg.stages):
        where = f"stages[{i}]"
        if isinstance(entry, dict) and "rounds" in entry:
            entries += _unroll(entry, where)
        else:
            _check_keys(entry, STAGE_KEYS, where)
            entries.append((entry, None, None, "replace", where))

    steps, names = [], set()
    base = dataclasses.asdict(cfg.model)
    policy, last_pairs, block_start = None, None, {}
    for entry, rnd, block, ref_mode, where in entries:
        kind = entry.get("kind")
        if kind not in KINDS:
            hint = difflib.get_close_matches(str(kind), KINDS, n=1)
            raise ConfigError(f"{where}.kind: {kind!r} is not one of {list(KINDS)}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        name = _safe(entry.get("name") or kind)
        if rnd is not None:
            name = f"{block}{rnd}-{name}"
            block_start.setdefault(block, policy)
        config = entry.get("config") or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{where}.config: expected a mapping")
        if "strengths" in entry and kind != "preference":
            raise ConfigError(f"{where}.strengths: only a preference stage has TEMPLE strengths")
        for sub_name, sub_config in _per_strength(entry, name, config, where):
            if sub_name in names:
                raise ConfigError(f"{where}: step name {sub_name!r} is used twice")
            names.add(sub_name)
            step = Step(len(steps), sub_name, kind, {}, round=rnd, block=block)
            folder = str(Path(cfg.output_dir) / step.folder)
            if kind == "pairs":
                step.config = _pairs_config(sub_config, base, policy, where)
                step.videos = entry.get("videos") or cfg.videos or str(Path(cfg.world.out) / "videos")
                last_pairs = str(Path(folder) / "pairs.jsonl")
            elif kind == "eval":
                step.config = _eval_config(sub_config, base, policy, folder, cfg, where)
                step.metric = entry.get("metric") or cfg.metric
            else:
                step.config = _train_config(kind, sub_config, base, folder, last_pairs, where)
                step.init = policy
                keep = ref_mode == "keep" and rnd is not None and block_start[block] != policy
                if keep:
                    if step.config["train"].get("reference", "auto") != "copy":
                        raise ConfigError(f"{where}: reference: keep needs train.reference: copy in the stage "
                                          "config (a frozen copy of the block's first policy)")
                    step.reference = block_start[block] or BASE
                policy = str(Path(folder) / "final")
            steps.append(step)
    return steps


def _unroll(block: dict, where: str) -> list[tuple]:
    _check_keys(block, BLOCK_KEYS, where)
    rounds = block["rounds"]
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"{where}.rounds: expected an integer >= 1, got {rounds!r}")
    name = _safe(block.get("name") or "round")
    ref_mode = block.get("reference", "replace")
    if ref_mode not in ("keep", "replace"):
        raise ConfigError(f"{where}.reference: {ref_mode!r} is not one of ['keep', 'replace']")
    inner = block.get("stages") or []
    if not isinstance(inner, list) or not inner:
        raise ConfigError(f"{where}.stages: a rounds block needs a list of stages")
    for j, entry in enumerate(inner):
        _check_keys(entry, STAGE_KEYS, f"{where}.stages[{j}]")
    by_name = {_safe(e.get("name") or e.get("kind")): j for j, e in enumerate(inner)}
    schedule = block.get("schedule") or {}
    if not isinstance(schedule, dict):
        raise ConfigError(f"{where}.schedule: expected a mapping of <stage>.<key.path>: values")
    out = []
    for r in range(1, rounds + 1):
        entries = [copy.deepcopy(e) for e in inner]
        for key, values in schedule.items():
            stage, _, path = str(key).partition(".")
            if stage not in by_name or not path:
                raise ConfigError(f"{where}.schedule.{key}: must be <stage>.<key.path> with <stage> one of "
                                  f"{sorted(by_name)}")
            entry = entries[by_name[stage]]
            value = scheduled_value(values, r, rounds, f"{where}.schedule.{key}")
            entry["config"] = _set_path(entry.get("config") or {}, path, value, entry.get("kind"))
        out += [(e, r, name, ref_mode, f"{where}.stages[{j}] (round {r})") for j, e in enumerate(entries)]
    return out


def scheduled_value(values: Any, r: int, rounds: int, where: str) -> Any:
    """The value of round r (1-based): `values[r - 1]`, or start + (r - 1) * step."""
    if isinstance(values, list):
        if len(values) < rounds:
            raise ConfigError(f"{where}: {len(values)} values for {rounds} rounds")
        return values[r - 1]
    if isinstance(values, dict) and set(values) == {"start", "step"}:
        return round(values["start"] + (r - 1) * values["step"], 10)
    raise ConfigError(f"{where}: expected a list (one value per round) or {{start, step}}")


def _set_path(config: dict, path: str, value: Any, kind: str | None) -> dict:
    if not isinstance(value, list) and _is_list_field(kind, path.split(".")):
        value = [value]
    for key in reversed(path.split(".")):
        value = {key: value}
    return deep_merge(config, value)


def _config_class(kind: str | None):
    if kind == "pairs":
        from mmalign.perturb.config import PairsConfig

        return PairsConfig
    if kind == "eval":
        from mmalign.evals.config import EvalConfig

        return EvalConfig
    from mmalign.config import RunConfig

    return RunConfig


def _is_list_field(kind: str | None, keys: list[str]) -> bool:
    cls = _config_class(kind)
    for i, key in enumerate(keys):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if key not in fields:
            return False  # the config check names the unknown key
        nested = fields[key].metadata.get("nested")
        if nested is None:
            return i == len(keys) - 1 and typing.get_origin(typing.get_type_hints(cls)[key]) is list
        cls = nested
    return False


def _per_strength(entry: dict, name: str, config: dict, where: str) -> list[tuple[str, dict]]:
    strengths = entry.get("strengths")
    if strengths is None:
        return [(name, config)]
    if not isinstance(strengths, list) or not strengths or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in strengths):
        raise ConfigError(f"{where}.strengths: expected a list of integers >= 1 (TEMPLE: [16, 8, 4, 2])")
    out = []
    for m in strengths:
        d = temple_difficulty(m)
        window = {"data": {"difficulty_min": d - DIFFICULTY_TOLERANCE, "difficulty_max": d + DIFFICULTY_TOLERANCE}}
        out.append((f"{name}-m{m}", deep_merge(config, window)))
    return out


# ---------------------------------------------------------------- per kind

def _model(base: dict, override: dict | None, policy: str | None) -> dict:
    model = deep_merge(base, override or {})
    if policy:
        model["path"] = policy
    return model


def _pairs_config(config: dict, base: dict, policy: str | None, where: str) -> dict:
    from mmalign.perturb.config import build_pairs_config

    raw = {**config, "model": _model(base, config.get("model"), policy)}
    return dataclasses.asdict(build_pairs_config(raw, where))


def _eval_config(config: dict, base: dict, policy: str | None, folder: str, cfg: PipelineConfig,
                 where: str) -> dict:
    from mmalign.evals.config import build_eval_config

    raw = {**config, "output_dir": folder, "model": _model(base, config.get("model"), policy)}
    if cfg.world.enabled and not (config.get("data") or {}).get("root") and not (config.get("world") or {}):
        raw = deep_merge(raw, {"data": {"root": cfg.world.out}})
    return dataclasses.asdict(build_eval_config(raw, where))


def _train_config(kind: str, config: dict, base: dict, folder: str, last_pairs: str | None, where: str) -> dict:
    from mmalign.config import build_config

    if config.get("stages"):
        raise ConfigError(f"{where}.config.stages: a pipeline stage is one training stage; list stages in the "
                          "pipeline instead")
    method = config.get("method") or {"sft": "sft", "grpo": "grpo", "preference": "dpo"}[kind]
    if (kind == "preference") == (method in ("sft", "grpo")) or (kind != "preference" and method != kind):
        raise ConfigError(f"{where}.config.method: {method!r} does not fit a {kind} stage")
    raw = deep_merge({"model": base}, {**config, "method": method, "output_dir": folder})
    data = raw.setdefault("data", {})
    if kind == "preference" and not data.get("train_file"):
        if last_pairs is None:
            raise ConfigError(f"{where}: a preference stage needs data.train_file or a pairs stage before it")
        data["train_file"] = last_pairs
        data.setdefault("allow_absolute_paths", True)  # the pairs name the videos where they lie
    return dataclasses.asdict(build_config(raw, where))

