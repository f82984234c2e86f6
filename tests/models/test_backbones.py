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
         "llava_next_video": ("video",), "smolvlm": ("image", "video")}


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
                       "glm": {"image": "<|image|>", "video": "<|image|>"},
                       "smolvlm": {"image": "<image>", "video": "<image>"}}[family_of(model).name][media]
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
    text_model = family_of(model).text_model
    assert any(p.requires_grad for n, p in model.named_parameters() if "lm_head" in n or text_model in n)
    model.requires_grad_(True)


def test_images_and_videos_apart_where_the_processor_names_them_alike(tmp_path):
    """SmolVLM's processor writes images and video frames both as `pixel_values`: one prompt with
    both is refused in one line (the video's tensors would replace the image's), and a generation
    batch of image and video prompts decodes them apart, as each alone."""
    from mmalign.models.generate import Prompt, generate

    model, processor = load_backbone(ModelConfig(tiny="smolvlm", tiny_dir=str(tmp_path)))
    picture = Image.new("RGB", (80, 60), "red")
    with pytest.raises(ValueError, match="SmolVLMProcessor writes images and videos under the same names"):
        encode_prompt(processor, "Describe it.", video=_video(), images=[picture])
    prompts = [Prompt("Describe it.", video=_video()), Prompt("What is it?", images=[picture]),
               Prompt("And now?", video=_video(4))]
    mixed = generate(model, processor, prompts, max_new_tokens=4)
    alone = [generate(model, processor, [p], max_new_tokens=4)[0] for p in prompts]
    assert mixed == alone and all(t[0] for t in mixed)


def test_lora_adapts_the_language_model_only(backbone):
    """The default LoRA targets (q/k/v/o and MLP projections) exist in vision towers too; the
    default exclude regex keeps every family's vision side (tower and projector) unadapted."""
    import copy

    from mmalign.config import LoraConfig
    from mmalign.train.stage import apply_lora

    _, model, _ = backbone
    vision = family_of(model).vision_prefixes
    assert any(n.startswith(vision) for n, _ in model.named_parameters())  # the prefixes name real modules
    adapted = [n.removeprefix("base_model.model.") for n, _ in apply_lora(copy.deepcopy(model),
                                                                        LoraConfig(enabled=True)).named_parameters()
               if "lora_" in n]
    assert adapted and not [n for n in adapted if n.startswith(vision)]
    text_model = family_of(model).text_model
    assert all(f"model.{text_model}." in n for n in adapted)
