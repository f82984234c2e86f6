"""`mmalign train --plan`: how long every record is, and what a step will hold, before anything
is decoded or trained.

Per record, the tokens the trainer will see: the chat prompt's text tokens plus the tokens its
media expand to, and each response. The media count comes from the file's header alone (PyAV
reads width, height, frame count and rate without decoding; PIL reads an image's size), the
sampling rule (`sample_indices`, `fit_within`), and the processor's own grid rules: the
processor is run ONCE per distinct (frames, height, width) on blank frames of that shape, and
the difference to the text-only prompt is the media's token count. That is the real
processor's count, exactly (a test holds it on every tiny family), at a cost independent of
the number of records.

Records over `data.max_length` are reported as skipped before training starts. The activation
estimate per sequence follows Korthikanti et al. 2022 (https://arxiv.org/abs/2205.05198) for a
16-bit forward with a fused attention kernel (no T^2 score matrix): 34 * T * h bytes per layer
kept for backward, or 2 * T * h per layer with gradient checkpointing (plus one layer's full
34 * T * h while it is recomputed), plus the LM head chunk train.logps_chunk_size * vocab * 4
bytes (float32 log-softmax). Weights, gradients and optimizer state are listed beside it.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass

import numpy as np

from mmalign.config import RunConfig
from mmalign.data.collate import encode_response
from mmalign.data.encode import record_system
from mmalign.data.video import Video, fit_within, sample_indices
from mmalign.methods import method
from mmalign.models.backbone import chat_messages, conversation_response, encode_prompt


@dataclass
class Length:
    record: str       # file:line
    prompt: int       # tokens, media included
    media: int        # of which media tokens
    responses: list[int]

    @property
    def longest(self) -> int:
        return self.prompt + max(self.responses or [0])


def video_shape(path: str, s) -> tuple[int, int, int, float]:
    """(sampled frames, height, width after max_pixels, source fps) from the header alone."""
    return _video_shape(path, s.num_frames, s.fps, s.max_frames, s.max_pixels)


@functools.lru_cache(maxsize=4096)  # records share videos (a video's questions, a pair's two sides)
def _video_shape(path: str, num_frames, fps_target, max_frames, max_pixels) -> tuple[int, int, int, float]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        n = stream.frames or int(float(stream.duration * stream.time_base) * float(stream.average_rate))
        fps = float(stream.average_rate or 1)
        h, w = stream.height, stream.width
    count = len(sample_indices(max(n, 1), fps, num_frames=num_frames, fps=fps_target, max_frames=max_frames))
    if max_pixels is not None:
        h, w = fit_within(h, w, max_pixels)
    return count, h, w, fps


def image_size(path: str, s) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        h, w = img.height, img.width
    return fit_within(h, w, s.max_pixels) if s.max_pixels is not None else (h, w)


def template_tokens(processor, prompt: str, n_images: int, video: bool, system, history=()) -> int:
    """Tokens of the chat prompt with each media placeholder unexpanded (one token each)."""
    text = processor.apply_chat_template(chat_messages(prompt, "video" if video else None, n_images, system, history),
                                         add_generation_prompt=True, tokenize=False)
    return len(processor.tokenizer(text)["input_ids"])


class TokenCounts:
    """How many tokens each part of a record comes to, each distinct part measured once: a chat
    prompt by its text, a response by its text (datasets repeat both: "Describe the video." on
    every caption record; rendering the chat template and tokenising one text at a time were 90%
    of the 14 s that 80k records took), and a media placeholder by its shape, measured through the
    real processor on blank media (the text around a placeholder never changes its expansion)."""

    def __init__(self, processor, end_of_turn: str):
        self.processor, self.end_of_turn, self.media_cache = processor, end_of_turn, {}
        # Bounded: a million distinct prompts must not be held twice over.
        self.prompt = functools.lru_cache(maxsize=2**16)(self._prompt)
        self.response = functools.lru_cache(maxsize=2**16)(self._response)

    def _prompt(self, prompt: str, n_images: int, video: bool, system: str | None, history: tuple = ()) -> int:
        return template_tokens(self.processor, prompt, n_images, video, system, history)

    def conversation(self, r, system: str | None) -> int:
        """Tokens of an SFT conversation after its first turn's prompt (`conversation_response`)."""
        text, _ = conversation_response(self.processor, r.history, r.prompt, r.response,
                                        "video" if r.video else None, len(r.images or []), system, self.end_of_turn)
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _response(self, text: str) -> int:
        return len(encode_response(self.processor.tokenizer, text, self.end_of_turn).ids)

    def _measure(self, key, n_images: int, **media) -> int:
        if key not in self.media_cache:
            full = len(encode_prompt(self.processor, "x", **media)["input_ids"][0])
            self.media_cache[key] = full - self.prompt("x", n_images, "video" in media, None)
        return self.media_cache[key]

    def video(self, count: int, h: int, w: int, fps: float) -> int:
        blank = Video(np.zeros((count, h, w, 3), np.uint8), [i / fps for i in range(count)], fps, "", list(range(count)))
        return self._measure(("video", count, h, w), 0, video=blank)

    def images(self, sizes: tuple[tuple[int, int], ...]) -> int:
        from PIL import Image

        return self._measure(("images", sizes), len(sizes), images=[Image.new("RGB", (w, h)) for h, w in sizes])


