"""Offline tiny backbones: random weights, a tokenizer trained on the fly, real processors.

Tests and the quickstart use these so that nothing is downloaded. Each preset is built
from transformers' own config and processor classes and written with `save_pretrained`,
so everything downstream loads it with `from_pretrained`, exactly as a 7B checkpoint.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from mmalign.config import TINY_PRESETS


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
LLAVA_SPECIAL = ["<pad>", "<s>", "</s>", "<image>", "<video>"]

# Qwen2-VL's chat template (from the official tokenizer_config.json).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# LLaVA-1.5 / NeXT-Video conversation format ("USER: <image>\n... ASSISTANT:").
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<image>\n"
    "{% elif content['type'] == 'video' %}<video>\n{% endif %}{% endfor %}"
    "{% for content in message['content'] %}{% if content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %} {% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{{ content['text'] }}{% endfor %}{% endif %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _corpus() -> list[str]:
    """Sentences covering the synthetic world's words, so the trained BPE has real merges."""
    colors = ["red", "green", "blue", "yellow", "white", "purple", "orange", "cyan"]
    shapes = ["circle", "square", "triangle"]
    motions = ["moves left", "moves right", "moves up", "moves down", "stays still", "appears", "disappears"]
    lines = [f"A {c} {s} {m}." for c, s, m in itertools.product(colors, shapes, motions)]
    lines += [f"Is there a {c} {s} in the video? Yes. No." for c, s in itertools.product(colors, shapes)]
    lines += [f"There are {n} objects. How many? {n}" for n in range(10)]
    lines += ["Describe what happens in the video. Then the first object, before, after, and the.",
              "You are a helpful assistant. What color is it? Which direction does it move?",
              "Answer the question using 'yes' or 'no'. Answer with one word."]
    return lines * 4


def train_tokenizer(special_tokens: list[str], vocab_size: int = 512):
    """A byte-level BPE (the Qwen2 / GPT-2 scheme) trained on `_corpus()`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    return tok


def _qwen_tokenizer():
    from transformers import Qwen2Tokenizer

    return Qwen2Tokenizer(tokenizer_object=train_tokenizer(QWEN_SPECIAL), eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", unk_token=None, extra_special_tokens=QWEN_SPECIAL[1:])


def _llava_tokenizer():
    from transformers import Qwen2Tokenizer  # any byte-level BPE fast tokenizer class serves

    return Qwen2Tokenizer(tokenizer_object=train_tokenizer(LLAVA_SPECIAL), bos_token="<s>", eos_token="</s>",
                          pad_token="<pad>", unk_token=None, extra_special_tokens=["<image>", "<video>"])


def _tiny_text(vocab_size: int, **ids) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, **ids)


def _build_qwen(kind: str):
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    # Frames of the synthetic world are 64x64: the pixel budget keeps one 56x56 grid per frame pair.
    budget = dict(min_pixels=28 * 28 * 4, max_pixels=56 * 56 * 2)
    processor_cls = Qwen2_5_VLProcessor if kind == "qwen2_5_vl" else Qwen2VLProcessor
    processor = processor_cls(image_processor=Qwen2VLImageProcessor(**budget),
                              video_processor=Qwen2VLVideoProcessor(**budget, cap_pixels_per_frame=False),
                              tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE)
    text = _tiny_text(len(tok), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"), bos_token_id=None,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    special = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                   vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    if kind == "qwen2_5_vl":
        vision.update(hidden_size=32, intermediate_size=64, out_hidden_size=64, window_size=56,
                      fullatt_block_indexes=[1])
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
        return Qwen2_5_VLForConditionalGeneration(config), processor
    vision.update(embed_dim=32, hidden_size=64, mlp_ratio=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **special)
    return Qwen2VLForConditionalGeneration(config), processor


def _build_qwen3_5(kind: str):
    """Qwen3.5 (Qwen3_5ForConditionalGeneration): Qwen3-VL's vision side and processor, a hybrid
    language model of Gated DeltaNet (linear attention) and full-attention layers."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    model3, processor = _build_qwen3_vl("qwen3_vl")
    config3 = model3.config
    text = {**config3.text_config.to_dict(), "layer_types": ["linear_attention", "full_attention"],
            "linear_num_value_heads": 2, "linear_num_key_heads": 2, "linear_key_head_dim": 16,
            "linear_value_head_dim": 16}
    for key in ("model_type", "architectures", "transformers_version", "dtype", "torch_dtype"):
        text.pop(key, None)
    text["rope_parameters"] = {**text["rope_parameters"], "partial_rotary_factor": 1.0}
    vision = {k: v for k, v in config3.vision_config.to_dict().items()
              if k in ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size", "patch_size",
                       "num_position_embeddings", "spatial_merge_size", "temporal_patch_size")}
    config = Qwen3_5Config(text_config=text, vision_config=vision, image_token_id=config3.image_token_id,
                           video_token_id=config3.video_token_id, vision_start_token_id=config3.vision_start_token_id,
                           vision_end_token_id=config3.vision_end_token_id)
    return Qwen3_5ForConditionalGeneration(config), processor


