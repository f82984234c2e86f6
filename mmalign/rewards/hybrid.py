"""HARMO's R_hybrid (2025, no public code): a rule where the answer is verifiable, a model where
it is open-ended.

A sample is verifiable when its record has an `answer`, or a truth['kind'] listed in
`rule_by_kind` (e.g. grounding records with a truth['span'] -> temporal_iou). Verifiable
samples get the rule term's value; the others get the `open` term's (`reward_model`, a reward
model's score, or `reference_f1`, the similarity to a reference; none by default, so an
open-ended sample is an error). Both are named terms, run with their options, checked at
start-up like any term's.
"""

from __future__ import annotations

import inspect

from mmalign.rewards.compose import check_options, run_term
from mmalign.rewards.registry import Sample, lookup, reward


def _routes(rule: str, rule_options: dict | None, rule_by_kind: dict | None, open: str | None,
            open_options: dict | None) -> dict[str, tuple[str | None, dict]]:
    """route -> (term name, its options): "rule", "open", and "kind:<kind>" per rule_by_kind."""
    routes = {"rule": (rule, rule_options or {}), "open": (open, open_options or {})}
    routes.update({f"kind:{k}": (name, {}) for k, name in (rule_by_kind or {}).items()})
    return routes


def check_hybrid(options: dict) -> None:
    """Start-up check: every routed term exists and takes the options given to it."""
    args = inspect.signature(hybrid).bind(None, **options)
    args.apply_defaults()
    args.arguments.pop("samples")
    for route, (name, opts) in _routes(**args.arguments).items():
        if name is not None:
            check_options(lookup(name), opts, f"{route} ({name})")


@reward("hybrid", scope="group", check=check_hybrid)
def hybrid(samples: list[Sample], rule: str = "answer_match", rule_options: dict | None = None,
           rule_by_kind: dict | None = None, open: str | None = None,
           open_options: dict | None = None) -> list:
    """The rule's value on verifiable samples, the open-ended term's on the others."""
    routes = _routes(rule, rule_options, rule_by_kind, open, open_options)
    values: list = [None] * len(samples)
    members: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        kind = f"kind:{(s.truth or {}).get('kind')}"
        route = kind if kind in routes else "rule" if s.answer is not None else "open"
        members.setdefault(route, []).append(i)
    for route, idx in members.items():
        name, opts = routes[route]
        if name is None:
            vals = [ValueError("open-ended sample (no answer) and no `open` term")] * len(idx)
        else:
            vals = run_term(lookup(name), opts, [samples[i] for i in idx])
        for i, v in zip(idx, vals):
            values[i] = v
    return values
