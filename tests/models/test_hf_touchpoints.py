"""One test per transformers internal mmalign relies on (mmalign/models/hf.py): each exists
with the signature used, so an upgrade that moves one fails here, by name."""

import inspect

import pytest
import torch

from mmalign.config import ModelConfig
from mmalign.models import hf
from mmalign.models.backbone import language_model, load_backbone
from mmalign.models.tiny import TINY_PRESETS


def params(fn):
    return set(inspect.signature(fn).parameters)


def test_attention_registry_and_its_private_mapping():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    assert isinstance(AttentionInterface._global_mapping, dict) and "sdpa" in AttentionInterface._global_mapping
    assert callable(AttentionInterface.register) and callable(AttentionMaskInterface.register) and callable(sdpa_mask)
    hf.register_attention("mmalign_touchpoint_test", lambda *a, **k: None)
    assert "mmalign_touchpoint_test" in AttentionInterface._global_mapping


def test_sdpa_integration_internals():
    repeat_kv, forward = hf.sdpa_internals()
    assert {"hidden_states", "n_rep"} <= params(repeat_kv)
    assert {"module", "query", "key", "value", "attention_mask", "dropout", "scaling"} <= params(forward)
    x = torch.randn(1, 2, 3, 4)
    assert repeat_kv(x, 2).shape == (1, 4, 3, 4)


@pytest.fixture(scope="module", params=TINY_PRESETS)
def vlm(request, tmp_path_factory):
    model, _ = load_backbone(ModelConfig(tiny=request.param, tiny_dir=str(tmp_path_factory.mktemp("t"))))
    return request.param, model.model, model


def test_private_attn_implementation_is_writable(vlm):
    *_, model = vlm
    config = language_model(model).config
    before = hf.attn_implementation(config)
    hf.set_attn_implementation(config, "eager")
    assert config._attn_implementation == "eager"
    hf.set_attn_implementation(config, before)


def test_rope_index_signature(vlm):
    kind, inner, _ = vlm
    if not kind.startswith("qwen"):
        pytest.skip("1D positions: LLaVA families take no get_rope_index")
    assert {"input_ids", "mm_token_type_ids", "attention_mask", "image_grid_thw", "video_grid_thw"} <= \
        params(inner.get_rope_index)


def test_vision_feature_getters_return_pooler_output(vlm):
    _, inner, _ = vlm
    for name in ("get_image_features", "get_video_features"):
        fn = getattr(inner, name, None)
        if fn is not None:
            assert "return_dict" in params(fn) or any(p.kind == p.VAR_KEYWORD for p in
                                                     inspect.signature(fn).parameters.values())


def test_forward_takes_mm_encoder_outputs(vlm):
    _, inner, _ = vlm
    assert hf.takes_encoder_outputs(inner)
    assert hf.encoder_outputs([torch.zeros(1)]).pooler_output[0].shape == (1,)


def test_video_metadata_fields():
    meta = hf.video_metadata(4, 2.0)
    assert (meta.total_num_frames, meta.fps, list(meta.frames_indices)) == (4, 2.0, [0, 1, 2, 3])
