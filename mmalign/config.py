"""YAML -> typed, validated run configuration.

Configs are data: dataclasses whose fields carry their help text (`mmalign train --help` and
the README's reference are generated from it). Unknown keys are errors that name the key path
and suggest the closest known key; `a.b=value` overrides from the command line are parsed with
the same YAML rules as the file, and checked against the schema before anything merges, so a
typo on the command line is named as such. A config may list `stages`, each overriding parts
of the top level (e.g. an SFT stage, then RRPO on the SFT model).

Stages and the command line: `stages.<name>.<key.path>=value` (or `stages.<index>....`) sets a
key of one stage. A top-level override reaches every stage that leaves that key unset; when a
stage sets the key itself, the override is an error naming the stage and the key (it would
otherwise be silently shadowed there).

Loss settings are the method's (mmalign.methods): an unset `loss.<key>` takes the method's
paper default, and a key no method of the run reads is an error. Each stage's resolved
config (written to its folder as config.yaml) holds the numbers that ran.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import operator
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmalign.methods import LOSS_KEYS, METHODS

METHOD_NAMES = tuple(METHODS)
TINY_PRESETS = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "qwen3_5", "glm4v", "llava", "llava_next_video", "llava_onevision",
                "internvl", "smolvlm")  # built by mmalign.models.tiny; named here, where a config is checked
MAX_YAML_VALUES = 100_000  # after alias expansion; a config is a few hundred values


class ConfigError(ValueError):
    """A config problem, with the key path (and file) it concerns."""


def _f(default, help: str, **kw):
    """A config field: its default, help text, and optional metadata: `nested` (a section's
    class), `aliases` (other projects' names for it, for "did you mean"), bounds `ge`, `gt`,
    `le`, `lt`."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


# accelerate's LoggerType values (accelerate/utils/dataclasses.py), "all" left out: it logs to
# whatever happens to be installed.
TRACKERS = ("tensorboard", "wandb", "trackio", "comet_ml", "aim", "mlflow", "clearml", "dvclive", "swanlab")


@dataclass
class ModelConfig:
    path: str | None = _f(None, "Checkpoint folder or hub id loaded with from_pretrained (a real 7B, or a saved run).",
                          aliases=("model_name_or_path", "checkpoint"))
    tiny: Literal[TINY_PRESETS] | None = _f(None, "Build an offline tiny preset, used when `path` is not set: "
                                                    + ", ".join(TINY_PRESETS) + ".")
    tiny_dir: str = _f("data/tiny-models", "Where tiny presets are written (reused across runs).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f("auto", "Weight dtype; auto = bfloat16 on GPU, float32 on CPU.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = _f(
        "sdpa", "Attention backend; flash_attention_2 needs the `gpu` extra and a GPU.")
    trust_remote_code: bool = _f(False, "Allow code shipped with the checkpoint to run. Off unless set here.")
    freeze_vision: bool = _f(True, "Freeze the vision tower and projector (RRPO and TEMPLE do).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    liger_kernel: bool = _f(False, "Swap in Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) after loading, for less "
                                   "memory on a GPU; needs the `gpu` extra and CUDA. Liger's fused cross-entropy is "
                                   "not used: log-probs come from the hidden states through the chunked LM head.",
                            aliases=("use_liger_kernel", "use_liger", "enable_liger_kernel"))


@dataclass
class LoraConfig:
    enabled: bool = _f(False, "Train LoRA adapters (peft) instead of the full language model.")
    r: int = _f(16, "LoRA rank (RRPO official: 128; TEMPLE: 32).", ge=1, aliases=("rank", "lora_r"))
    alpha: int = _f(32, "LoRA alpha (RRPO official: 256; TEMPLE: 64).", ge=1, aliases=("lora_alpha",))
    dropout: float = _f(0.0, "LoRA dropout.", ge=0, lt=1, aliases=("lora_dropout",))
    target_modules: list[str] = _f(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                   "Language-model module names that get adapters.")
    exclude_modules: str = _f(r".*(visual|vision_tower|multi_modal_projector|vision_model|connector).*",
                              "Regex of modules never adapted (the vision side).")


@dataclass
class SamplingConfig:
    """Frame sampling and the pixel budget: the same section in train, pairs and eval configs."""
    num_frames: int | None = _f(8, "Frames sampled uniformly per video (ignored when `fps` is set).", ge=1,
                                aliases=("frames", "nframes"))
    fps: float | None = _f(None, "Sample frames at this rate instead of a fixed count.", gt=0)
    max_frames: int = _f(32, "Upper bound on sampled frames.", ge=1)
    max_pixels: int | None = _f(602112, "Downscale frames and images above this many pixels before anything else "
                                "touches them (null = never). Default 768 x 28 x 28: Qwen2.5-VL's per-frame video "
                                "budget, the largest of the supported backbones (LLaVA-family processors resize to "
                                "336-384 px themselves), so a 1080p frame is shrunk 3.4x first.", ge=1)


SAMPLING_MOVED = {k: f"sampling.{k}" for k in ("num_frames", "fps", "max_frames", "max_pixels")}


@dataclass
class DataConfig:
    MOVED = SAMPLING_MOVED  # keys that lived here before (named in the error)

    train_file: str | None = _f(None, "Records (pair, SFT or GRPO schema; see README): JSONL, one JSON array, or "
                                      "Parquet; or a glob of such files, read as one (ann/*/*_oe_*.json, "
                                      "data/train-*.parquet).",
                                aliases=("dataset", "train_data", "data_path"))
    eval_file: str | None = _f(None, "Held-out records (as train_file) for the before/after summary.")
    max_length: int = _f(4096, "Records longer than this many tokens (prompt + response) are skipped.", ge=1)
    system_prompt: str | None = _f(None, "System message of the records that carry none of their own (`system`, or "
                                         "a system turn); None = the chat template's default.")
    media_dir: str | None = _f(None, "Folder the records' relative media paths are read under (None = each record "
                                     "file's own folder). LLaVA-Video-178K's annotation files name videos under "
                                     "the video root: set it to that root.", aliases=("video_folder", "image_folder"))
    allow_absolute_paths: bool = _f(False, "Let records name media outside their file's folder (or media_dir).")
    strict: bool = _f(False, "Turn every skipped record or media file into a failure.")
    curriculum: Literal["shuffle", "ordered", "bucketed", "rising_cap"] = _f(
        "shuffle", "Record order: shuffled, or easy-to-hard by `difficulty` (see mmalign/train/curriculum.py).")
    curriculum_buckets: int = _f(4, "Buckets of the `bucketed` curriculum.", ge=1)
    curriculum_start: float = _f(0.25, "Initial competence c0 of the `rising_cap` curriculum.", ge=0, le=1)
    difficulty_min: float | None = _f(None, "Keep only records with difficulty >= this (e.g. one TEMPLE strength).")
    difficulty_max: float | None = _f(None, "Keep only records with difficulty <= this.")


@dataclass
class WorldConfig:
    enabled: bool = _f(False, "Build (or reuse) the synthetic video world before training.")
    out: str = _f("data/world", "Folder of the synthetic world.")
    n_videos: int = _f(48, "Number of synthetic videos.", ge=1)
    seed: int = _f(0, "World seed.", ge=0)  # numpy's SeedSequence takes no negative number


def _loss_help(key: str) -> str:
    readers = [f"{m.name} {'derived' if callable(m.defaults[key]) else m.defaults[key]}"
               for m in METHODS.values() if key in m.defaults]
    return f"{LOSS_KEYS[key].split(': ', 1)[1]}. Default by method: {', '.join(readers)}."


@dataclass
class LossConfig:
    """Unset (None) = the method's default (mmalign.methods); the resolved value is written
    to each stage's config.yaml."""
    beta: float | None = _f(None, _loss_help("beta"), gt=0)
    alpha: float | None = _f(None, _loss_help("alpha"), ge=0)
    gamma: float | None = _f(None, _loss_help("gamma"))
    label_smoothing: float | None = _f(None, _loss_help("label_smoothing"), ge=0, lt=0.5)
    beta_copo: float | None = _f(None, _loss_help("beta_copo"), gt=0)
    gamma_copo: float | None = _f(None, _loss_help("gamma_copo"))
    ospo_weights: list[float] | None = _f(None, _loss_help("ospo_weights"))


@dataclass
class GrpoConfig:
    num_generations: int = _f(4, "G: samples per prompt (the group).", ge=2)
    max_new_tokens: int = _f(32, "Longest sampled response.", ge=1, aliases=("max_completion_length",))
    temperature: float = _f(1.0, "Sampling temperature of rollouts.", gt=0)
    top_p: float = _f(1.0, "Nucleus sampling of rollouts.", gt=0, le=1)
    num_iterations: int = _f(1, "Optimisation passes over each rollout batch (ratio vs the rollout policy).", ge=1)
    clip_eps: float = _f(0.2, "Lower clip of the importance ratio.", ge=0, aliases=("epsilon",))
    clip_eps_high: float | None = _f(None, "Upper clip (None = clip_eps; DAPO uses 0.28).", ge=0,
                                     aliases=("epsilon_high",))
    kl_beta: float = _f(0.04, "Weight of the KL to the reference (0 = no reference model).", ge=0)
    kl_estimator: Literal["k3", "k3_ratio"] = _f(
        "k3", "k3: exp(lr - lp) - (lr - lp) - 1 per token (DeepSeekMath); k3_ratio: k3 times the importance "
              "ratio, the bias-corrected estimator (TRL 1.16's default, use_bias_correction_kl).")
    scale_rewards: bool = _f(True, "Divide advantages by the group std (HARMO: false).")
    flat_groups: Literal["keep", "drop"] = _f(
        "keep", "A group whose rewards are all equal (advantage 0): keep it in the token normaliser and the KL term "
                "(TRL, DeepSeekMath), or drop its samples from the loss altogether.")
    loss_type: Literal["token", "sequence", "dapo", "dr_grpo"] = _f(
        "token", "token: mean over this process's completion tokens (TRL bnpo); sequence: per-sequence mean, then "
                 "batch mean (TRL grpo); dapo: sum over tokens / active tokens across all processes (TRL dapo); "
                 "dr_grpo: sum / (sequences x max_new_tokens) (Dr. GRPO).")
    rewards: list[dict] = _f([{"name": "answer_match", "weight": 1.0}],
                             "Weighted reward terms: [{name, weight, ...term options}].")
    fallback_reward: float = _f(0.0, "Reward used when a term raises or returns NaN for a sample.")
    micro_batch_size: int | None = _f(None, "Sequences per forward/backward pass (None = the whole rollout "
                                            "batch, train.batch_size x num_generations); bounds memory only.", ge=1)
    eval_records: int | None = _f(64, "Held-out records scored before and after training, greedy and with "
                                      "num_generations samples (None = all).", ge=1)

    def __post_init__(self):
        # Reward names and options are checked with the config, before any stage or model loads.
        from mmalign.rewards import RewardConfigError, RewardSet

        try:
            RewardSet.from_config(self.rewards, self.fallback_reward)
        except RewardConfigError as e:
            raise ConfigError(str(e)) from None


@dataclass
class TrainConfig:
    epochs: int = _f(1, "Passes over the training records.", ge=1, aliases=("num_train_epochs",))
    max_steps: int | None = _f(None, "Stop after this many optimizer steps (overrides epochs).", ge=1)
    batch_size: int = _f(2, "Records per micro-batch per process.", ge=1,
                         aliases=("per_device_train_batch_size", "train_batch_size"))
    grad_accum: int = _f(1, "Micro-batches per optimizer step.", ge=1, aliases=("gradient_accumulation_steps",))
    lr: float = _f(5e-6, "Peak learning rate.", gt=0, aliases=("learning_rate",))
    weight_decay: float = _f(0.0, "AdamW weight decay.", ge=0)
    warmup_ratio: float = _f(0.1, "Fraction of steps of linear warmup.", ge=0, le=1)
    scheduler: Literal["cosine", "linear", "constant"] = _f("cosine", "Learning-rate decay after warmup.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).", ge=0)
    seed: int = _f(0, "Seed of data order and initialisation.", ge=0, le=2**32 - 1)  # numpy's seed range
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = _f("auto", "auto = bf16 on GPU, none on CPU.")
    reference: Literal["auto", "copy", "lora_disabled", "precomputed", "none"] = _f(
        "auto", "Reference model: frozen copy, the policy with LoRA disabled, or log-probs precomputed once "
                "(refused where the method reads none: sft, simpo, ospo, grpo with grpo.kl_beta: 0).")
    logps_chunk_size: int = _f(512, "Scored tokens per LM-head call for log-probs/KL: bounds logits memory.", ge=1)
    shared_prompt: bool = _f(True, "Encode a record's prompt (and video) once for all its responses: one row "
                                   "(prompt, chosen, rejected), each response attending to the prompt and itself "
                                   "(FlashAttention: padding-free rows, vision tower still once). Same log-probs "
                                   "and gradients as one pass per response.")
    save_every: int = _f(0, "Checkpoint every N optimizer steps (0 = only at the end).", ge=0,
                         aliases=("save_steps",))
    log_every: int = _f(1, "Print and log metrics every N steps.", ge=1, aliases=("logging_steps",))
    report_to: list[Literal[TRACKERS]] = _f([], "accelerate trackers to log to: " + ", ".join(TRACKERS)
                                                 + " (each needs its package; tensorboard: the `tracking` extra).")
    max_bad_steps: int = _f(5, "Stop after this many consecutive NaN/inf steps.", ge=1)
    num_workers: int = _f(0, "DataLoader worker processes (video decoding).", ge=0,
                          aliases=("dataloader_num_workers",))


@dataclass
class RunConfig:
    output_dir: str = _f("runs/default", "Run folder: checkpoints, metrics.jsonl, summary, resolved config.")
    method: Literal[METHOD_NAMES] = _f("dpo", "Training method: " + ", ".join(METHOD_NAMES) + " (the loss keys "
                                       "each reads: `mmalign train --help`).")
    model: ModelConfig = _f(None, "Backbone.", nested=ModelConfig)
    lora: LoraConfig = _f(None, "LoRA adapters.", nested=LoraConfig)
    data: DataConfig = _f(None, "Records.", nested=DataConfig)
    sampling: SamplingConfig = _f(None, "Frame sampling and pixel budget of videos and images.", nested=SamplingConfig)
    world: WorldConfig = _f(None, "Synthetic world (the embedded default data).", nested=WorldConfig)
    loss: LossConfig = _f(None, "Loss hyper-parameters.", nested=LossConfig)
    grpo: GrpoConfig = _f(None, "GRPO rollouts, rewards and objective.", nested=GrpoConfig)
    train: TrainConfig = _f(None, "Optimisation.", nested=TrainConfig)
    stages: list[dict] = _f([], "Optional list of stages run in order, each {name, method, and overrides of "
                               "model/lora/data/sampling/loss/train/grpo}; each stage starts from the previous "
                               "stage's weights. On the command line: stages.<name>.<key>=value.")

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
        # YAML 1.1 (PyYAML) reads no / off / yes / on as booleans: `mixed_precision: no` is the
        # choice "no", not False.
        spelled = [a for a in typing.get_args(tp) if isinstance(value, bool) and isinstance(a, str)
                   and a.lower() in (("yes", "on") if value else ("no", "off"))]
        if len(spelled) == 1:
            return spelled[0]
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
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
            except ValueError:
                pass
        if number is None or not math.isfinite(number):  # lr=inf trains NaNs; no key means "no limit" by inf
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return number
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


def _suggest(key: str, cls) -> str | None:
    """The field of `cls` closest to `key`, by name or by one of its aliases (other projects'
    names: `learning_rate` -> `lr`)."""
    names = {}
    for f in dataclasses.fields(cls):
        for name in (f.name, *f.metadata.get("aliases", ())):
            names.setdefault(name, f.name)
    hint = difflib.get_close_matches(str(key), list(names), n=1)
    return names[hint[0]] if hint else None


def _unknown_key(key, cls, key_path: str, prefix: str = "") -> ConfigError:
    moved = getattr(cls, "MOVED", {}).get(key)
    if moved:
        return ConfigError(f"unknown key '{key_path}': it is now '{moved}'")
    hint = _suggest(key, cls)
    known = ", ".join(f.name for f in dataclasses.fields(cls))
    return ConfigError(f"unknown key '{key_path}'" + (f" (did you mean '{prefix}{hint}'?)" if hint else "")
                       + f"; known keys here: {known}")


BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def _check_bounds(value, meta: dict, path: str) -> None:
    if value is None or isinstance(value, (bool, list, dict, str)):
        return
    for name, (holds, word) in BOUNDS.items():
        if name in meta and not holds(value, meta[name]):
            raise ConfigError(f"{path}: must be {word} {meta[name]}, got {value!r}")


def _build(cls, raw: Any, path: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
    kwargs = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise _unknown_key(key, cls, key_path, prefix)
        nested = fields[key].metadata.get("nested")
        if nested:
            kwargs[key] = _build(nested, value, key_path)
        else:
            kwargs[key] = _coerce(value, hints[key], key_path)
            _check_bounds(kwargs[key], fields[key].metadata, key_path)
    return cls(**kwargs)


STAGE_KEYS = ("name", "method", "model", "lora", "data", "sampling", "loss", "train", "grpo")


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
        raise ConfigError(f"command line: override {item!r} is not of the form key.path=value")
    key, value = item.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"command line: {item!r}: the value is not valid YAML") from None
    glued = _glued_key(parsed)
    if glued:
        name, _, value = glued.partition(":")
        raise ConfigError(f"command line: {item!r}: {glued!r} reads as one key with no value; YAML needs a space "
                          f"after the colon ({name}: {value})")
    return key.strip().split("."), parsed


def _glued_key(value: Any) -> str | None:
    """A mapping key like 'name:nope' with no value: `{name:nope}` typed for `{name: nope}`."""
    if isinstance(value, dict):
        for k, v in value.items():
            glued = k if v is None and isinstance(k, str) and ":" in k.strip(":") else _glued_key(v)
            if glued:
                return glued
    if isinstance(value, list):
        return next((g for g in map(_glued_key, value) if g), None)
    return None


def check_key_path(cls, keys: list[str], item: str) -> None:
    """ConfigError naming the command line when `keys` is not a key path of `cls`."""
    for i, key in enumerate(keys):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        where = ".".join(keys[:i + 1])
        if key not in fields:
            err = _unknown_key(key, cls, where, ".".join(keys[:i]) + "." if i else "")
            raise ConfigError(f"command line: {item!r}: {err}")
        nested = fields[key].metadata.get("nested")
        if nested is None:
            hint = typing.get_type_hints(cls)[key]
            if i < len(keys) - 1 and dict not in (hint, typing.get_origin(hint)):
                raise ConfigError(f"command line: {item!r}: '{where}' is a value, not a section")
            return
        cls = nested


def stage_name(index: int, stage: dict, method: str) -> str:
    """A stage's `name`, or `<index>-<method>` (`method`: the stage's own, else the top level's)."""
    return str(stage.get("name") or f"{index}-{stage.get('method', method)}")


def _stage_index(raw: dict, ref: str, item: str) -> int:
    """A stage named on the command line, by its `name`, its default name or its index."""
    stages = raw.get("stages") or []
    names = [stage_name(i, s, raw.get("method", "dpo")) if isinstance(s, dict) else str(i)
             for i, s in enumerate(stages)]
    if ref in names:
        return names.index(ref)
    if ref.isdigit() and int(ref) < len(stages):
        return int(ref)
    hint = difflib.get_close_matches(ref, names, n=1)
    raise ConfigError(f"command line: {item!r}: no stage {ref!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                      + f"; stages: {', '.join(names) or 'none'}")


def get_path(node: Any, keys: list[str]) -> Any:
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


def set_path(node: dict, keys: list[str], value: Any, item: str) -> None:
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"command line: {item!r}: '{k}' is not a section")
    node[keys[-1]] = value


def leaf_paths(keys: list[str], value: Any) -> list[list[str]]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in leaf_paths(keys + [str(k)], v)]
    return [keys]


