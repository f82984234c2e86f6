"""Records -> model-ready sequences, lazily, one record at a time (video decoding included).

A record that cannot be used (missing or corrupt media, a response that does not fit, spans
that a method needs but the record lacks) becomes a `Skipped` with its file:line and reason;
the batch goes on without it and the trainer counts it in the run summary.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from mmalign import methods
from mmalign.config import DataConfig, SamplingConfig
from mmalign.data.collate import AlignmentError, Sequence, collate_sequences, conversation_sequence, encode_response
from mmalign.data.records import Record, RecordError, Skipped
from mmalign.data.video import MediaError, MediaLoader
from mmalign.data.video_ops import apply_ops
from mmalign.models.backbone import conversation_response, encode_prompt


@dataclass
class Example:
    record: Record
    sequences: list[Sequence]  # e.g. [chosen, rejected] or [chosen, rejected, chosen-under-perturbed-video]


@functools.lru_cache(maxsize=8)  # one pass over the vocabulary per tokenizer, not per dataset
def longest_token_chars(tokenizer) -> int:
    """The most characters one token of `tokenizer` decodes to."""
    return max(len(tokenizer.convert_tokens_to_string([t])) for t in tokenizer.get_vocab())


def record_seed(record_id: str) -> int:
    """A stable per-record seed (Python's hash() is salted per process)."""
    return zlib.crc32(record_id.encode("utf-8"))


def record_system(r: Record, cfg: DataConfig) -> str | None:
    """The system message a record's prompt is encoded with: its own, else data.system_prompt."""
    return r.system if r.system is not None else cfg.system_prompt


def condition_video(media: MediaLoader, spec: dict, record: Record):
    """The perturbed condition of a conditional pair: another file, or ops on a source. Ops
    index the frames of the clip they were made on (`meta.num_frames`, written by `mmalign
    pairs`): a clip sampled to another length would move them, so the record is refused."""
    if "video" in spec:
        return media.video(spec["video"])
    clip = media.video(spec["source"])
    made_on = record.meta.get("num_frames")
    if made_on is not None and made_on != len(clip.frames):
        raise ValueError(f"rejected_video ops were made on a {made_on}-frame clip (meta.num_frames) but the "
                         f"sampling gives {len(clip.frames)} frames: train with sampling.num_frames={made_on}")
    frames = apply_ops(clip.frames, spec.get("ops", []), seed=record_seed(record.id))
    if len(frames) != len(clip.frames):  # dropped or repeated frames span the same duration
        clip.timestamps = np.linspace(clip.timestamps[0], clip.timestamps[-1], len(frames)).tolist()
    clip.frames = frames
    return clip


class RecordDataset(torch.utils.data.Dataset):
    """Encodes record `i` for `method` on access; returns an Example or a Skipped."""

    def __init__(self, records: list[Record], processor, family, method: str, cfg: DataConfig,
                 sampling: SamplingConfig):
        self.records, self.processor, self.family, self.cfg = records, processor, family, cfg
        self.method = methods.method(method)
        self.media = MediaLoader(sampling)
        # Text longer than max_length times the longest token cannot fit: refused before the
        # tokenizer (or the video decoder) spends time on it.
        self.max_chars = cfg.max_length * longest_token_chars(processor.tokenizer)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        try:
            chars = len(r.prompt) + max(len(t or "") for t in (r.chosen, r.rejected, r.response)) \
                + sum(len(u) + len(a) for u, a in r.history or ())
            if chars > self.max_chars:
                raise ValueError(f"{chars} characters cannot fit in data.max_length={self.cfg.max_length} tokens")
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
        return encode_prompt(self.processor, r.prompt, video=video, images=images, system=record_system(r, self.cfg),
                             history=r.history or ())

    def conversation(self, r: Record) -> Sequence:
        """An SFT record with earlier turns: its first turn's prompt (with the media), then the
        rest of the conversation, every answer scored."""
        video = self.media.video(r.video) if r.video else None
        images = self.media.images(r.images) if r.images else None
        system = record_system(r, self.cfg)
        prompt = encode_prompt(self.processor, r.history[0][0], video=video, images=images, system=system)
        text, spans = conversation_response(self.processor, r.history, r.prompt, r.response,
                                            "video" if video is not None else None, len(images or []), system,
                                            self.family.end_of_turn)
        return conversation_sequence(prompt, self.processor.tokenizer, text, spans)

    def response(self, prompt, text: str, weights: dict | None = None, **kw) -> Sequence:
        resp = encode_response(self.processor.tokenizer, text, self.family.end_of_turn)
        return Sequence(prompt, resp.ids, {name: fn(resp) for name, fn in (weights or {}).items()})

    def encode(self, r: Record) -> list[Sequence]:
        if self.method.records != "pair":
            return [self.conversation(r) if r.history else self.response(self.prompt(r), r.response)]
        prompt = self.prompt(r)
        chosen_w, rejected_w = ({"token": fn} for fn in self.method.weights(r)) if self.method.weights else (None, None)
        seqs = [self.response(prompt, r.chosen, chosen_w), self.response(prompt, r.rejected, rejected_w)]
        if self.method.condition:
            if not r.rejected_video:
                raise ValueError(f"{self.method.name} needs `rejected_video` (the perturbed condition)")
            perturbed = self.prompt(r, video=condition_video(self.media, r.rejected_video, r))
            seqs.append(self.response(perturbed, r.chosen))
        return seqs


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
