"""Tiny backbones and preference batches for the shared-prompt and packing tests."""

import atexit
import functools
import shutil
import tempfile
import types

import numpy as np
import torch
from PIL import Image

from mmalign.config import ModelConfig
from mmalign.data.collate import Sequence, collate_sequences, encode_response
from mmalign.models.backbone import encode_prompt, family_of, load_backbone

_DIR = tempfile.mkdtemp(prefix="mmalign-tiny-")
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def tiny(kind: str):
    """(model, processor) with weights re-drawn at std 0.1: the default 0.02 init gives
    near-uniform predictions, in which a wrong position or mask moves log-probs too little."""
    model, processor = load_backbone(ModelConfig(tiny=kind, tiny_dir=f"{_DIR}/{kind}"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.train(), processor


def video(seed: int, n: int = 8, fps: float = 4.0):
    frames = np.random.default_rng(seed).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    return types.SimpleNamespace(frames=frames, timestamps=[i / fps for i in range(n)], source_fps=fps)


def image(seed: int, height: int = 60, width: int = 80):
    return Image.fromarray(np.random.default_rng(100 + seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


CHOSEN = ["A red circle moves left.", "A blue square appears. Then a green triangle moves up and disappears."]
REJECTED = ["A red circle moves right. Then a blue square appears.", "A blue circle."]


def pair_sequences(kind: str, media: str, n: int = 2) -> list[Sequence]:
    """n records laid out as the trainer does: [chosen_1..n, rejected_1..n]; each record's two
    sequences share one prompt object. Responses differ in length both ways; for Qwen the
    records' images, frame counts and fps differ too, so each prompt has its own grids
    and rotary positions, and for SmolVLM its own zero-padded pixel stack (LLaVA batches must
    share one frame count)."""
    model, processor = tiny(kind)
    eot = family_of(model).end_of_turn
    varied = kind.startswith("qwen") or kind == "smolvlm"
    chosen, rejected = [], []
    for i in range(n):
        kw = {}
        if "image" in media:
            kw["images"] = [image(i, *((60, 80), (84, 56), (40, 100))[i % 3])]
        if "video" in media:
            kw["video"] = video(i, n=(8, 4, 6)[i % 3] if varied else 8, fps=(4.0, 0.25, 3.0)[i % 3])
        prompt = encode_prompt(processor, f"Describe what happens, clip {i}.", **kw)
        chosen.append(Sequence(prompt, encode_response(processor.tokenizer, CHOSEN[i % 2], eot).ids))
        rejected.append(Sequence(prompt, encode_response(processor.tokenizer, REJECTED[i % 2], eot).ids))
    return chosen + rejected


def batches(kind: str, media: str, n: int = 2):
    """(standard two-pass batch, shared-prompt batch) of the same records."""
    seqs = pair_sequences(kind, media, n)
    pad = tiny(kind)[1].tokenizer.pad_token_id
    return collate_sequences(seqs, pad), collate_sequences(seqs, pad, shared_prompt=True)
