"""Backbone adapters: how each vision-language family is loaded, prompted and scored.

What differs between families is small and kept as data, one `Family` entry each (a new
family is one entry plus its tiny preset): the end-of-turn token, where the vision side lives,
where the language model lives, and the position rule. Everything else (batching, log-probs,
losses) is family-agnostic: visual tensors of several examples concatenate along dim 0
(`concat_visual`).
"""

from __future__ import annotations

import contextlib
import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmalign.config import ModelConfig

TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


@dataclass(frozen=True)
class Family:
    name: str
    end_of_turn: str             # appended to every response; scored like any response token
    vision_prefixes: tuple[str, ...]  # module-name prefixes of the vision tower + projector
    mrope: bool = False          # 3D multimodal rotary positions from the VLM's own get_rope_index
    text_model: str = "language_model"  # the VLM's attribute holding the language model
    # whether one shared-prompt batch may hold images and videos: GLM-4.1V marks video frames with
    # its image token, so features handed over per modality do not line up
    mixed_media: bool = True


FAMILIES = {
    "qwen": Family("qwen", "<|im_end|>", ("model.visual",), mrope=True),
    # GLM-4.1V: Qwen2-VL-style vision and 3D rope; an assistant turn ends where the next <|user|> begins
    "glm": Family("glm", "<|user|>", ("model.visual",), mrope=True, mixed_media=False),
    "llava": Family("llava", "</s>", ("model.vision_tower", "model.multi_modal_projector", "model.vision_resampler")),
    # LLaVA-OneVision / LLaVA-Video: LLaVA's vision side, a Qwen2 language model's ChatML turns
    "llava_qwen": Family("llava_qwen", "<|im_end|>", ("model.vision_tower", "model.multi_modal_projector")),
    # InternVL3 / 3.5 -hf: InternViT + projector, ChatML turns; video frames go in as image tiles
    "internvl": Family("internvl", "<|im_end|>", ("model.vision_tower", "model.multi_modal_projector")),
    # SmolVLM2: SigLIP + pixel-shuffle connector, a Llama language model under `text_model`; a video
    # goes in as its frames, images of one prompt stacked [1, frames, C, H, W] with a pixel mask
    "smolvlm": Family("smolvlm", "<end_of_utterance>", ("model.vision_model", "model.connector"),
                      text_model="text_model"),
}
MODEL_TYPES = {"qwen2_vl": "qwen", "qwen2_5_vl": "qwen", "qwen3_vl": "qwen", "qwen3_5": "qwen", "glm4v": "glm",
               "llava": "llava", "llava_next_video": "llava", "llava_onevision": "llava_qwen", "internvl": "internvl",
               "smolvlm": "smolvlm"}


def family_of(model) -> Family:
    model_type = base_model(model).config.model_type
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unsupported backbone model_type {model_type!r}; supported: {', '.join(MODEL_TYPES)}")
    return FAMILIES[MODEL_TYPES[model_type]]


def language_model(model):
    """The language model inside the VLM (its config carries the attention implementation)."""
    return getattr(base_model(model).model, family_of(model).text_model)


