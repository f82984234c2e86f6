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

On the command line (`mmalign run CONFIG key.path=value`), `stages.<stage>.<key.path>` sets one
stage's key: see `apply_pipeline_overrides`.

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

from mmalign.config import (ConfigError, ModelConfig, WorldConfig, _build, _f, build_overridden, check_key_path, deep_merge,
                            get_path, leaf_paths, load_raw, parse_override, set_path, unaliased)

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
    return build_overridden(load_raw(path), overrides or [], PipelineConfig, build_pipeline, str(path),
                            apply=apply_pipeline_overrides)


def apply_pipeline_overrides(raw: dict, overrides: list[str], schema=PipelineConfig) -> dict:
    """`key.path=value` items merged into a pipeline's `raw`, each path checked first.

    `stages.<stage>.<key.path>` reaches one stage: `<stage>` is its name (or index), and a stage
    inside a rounds block is named through it (`stages.round.stages.dpo.config.loss.beta=0.2`)
    or, where no other stage has its name, alone (`stages.dpo.config.loss.beta=0.2`). A key
    under `config` is checked against the stage kind's config (pairs, training or eval). A
    block's `schedule.<stage>.<key.path>` is one key, as in the YAML. A top-level `model.<key>`
    that a stage's `config.model` sets itself is refused, as `mmalign train` refuses a
    top-level key a stage shadows."""
    raw = unaliased(raw)
    for item in overrides:
        keys, value = parse_override(item)
        if keys[0] == "stages" and len(keys) > 1:
            entry, rest = _stage_at(raw.get("stages"), keys[1:], "stages", item)
            _set_stage_key(entry, rest, value, item)
            continue
        check_key_path(schema, keys, item)
        if keys[0] == "model":
            for leaf in leaf_paths(keys[1:], value):
                shadowed = [where for where, e in _stage_entries(raw.get("stages"), "stages")
                            if get_path(e.get("config"), ["model", *leaf]) is not None]
                if shadowed:
                    dotted = ".".join(["model", *leaf])
                    raise ConfigError(f"command line: {item!r}: {', '.join(shadowed)} set config.{dotted} themselves, "
                                      "so this would not reach them; set it per stage: "
                                      + " ".join(f"{w}.config.{dotted}=..." for w in shadowed))
        set_path(raw, keys, value, item)
    return raw


def _entry_name(entry: Any, index: int) -> str:
    """A stage's or block's name as `expand` gives it (without a block's round prefix)."""
    if not isinstance(entry, dict):
        return str(index)
    return _safe(entry.get("name") or ("round" if "rounds" in entry else entry.get("kind")) or index)


def _stage_entries(stages: Any, where: str) -> list[tuple[str, dict]]:
    """(`stages.<name>[.stages.<name>]`, entry) of every stage, blocks' inner stages included."""
    out = []
    for i, entry in enumerate(stages if isinstance(stages, list) else []):
        if not isinstance(entry, dict):
            continue
        path = f"{where}.{_entry_name(entry, i)}"
        out += _stage_entries(entry.get("stages"), f"{path}.stages") if "rounds" in entry else [(path, entry)]
    return out


def _stage_at(stages: Any, keys: list[str], where: str, item: str) -> tuple[dict, list[str]]:
    """The stage or block entry that `keys` (after `stages.`) names, and the key path left."""
    stages = stages if isinstance(stages, list) else []
    ref, rest = keys[0], keys[1:]
    names = [_entry_name(e, i) for i, e in enumerate(stages)]
    inner = [(path, e) for path, e in _stage_entries(stages, where) if path.rsplit(".", 1)[-1] == ref]
    if ref in names or (ref.isdigit() and int(ref) < len(stages)):
        entry = stages[names.index(ref) if ref in names else int(ref)]
        if not isinstance(entry, dict):
            raise ConfigError(f"command line: {item!r}: {where}.{ref} is not a stage mapping")
        if "rounds" in entry and rest[:1] == ["stages"] and len(rest) > 1:
            return _stage_at(entry.get("stages"), rest[1:], f"{where}.{ref}.stages", item)
    elif len(inner) == 1:
        entry = inner[0][1]
    elif inner:
        raise ConfigError(f"command line: {item!r}: several stages are named {ref!r}: "
                          + ", ".join(path for path, _ in inner) + "; name one of them")
    else:
        known = names + [path[len(where) + 1:] for path, _ in _stage_entries(stages, where)]
        hint = difflib.get_close_matches(ref, names + [path.rsplit(".", 1)[-1] for path in known], n=1)
        raise ConfigError(f"command line: {item!r}: no stage {ref!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; stages: {', '.join(dict.fromkeys(known)) or 'none'}")
    if not rest:
        example = "rounds=3" if "rounds" in entry else "config.train.lr="
        raise ConfigError(f"command line: {item!r}: name a key of the stage, e.g. {where}.{ref}.{example}")
    return entry, rest


