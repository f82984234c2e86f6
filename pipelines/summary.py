"""The pipeline's summary: a table of every step and a plot of the benchmark metric across the
eval steps (rounds / stages), written as pipeline_summary.json, .md and .png."""

from __future__ import annotations

from pathlib import Path

from mmalign.io import atomic_write_figure, atomic_write_json, atomic_write_text


SMOKE = ("Smoke-test numbers: a tiny model built from random weights on a few synthetic videos; they show "
         "that every step ran and fed the next, not what the method does.")


def write_summary(out: Path, rows: list[dict], smoke: bool = False) -> dict:
    steps = [{k: v for k, v in row.items() if k != "config"} for row in rows]
    evals = [r for r in steps if r["kind"] == "eval"]
    rounds = sorted({r["round"] for r in steps if r["round"] is not None})
    summary = {"steps": steps, "rounds": rounds,
               "metric": evals[-1]["numbers"]["metric"] if evals else None,
               "curve": [{"step": r["step"], "round": r["round"], "value": r["numbers"]["value"]} for r in evals],
               "note": SMOKE if smoke else None}
    atomic_write_json(out / "pipeline_summary.json", summary)
    atomic_write_text(out / "pipeline_summary.md", markdown(summary))
    if evals:
        plot(summary, out / "pipeline_summary.png")
    print(markdown(summary))
    return summary


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


def markdown(summary: dict) -> str:
    lines = ["| step | kind | round | seconds | numbers |", "|---|---|---|---|---|"]
    for r in summary["steps"]:
        nums = r.get("numbers", {})
        if r["kind"] == "eval":
            shown = f"{nums['metric']} = {_fmt(nums['value'])}"
        else:
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in nums.items())
        lines.append(f"| {r['step']} | {r['kind']} | {_fmt(r['round'])} | {_fmt(r['seconds'])} | {shown} |")
    if summary.get("note"):
        lines += ["", summary["note"]]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    curve = summary["curve"]
    fig = Figure(figsize=(max(4, 1.2 * len(curve)), 3))
    ax = fig.add_subplot()
    ax.plot(range(len(curve)), [c["value"] if c["value"] is not None else float("nan") for c in curve], marker="o")
    ax.set_xticks(range(len(curve)), [c["step"] for c in curve], rotation=30, ha="right")
    ax.set_ylabel(summary["metric"] or "metric")
    ax.set_title("benchmark across the pipeline")
    fig.tight_layout()
    atomic_write_figure(path, fig, dpi=100)
