"""YAML -> typed, validated run configuration.

Configs are data: dataclasses whose fields carry their help text (`mmalign train --help` and
the README's reference are generated from it). Unknown keys are errors that name the key path
and suggest the closest known key; `a.b=value` overrides from the command line are parsed with
the same YAML rules as the file. A config may list `stages`, each overriding parts of the
top level (e.g. an SFT stage, then RRPO on the SFT model).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

METHODS = ("sft", "dpo", "ipo", "simpo", "rpo", "rrpo", "mask_dpo", "ospo", "grpo")
REFERENCE_FREE = ("sft", "simpo", "ospo")


class ConfigError(ValueError):
    """A config problem, with the key path (and file) it concerns."""


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    path: str | None = _f(None, "Checkpoint folder or hub id loaded with from_pretrained (a real 7B, or a saved run).")
    tiny: str | None = _f(None, "Build an offline tiny preset instead of `path`: qwen2_5_vl, qwen2_vl, llava, llava_next_video.")
    tiny_dir: str = _f("data/tiny-models", "Where tiny presets are written (reused across runs).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f("auto", "Weight dtype; auto = bfloat16 on GPU, float32 on CPU.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = _f(
        "sdpa", "Attention backend; flash_attention_2 needs the `gpu` extra and a GPU.")
    trust_remote_code: bool = _f(False, "Allow code shipped with the checkpoint to run. Off unless set here.")
    freeze_vision: bool = _f(True, "Freeze the vision tower and projector (RRPO and TEMPLE do).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")


@dataclass
class LoraConfig:
    enabled: bool = _f(False, "Train LoRA adapters (peft) instead of the full language model.")
    r: int = _f(16, "LoRA rank (RRPO official: 128; TEMPLE: 32).")
    alpha: int = _f(32, "LoRA alpha (RRPO official: 256; TEMPLE: 64).")
    dropout: float = _f(0.0, "LoRA dropout.")
    target_modules: list[str] = _f(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                   "Language-model module names that get adapters.")
    exclude_modules: str = _f(r".*(visual|vision_tower|multi_modal_projector|vision_model).*",
                              "Regex of modules never adapted (the vision side).")


@dataclass
class DataConfig:
    train_file: str | None = _f(None, "JSONL of records (pair, SFT or GRPO schema; see README).")
    eval_file: str | None = _f(None, "Held-out JSONL for the before/after summary.")
    num_frames: int | None = _f(8, "Frames sampled uniformly per video (ignored when `fps` is set).")
    fps: float | None = _f(None, "Sample frames at this rate instead of a fixed count.")
    max_frames: int = _f(32, "Upper bound on sampled frames.")
    max_pixels: int | None = _f(None, "Downscale frames above this many pixels before the processor.")
    max_length: int = _f(4096, "Records longer than this many tokens (prompt + response) are skipped.")
    system_prompt: str | None = _f(None, "System message for the chat template (None = the template's default).")
    allow_absolute_paths: bool = _f(False, "Let records name media outside their file's folder.")
    strict: bool = _f(False, "Turn every skipped record or media file into a failure.")
    curriculum: Literal["shuffle", "ordered", "bucketed", "rising_cap"] = _f(
        "shuffle", "Record order: shuffled, or easy-to-hard by `difficulty` (see mmalign/train/curriculum.py).")
    curriculum_buckets: int = _f(4, "Buckets of the `bucketed` curriculum.")
    curriculum_start: float = _f(0.25, "Initial competence c0 of the `rising_cap` curriculum.")
    difficulty_min: float | None = _f(None, "Keep only records with difficulty >= this (e.g. one TEMPLE strength).")
    difficulty_max: float | None = _f(None, "Keep only records with difficulty <= this.")


@dataclass
class WorldConfig:
    enabled: bool = _f(False, "Build (or reuse) the synthetic video world before training.")
    out: str = _f("data/world", "Folder of the synthetic world.")
    n_videos: int = _f(48, "Number of synthetic videos.")
    seed: int = _f(0, "World seed.")


@dataclass
class LossConfig:
    beta: float = _f(0.1, "KL strength (DPO family, RRPO, Mask-DPO); SimPO/OSPO: the SimPO beta.")
    alpha: float = _f(0.01, "RRPO: token-wise KL weight; RPO: chosen NLL weight.")
    gamma: float = _f(0.5, "SimPO margin.")
    label_smoothing: float = _f(0.0, "Conservative DPO label smoothing.")
    beta_copo: float = _f(5.0, "OSPO conditional term beta.")
    ospo_weights: list[float] = _f([0.8, 0.5, 1.5], "OSPO weights of SimPO, CoPO and SFT terms.")


@dataclass
class GrpoConfig:
    num_generations: int = _f(4, "G: samples per prompt (the group).")
    max_new_tokens: int = _f(32, "Longest sampled response.")
    temperature: float = _f(1.0, "Sampling temperature of rollouts.")
    top_p: float = _f(1.0, "Nucleus sampling of rollouts.")
    num_iterations: int = _f(1, "Optimisation passes over each rollout batch (ratio vs the rollout policy).")
    clip_eps: float = _f(0.2, "Lower clip of the importance ratio.")
    clip_eps_high: float | None = _f(None, "Upper clip (None = clip_eps; DAPO uses 0.28).")
    kl_beta: float = _f(0.04, "Weight of the k3 KL to the reference (0 = no reference model).")
    scale_rewards: bool = _f(True, "Divide advantages by the group std (HARMO: false).")
    loss_type: Literal["token", "sequence"] = _f("token", "Average over all tokens, or per sequence then batch.")
    rewards: list[dict] = _f([{"name": "answer_match", "weight": 1.0}],
                             "Weighted reward terms: [{name, weight, ...term options}].")
    fallback_reward: float = _f(0.0, "Reward used when a term raises or returns NaN for a sample.")
    micro_batch_size: int | None = _f(None, "Sequences per forward/backward pass (None = the whole rollout "
                                            "batch, train.batch_size x num_generations); bounds memory only.")
    eval_records: int | None = _f(64, "Held-out records scored before and after training, greedy and with "
                                      "num_generations samples (None = all).")

    def __post_init__(self):
        # Reward names and options are checked with the config, before any stage or model loads.
        from mmalign.rewards import RewardConfigError, RewardSet

        try:
            RewardSet.from_config(self.rewards, self.fallback_reward)
        except RewardConfigError as e:
            raise ConfigError(str(e)) from None


@dataclass
class TrainConfig:
    epochs: int = _f(1, "Passes over the training records.")
    max_steps: int | None = _f(None, "Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = _f(2, "Records per micro-batch per process.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step.")
    lr: float = _f(5e-6, "Peak learning rate.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    warmup_ratio: float = _f(0.1, "Fraction of steps of linear warmup.")
    scheduler: Literal["cosine", "linear", "constant"] = _f("cosine", "Learning-rate decay after warmup.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).")
    seed: int = _f(0, "Seed of data order and initialisation.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = _f("auto", "auto = bf16 on GPU, none on CPU.")
    reference: Literal["auto", "copy", "lora_disabled", "precomputed", "none"] = _f(
        "auto", "Reference model: frozen copy, the policy with LoRA disabled, or log-probs precomputed once.")
    logps_chunk_size: int = _f(512, "Scored tokens per LM-head call for log-probs/KL: bounds logits memory.")
    shared_prompt: bool = _f(True, "Encode a record's prompt (and video) once for all its responses: one row "
                                   "(prompt, chosen, rejected), each response attending to the prompt and itself "
                                   "(FlashAttention: padding-free rows, vision tower still once). Same log-probs "
                                   "and gradients as one pass per response.")
    save_every: int = _f(0, "Checkpoint every N optimizer steps (0 = only at the end).")
    log_every: int = _f(1, "Print and log metrics every N steps.")
    report_to: list[str] = _f([], "accelerate trackers: tensorboard, wandb.")
    max_bad_steps: int = _f(5, "Stop after this many consecutive NaN/inf steps.")
    num_workers: int = _f(0, "DataLoader worker processes (video decoding).")


@dataclass
class RunConfig:
    output_dir: str = _f("runs/default", "Run folder: checkpoints, metrics.jsonl, summary, resolved config.")
    method: Literal[METHODS] = _f("dpo", "Training method: " + ", ".join(METHODS) + ".")
    model: ModelConfig = _f(None, "Backbone.", nested=ModelConfig)
    lora: LoraConfig = _f(None, "LoRA adapters.", nested=LoraConfig)
    data: DataConfig = _f(None, "Records and media sampling.", nested=DataConfig)
    world: WorldConfig = _f(None, "Synthetic world (the embedded default data).", nested=WorldConfig)
    loss: LossConfig = _f(None, "Loss hyper-parameters.", nested=LossConfig)
    grpo: GrpoConfig = _f(None, "GRPO rollouts, rewards and objective.", nested=GrpoConfig)
    train: TrainConfig = _f(None, "Optimisation.", nested=TrainConfig)
    stages: list[dict] = _f([], "Optional list of stages run in order, each {name, method, and overrides of "
                               "model/lora/data/loss/train}; each stage starts from the previous stage's weights.")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.metadata.get("nested") and getattr(self, f.name) is None:
                setattr(self, f.name, f.metadata["nested"]())


# ---------------------------------------------------------------- parsing and validation

def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp`, converting only lossless cases (int -> float,
    YAML's '1e-5' strings -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            hint = difflib.get_close_matches(str(value), [str(a) for a in typing.get_args(tp)], n=1)
            raise ConfigError(f"{path}: {value!r} is not one of {list(typing.get_args(tp))}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    raise ConfigError(f"{path}: unsupported type {tp}")


def _build(cls, raw: Any, path: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            raise ConfigError(f"unknown key '{key_path}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                              + f"; known keys here: {', '.join(fields)}")
        nested = fields[key].metadata.get("nested")
        kwargs[key] = _build(nested, value, key_path) if nested else _coerce(value, hints[key], key_path)
    return cls(**kwargs)


STAGE_KEYS = ("name", "method", "model", "lora", "data", "loss", "train", "grpo")


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    key, value = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{k}' is not a section")
        node[keys[-1]] = value
    return raw


def load_raw(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return raw


def build_config(raw: dict, source: str = "config") -> RunConfig:
    """Validate a raw dict (top level and every stage) into a RunConfig."""
    try:
        cfg = _build(RunConfig, raw, "")
        for i, stage in enumerate(cfg.stages):
            stage_config(cfg, i)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def stage_config(cfg: RunConfig, index: int) -> tuple[str, RunConfig]:
    """The effective config of stage `index`: the top level with the stage's overrides merged."""
    stage = cfg.stages[index]
    path = f"stages[{index}]"
    if not isinstance(stage, dict):
        raise ConfigError(f"{path}: expected a mapping")
    for key in stage:
        if key not in STAGE_KEYS:
            hint = difflib.get_close_matches(str(key), STAGE_KEYS, n=1)
            raise ConfigError(f"unknown key '{path}.{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    base = to_dict(cfg)
    base.pop("stages")
    merged = deep_merge(base, {k: v for k, v in stage.items() if k != "name"})
    try:
        resolved = _build(RunConfig, merged, "")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return str(stage.get("name") or f"{index}-{resolved.method}"), resolved


def stages_of(cfg: RunConfig) -> list[tuple[str, RunConfig]]:
    if not cfg.stages:
        return [(cfg.method, cfg)]
    return [stage_config(cfg, i) for i in range(len(cfg.stages))]


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    raw = apply_overrides(load_raw(path), overrides or [])
    return build_config(raw, str(path))


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def help_text(cls=RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, help) rows for the CLI help and the README reference."""
    rows = []
    for f in dataclasses.fields(cls):
        nested = f.metadata.get("nested")
        key = prefix + f.name
        if nested:
            rows.extend(help_text(nested, key + "."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((key, repr(default), f.metadata.get("help", "")))
    return rows


README_MARKERS = ("<!-- config-reference:start -->", "<!-- config-reference:end -->")


def reference_markdown() -> str:
    """The README's config reference table, generated from the fields' help text."""
    rows = [f"| `{k}` | `{d.replace('|', '/')}` | {h} |" for k, d, h in help_text()]
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows])


def update_readme(path: str | Path = "README.md") -> None:
    """`python -m mmalign.config` rewrites the reference block between the README markers."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    start, end = README_MARKERS
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{reference_markdown()}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    update_readme()
