"""Every place mmalign relies on transformers internals that are private or changed between
versions, in one module. `tests/models/test_hf_touchpoints.py` asserts each one exists with the
signature used here, so a transformers upgrade that moves one fails that named test instead of
a training run. Pinned against transformers 5.x.

Touchpoints:
- attention registry: `AttentionInterface.register` and its private `_global_mapping`, and
  `masking_utils.AttentionMaskInterface` / `sdpa_mask` (the "split" shared-prompt attention);
- `transformers.integrations.sdpa_attention.repeat_kv` / `sdpa_attention_forward` (its
  fallback for ordinary forwards);
- writing a config's private `_attn_implementation` (switching a loaded model's backend);
- the VLM's `get_rope_index(input_ids=, mm_token_type_ids=, attention_mask=, <grids>)`;
- `get_image_features` / `get_video_features(..., return_dict=True).pooler_output`;
- the `mm_encoder_outputs` keyword of the VLM forward (precomputed vision features) and the
  `BaseModelOutputWithPooling` it carries;
- `video_utils.VideoMetadata(total_num_frames=, fps=, frames_indices=)` for frames sampled by us.
"""

from __future__ import annotations

import inspect

MM_ENCODER_OUTPUTS = "mm_encoder_outputs"


def register_attention(name: str, fn) -> None:
    """Register an attention function (and sdpa's mask builder for it) under `name`, once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, fn)
        AttentionMaskInterface.register(name, sdpa_mask)


def sdpa_internals():
    """(repeat_kv, sdpa_attention_forward) of transformers' sdpa integration."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    return repeat_kv, sdpa_attention_forward


def attn_implementation(config) -> str:
    return config._attn_implementation or "eager"


def set_attn_implementation(config, name: str) -> None:
    config._attn_implementation = name


def rope_index(vlm, input_ids, mm_token_type_ids, grids: dict):
    """The VLM's own multimodal rotary positions ([3, B, T]) of `input_ids`."""
    return vlm.get_rope_index(input_ids=input_ids, mm_token_type_ids=mm_token_type_ids, attention_mask=None,
                              **grids)[0]


def vision_features(fn, tensors: dict):
    """`get_<modality>_features` called with the tensors it takes, its output object."""
    params = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in tensors.items() if k in params}, return_dict=True)


def takes_encoder_outputs(vlm) -> bool:
    return MM_ENCODER_OUTPUTS in inspect.signature(vlm.forward).parameters


def encoder_outputs(features: list, deepstack: list | None = None):
    """What `mm_encoder_outputs` carries for one modality (Qwen3-VL also reads
    `deepstack_features`: per DeepStack layer, the features of each item)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    out = BaseModelOutputWithPooling(pooler_output=features)
    if deepstack is not None:
        out.deepstack_features = deepstack
    return out


def video_metadata(n_frames: int, fps: float):
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(total_num_frames=n_frames, fps=fps, frames_indices=list(range(n_frames)))