def base_model(model):
    """The transformers model under any peft / accelerate / compile wrapper."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and not hasattr(model, "lm_head"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def model_path(cfg: ModelConfig) -> str:
    """The checkpoint to load: `path`, or the tiny preset built (once) offline."""
    if cfg.path:
        return cfg.path
    if cfg.tiny:
        from mmalign.models.tiny import build_tiny

        return str(build_tiny(cfg.tiny, Path(cfg.tiny_dir) / cfg.tiny))
    from mmalign.config import ConfigError

    raise ConfigError("model: set model.path (a checkpoint folder) or model.tiny (an offline preset)")


def weights_stamp(path: str | None) -> str | None:
    """The weight files of a local checkpoint folder, by count, size and time written. Resumable
    runs (eval, pairs) record it, so that a model retrained into the same folder does not have
    the old model's answers taken for its own. Not a content hash, which would read every byte
    of a 7B checkpoint at each resume. None for a hub id or a tiny preset."""
    if not path or not Path(path).is_dir():
        return None
    files = sorted(p for pattern in ("*.safetensors", "*.bin") for p in Path(path).resolve().glob(pattern))
    if not files:
        return None
    stats = [p.stat() for p in files]
    newest = datetime.datetime.fromtimestamp(max(st.st_mtime_ns for st in stats) / 1e9).isoformat(sep=" ")
    return f"{len(files)} file(s), {sum(st.st_size for st in stats)} bytes, newest written {newest}"


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")


def check_checkpoint(path: str, trust_remote_code: bool, key: str = "model.path", serves: str | None = None) -> None:
    """A one-line ConfigError for what from_pretrained would answer with a traceback: a missing
    folder, pickle-only weights, a torn safetensors file, custom code without permission, and a
    model that cannot serve as what the key loads: `serves="backbone"`, a vision-language model
    mmalign trains (not a text-only LLM); `serves="chat"`, a model AutoModelForCausalLM loads (a
    judge or rewriter; not a VLM); `serves="reward"`, a checkpoint with a sequence-classification
    head (AutoModelForSequenceClassification gives any other a random one, with only a warning,
    and every reward would be noise)."""
    import json

    from mmalign.config import ConfigError

    def check_type(model_type, auto_map, architectures) -> None:
        if serves == "backbone" and model_type not in MODEL_TYPES:
            raise ConfigError(f"{key}: {path}: model type {model_type!r} is not a vision-language backbone mmalign "
                              f"trains (supported: {', '.join(MODEL_TYPES)}); for a text-only LLM, name its "
                              "vision-language checkpoint instead (Qwen2.5-VL-7B-Instruct, not Qwen2.5-7B-Instruct)")
        if serves == "chat" and "AutoModelForCausalLM" not in (auto_map or {}):
            from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

            if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
                raise ConfigError(f"{key}: {path}: model type {model_type!r} is not a text chat model "
                                  "(AutoModelForCausalLM does not load it); name a text LLM such as "
                                  "Qwen2.5-7B-Instruct")
        if serves == "reward" and not any(a.endswith("ForSequenceClassification") for a in architectures or []):
            raise ConfigError(f"{key}: {path}: its architectures {architectures or []} have no sequence-classification "
                              "head, which would start random (every reward noise); name a reward model (an "
                              "*ForSequenceClassification checkpoint)")

    folder = Path(path)
    if not folder.exists():
        if re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not path.startswith("."):
            # A hub id: its config fetched now (then cached), so that one the hub does not give
            # stops the run before it claims a folder, not when the weights load.
            from transformers import AutoConfig

            unreachable = hub_unreachable(path)
            if unreachable:
                raise ConfigError(f"{key}: {path}: no local folder, not in the hub cache, and {unreachable}; download "
                                  f"it and set {key} to its folder")
            with from_hub(path, key):
                try:
                    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
                    check_type(config.model_type, getattr(config, "auto_map", None), config.architectures)
                except ValueError as e:  # custom code without trust_remote_code, an unknown model type
                    raise ConfigError(f"{key}: {path}: {str(e).strip().splitlines()[0]}") from None
            return
        raise ConfigError(f"{key}: {path}: no such folder")
    if not folder.is_dir():
        raise ConfigError(f"{key}: {path}: not a folder (a checkpoint folder holds config.json and weights)")
    config = folder / "config.json"
    if not config.is_file():
        raise ConfigError(f"{key}: {path}: no config.json, so not a transformers checkpoint folder")
    try:
        fields = json.loads(config.read_text(encoding="utf-8"))
        auto_map = fields.get("auto_map")
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise ConfigError(f"{key}: {config}: not valid JSON ({e})") from None
    check_type(fields.get("model_type"), auto_map, fields.get("architectures"))
    if auto_map and not trust_remote_code:
        raise ConfigError(f"{key}: {config} names custom code (auto_map); set model.trust_remote_code=true "
                          "to allow it to run")
    # What the tokenizer / processor load from; without them the load failed after the run had
    # claimed its folder (a weights-only copy of a checkpoint, say).
    needed = {"backbone": [("tokenizer", TOKENIZER_FILES), ("processor", PROCESSOR_FILES)],
              "chat": [("tokenizer", TOKENIZER_FILES)]}.get(serves, [])
    for what, names in needed:
        if not any((folder / name).is_file() for name in names):
            raise ConfigError(f"{key}: {path}: no {what} files ({' / '.join(names)}); save the {what} beside the "
                              f"weights ({what}.save_pretrained(folder))")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        raise ConfigError(f"{key}: {path}: no *.safetensors weights"
                          + (f" (only pickle files: {', '.join(pickles)}; mmalign never unpickles weights: convert "
                             "them with save_pretrained(safe_serialization=True))" if pickles else ""))
    from safetensors import safe_open

    for w in weights:
        try:
            with safe_open(str(w), "pt") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own and OS errors for torn files
            raise ConfigError(f"{key}: {w}: not a readable safetensors file ({str(e).splitlines()[0][:120]})") \
                from None


def hub_unreachable(repo_id: str) -> str | None:
    """Why the hub cannot give `repo_id` now, found in milliseconds: not cached, and its endpoint
    does not resolve or connect within 3 s. (Asked anyway, transformers retries with back-off for
    30 s or more before the same answer.) None when it may: cached, offline mode, or reachable."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return None
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
    except OSError as e:
        return f"the hub ({url.hostname}) cannot be reached ({e.strerror or type(e).__name__})"
    return None