def _set_stage_key(entry: dict, keys: list[str], value: Any, item: str) -> None:
    block = "rounds" in entry
    known = BLOCK_KEYS if block else STAGE_KEYS
    if keys[0] not in known:
        hint = difflib.get_close_matches(keys[0], known, n=1)
        raise ConfigError(f"command line: {item!r}: unknown {'block' if block else 'stage'} key '{keys[0]}'"
                          + (f" (did you mean '{hint[0]}'?)" if hint else "") + f"; known: {', '.join(known)}")
    if block and keys[0] == "schedule" and len(keys) > 1:
        keys = ["schedule", ".".join(keys[1:])]  # a schedule key is `<stage>.<key.path>` in one string
    elif keys[0] == "config" and len(keys) > 1:
        check_key_path(config_class(entry.get("kind")), keys[1:], item)
    elif len(keys) > 1:
        raise ConfigError(f"command line: {item!r}: '{keys[0]}' is a value, not a section")
    set_path(entry, keys, value, item)


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
    if not steps:
        raise ConfigError("stages: a pipeline needs at least one stage")
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
            if get_path(inner[by_name[stage]].get("config"), path.split(".")) is not None:
                raise ConfigError(f"{where}.schedule.{key}: stage {stage!r} sets config.{path} itself, which the "
                                  "schedule replaces every round; set it in one place")
            value = scheduled_value(values, r, rounds, f"{where}.schedule.{key}")
            entry["config"] = _scheduled_into(entry.get("config") or {}, path, value, entry.get("kind"))
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


def _scheduled_into(config: dict, path: str, value: Any, kind: str | None) -> dict:
    if not isinstance(value, list) and _is_list_field(kind, path.split(".")):
        value = [value]
    for key in reversed(path.split(".")):
        value = {key: value}
    return deep_merge(config, value)


def config_class(kind: str | None):
    """The config dataclass of a step of `kind`: PairsConfig, EvalConfig, else RunConfig."""
    if kind == "pairs":
        from mmalign.perturb.config import PairsConfig

        return PairsConfig
    if kind == "eval":
        from mmalign.evals.config import EvalConfig

        return EvalConfig
    from mmalign.config import RunConfig

    return RunConfig


def _is_list_field(kind: str | None, keys: list[str]) -> bool:
    cls = config_class(kind)
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
    for key in ("difficulty_min", "difficulty_max"):
        if get_path(config, ["data", key]) is not None:
            raise ConfigError(f"{where}.config.data.{key}: `strengths` sets it per strength; drop one of them")
    out = []
    for m in strengths:
        d = temple_difficulty(m)
        # rounded far below the tolerance: `--plan` and config.yaml show 0.199999, not 0.19999899999999995
        window = {"data": {"difficulty_min": round(d - DIFFICULTY_TOLERANCE, 12),
                           "difficulty_max": round(d + DIFFICULTY_TOLERANCE, 12)}}
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
    data = raw["data"] = {} if raw.get("data") is None else raw["data"]
    if isinstance(data, dict) and not data.get("train_file"):  # (build_config names a data that is no mapping)
        if kind != "preference":
            raise ConfigError(f"{where}.config.data.train_file: not set (a {kind} stage reads a JSONL of {method} "
                              "records)")
        if last_pairs is None:
            raise ConfigError(f"{where}: a preference stage needs data.train_file or a pairs stage before it")
        data["train_file"] = last_pairs
        data.setdefault("allow_absolute_paths", True)  # the pairs name the videos where they lie
    return dataclasses.asdict(build_config(raw, where))

