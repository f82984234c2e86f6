"""The synthetic video world: seeded scenes of coloured shapes with exact truth, their
pixels and mp4s, captions / QA / benchmark questions, and `build_world` to write it all."""

from .build import WORLD_VERSION, bench_records, build_world, sft_records
from .render import encode_mp4, render, shape_mask, write_video
from .scene import BACKGROUND, COLORS, DIRECTIONS, SHAPES, Scene, WorldObject, sample_scene
from .text import ANSWER_CHOICES, benchmark_items, caption, caption_sentences, hallucinated_caption, qa_pairs

__all__ = [
    "ANSWER_CHOICES", "BACKGROUND", "COLORS", "DIRECTIONS", "SHAPES", "WORLD_VERSION",
    "Scene", "WorldObject", "bench_records", "benchmark_items", "build_world", "caption", "caption_sentences",
    "encode_mp4", "hallucinated_caption", "qa_pairs", "render", "sample_scene", "sft_records",
    "shape_mask", "write_video",
]
