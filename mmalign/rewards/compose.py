"""The configured reward: a weighted sum of named terms, R = sum_k w_k r_k.

Built once at start-up from `grpo.rewards` (a misnamed term, an unknown option, or a term
referring to one that is not listed before it fails here, before any model loads). Terms run
in config order; each sees the raw values of the terms before it in `sample.scores` (the
length penalty reads correctness from there). A term that raises, or returns NaN / inf, for a
sample gives that sample the fallback value for that term (the term's `fallback`, else
`grpo.fallback_reward`); the failure is logged with the record id and returned in
`Rewards.errors` for the trainer to count and write out.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
from dataclasses import dataclass

from mmalign.rewards.registry import RewardFn, Sample, UnknownReward, lookup

log = logging.getLogger("mmalign.rewards")

RESERVED = ("name", "weight", "label", "fallback")


class RewardConfigError(ValueError):
    """A reward entry that cannot run: unknown name, unknown or missing option, bad reference."""


@dataclass(frozen=True)
class Term:
    label: str          # the name in logs and in `sample.scores` (default: the reward's name)
    reward: RewardFn
    weight: float
    fallback: float
    options: dict


@dataclass
class Rewards:
    total: "torch.Tensor"          # [N] float32, sum_k w_k r_k
    terms: dict[str, list[float]]  # label -> [N] raw values (before the weight)
    errors: list[dict]             # {record_id, term, index, error, completion}

    def metrics(self) -> dict[str, float]:
        out = {"reward": float(self.total.mean()),
               "reward_std": float(self.total.std()) if self.total.numel() > 1 else 0.0}
        out.update({f"rewards/{label}": sum(v) / len(v) for label, v in self.terms.items()})
        out["reward_errors"] = len(self.errors)
        out.update({f"reward_errors/{label}": sum(e["term"] == label for e in self.errors) for label in self.terms})
        return out


class RewardSet:
    def __init__(self, terms: list[Term]):
        if not terms:
            raise RewardConfigError("grpo.rewards is empty: name at least one reward term")
        self.terms = terms
        self.failed: set[str] = set()  # labels of the terms whose first failure was printed

    @classmethod
    def from_config(cls, entries: list[dict], fallback: float = 0.0, where: str = "grpo.rewards") -> RewardSet:
        terms = []
        for i, entry in enumerate(entries):
            path = f"{where}[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise RewardConfigError(f"{path}: expected a mapping with a 'name', got {entry!r}")
            try:
                fn = lookup(entry["name"])
            except UnknownReward as e:
                raise RewardConfigError(f"{path}: {e}") from None
            options = {k: v for k, v in entry.items() if k not in RESERVED}
            label = str(entry.get("label", fn.name))
            if label in {t.label for t in terms}:
                raise RewardConfigError(f"{path}: a term labelled {label!r} is already listed; "
                                        "give one of them another `label`")
            try:
                check_options(fn, options, term_keys=tuple(RESERVED))
                if fn.check:
                    fn.check(options)
            except (UnknownReward, ValueError, TypeError) as e:
                raise RewardConfigError(f"{path}: {e}") from None
            defaults = {k: p.default for k, p in inspect.signature(fn.fn).parameters.items()}
            for key in fn.refers:
                ref = options.get(key, defaults.get(key))
                if ref is not None and ref not in {t.label for t in terms}:
                    raise RewardConfigError(f"{path}.{key}: {ref!r} must name a term listed before "
                                            f"{label!r}; listed before it: {[t.label for t in terms]}")
            terms.append(Term(label, fn, _number(entry.get("weight", 1.0), f"{path}.weight"),
                              _number(entry.get("fallback", fallback), f"{path}.fallback"), options))
        if terms and all(t.weight == 0 for t in terms):  # every advantage would be 0: only the KL term trains
            raise RewardConfigError(f"{where}: every term has weight 0, so the reward is 0 for every completion and "
                                    "GRPO learns nothing from it; give at least one term a weight")
        return cls(terms)

    def failing_on_every_record(self, samples: list[Sample]) -> tuple[str, str] | None:
        """(label, error) of the first weighted built-in per-sample term that fails on every one
        of `samples` (a sample per record, before any completion exists: what fails then is the
        record's data), else None. User terms are not called here: theirs may cost or fail
        otherwise on an empty completion."""
        for term in self.terms:
            if term.weight == 0 or term.reward.scope != "sample" or not term.reward.fn.__module__.startswith(
                    "mmalign.rewards."):
                continue
            problems = [_problem(v) for v in run_term(term.reward, term.options, samples)]
            if samples and all(problems):
                return term.label, problems[0]
        return None

    def __call__(self, samples: list[Sample], group_size: int) -> Rewards:
        """Score `samples` (groups of `group_size` consecutive samples, one group per prompt)."""
        import torch  # here, not at import: configs validate their rewards without loading torch

        if len(samples) % group_size:
            raise ValueError(f"{len(samples)} samples do not split into groups of {group_size}")
        values, errors = {}, []
        for term in self.terms:
            raw = [v for start in range(0, len(samples), group_size)
                   for v in run_term(term.reward, term.options, samples[start:start + group_size])]
            vals = []
            for i, (s, v) in enumerate(zip(samples, raw)):
                problem = _problem(v)
                if problem:
                    errors.append(_failure(term, s, i % group_size, problem, first=term.label not in self.failed))
                    self.failed.add(term.label)
                    v = term.fallback
                s.scores[term.label] = float(v)
                vals.append(float(v))
            values[term.label] = vals
        total = torch.zeros(len(samples), dtype=torch.float64)
        for term in self.terms:
            total += term.weight * torch.tensor(values[term.label], dtype=torch.float64)
        return Rewards(total.float(), values, errors)

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.terms]


def run_term(reward: RewardFn, options: dict, samples: list[Sample]) -> list:
    """One term's values on `samples` (a group: group terms see it whole). A failure stands in
    its value's place as the exception: the sample's for a per-sample term, every sample's when
    a group term raises or returns the wrong number of values."""
    if reward.scope == "sample":
        out = []
        for s in samples:
            try:
                out.append(reward.fn(s, **options))
            except Exception as e:  # a user's term may fail in any way: that sample gets the fallback
                out.append(e)
        return out
    try:
        values = list(reward.fn(samples, **options))
        if len(values) != len(samples):
            raise ValueError(f"returned {len(values)} values for a group of {len(samples)}")
        return values
    except Exception as e:
        return [e] * len(samples)


def _problem(value) -> str | None:
    """Why `value` cannot be a reward (an exception a term raised or returned, NaN, inf, not a
    number), or None."""
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return f"returned {value!r}, not a number"
    return None if math.isfinite(v) else f"returned {v}"


def _failure(term: Term, s: Sample, index: int, problem: str, first: bool) -> dict:
    if first:  # a term that fails on every completion would print a line per completion, thousands a run
        log.warning("reward %r failed on record %s (sample %d): %s; counted as %s. Its later failures are counted "
                    "(reward_errors/%s in metrics.jsonl) and listed in reward_errors.jsonl, not printed",
                    term.label, s.record_id, index, problem, term.fallback, term.label)
    return {"record_id": s.record_id, "term": term.label, "index": index, "error": problem,
            "completion": s.completion[:200]}


def check_options(fn: RewardFn, options: dict, where: str = "", term_keys: tuple = ()) -> None:
    """Raise ValueError naming an option `fn` does not take, or a required one missing
    (`where` prefixes the message; `term_keys`, the keys every term takes, join the
    did-you-mean: `wieght` is a misspelt weight, not an option)."""
    where = f"{where}: " if where else ""
    params = list(inspect.signature(fn.fn).parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD,
                                            params[0].VAR_POSITIONAL):
        raise ValueError(f"{where}reward {fn.name!r} takes no positional argument for the "
                         + ("sample" if fn.scope == "sample" else "group's samples")
                         + f"; a term is called as {fn.name.rpartition(':')[2]}(sample, **options)")
    params = params[1:]  # the first takes the sample(s)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in options:
        if key not in known:
            hint = difflib.get_close_matches(key, known + list(term_keys), n=1)
            raise ValueError(f"{where}reward {fn.name!r} has no option {key!r}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; its options: {', '.join(known) or 'none'}"
                             + (f"; every term's keys: {', '.join(term_keys)}" if term_keys else ""))
    missing = [p.name for p in params if p.default is p.empty and p.name in known and p.name not in options]
    if missing:
        raise ValueError(f"{where}reward {fn.name!r} needs option(s) {', '.join(missing)}")


def _number(value, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RewardConfigError(f"{path}: expected a finite number, got {value!r}")
    return float(value)
