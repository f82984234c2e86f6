"""Records -> model-ready sequences, lazily, one record at a time (video decoding included).

A record that cannot be used (missing or corrupt media, a response that does not fit, spans
that a method needs but the record lacks) becomes a `Skipped` with its file:line and reason;
the batch goes on without it and the trainer counts it in the run summary.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from mmalign.config import DataConfig
from mmalign.data.collate import (AlignmentError, Sequence, collate_sequences, encode_response, sentence_keep_weights,
                                  span_weights)
from mmalign.data.records import Record, RecordError, Skipped, sentence_spans
from mmalign.data.video import MediaError, load_image, load_video
from mmalign.data.video_ops import apply_ops
from mmalign.models.backbone import encode_prompt


@dataclass
class Example:
    record: Record
    sequences: list[Sequence]  # e.g. [chosen, rejected] or [chosen, rejected, chosen-under-perturbed-video]


def record_seed(record_id: str) -> int:
    """A stable per-record seed (Python's hash() is salted per process)."""
    return zlib.crc32(record_id.encode("utf-8"))


class MediaLoader:
    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def video(self, path: str):
        c = self.cfg
        return load_video(path, num_frames=c.num_frames, fps=c.fps, max_frames=c.max_frames, max_pixels=c.max_pixels)

    def images(self, paths: list[str]):
        return [load_image(p, max_pixels=self.cfg.max_pixels) for p in paths]

    def condition_video(self, spec: dict, record_id: str):
        """The perturbed condition of a conditional pair: another file, or ops on a source."""
        if "video" in spec:
            return self.video(spec["video"])
        clip = self.video(spec["source"])
        frames = apply_ops(clip.frames, spec.get("ops", []), seed=record_seed(record_id))
        if len(frames) != len(clip.frames):  # dropped or repeated frames span the same duration
            clip.timestamps = np.linspace(clip.timestamps[0], clip.timestamps[-1], len(frames)).tolist()
        clip.frames = frames
        return clip


class RecordDataset(torch.utils.data.Dataset):
    """Encodes record `i` for `method` on access; returns an Example or a Skipped."""

    def __init__(self, records: list[Record], processor, family, method: str, cfg: DataConfig):
        self.records, self.processor, self.family, self.method, self.cfg = records, processor, family, method, cfg
        self.media = MediaLoader(cfg)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        try:
            example = Example(r, self.encode(r))
            too_long = max(len(s) for s in example.sequences)
            if too_long > self.cfg.max_length:
                raise ValueError(f"{too_long} tokens > data.max_length={self.cfg.max_length}")
        except (MediaError, AlignmentError, ValueError) as e:
            if self.cfg.strict:
                raise RecordError(f"{r.source}: {e}") from e
            return Skipped(r.source, r.id, str(e))
        return example

    def prompt(self, r: Record, video=None):
        if video is None and r.video:
            video = self.media.video(r.video)
        images = self.media.images(r.images) if r.images else None
        return encode_prompt(self.processor, r.prompt, video=video, images=images, system=self.cfg.system_prompt)

    def response(self, prompt, text: str, weights: dict | None = None, **kw) -> Sequence:
        resp = encode_response(self.processor.tokenizer, text, self.family.end_of_turn)
        return Sequence(prompt, resp.ids, {name: fn(resp) for name, fn in (weights or {}).items()})

    def encode(self, r: Record) -> list[Sequence]:
        prompt = self.prompt(r)
        if self.method in ("sft", "grpo"):
            return [self.response(prompt, r.response)]
        chosen_w, rejected_w = self._weights(r)
        seqs = [self.response(prompt, r.chosen, chosen_w), self.response(prompt, r.rejected, rejected_w)]
        if self.method == "ospo":
            if not r.rejected_video:
                raise ValueError("ospo needs `rejected_video` (the perturbed condition)")
            perturbed = self.prompt(r, video=self.media.condition_video(r.rejected_video, r.id))
            seqs.append(self.response(perturbed, r.chosen))
        return seqs

    def _weights(self, r: Record):
        if self.method == "rrpo":
            if not r.chosen_spans or not r.rejected_spans:
                raise ValueError("rrpo needs chosen_spans and rejected_spans")
            return ({"span": lambda resp: span_weights(resp, r.chosen_spans)},
                    {"span": lambda resp: span_weights(resp, r.rejected_spans)})
        if self.method == "mask_dpo":
            if r.chosen_sentence_labels is None or r.rejected_sentence_labels is None:
                raise ValueError("mask_dpo needs chosen_sentence_labels and rejected_sentence_labels")
            # chosen keeps its factual sentences, rejected its hallucinated ones (Mask-DPO).
            return ({"keep": lambda resp: sentence_keep_weights(resp, sentence_spans(r.chosen),
                                                                r.chosen_sentence_labels, keep=1)},
                    {"keep": lambda resp: sentence_keep_weights(resp, sentence_spans(r.rejected),
                                                                r.rejected_sentence_labels, keep=0)})
        return None, None


@dataclass
class Batch:
    tensors: dict[str, torch.Tensor] | None
    records: list[Record]
    skipped: list[Skipped]
    n_per_record: int   # sequences per record, laid out as [all firsts, all seconds, ...]


def make_collate(pad_id: int, shared_prompt: bool = False):
    """shared_prompt: each record's prompt (and video) once for all its responses (`collate_sequences`)."""
    def collate(items) -> Batch:
        examples = [x for x in items if isinstance(x, Example)]
        skipped = [x for x in items if isinstance(x, Skipped)]
        if not examples:
            return Batch(None, [], skipped, 0)
        k = len(examples[0].sequences)
        seqs = [ex.sequences[j] for j in range(k) for ex in examples]
        return Batch(collate_sequences(seqs, pad_id, shared_prompt), [ex.record for ex in examples], skipped, k)
    return collate
