"""Tiny presets load through from_pretrained and run images and videos like real checkpoints."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmalign.config import ModelConfig
from mmalign.data.video import Video
from mmalign.models.backbone import encode_prompt, family_of, freeze_vision, load_backbone, vision_parameters
from mmalign.models.tiny import TINY_PRESETS

MEDIA = {"qwen2_5_vl": ("image", "video"), "qwen2_vl": ("image", "video"), "qwen3_vl": ("image", "video"),
         "qwen3_5": ("image", "video"), "glm4v": ("image", "video"),
         "llava": ("image",), "llava_onevision": ("image", "video"), "internvl": ("image", "video"),
         "llava_next_video": ("video",)}


def _video(n=8):
    frames = np.random.default_rng(0).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    return Video(frames=frames, timestamps=[i / 4 for i in range(n)], source_fps=4.0, path="synthetic")


@pytest.fixture(scope="module", params=TINY_PRESETS)
def backbone(request, tmp_path_factory):
    cfg = ModelConfig(tiny=request.param, tiny_dir=str(tmp_path_factory.mktemp("tiny")))
    model, processor = load_backbone(cfg)
    return request.param, model, processor


def test_tiny_loads_and_scores_its_media(backbone):
    kind, model, processor = backbone
    assert type(model).__name__.endswith("ForConditionalGeneration")
    for media in MEDIA[kind]:
        kwargs = {"video": _video()} if media == "video" else {"images": [Image.new("RGB", (80, 60), "red")]}
        inputs = encode_prompt(processor, "Describe it.", **kwargs)
        placeholder = {"qwen": {"image": "<|image_pad|>", "video": "<|video_pad|>"},
                       "llava": {"image": "<image>", "video": "<video>"},
                       "llava_qwen": {"image": "<image>", "video": "<video>"},
                       "internvl": {"image": "<IMG_CONTEXT>", "video": "<IMG_CONTEXT>"},
                       "glm": {"image": "<|image|>", "video": "<|image|>"}}[family_of(model).name][media]
        n_placeholders = int((inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids(placeholder)).sum())
        assert n_placeholders > 1  # expanded to the vision features
        with torch.no_grad():
            logits = model(**inputs).logits
        assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()


def test_vision_freezing_leaves_language_model_trainable(backbone):
    _, model, _ = backbone
    n_frozen = freeze_vision(model)
    assert n_frozen > 0
    assert all(not p.requires_grad for _, p in vision_parameters(model))
    assert any(p.requires_grad for n, p in model.named_parameters() if "lm_head" in n or "language_model" in n)
    model.requires_grad_(True)
