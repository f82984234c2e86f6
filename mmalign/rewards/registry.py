"""Reward terms by name: the `@reward` decorator, the sample a term scores, name lookup.

A term is one small function. Per sample (the default):

    @reward("shout")
    def shout(sample: Sample, bonus: float = 1.0) -> float:
        return bonus if sample.completion.isupper() else 0.0

or per group (`scope="group"`: the G samples of one prompt, e.g. a length penalty relative to
the group, or a reward model scoring a batch), returning one value per sample:

    @reward("my_group_term", scope="group")
    def my_group_term(samples: list[Sample], **options) -> list[float]: ...

The config names a term (`{name: shout, weight: 0.5, bonus: 2}`; the other keys are the
function's keyword options). A function in user code needs no decorator: name it
`package.module:function` or `path/to/file.py:function` (per-sample unless decorated).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SCOPES = ("sample", "group")


@dataclass
class Sample:
    """One sampled completion with what its record knows."""
    prompt: str
    completion: str                 # decoded text, special tokens removed
    answer: str | None = None       # the record's reference answer (rule rewards)
    truth: dict = field(default_factory=dict)  # the record's ground truth (choices, span, objects, ...)
    record_id: str = ""
    meta: dict = field(default_factory=dict)
    num_tokens: int = 0             # completion tokens, end of turn included when generated
    truncated: bool = False         # stopped by max_new_tokens, not by the end of turn
    scores: dict[str, float] = field(default_factory=dict)  # raw values of the terms listed before this one


@dataclass(frozen=True)
class RewardFn:
    name: str
    fn: Callable
    scope: str = "sample"
    refers: tuple[str, ...] = ()    # options whose value names an earlier term (its label)
    check: Callable | None = None   # check(options) at start-up, raising on options that cannot run


REGISTRY: dict[str, RewardFn] = {}


def reward(name: str, scope: str = "sample", refers: tuple[str, ...] = (), check: Callable | None = None):
    """Register `fn` as the reward term `name` (see the module docstring for the two scopes)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")

    def register(fn: Callable) -> Callable:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise ValueError(f"reward {name!r} is already registered (by {REGISTRY[name].fn.__module__})")
        entry = RewardFn(name, fn, scope, tuple(refers), check)
        REGISTRY[name] = entry
        fn.reward_term = entry
        return fn
    return register


class UnknownReward(KeyError):
    def __str__(self):
        return self.args[0]


def known_rewards() -> list[str]:
    return sorted(REGISTRY)


def lookup(name: str) -> RewardFn:
    """A registered name, or `module:function` / `file.py:function` for user code."""
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" in name:
        return _import_function(name)
    hint = difflib.get_close_matches(name, known_rewards(), n=1)
    raise UnknownReward(f"unknown reward {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                        + f"; known rewards: {', '.join(known_rewards())}; or name your own function as "
                          "'package.module:function' or 'path/to/file.py:function'")


def _import_function(spec: str) -> RewardFn:
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
            module_name = f"mmalign_user_rewards.{path.stem}_{zlib.crc32(str(path).encode()):08x}"
            module = sys.modules.get(module_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[module_name] = module
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:  # as importlib does: a half-run module must not be found next time
                    del sys.modules[module_name]
                    raise
        else:
            module = importlib.import_module(target)
        fn = getattr(module, attr)
    except Exception as e:  # any failure to import user code is a start-up error with its cause
        raise UnknownReward(f"reward {spec!r} cannot be loaded: {type(e).__name__}: {e}") from e
    if not callable(fn):
        raise UnknownReward(f"reward {spec!r} is not a function")
    entry = getattr(fn, "reward_term", None)
    return RewardFn(spec, fn, entry.scope, entry.refers, entry.check) if entry else RewardFn(spec, fn)
