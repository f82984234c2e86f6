"""`metrics.png` beside a stage's `metrics.jsonl`: its training curves against the step, one
panel per metric the method logs (loss, reward margin and accuracy, GRPO's reward, KL and
completion length, the learning rate), for a look without TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path

from mmalign.io import atomic_write_figure, iter_jsonl

# In the order the panels are drawn; a method shows the ones it logs.
CURVES = ("loss", "rewards/margin", "rewards/accuracy", "reward", "kl", "completion_length", "grad_norm", "lr")


def plot_curves(metrics: Path, out: Path, title: str) -> list[str]:
    """Draw the curves of `metrics` (a metrics.jsonl) into `out`; the metrics drawn (none, and
    no file, when it has no step)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    rows = [row for _, row in iter_jsonl(metrics, skip_torn_tail=True)] if metrics.exists() else []
    keys = [k for k in CURVES if any(_number(r.get(k)) for r in rows)]
    if not keys:
        return []
    cols = min(4, len(keys))
    fig = Figure(figsize=(3.2 * cols, 2.4 * math.ceil(len(keys) / cols)))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(math.ceil(len(keys) / cols), cols, i + 1)
        points = [(r["step"], r[key]) for r in rows if _number(r.get(key))]
        ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write_figure(out, fig, dpi=90)
    return keys


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
