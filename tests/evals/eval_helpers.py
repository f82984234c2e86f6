"""Helpers shared by the eval tests: configs built in code, and scoring hand-written answers."""

from pathlib import Path

from mmalign.evals.benchmarks import REGISTRY
from mmalign.evals.config import build_eval_config
from mmalign.evals.run import score_items

FIXTURES = Path(__file__).parent / "fixtures"


def make_cfg(benchmark: str, root=None, **sections):
    raw = {"benchmark": benchmark, "data": {"root": str(root) if root else None, **sections.pop("data", {})}}
    raw.update(sections)
    return build_eval_config(raw)


def score(cfg, items, answers):
    """Score `answers` (one per item; None = the item's media failed) with cfg's scoring."""
    predictions = [{"prediction": a, "error": None} if a is not None else {"prediction": None, "error": "media: x"}
                   for a in answers]
    return score_items(REGISTRY[cfg.benchmark], cfg.score, items, predictions)