@contextlib.contextmanager
def from_hub(path: str, key: str = "model.path"):
    """Around from_pretrained of a checkpoint that is no local folder (a hub id): where the hub
    cannot be reached or lacks it, transformers raises a page-long OSError; one line naming
    the key instead."""
    try:
        yield
    except OSError as e:
        if Path(path).exists():
            raise
        from mmalign.config import ConfigError

        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{key}: {path}: no local folder, and the hub did not give it ({first}); download it "
                          f"and set {key} to its folder") from None


def load_backbone(cfg: ModelConfig, path: str | None = None):
    """Load (model, processor) with transformers' Auto classes."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = path or model_path(cfg)
    check_checkpoint(str(path), cfg.trust_remote_code, serves="backbone")
    check_runtime(cfg)
    with from_hub(str(path)):
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=resolve_dtype(cfg.dtype), attn_implementation=cfg.attn_implementation,
            trust_remote_code=cfg.trust_remote_code)
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    family_of(model)  # fail early on an unsupported family
    if cfg.liger_kernel:
        apply_liger(model)
    return model, processor


def check_runtime(cfg: ModelConfig) -> None:
    """The model section's GPU-only options can run here: FlashAttention-2 and Liger need their
    optional packages (the `gpu` extra) and a CUDA device. Checked with the run's other inputs,
    before it claims a folder; the import failed after, as a traceback."""
    import importlib

    from mmalign.config import ConfigError

    wanted = [("model.attn_implementation=flash_attention_2", "flash_attn", "flash-attn")] \
        if cfg.attn_implementation == "flash_attention_2" else []
    wanted += [("model.liger_kernel=true", "liger_kernel", "liger-kernel")] if cfg.liger_kernel else []
    for option, module, package in wanted:
        try:
            importlib.import_module(module)  # optional `gpu` extra: imported only when a config asks for it
        except ImportError as e:
            raise ConfigError(f"{option}: needs the {package} package, which does not import here ({e}); install "
                              "it with pip install -e '.[gpu]' on a CUDA machine, or drop the option") from None
        if not torch.cuda.is_available():
            raise ConfigError(f"{option}: runs on a CUDA GPU only, and this machine shows none; drop the option "
                              "here (model.attn_implementation=sdpa, model.liger_kernel=false)")


def apply_liger(model) -> None:
    """Liger's kernels patched into the loaded model with transformers' own integration (what
    Trainer's `use_liger_kernel` calls): its norms, rotary embedding and MLP. Its fused linear
    cross-entropy replaces the model's forward, which our scoring does not call (it reads the
    last hidden state and scores through the LM head in chunks), so it stays off, as TRL's
    DPOTrainer keeps it off; so does its plain cross-entropy."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    from transformers.integrations.liger import apply_liger_kernel

    from mmalign.config import ConfigError

    model_type = model.config.model_type
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:  # Liger only logs this and patches nothing
        raise ConfigError(f"model.liger_kernel: Liger has no kernels for model type {model_type!r}; drop the option "
                          f"(its model types: {', '.join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))})")
    try:
        apply_liger_kernel(model, {"cross_entropy": False, "fused_linear_cross_entropy": False})
    except (ImportError, AttributeError) as e:  # a Liger release behind this transformers' model classes
        raise ConfigError(f"model.liger_kernel: Liger could not patch model type {model_type!r} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]}); drop the option or install a Liger release that supports this "
                          "transformers") from None


def vision_parameters(model):
    fam = family_of(model)
    for name, p in base_model(model).named_parameters():
        if name.startswith(fam.vision_prefixes):
            yield name, p


def freeze_vision(model) -> int:
    n = 0
    for _, p in vision_parameters(model):
        p.requires_grad_(False)
        n += p.numel()
    return n


def chat_messages(prompt: str, media: str | None, n_images: int = 0, system: str | None = None,
                  history=()) -> list[dict]:
    """[system?] + the earlier (user, assistant) turns of `history` + the user turn `prompt`; the
    media parts go in the first user turn."""
    media_parts = [{"type": "image"}] * n_images + ([{"type": "video"}] if media == "video" else [])
    text = lambda t: {"type": "text", "text": t}
    messages = [{"role": "system", "content": [text(system)]}] if system else []
    for i, (user, answer) in enumerate(history):
        messages += [{"role": "user", "content": (media_parts if i == 0 else []) + [text(user)]},
                     {"role": "assistant", "content": [text(answer)]}]
    return messages + [{"role": "user", "content": ([] if history else media_parts) + [text(prompt)]}]