GLM_SPECIAL = ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|begin_of_image|>",
               "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"]
# GLM-4.1V's turns: [gMASK]<sop><|user|>\n...<|assistant|>\n (from its chat_template.jinja)
GLM_CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|begin_of_image|><|image|><|end_of_image|>{% elif c['type'] == 'video' %}<|begin_of_video|><|video|>"
    "<|end_of_video|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _build_glm4v(kind: str):
    """GLM-4.1V-Thinking (Glm4vForConditionalGeneration): a Qwen2-VL-style vision tower and 3D
    rope, GLM's turn tokens."""
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration, Glm4vImageProcessor, Glm4vProcessor, Qwen2Tokenizer
    from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor

    tok = Qwen2Tokenizer(tokenizer_object=train_tokenizer(GLM_SPECIAL), eos_token="<|endoftext|>",
                         pad_token="<|endoftext|>", unk_token=None, extra_special_tokens=GLM_SPECIAL[1:])
    ids = tok.convert_tokens_to_ids
    budget = dict(size={"shortest_edge": 28 * 28 * 4, "longest_edge": 56 * 56 * 2}, patch_size=14, merge_size=2)
    processor = Glm4vProcessor(image_processor=Glm4vImageProcessor(**budget),
                               video_processor=Glm4vVideoProcessor(**budget), tokenizer=tok,
                               chat_template=GLM_CHAT_TEMPLATE)
    text = _tiny_text(len(tok), pad_token_id=ids("<|endoftext|>"), eos_token_id=[ids("<|endoftext|>"), ids("<|user|>")],
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                       "partial_rotary_factor": 1.0})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, image_size=56)
    config = Glm4vConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image|>"),
                         video_token_id=ids("<|video|>"), image_start_token_id=ids("<|begin_of_image|>"),
                         image_end_token_id=ids("<|end_of_image|>"), video_start_token_id=ids("<|begin_of_video|>"),
                         video_end_token_id=ids("<|end_of_video|>"))
    return Glm4vForConditionalGeneration(config), processor


def _build_qwen3_vl(kind: str):
    """Qwen3-VL (transformers' Qwen3VLForConditionalGeneration): 16 px patches, interleaved
    mRoPE, DeepStack vision features fed to the first language layers, and the video's
    timestamps written into the prompt by its processor."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    # 64 x 64 world frames: one 64 x 64 grid (16 merged tokens) per pair of frames.
    budget = dict(size={"shortest_edge": 32 * 32 * 4, "longest_edge": 64 * 64 * 2}, patch_size=16, merge_size=2)
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**budget),
                                 video_processor=Qwen3VLVideoProcessor(**budget), tokenizer=tok,
                                 chat_template=QWEN_CHAT_TEMPLATE)
    text = _tiny_text(len(tok), pad_token_id=ids("<|endoftext|>"), head_dim=16,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                       "mrope_interleaved": True})
    text["eos_token_id"] = ids("<|im_end|>")
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
                  num_position_embeddings=64, deepstack_visual_indexes=[1])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                           video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                           vision_end_token_id=ids("<|vision_end|>"))
    return Qwen3VLForConditionalGeneration(config), processor


ONEVISION_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# LLaVA-OneVision / LLaVA-Video (Qwen2 language models): the ChatML turns of their official
# template, with <image> / <video> placeholders before the text.
ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'video' %}<video>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _build_llava_onevision(kind: str):
    """LLaVA-OneVision (and LLaVA-Video-7B-Qwen2, the same class): SigLIP tower, anyres image
    tiles, pooled video frames, a Qwen2 language model with ChatML turns."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor,
                              Qwen2Tokenizer)

    tok = Qwen2Tokenizer(tokenizer_object=train_tokenizer(ONEVISION_SPECIAL), eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token=None, extra_special_tokens=["<|im_start|>", "<image>", "<video>"])
    ids = tok.convert_tokens_to_ids
    size = 56  # 4 x 4 patches of 14 px: 16 tokens per tile, 4 per pooled video frame
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": size, "width": size},
                                                     image_grid_pinpoints=[[size, size]], do_pad=True),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}), tokenizer=tok,
        num_image_tokens=16, vision_feature_select_strategy="full", chat_template=ONEVISION_CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_1")
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=size, patch_size=14)
    text = dict(model_type="qwen2", **_tiny_text(len(tok), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>")))
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=ids("<image>"),
                                  video_token_index=ids("<video>"), vision_feature_layer=-1,
                                  vision_feature_select_strategy="full", image_grid_pinpoints=[[size, size]],
                                  vision_aspect_ratio="anyres_max_1")
    return LlavaOnevisionForConditionalGeneration(config), processor


INTERNVL_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
# InternVL3 / 3.5 "-hf": ChatML turns; the processor expands <IMG_CONTEXT> per tile and <video> per frame.
INTERNVL_CHAT_TEMPLATE = ONEVISION_CHAT_TEMPLATE.replace("<image>\n", "<IMG_CONTEXT>\n")


def _build_internvl(kind: str):
    """InternVL3 / InternVL3.5 as transformers ships them (InternVLForConditionalGeneration): an
    InternViT tower, pixel-shuffle downsampling, tiles for images and one tile per video frame."""
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, Qwen2Tokenizer)
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    tok = Qwen2Tokenizer(tokenizer_object=train_tokenizer(INTERNVL_SPECIAL), eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token=None,
                         extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                               "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>",
                                               "im_start": "<|im_start|>"})
    ids = tok.convert_tokens_to_ids
    size = 56  # 4 x 4 patches of 14 px, pixel-shuffled by 0.5: 4 tokens per tile / frame
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": size, "width": size}, crop_to_patches=False,
                                              max_patches=1),
        video_processor=InternVLVideoProcessor(size={"height": size, "width": size}), tokenizer=tok,
        image_seq_length=4, chat_template=INTERNVL_CHAT_TEMPLATE)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  image_size=[size, size], patch_size=[14, 14])
    text = dict(model_type="qwen2", **_tiny_text(len(tok), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>")))
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=ids("<IMG_CONTEXT>"),
                            image_seq_length=4, downsample_ratio=0.5)
    return InternVLForConditionalGeneration(config), processor


SMOLVLM_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                   "<global-img>", "<video>"]


