"""YAML -> a validated eval configuration (`mmalign eval --config CFG key.path=value ...`).

Same rules as the training config (mmalign.config): dataclasses whose fields carry their help
text, unknown keys are errors naming the key path with a "did you mean", and overrides are
parsed as YAML. Benchmark-specific choices (the benchmark name, the scoring mode, the
subsets) are checked against the benchmark registry here, before any model loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from mmalign.config import (SAMPLING_MOVED, ConfigError, ModelConfig, SamplingConfig, WorldConfig, _build, _f,
                            apply_overrides, build_overridden, load_raw)


@dataclass
class EvalDataConfig:
    MOVED = SAMPLING_MOVED  # keys that lived here before (named in the error)

    root: str | None = _f(None, "Folder holding the benchmark's official annotation files (nothing is downloaded); "
                                "synthetic: a world folder, or a world YAML ({out, n_videos, seed}) to build.")
    media_dir: str | None = _f(None, "Folder of the videos / images, relative to `root` or absolute "
                                     "(None = the benchmark's official layout, see its module docstring).")
    splits: list[str] = _f([], "Subsets to run (POPE: random/popular/adversarial; VideoHallucer categories; "
                               "synthetic: train/test). Empty = the benchmark's default.")
    limit: int | None = _f(None, "Keep only the first N items of each subset (smoke runs); results say so.", ge=1)
    options: dict = _f({}, "Benchmark-specific options (e.g. CHAIR: {sample: 500, seed: 0}; VidHal: {task: mcqa}); "
                           "each benchmark checks its own keys.")


@dataclass
class PromptConfig:
    suffix: str | None = _f(None, "Text appended to every question (None = the benchmark's official suffix).")
    system: str | None = _f(None, "System message (None = the benchmark's own, else the chat template's default).")


@dataclass
class GenerationConfig:
    batch_size: int = _f(8, "Prompts decoded together (greedy, left-padded) per process.")
    max_new_tokens: int = _f(64, "Longest answer generated.")
    decode_workers: int = _f(4, "Processes (at most one per CPU core) that decode the next batches' videos "
                                "while the model generates this one (0: decode in turn, in this process; the "
                                "answers are the same).", ge=0)


@dataclass
class ScoreConfig:
    mode: str = _f("official", "Answer parsing and metrics: `official` (the benchmark's own script) or a named "
                               "alternative the benchmark offers (e.g. POPE: lmms_eval).")
    backend: str = _f("simple", "Text backend of scorers that tokenize (CHAIR): `simple` (deterministic, "
                                "no downloads) or `official` (NLTK + pattern, as the official script).")
    judge_model: str | None = _f(None, "Local chat model folder for the parts an official scorer hands to an LLM "
                                       "(TempCompass captioning and unmatched answers, EventHallusion "
                                       "descriptions); None = those parts are skipped and said.")
    embedding_model: str | None = _f(None, "Local sentence-embedding model folder (VidHalluc STH: "
                                           "princeton-nlp/sup-simcse-roberta-large); None = STH descriptions unscored.")


@dataclass
class EvalConfig:
    benchmark: str = _f("synthetic", "Benchmark to run: pope, chair, amber, videohallucer, eventhallusion, vidhal, "
                                     "tempcompass, vidhalluc, synthetic.")
    output_dir: str = _f("runs/eval/default", "Where predictions (resumable), results.json, metrics.md and "
                                              "report.html go.")
    official: bool = _f(False, "Refuse to start unless the scoring is exactly the official one (official mode and "
                               "backend, every annotation file present).")
    name: str | None = _f(None, "Display name of `model` in the report (None = from its path).")
    model: ModelConfig = _f(None, "The model to evaluate (ignored when `models` is given).", nested=ModelConfig)
    models: list[dict] = _f([], "Several models to compare: [{name: base, path: ...}, {name: rrpo, path: ...}]; "
                                "each entry's other keys are `model` keys and override it.")
    data: EvalDataConfig = _f(None, "Annotation files and media.", nested=EvalDataConfig)
    sampling: SamplingConfig = _f(None, "Frame sampling and pixel budget (the same section as in training).",
                                  nested=SamplingConfig)
    prompt: PromptConfig = _f(None, "Prompt text around each question.", nested=PromptConfig)
    generation: GenerationConfig = _f(None, "Decoding.", nested=GenerationConfig)
    score: ScoreConfig = _f(None, "Answer parsing and metrics.", nested=ScoreConfig)
    world: WorldConfig = _f(None, "Synthetic benchmark: build (or reuse) this world first when `enabled`.",
                            nested=WorldConfig)

    def __post_init__(self):
        for f in ("model", "data", "sampling", "prompt", "generation", "score", "world"):
            if getattr(self, f) is None:
                setattr(self, f, self.__dataclass_fields__[f].metadata["nested"]())
        _check_benchmark(self)
        model_specs(self)  # validates every `models` entry now, not after the first model ran


def _check_benchmark(cfg: EvalConfig) -> None:
    from mmalign.evals.benchmarks import REGISTRY

    if cfg.benchmark not in REGISTRY:
        hint = difflib.get_close_matches(cfg.benchmark, list(REGISTRY), n=1)
        raise ConfigError(f"benchmark: {cfg.benchmark!r} is not one of {sorted(REGISTRY)}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    bench = REGISTRY[cfg.benchmark]
    if cfg.score.mode not in bench.modes:
        raise ConfigError(f"score.mode: {cfg.benchmark} offers {list(bench.modes)}, got {cfg.score.mode!r}")
    if cfg.score.backend not in ("simple", "official"):
        raise ConfigError(f"score.backend: expected 'simple' or 'official', got {cfg.score.backend!r}")
    bad = [s for s in cfg.data.splits if s not in bench.splits]
    if bad:
        raise ConfigError(f"data.splits: {bad} not among {cfg.benchmark}'s subsets {list(bench.splits)}")
    unknown = [k for k in cfg.data.options if k not in bench.options]
    if unknown:
        hint = difflib.get_close_matches(str(unknown[0]), list(bench.options), n=1)
        raise ConfigError(f"unknown key 'data.options.{unknown[0]}' for {cfg.benchmark}"
                          + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + f"; known: {', '.join(bench.options) or 'none'}")
    if cfg.official:
        if cfg.data.limit is not None:
            raise ConfigError("official: true scores whole benchmarks: remove data.limit")
        if cfg.score.mode != "official":
            raise ConfigError(f"official: true needs score.mode=official, got {cfg.score.mode!r}")
        if bench.needs_backend and cfg.score.backend != "official":
            raise ConfigError(f"official: true: {cfg.benchmark} must score with score.backend=official "
                              "(the simple backend only approximates NLTK tokenizing and pattern's singularize)")
    if cfg.generation.batch_size < 1 or cfg.generation.max_new_tokens < 1:
        raise ConfigError("generation.batch_size and generation.max_new_tokens must be >= 1")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model: ModelConfig


def model_specs(cfg: EvalConfig) -> list[ModelSpec]:
    """The models to evaluate, in order, each with a file-safe, unique name."""
    if not cfg.models:
        return [ModelSpec(_safe(cfg.name or default_name(cfg.model)), cfg.model)]
    base = {k: v for k, v in vars(cfg.model).items()}
    specs = []
    for i, entry in enumerate(cfg.models):
        if not isinstance(entry, dict):
            raise ConfigError(f"models[{i}]: expected a mapping like {{name: base, path: ...}}")
        overrides = {k: v for k, v in entry.items() if k != "name"}
        model = _build(ModelConfig, {**base, **overrides}, f"models[{i}]")
        specs.append(ModelSpec(_safe(str(entry.get("name") or default_name(model))), model))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: names must be distinct, got {names}")
    return specs


def default_name(model: ModelConfig) -> str:
    if model.path:
        return "-".join(Path(model.path).parts[-2:])  # runs/rrpo/final -> rrpo-final
    return f"tiny-{model.tiny}" if model.tiny else "model"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def parse_model_args(items: list[str]) -> list[dict]:
    """`--models a=path1 b=path2` -> [{name: a, path: path1}, ...]; a bare path names itself,
    and `name=` with no path is the config's `model` under that name."""
    out = []
    sections = {f.name for f in dataclasses.fields(EvalConfig)}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and "." in name and name.split(".")[0] in sections:
            raise ConfigError(f"--models got {item!r}, a key.path=value override: put the overrides before --models")
        if not sep:
            out.append({"path": item})
        else:
            out.append({"name": name, "path": path} if path else {"name": name})
    return out


def build_eval_config(raw: dict, source: str = "config") -> EvalConfig:
    try:
        return _build(EvalConfig, raw, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_eval_config(path: str | Path | None, overrides: list[str] | None = None,
                     models: list[str] | None = None) -> EvalConfig:
    """The config at `path` (None: the defaults) with the command line's overrides and models."""
    raw = load_raw(path) if path else {}
    if models:
        raw.pop("models", None)  # --models replaces the file's list
    cfg = build_overridden(raw, overrides or [], EvalConfig, build_eval_config, str(path) if path else "command line")
    if not models:
        return cfg
    # built again with the models, so that a refusal they bring (two of one name) is blamed on them
    return build_eval_config({**apply_overrides(raw, overrides or [], EvalConfig), "models": parse_model_args(models)},
                             "command line: --models")
