"""Batched generation through the backbone's own `generate`: evals, pair generation
(self-injection) and GRPO rollouts all decode through here.

Prompts are rendered with the chat template and encoded by the processor in one call,
left-padded, so a batch of videos runs the vision tower once per video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mmalign.models.backbone import chat_messages, check_media, shared_media_names, video_metadata


@dataclass
class Prompt:
    text: str
    video: object | None = None          # mmalign.data.video.Video
    images: list = field(default_factory=list)  # PIL images


def encode_prompts(processor, prompts: list[Prompt], system: str | None = None) -> dict:
    """One left-padded batch for generation."""
    texts, videos, metas, images = [], [], [], []
    for p in prompts:
        messages = chat_messages(p.text, "video" if p.video is not None else None, len(p.images), system)
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        images += list(p.images)
        if p.video is not None:
            videos.append(np.asarray(p.video.frames))
            metas.append(video_metadata(p.video))
    check_media(processor, bool(images), bool(videos))
    kwargs = {}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs.update(videos=videos, video_metadata=metas, do_sample_frames=False)
    inputs = processor(text=texts, return_tensors="pt", padding=True, padding_side="left", **kwargs)
    return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}


@torch.no_grad()
def generate(model, processor, prompts: list[Prompt], max_new_tokens: int = 64, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, num_return_sequences: int = 1,
             repetition_penalty: float = 1.0, system: str | None = None) -> list[list[str]]:
    """Texts generated for each prompt: `num_return_sequences` per prompt, special tokens
    removed. Greedy by default (deterministic)."""
    with_video = [p.video is not None for p in prompts]
    if any(p.images for p in prompts) and any(with_video) and shared_media_names(processor):
        # one call cannot take both (SmolVLM): video prompts and the others decode apart
        parts = {v: [i for i, w in enumerate(with_video) if w == v] for v in (True, False)}
        kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p,
                  num_return_sequences=num_return_sequences, repetition_penalty=repetition_penalty, system=system)
        out = [None] * len(prompts)
        for idx in parts.values():
            for i, texts in zip(idx, generate(model, processor, [prompts[i] for i in idx], **kw)):
                out[i] = texts
        return out
    inputs = encode_prompts(processor, prompts, system)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    tok = processor.tokenizer
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else dict(do_sample=False)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
                         repetition_penalty=repetition_penalty, pad_token_id=tok.pad_token_id, **sampling)
    texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [texts[i * num_return_sequences:(i + 1) * num_return_sequences] for i in range(len(prompts))]