def _build_smolvlm(kind: str):
    """SmolVLM2 (SmolVLMForConditionalGeneration): a SigLIP tower, a pixel-shuffle connector, a
    Llama language model; its processor writes a video as its frames, each after a "Frame from
    MM:SS:" line, with the official chat template ("User: ...<end_of_utterance>\nAssistant:")."""
    from transformers import (Qwen2Tokenizer, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor,
                              SmolVLMProcessor)
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    tok = Qwen2Tokenizer(tokenizer_object=train_tokenizer(SMOLVLM_SPECIAL), eos_token="<end_of_utterance>",
                         pad_token="<|endoftext|>", unk_token=None, extra_special_tokens=SMOLVLM_SPECIAL[1:])
    ids = tok.convert_tokens_to_ids
    size = 64  # 4 x 4 patches of 16 px, pixel-shuffled by 2: 4 tokens per image / frame
    edge = {"longest_edge": size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=edge, max_image_size=edge, do_image_splitting=False),
        video_processor=SmolVLMVideoProcessor(size=edge, max_image_size=edge), tokenizer=tok, image_seq_len=4,
        chat_template=DEFAULT_CHAT_TEMPLATE)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=size,
                  patch_size=16)
    text = dict(model_type="llama", **_tiny_text(len(tok), eos_token_id=ids("<end_of_utterance>"),
                                                   pad_token_id=ids("<|endoftext|>")))
    config = SmolVLMConfig(text_config=text, vision_config=vision, image_token_id=ids("<image>"), scale_factor=2,
                           pad_token_id=ids("<|endoftext|>"))
    return SmolVLMForConditionalGeneration(config), processor


def _build_llava(kind: str):
    from transformers import (CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration,
                              LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor, LlavaProcessor)

    tok = _llava_tokenizer()
    ids = tok.convert_tokens_to_ids
    image_size = 56  # 4x4 patches of 14 px; "default" feature selection drops CLS -> 16 tokens
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=14, projection_dim=32)
    text = dict(model_type="llama", **_tiny_text(len(tok), bos_token_id=ids("<s>"), eos_token_id=ids("</s>"),
                                                   pad_token_id=ids("<pad>")))
    crop = dict(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    image_processor = CLIPImageProcessor(**crop)
    common = dict(patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    if kind == "llava":
        config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=ids("<image>"),
                             image_seq_length=16, vision_feature_layer=-2)
        processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, **common)
        return LlavaForConditionalGeneration(config), processor
    config = LlavaNextVideoConfig(vision_config=vision, text_config=text, image_token_index=ids("<image>"),
                                  video_token_index=ids("<video>"), vision_feature_layer=-2,
                                  image_grid_pinpoints=[[image_size, image_size]], spatial_pool_stride=2,
                                  image_seq_length=16, video_seq_length=4)
    processor = LlavaNextVideoProcessor(video_processor=LlavaNextVideoVideoProcessor(**crop),
                                        image_processor=image_processor, tokenizer=tok, **common)
    return LlavaNextVideoForConditionalGeneration(config), processor


def build_tiny(kind: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build a tiny `kind` backbone and save model + processor to `out_dir`.

    Reuses `out_dir` when it already holds the same preset and seed (the quickstart calls this
    on every run).
    """
    if kind not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {kind!r}; known: {', '.join(TINY_PRESETS)}")
    out_dir = Path(out_dir)
    stamp = out_dir / "tiny_preset.json"
    wanted = {"kind": kind, "seed": seed, "version": 1}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return out_dir
    torch.manual_seed(seed)
    builder = {"qwen3_vl": _build_qwen3_vl, "qwen3_5": _build_qwen3_5, "glm4v": _build_glm4v, "llava_onevision": _build_llava_onevision,
               "internvl": _build_internvl, "smolvlm": _build_smolvlm}.get(
        kind, _build_qwen if kind.startswith("qwen") else _build_llava)
    model, processor = builder(kind)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    stamp.write_text(json.dumps(wanted))  # written last: its presence means the folder is complete
    return out_dir