def unaliased(node: Any) -> Any:
    """A copy of `node` in which no two places share one dict or list. YAML loads an anchor and
    its aliases (`config: &eval` ... `config: *eval`) as one object, and copy.deepcopy keeps the
    sharing, so an override of one stage would otherwise reach every stage that aliases it."""
    if isinstance(node, dict):
        return {k: unaliased(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unaliased(v) for v in node]
    return node


def apply_overrides(raw: dict, overrides: list[str], schema=None) -> dict:
    """`key.path=value` items merged into `raw`. With `schema` (the config's dataclass), every
    path is checked first, and for a RunConfig `stages.<name>.<key.path>` sets one stage's
    key; a top-level key that a stage sets itself is refused (see the module docstring)."""
    raw = unaliased(raw)
    for item in overrides:
        keys, value = parse_override(item)
        if schema is RunConfig and keys[0] == "stages" and len(keys) > 1:
            stages = raw.get("stages") or []
            i = _stage_index(raw, keys[1], item)
            if len(keys) < 3:
                raise ConfigError(f"command line: {item!r}: name a key of the stage, e.g. stages.{keys[1]}.train.lr=")
            if keys[2] not in STAGE_KEYS:
                hint = difflib.get_close_matches(keys[2], STAGE_KEYS, n=1)
                raise ConfigError(f"command line: {item!r}: unknown stage key '{keys[2]}'"
                                  + (f" (did you mean '{hint[0]}'?)" if hint else ""))
            if keys[2] != "name":
                check_key_path(RunConfig, keys[2:], item)
            set_path(stages[i], keys[2:], value, item)
            continue
        if schema is not None:
            check_key_path(schema, keys, item)
        if schema is RunConfig and keys[0] != "stages":
            for leaf in leaf_paths(keys, value):
                shadowed = [stage_name(i, st, raw.get("method", "dpo"))
                            for i, st in enumerate(raw.get("stages") or [])
                            if isinstance(st, dict) and get_path(st, leaf) is not None]
                if shadowed:
                    dotted = ".".join(leaf)
                    raise ConfigError(
                        f"command line: {item!r}: stage(s) {', '.join(shadowed)} set {dotted} themselves, so this "
                        f"would not reach them; set it per stage: " + " ".join(f"stages.{n}.{dotted}=..." for n in shadowed))
        set_path(raw, keys, value, item)
    return raw


def _expanded_size(node: Any, memo: dict, active: set) -> int:
    """How many values `node` holds with YAML aliases expanded (each shared subtree counted
    per reference, memoised, so a 9^9 alias bomb costs a few hundred steps to find)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if not isinstance(node, (dict, list)):
        return 1
    if key in active:
        raise ConfigError("a YAML alias refers to itself (a recursive structure)")
    active.add(key)
    children = list(node.values()) + list(node.keys()) if isinstance(node, dict) else node
    memo[key] = 1 + sum(_expanded_size(c, memo, active) for c in children)
    active.discard(key)
    return memo[key]


def yaml_error(path: str | Path, e: Exception) -> str:
    """PyYAML's error (several lines, with a drawing of the spot) as one: file:line:column and
    its problem."""
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = " ".join(filter(None, (getattr(e, "context", None), getattr(e, "problem", None)))) or str(e)
    return f"{where}: not valid YAML: {' '.join(problem.split())}"


def load_raw(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(path, e)) from None
    except (UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: not a YAML text file ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        size = _expanded_size(raw, {}, set())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if size > MAX_YAML_VALUES:
        raise ConfigError(f"{path}: its YAML aliases expand to {size:.3g} values (over {MAX_YAML_VALUES}): "
                          "write the values out instead of nesting anchors")
    return raw


def _set_loss_keys(raw_loss: Any) -> set[str]:
    return {k for k, v in (raw_loss or {}).items() if v is not None} if isinstance(raw_loss, dict) else set()


def resolve_loss(cfg: RunConfig) -> RunConfig:
    """The method's loss settings in `cfg.loss`: set keys kept, unset ones its paper's defaults,
    keys it does not read cleared (so the resolved config shows exactly what runs)."""
    settings = METHODS[cfg.method].settings(cfg.loss)
    cfg.loss = LossConfig(**settings)
    return cfg


def _reads(method: str) -> str:
    return ", ".join(METHODS[method].defaults) or "no loss keys"


def _check_reads(method: str, keys: set[str], where: str) -> None:
    """Refuse loss keys set for `method` that it does not read."""
    bad = sorted(keys - set(METHODS[method].defaults))
    if bad:
        raise ConfigError(f"{where}{bad[0]}: method {method} does not read it (it reads {_reads(method)})")


def build_config(raw: dict, source: str = "config") -> RunConfig:
    """Validate a raw dict (top level and every stage) into a RunConfig."""
    try:
        cfg = _build(RunConfig, raw, "")
        top_keys = _set_loss_keys(raw.get("loss"))
        if not cfg.stages:
            _check_reads(cfg.method, top_keys, "loss.")
        stages = [stage for _, stage in stages_of(cfg)]  # resolved once, for every check below
        if cfg.stages:
            methods = sorted({stage.method for stage in stages})
            bad = sorted(top_keys - {k for m in methods for k in METHODS[m].defaults})
            if bad:
                raise ConfigError(f"loss.{bad[0]}: no stage's method reads it (stages run "
                                  + "; ".join(f"{m}: {_reads(m)}" for m in methods) + ")")
        for i, stage in enumerate(stages):
            _check_stage(stage, f"stages[{i}]: " if cfg.stages else "")
        _check_reference_read(raw.get("train"), stages, "train.reference")
        _check_grpo_read(raw.get("grpo"), stages, "grpo")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def _check_reference_read(train: Any, stages: list[RunConfig], where: str) -> None:
    """Refuse a `train.reference` that asks for a reference model where no stage it reaches reads
    one (SFT, SimPO, OSPO; GRPO with grpo.kl_beta: 0): it was ignored without a word."""
    value = train.get("reference") if isinstance(train, dict) else None
    if value in ("copy", "lora_disabled", "precomputed") and not any(needs_reference(s) for s in stages):
        methods = sorted({s.method + (" with grpo.kl_beta: 0" if s.method == "grpo" else "") for s in stages})
        raise ConfigError(f"{where}: {value}: {' and '.join(methods)} read{'s' if len(methods) == 1 else ''} no "
                          "reference model; leave it unset")


def _check_grpo_read(section: Any, stages: list[RunConfig], where: str) -> None:
    """Refuse a `grpo:` section that sets a value where no stage it reaches runs GRPO: it was
    ignored without a word. Its defaults as they are (a stage's written config.yaml holds every
    section) set nothing."""
    defaults = to_dict(GrpoConfig())
    changed = isinstance(section, dict) and any(defaults.get(k, object()) != v for k, v in section.items())
    if changed and not any(s.method == "grpo" for s in stages):
        methods = sorted({s.method for s in stages})
        raise ConfigError(f"{where}: set, but no stage runs grpo (method: {', '.join(methods)}); leave it out or set "
                          "method: grpo")


def needs_reference(cfg: RunConfig) -> bool:
    """Whether the stage's loss reads a reference model (GRPO's only through its KL term)."""
    return METHODS[cfg.method].reference and not (cfg.method == "grpo" and cfg.grpo.kl_beta == 0)


def _check_stage(cfg: RunConfig, where: str) -> None:
    """Settings of one stage that cannot run together, refused when the config is read: found
    when the stage began, they stopped the run after the stages before it had trained."""
    m = METHODS[cfg.method]
    reference = cfg.train.reference
    if needs_reference(cfg):
        if reference == "lora_disabled" and not cfg.lora.enabled:
            raise ConfigError(f"{where}train.reference: lora_disabled is the policy with its LoRA adapters off, and "
                              "lora.enabled is false; use copy (or enable lora)")
        if reference == "precomputed" and m.token_kl:
            raise ConfigError(f"{where}train.reference: {cfg.method} needs the reference's full distribution at every "
                              "chosen token (token-wise KL), which precomputed log-probs do not keep; use copy or "
                              "lora_disabled")
    if cfg.method == "grpo":
        if cfg.train.grad_accum != 1:
            raise ConfigError(f"{where}train.grad_accum: grpo needs 1 (train.batch_size is the prompts per step; "
                              "grpo.micro_batch_size bounds the sequences per forward)")
        if cfg.grpo.kl_beta != 0 and reference in ("none", "precomputed"):
            raise ConfigError(f"{where}train.reference: {reference} gives no reference to score new rollouts, and "
                              f"grpo.kl_beta={cfg.grpo.kl_beta} needs one; use copy or lora_disabled, or set "
                              "grpo.kl_beta: 0")


def stage_config(cfg: RunConfig, index: int) -> tuple[str, RunConfig]:
    """The effective config of stage `index`: the top level with the stage's overrides merged,
    its loss settings resolved for its method."""
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
    _check_reads(resolved.method, _set_loss_keys(stage.get("loss")), f"{path}.loss.")
    _check_reference_read(stage.get("train"), [resolved], f"{path}.train.reference")
    _check_grpo_read(stage.get("grpo"), [resolved], f"{path}.grpo")
    return stage_name(index, stage, resolved.method), resolve_loss(resolved)


def stages_of(cfg: RunConfig) -> list[tuple[str, RunConfig]]:
    if not cfg.stages:
        return [(cfg.method, resolve_loss(copy.deepcopy(cfg)))]
    return [stage_config(cfg, i) for i in range(len(cfg.stages))]


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    return build_overridden(load_raw(path), overrides or [], RunConfig, build_config, str(path))


def build_overridden(raw: dict, overrides: list[str], schema, build, source: str, apply=apply_overrides):
    """`build(raw with the command line's overrides, source)`. A value the config refuses is
    blamed on where it came from: the first command-line item that, added to the file and the
    items before it, brings the refusal (the file builds alone), else `source`. `apply(raw,
    overrides, schema)` merges the items (a pipeline's stages take their own paths)."""
    merged = apply(raw, overrides, schema)
    try:
        return build(merged, source)
    except ConfigError as refused:
        if overrides and _builds(build, raw):
            for i, item in enumerate(overrides):
                build(apply(raw, overrides[:i + 1], schema), f"command line: {item!r}")
        raise refused from None


def _builds(build, raw: dict) -> bool:
    try:
        build(raw, "")
    except ConfigError:
        return False
    return True


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def changed_keys(before, now, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, value before, value now) wherever two nested configs differ; items of a
    list of sections are named by index: video.perturbations[1].strength."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [c for key in sorted(set(before) | set(now))
                for c in changed_keys(before.get(key), now.get(key), f"{prefix}{key}.")]
    if (isinstance(before, list) and isinstance(now, list) and len(before) == len(now)
            and all(isinstance(x, dict) for x in before + now)):
        return [c for i, (a, b) in enumerate(zip(before, now)) for c in changed_keys(a, b, f"{prefix.rstrip('.')}[{i}].")]
    return [] if before == now else [(prefix.rstrip(".") or "run", before, now)]


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