def record_length(r, counts: TokenCounts, cfg: RunConfig) -> Length:
    extra = 0  # tokens the placeholders add when the processor expands them
    if r.video:
        extra += counts.video(*video_shape(r.video, cfg.sampling))
    if r.images:
        extra += counts.images(tuple(image_size(p, cfg.sampling) for p in r.images))
    n_placeholders = len(r.images or []) + bool(r.video)
    system, n_images = record_system(r, cfg.data), len(r.images or [])
    if r.history and method(cfg.method).records == "sft":  # the first turn, then the rest of the conversation
        prompt = counts.prompt(r.history[0][0], n_images, bool(r.video), system) + extra
        return Length(r.source, prompt, extra + n_placeholders, [counts.conversation(r, system)])
    prompt = counts.prompt(r.prompt, n_images, bool(r.video), system, tuple(r.history or ())) + extra
    texts = [r.response] if method(cfg.method).records != "pair" else [r.chosen, r.rejected]
    return Length(r.source, prompt, extra + n_placeholders, [counts.response(t) for t in texts if t is not None])


def record_lengths(records, processor, family, cfg: RunConfig) -> list[Length]:
    counts = TokenCounts(processor, family.end_of_turn)  # one cache for all records
    return [record_length(r, counts, cfg) for r in records]


def drop_over_length(records, processor, family, cfg: RunConfig):
    """(records that fit data.max_length, Skipped for the others): found from headers and the
    processor's rules before training starts. A media file whose header does not read is left
    in (the trainer reports it when it decodes)."""
    from mmalign.data.records import Skipped

    counts = TokenCounts(processor, family.end_of_turn)
    keep, skipped = [], []
    for r in records:
        try:
            length = record_length(r, counts, cfg)
        except Exception:  # noqa: BLE001 - unreadable media: the decoder's own error comes later, per record
            keep.append(r)
            continue
        if length.longest > cfg.data.max_length:
            skipped.append(Skipped(r.source, r.id, f"{length.longest} tokens > data.max_length={cfg.data.max_length} "
                                                   "(found before training)"))
        else:
            keep.append(r)
    return keep, skipped


def activation_gib(tokens: int, text_config, chunk: int, checkpointing: bool) -> float:
    h, layers, vocab = text_config.hidden_size, text_config.num_hidden_layers, text_config.vocab_size
    per_layer = 34 * tokens * h
    kept = (2 * tokens * h * layers + per_layer) if checkpointing else per_layer * layers
    return (kept + min(chunk, tokens) * vocab * 4) / 2**30


def plan(cfg: RunConfig) -> dict:
    """The token plan of every stage (see the module docstring); printed by `mmalign train --plan`."""
    from transformers import AutoConfig, AutoProcessor

    from mmalign.config import stages_of
    from mmalign.models.backbone import FAMILIES, MODEL_TYPES, from_hub, model_path
    from accelerate import PartialState

    from mmalign.train.run import build_checked_world, check_inputs
    from mmalign.train.stage import load_data

    # What the run would refuse, the plan refuses: its inputs first, then the files of the
    # world it builds (the embedded default's records), which were planned as 0 records.
    check_inputs(stages_of(cfg))
    if cfg.world.enabled:
        build_checked_world(cfg, stages_of(cfg), PartialState())
    report = {}
    for name, stage in stages_of(cfg):
        path = model_path(stage.model)
        with from_hub(path):
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=stage.model.trust_remote_code)
            config = AutoConfig.from_pretrained(path, trust_remote_code=stage.model.trust_remote_code)
        family = FAMILIES[MODEL_TYPES[config.model_type]]
        records, skipped = load_data(stage, stage.data.train_file)
        lengths = record_lengths(records, processor, family, stage)
        longest = max(lengths, key=lambda x: x.longest) if lengths else None
        over = [x for x in lengths if x.longest > stage.data.max_length]
        tokens = sorted(x.longest for x in lengths)
        k = 2 if method(stage.method).records == "pair" else 1
        # the shared-prompt row holds the prompt once and every response
        row = max((x.prompt + sum(x.responses) for x in lengths), default=0) if stage.train.shared_prompt \
            else (longest.longest if longest else 0)
        text = getattr(config, "text_config", config)
        report[name] = {
            "records": len(records), "unreadable": len(skipped), "over_max_length": len(over),
            "over_examples": [f"{x.record}: {x.longest} tokens" for x in over[:5]],
            "tokens": {"min": tokens[0], "median": statistics.median(tokens), "p90": tokens[math.ceil(0.9 * len(tokens)) - 1],
                       "max": tokens[-1]} if tokens else {},
            "longest": {"record": longest.record, "prompt": longest.prompt, "media": longest.media,
                        "responses": longest.responses} if longest else None,
            "sequences_per_micro_batch": stage.train.batch_size * k,
            "activation_gib_per_micro_batch": round(stage.train.batch_size * activation_gib(
                row, text, stage.train.logps_chunk_size, stage.model.gradient_checkpointing) * (1 if stage.train.shared_prompt else k), 3),
            "model": {"hidden": text.hidden_size, "layers": text.num_hidden_layers, "vocab": text.vocab_size,
                      "family": family.name, "path": str(path)},
        }
    return report


def print_plan(report: dict) -> None:
    for name, r in report.items():
        t = r["tokens"]
        print(f"stage {name}: {r['records']} records ({r['unreadable']} unreadable lines), model "
              f"{r['model']['family']} hidden {r['model']['hidden']} x {r['model']['layers']} layers")
        if t:
            print(f"  tokens per record (prompt + longest response): min {t['min']}, median {t['median']:g}, "
                  f"p90 {t['p90']}, max {t['max']}")
        if r["longest"]:
            lo = r["longest"]
            print(f"  longest: {lo['record']}: prompt {lo['prompt']} tokens ({lo['media']} media), responses "
                  f"{lo['responses']}")
        print(f"  {r['over_max_length']} record(s) over data.max_length: skipped before training"
              + "".join(f"\n    {e}" for e in r["over_examples"]))
        print(f"  estimated activations per micro-batch ({r['sequences_per_micro_batch']} sequences, 16-bit): "
              f"{r['activation_gib_per_micro_batch']:.3f} GiB")
