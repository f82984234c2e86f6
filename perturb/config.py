"""`mmalign pairs` configuration: YAML -> PairsConfig, with mmalign's config machinery (the
same field help, unknown-key "did you mean", and key.path=value overrides as `mmalign train`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmalign.config import ConfigError, ModelConfig, RunConfig, SamplingConfig, _build, _f, build_overridden, load_raw
from mmalign.data.video_ops import TEMPLE_KINDS

GENERATORS = ("temple", "rrpo", "rrpo_qa", "video", "inject", "apasi", "ospo")
INJECTION_TYPES = ("object", "attribute", "count", "direction", "order", "cooccurrence", "prior")
FRAME_PERTURBATIONS = ("frame_drop", "repeat", "speed_up", "slow_down", "freeze", "crop", "blur", "noise", "mask",
                       "local_shuffle", "reverse", "object_mask")
OSPO_KINDS = ("replace", "swap", "drop")
CAPTION_PROMPT = "Describe what happens in the video."


@dataclass
class GenerationConfig:
    batch_size: int = _f(8, "Prompts per model.generate call (left-padded batch).")
    max_new_tokens: int = _f(128, "Longest answer.", ge=1)
    decode_workers: int = _f(4, "Processes (at most one per CPU core) that decode the next batches' videos "
                                "while the model answers this one (0: decode in turn, in this process; the "
                                "pairs are the same).", ge=0)
    do_sample: bool = _f(False, "Sample instead of greedy decoding (greedy makes a resumed run reproduce exactly).")
    temperature: float = _f(1.0, "Sampling temperature.", gt=0)
    top_p: float = _f(1.0, "Nucleus sampling.", gt=0, le=1)
    repetition_penalty: float = _f(1.0, "transformers' repetition penalty for answers.", gt=0)
    system: str | None = _f(None, "System message for the chat template (None = the template's default).")


@dataclass
class TempleConfig:
    source: Literal["captions", "pixels"] = _f(
        "captions", "captions: perturb the list of per-clip captions and let the model write a whole-video caption "
                    "from the clean and the perturbed list (TEMPLE's code); pixels: perturb the frames and let the "
                    "model answer on each (TEMPLE's paper).")
    kinds: list[Literal[TEMPLE_KINDS]] = _f(list(TEMPLE_KINDS), "Perturbations: drop, shuffle, reverse.")
    magnitudes: list[int] = _f([2, 4, 8, 16], "Strengths m: drop keeps max(1, n//m) clips; shuffle / reverse move "
                                             "blocks of max(1, n//m) clips. Larger m = more visible = easier.")
    clips: int = _f(8, "n: clips per video (the sampled frames, or the file's frames for truth captions, are cut "
                       "into n consecutive runs).")
    clip_captions: Literal["truth", "model"] = _f("truth", "Per-clip captions from the truth files, or from the "
                                                           "model describing each clip.")
    clip_prompt: str = _f("Describe this short clip in one sentence.", "Prompt for model-written clip captions.")
    summarizer: Literal["model", "join"] = _f(
        "model", "Who turns a caption list into one caption: the model (text only), or joining the list in order.")
    summary_prompt: str = _f("These are descriptions of consecutive clips of one video, in order:\n{captions}\n"
                             "Write one description of the whole video, in the order things happen.",
                             "Summariser prompt; {captions} is the numbered list.")
    max_length_ratio: float = _f(1.5, "Drop shuffle / reverse pairs whose longer text is over this many times the "
                                      "shorter (TEMPLE's filter).", ge=1)


@dataclass
class RrpoConfig:
    mask_area: list[float] = _f([0.25, 0.5], "Range of the frame area masked (one box, drawn uniformly).")
    shuffle_window: int = _f(4, "Local temporal shuffle: frames permuted within windows of this many frames.")
    pairs_per_video: int = _f(1, "Perturbed answers per video (each with its own mask and shuffle).")
    max_changed_fraction: float = _f(1.0, "Drop pairs whose differing spans cover more than this share of the two "
                                          "texts (1 = keep all; RRPO wants minimal edits).", gt=0, le=1)


@dataclass
class RrpoQaConfig:
    questions: str = _f("world", "Question source: `world` (yes/no, multiple-choice, short and open questions from "
                                 "the synthetic world's truth) or a JSONL (or JSON array) of {video, prompt, answer, "
                                 "type?, options?} records, `video` relative to --videos.")
    types: list[Literal["yes_no", "mcq", "short", "open"]] = _f(
        ["yes_no", "short", "open"], "World question types to ask: yes_no, mcq, short, open.")
    per_video: int | None = _f(None, "Ask at most this many questions per video (drawn per video); None = all.", ge=1)
    judge: Literal["auto", "rules", "model"] = _f(
        "auto", "Judge of open answers: the world's facts (rules) or judge_model; auto = rules where the video has "
                "truth. Short forms are always exact match.")
    judge_model: str | None = _f(None, "Local chat model folder (AutoModelForCausalLM) judging open answers on real "
                                       "videos, e.g. a Qwen2.5-7B-Instruct checkpoint.")
    rewriter: Literal["auto", "facts", "model"] = _f(
        "auto", "Who rewrites the truth with the wrong concepts: the world's facts (exact) or rewriter_model (RRPO's "
                "two-turn prompt); auto = facts where the video has truth.")
    rewriter_model: str | None = _f(None, "Local chat model folder for the rewrite (default: judge_model's).")
    text_max_new_tokens: int = _f(128, "Longest judge / rewriter reply.", ge=1)


@dataclass
class VideoOpsConfig:
    perturbations: list[dict] = _f([{"name": "reverse", "strength": 1.0}, {"name": "blur", "strength": 0.5}],
                                   "Frame-level perturbations, one pair each: {name, strength in [0, 1]}; names: "
                                   + ", ".join(FRAME_PERTURBATIONS) + ".")


@dataclass
class InjectConfig:
    types: list[Literal[INJECTION_TYPES]] = _f(list(INJECTION_TYPES[:-1]), "Edit types, one pair each where it "
                                               "applies: " + ", ".join(INJECTION_TYPES) + " (prior needs the model).")
    per_video: int | None = _f(None, "Use only this many of the types per video (drawn per video); None = all.")
    max_new_tokens: int = _f(64, "prior: longest continuation.", ge=1)


@dataclass
class ApasiConfig:
    replace_rates: list[float] = _f([0.2], "Share of sentences replaced (round(rate * n), never the first); one "
                                           "pair per rate: the curriculum knob, recorded as difficulty = 1 - rate.")
    weighted: bool = _f(True, "Later sentences likelier: weight rising linearly in sqrt(i) from 1 to 2.")
    top_k: int = _f(10, "Guide objects come from the top-k co-occurring with a remaining object.", ge=1)
    templates: list[str] = _f(["There is a {}"], "Guide sentence openings; {} is the object.")
    max_new_tokens: int = _f(64, "Longest completion (APASI: 64).", ge=1)
    repetition_penalty: float = _f(1.1, "Repetition penalty of the completion (APASI: 1.1).", gt=0)


@dataclass
class OspoConfig:
    kinds: list[Literal[OSPO_KINDS]] = _f(list(OSPO_KINDS), "Object perturbations: replace (an object with an "
                                          "absent one), swap (the colours of two objects), drop (an object's sentences).")
    self_check: bool = _f(False, "Keep a pair only if the model's P(yes) to 'is there <object>' drops by more than "
                                 "`margin` from the clean to the masked video (OSPO's check).")
    margin: float = _f(0.5, "Self-check margin.")
    question: str = _f("Is there a {} in the video? Answer yes or no.", "Self-check question.")
    fill: list[int] = _f([0, 0, 0], "Colour painted over a masked object.")


@dataclass
class PairsConfig:
    generator: Literal[GENERATORS] = _f("temple", "Pair builder: " + ", ".join(GENERATORS) + ".")
    seed: int = _f(0, "Seed of every random choice (each video and record draws from its own stream).", ge=0)
    prompt: str = _f(CAPTION_PROMPT, "The prompt the model answers about each video.")
    answers: Literal["model", "truth"] = _f("model", "Chosen answers: the model's greedy answer on the clean video, "
                                                     "or the truth caption (needs truth files). TEMPLE on caption "
                                                     "lists ignores it: its chosen is the clean list's summary.")
    truth_dir: str | None = _f(None, "Folder of <video name>.json truth files (default: <videos>/../truth if it "
                                     "exists, as `mmalign world` writes).")
    vocabulary: Literal["auto", "world", "coco"] = _f("auto", "Object words edits and APASI know (auto: world when "
                                                              "there is truth, else coco).")
    videos_per_batch: int = _f(4, "Videos loaded and finished together: the unit of progress and resume.")
    model: ModelConfig = _f(None, "The model whose answers make the pairs.", nested=ModelConfig)
    sampling: SamplingConfig = _f(None, "Frame sampling (train with the same sampling: frame-indexed ops in "
                                         "rejected_video are defined on this clip).", nested=SamplingConfig)
    generation: GenerationConfig = _f(None, "Decoding.", nested=GenerationConfig)
    temple: TempleConfig = _f(None, "generator: temple.", nested=TempleConfig)
    rrpo: RrpoConfig = _f(None, "generator: rrpo and rrpo_qa (the perturbation, the minimal-edit filter).",
                          nested=RrpoConfig)
    rrpo_qa: RrpoQaConfig = _f(None, "generator: rrpo_qa (questions, judge, rewriter).", nested=RrpoQaConfig)
    video: VideoOpsConfig = _f(None, "generator: video.", nested=VideoOpsConfig)
    inject: InjectConfig = _f(None, "generator: inject.", nested=InjectConfig)
    apasi: ApasiConfig = _f(None, "generator: apasi.", nested=ApasiConfig)
    ospo: OspoConfig = _f(None, "generator: ospo.", nested=OspoConfig)

    __post_init__ = RunConfig.__post_init__  # fills the nested sections, as in the training config


def load_pairs_config(path: str | Path, overrides: list[str] | None = None) -> PairsConfig:
    return build_overridden(load_raw(path), overrides or [], PairsConfig, build_pairs_config, str(path))


def build_pairs_config(raw: dict, source: str = "config") -> PairsConfig:
    try:
        cfg = _build(PairsConfig, raw, "")
        _validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def _validate(cfg: PairsConfig) -> None:
    def need(ok: bool, key: str, what: str):
        if not ok:
            raise ConfigError(f"{key}: {what}")

    need(cfg.videos_per_batch >= 1, "videos_per_batch", "must be >= 1")
    need(cfg.generation.batch_size >= 1, "generation.batch_size", "must be >= 1")
    need(bool(cfg.temple.kinds), "temple.kinds", "needs at least one kind")
    need(all(m >= 1 for m in cfg.temple.magnitudes) and cfg.temple.magnitudes, "temple.magnitudes",
         "must be integers >= 1 (TEMPLE: 2, 4, 8, 16)")
    need(cfg.temple.clips >= 1, "temple.clips", "must be >= 1")
    need("{captions}" in cfg.temple.summary_prompt, "temple.summary_prompt", "must contain {captions}")
    lo_hi = cfg.rrpo.mask_area
    need(len(lo_hi) == 2 and 0 <= lo_hi[0] <= lo_hi[1] <= 1, "rrpo.mask_area", "must be [low, high] within [0, 1]")
    need(cfg.rrpo.shuffle_window >= 1, "rrpo.shuffle_window", "must be >= 1")
    need(cfg.rrpo.pairs_per_video >= 1, "rrpo.pairs_per_video", "must be >= 1")
    need(bool(cfg.video.perturbations), "video.perturbations", "needs at least one perturbation")
    for i, p in enumerate(cfg.video.perturbations):
        key = f"video.perturbations[{i}]"
        need(isinstance(p, dict) and set(p) == {"name", "strength"}, key, "must be {name: ..., strength: ...}")
        if p["name"] not in FRAME_PERTURBATIONS:
            import difflib

            hint = difflib.get_close_matches(str(p["name"]), FRAME_PERTURBATIONS, n=1)
            raise ConfigError(f"{key}.name: {p['name']!r} is not one of {list(FRAME_PERTURBATIONS)}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        s = p["strength"]
        need(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 1, f"{key}.strength",
             f"must be a number in [0, 1], got {s!r}")
    need(bool(cfg.inject.types), "inject.types", "needs at least one edit type")
    need(cfg.inject.per_video is None or cfg.inject.per_video >= 1, "inject.per_video", "must be >= 1 or null")
    need(all(0 < r < 1 for r in cfg.apasi.replace_rates) and cfg.apasi.replace_rates, "apasi.replace_rates",
         "must be numbers in (0, 1)")
    need(all("{}" in t for t in cfg.apasi.templates) and cfg.apasi.templates, "apasi.templates", "each must contain {}")
    need(bool(cfg.ospo.kinds), "ospo.kinds", "needs at least one kind")
    q = cfg.rrpo_qa.questions
    need(q == "world" or Path(q).is_file(), "rrpo_qa.questions", f"{q}: not 'world' and no such QA file")
    need(bool(cfg.rrpo_qa.types), "rrpo_qa.types", "needs at least one question type")
    need("{}" in cfg.ospo.question, "ospo.question", "must contain {}")
    need(len(cfg.ospo.fill) == 3 and all(0 <= v <= 255 for v in cfg.ospo.fill), "ospo.fill", "must be [r, g, b] in 0..255")


def needs_model(cfg: PairsConfig) -> bool:
    """Whether this config asks the model for anything (a model-free run never loads torch)."""
    g = cfg.generator
    if cfg.answers == "model" or g in ("rrpo", "rrpo_qa", "video", "apasi") or (g == "ospo" and cfg.ospo.self_check):
        return True
    if g == "temple":
        t = cfg.temple
        return t.source == "pixels" or t.clip_captions == "model" or t.summarizer == "model"
    return g == "inject" and "prior" in cfg.inject.types
