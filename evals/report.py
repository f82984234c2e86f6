"""Reports of an eval run: `results.json` (every item: prompt, prediction, parsed answer,
correctness), `metrics.md` (the headline table, also printed), and a self-contained
`report.html` with matplotlib figures embedded as base64 PNGs: per-category bars for every
model, and the headline metrics of several models side by side.

Counts of what went wrong are part of every output: official files missing, items whose
media failed (left out of the metrics, each listed with its id and reason), answers that
parsed to no option (each listed with its id and answer).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from mmalign.io import atomic_write_json, atomic_write_text

COUNT_COLUMNS = ("scored", "media_errors", "unparsable")
LISTED = 100  # items listed per model and kind in the HTML; results.json has all of them


# What each headline metric counts (shown under the tables of metrics.md and report.html).
DEFINITIONS = {
    "accuracy": "share of scored questions answered right (paired benchmarks: VideoHallucer's overall score, "
                "a pair counts only when both its basic and its hallucinated question are right)",
    "pair_accuracy": "share of (basic, hallucinated) question pairs with both answers right",
    "basic_accuracy": "share of basic questions (answer: yes) answered right",
    "halluc_accuracy": "share of hallucinated questions (answer: no) answered right",
    "precision": "of the answers 'yes', the share that are right (POPE: yes = positive)",
    "recall": "of the questions whose answer is 'yes', the share answered 'yes'",
    "f1": "harmonic mean of precision and recall",
    "yes_ratio": "share of answers that are 'yes' (an unbiased model is near the benchmark's share)",
    "chair_s": "CHAIR_s: share of captions that name at least one object not in the image (lower is better)",
    "chair_i": "CHAIR_i: share of object mentions that name an object not in the image (lower is better)",
    "not_matching_rate": "share of answers that match none of the options",
    "ndcg": "VidHal ordering task: normalised discounted cumulative gain of the caption ranking",
}


def definitions(results: dict) -> list[tuple[str, str]]:
    return [(k, DEFINITIONS[k]) for k in headline_keys(results) if k in DEFINITIONS]


def fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def headline_keys(results: dict) -> list[str]:
    present = {k for m in results["models"] for k in m["metrics"]}
    return [k for k in results["headline"] if k in present]


def category_key(results: dict) -> str | None:
    """The per-category metric to show: the first headline metric the categories carry."""
    present = {k for m in results["models"] for c in m["categories"].values() for k in c}
    return next((k for k in results["headline"] if k in present), None)


def categories(results: dict) -> list[str]:
    seen = []
    for m in results["models"]:
        seen += [c for c in m["categories"] if c not in seen]
    return seen


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown_summary(results: dict) -> str:
    keys = headline_keys(results)
    header = ["model", *keys, *COUNT_COLUMNS]
    rows = [[m["name"], *(fmt(m["metrics"].get(k)) for k in keys), *(fmt(m["counts"][c]) for c in COUNT_COLUMNS)]
            for m in results["models"]]
    parts = [f"## {results['benchmark']} (score mode: {results['mode']})", "", md_table(header, rows)]
    key = category_key(results)
    if key:
        cat_rows = [[c, *(fmt(m["categories"].get(c, {}).get(key)) for m in results["models"])]
                    for c in categories(results)]
        names = [m["name"] for m in results["models"]]
        parts += ["", f"{key} per category:", "", md_table(["category", *names], cat_rows)]
    defs = definitions(results)
    if defs:
        parts += ["", "Metrics:", *(f"- `{k}`: {d}" for k, d in defs)]
    parts += [f"\n{w}" for w in warnings(results)]
    return "\n".join(parts) + "\n"


def warnings(results: dict) -> list[str]:
    out = [f"WARNING: missing official file (subset skipped; metrics cover the rest): {f}"
           for f in results["missing_files"]]
    out += [f"NOTE: {n}" for n in results["notes"]]
    for m in results["models"]:
        c = m["counts"]
        if c["media_errors"]:
            out.append(f"WARNING: {m['name']}: {c['media_errors']} of {c['items']} items had unusable media "
                       "and are left out of the metrics (listed in results.json)")
        if c["unparsable"]:
            out.append(f"NOTE: {m['name']}: {c['unparsable']} answers parsed to no option: "
                       f"{results['unparsable_note']}")
    return out


# ---------------------------------------------------------------- figures

def bar_chart(title: str, groups: list[str], series: dict[str, list[float]], ylabel: str) -> str:
    """Grouped bars (one group per label, one bar per series) as a base64 PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    fig = Figure(figsize=(max(4.0, 1.1 * len(groups) * max(1, len(series)) ** 0.5 + 2), 3.2))
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, [0.0 if v is None else v for v in values], width, label=name)
        ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize="x-small")
    top = max([v for vs in series.values() for v in vs if v is not None] + [0.0])
    ax.set_ylim(0, 1.05 if top <= 1 else top * 1.1)  # fractions on a 0..1 axis, percentages above
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures(results: dict) -> list[tuple[str, str]]:
    out, models = [], results["models"]
    key, cats = category_key(results), categories(results)
    if key and cats:
        series = {m["name"]: [m["categories"].get(c, {}).get(key) for c in cats] for m in models}
        out.append((f"{key} per category", bar_chart(f"{results['benchmark']}: {key} per category", cats, series, key)))
    keys = headline_keys(results)
    if len(models) > 1 and keys:
        series = {m["name"]: [m["metrics"].get(k) for k in keys] for m in models}
        out.append(("models compared", bar_chart(f"{results['benchmark']}: models compared", keys, series, "value")))
    return out


# ---------------------------------------------------------------- html

def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def listed(title: str, entries: list[dict], key: str) -> str:
    if not entries:
        return ""
    rows = [[e["id"], fmt(e[key])] for e in entries[:LISTED]]
    more = f"<p>... and {len(entries) - LISTED} more in results.json</p>" if len(entries) > LISTED else ""
    return f"<h3>{html.escape(title)} ({len(entries)})</h3>" + html_table(["item", key], rows) + more


def render_html(results: dict) -> str:
    keys = headline_keys(results)
    summary = html_table(["model", *keys, *COUNT_COLUMNS],
                         [[m["name"], *(fmt(m["metrics"].get(k)) for k in keys),
                           *(fmt(m["counts"][c]) for c in COUNT_COLUMNS)] for m in results["models"]])
    notes = "".join(f"<p class='warn'>{html.escape(w)}</p>" for w in warnings(results))
    summary += "<dl>" + "".join(f"<dt><code>{html.escape(k)}</code></dt><dd>{html.escape(d)}</dd>"
                                for k, d in definitions(results)) + "</dl>"
    figs = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{png}'>"
                   for t, png in figures(results))
    lists = "".join(
        f"<h2>{html.escape(m['name'])}</h2><p>model: {html.escape(m['model'])}</p>"
        + listed("media errors (left out of the metrics)", m["media_errors"], "error")
        + listed(f"unparsable answers ({results['unparsable_note']})", m["unparsable"], "prediction")
        for m in results["models"])
    title = f"{results['benchmark']} — score mode {results['mode']}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px}.warn{color:#a40}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{notes}{summary}{figs}{lists}</body></html>\n")


def write_report(out: Path, results: dict) -> None:
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "metrics.md", markdown_summary(results))
    atomic_write_text(out / "report.html", render_html(results))