def encode_prompt(processor, prompt: str, video=None, images=None, system: str | None = None, history=()) -> dict:
    """Processor inputs (batch of 1) for a user turn with optional media (after the earlier turns
    of `history`, if any), ending with the assistant header so that a response can be appended
    token by token.

    `video` is an `mmalign.data.video.Video` (frames already sampled by decord); `images` a
    list of PIL images.
    """
    messages = chat_messages(prompt, "video" if video is not None else None, len(images or []), system, history)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    check_media(processor, bool(images), video is not None)
    kwargs = {}
    if images:
        kwargs["images"] = list(images)
    if video is not None:
        kwargs.update(videos=[np.asarray(video.frames)], do_sample_frames=False, video_metadata=[video_metadata(video)])
    inputs = processor(text=[text], return_tensors="pt", **kwargs)
    return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}


def conversation_response(processor, history, prompt: str, response: str, media: str | None, n_images: int,
                          system: str | None, end_of_turn: str) -> tuple[str, list[tuple[int, int]]]:
    """SFT on a conversation: the text that follows the generation prompt of its first user turn
    (every assistant answer with its end of turn, the later user turns as the chat template
    renders them) and the char spans of the answers, which are what is trained (LLaMA-Factory's
    default; TRL's assistant_only_loss). The first answer starts the text, and the last ends it
    with `end_of_turn`, as a one-turn response does (`encode_response`). ValueError where the
    template does not render the conversation turn by turn."""
    turns = [*history, (prompt, response)]
    head = processor.apply_chat_template(chat_messages(turns[0][0], media, n_images, system),
                                         add_generation_prompt=True, tokenize=False)
    full = chat_messages(prompt, media, n_images, system, history) + [
        {"role": "assistant", "content": [{"type": "text", "text": response}]}]
    text = processor.apply_chat_template(full, tokenize=False)
    if not text.startswith(head):
        raise ValueError("the chat template renders a conversation's first turn otherwise than alone, so its "
                         "answers cannot be told from the template's text")
    rest, spans, cursor = text[len(head):], [], 0
    for i, (user, answer) in enumerate(turns):
        if i > 0:  # the answer follows its own user turn (which may quote an earlier answer)
            at = rest.find(user, cursor)
            cursor = at + len(user) if at >= 0 else -1
        at = rest.find(answer, cursor) if cursor >= 0 else -1
        if at < 0 or (i == 0 and rest[:at].strip()):
            raise ValueError(f"turn {i + 1} is not where the chat template should render it")
        if i == 0:
            rest, at = rest[at:], 0
        end = at + len(answer)
        if i == len(turns) - 1:
            rest = rest[:end] + end_of_turn
            spans.append((at, len(rest)))
        elif rest.startswith(end_of_turn, end):
            spans.append((at, end + len(end_of_turn)))
            cursor = end + len(end_of_turn)
        else:
            raise ValueError(f"the chat template does not end answer {i + 1} with {end_of_turn!r}")
    return rest, spans


def shared_media_names(processor) -> set[str]:
    """Input names the processor writes for images and videos alike (SmolVLM: `pixel_values`):
    where there are any, one processor call cannot take both, or the videos' tensors would
    silently replace the images'."""
    video_processor = getattr(processor, "video_processor", None)
    return set(getattr(processor.image_processor, "model_input_names", [])) & \
        set(getattr(video_processor, "model_input_names", []))


def check_media(processor, images: bool, videos: bool) -> None:
    shared = shared_media_names(processor) if images and videos else set()
    if shared:
        raise ValueError(f"{type(processor).__name__} writes images and videos under the same names "
                         f"({', '.join(sorted(shared))}): one prompt cannot hold both")


def video_metadata(video):
    """transformers' VideoMetadata for frames we sampled ourselves: Qwen's temporal rotary
    positions depend on the fps of the sampled clip."""
    n = len(video.frames)
    ts = list(getattr(video, "timestamps", []) or [])
    fps = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) >= 2 and ts[-1] > ts[0] else float(video.source_fps or 1.0)
    from mmalign.models import hf

    return hf.video_metadata(n, fps)


def visual_keys(inputs: dict) -> list[str]:
    return [k for k in inputs if k not in TEXT_KEYS]


def concat_visual(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One visual tensor of several prompts, along dim 0. Where the prompts' shapes differ past
    dim 0 the rest is zero-padded: SmolVLM stacks a prompt's images (a video's frames) as
    [1, N, C, H, W] with a pixel mask, LLaVA-OneVision its tiles as [n, tiles, C, H, W], and
    both drop all-zero padding (SmolVLM by its pixels, OneVision by `image_sizes`)."""
    shape = [max(t.shape[d] for t in tensors) for d in range(tensors[0].dim())]
    if all(list(t.shape[1:]) == shape[1:] for t in tensors):
        return torch.cat(tensors, dim=0)
    out = []
    for t in tensors:
        padded = t.new_zeros((t.shape[0], *shape[1:]))  # new_zeros: pixel masks are bool
        padded[tuple(slice(0, n) for n in t.shape)] = t
        out.append(padded)
    return torch.cat(out, dim=0)
