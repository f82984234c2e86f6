"""Decode the next batches' media in worker processes while the model works on this one; and
DataLoader workers that die with their parent (training's too).

`mmalign eval` and `mmalign pairs` decode a batch's videos, then generate from them. In turn,
the accelerator waits for the CPU between batches: a 30 s 720p clip takes about 1 s to decode
(16 frames, one core), a batch of 8 several seconds. torch's DataLoader runs the decoding in
worker processes, a few batches ahead, in order. Processes, not threads: the decoder's own
messages are captured from file descriptor 2 (mmalign.data.video), which a process shares
between its threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterator


def decoded_ahead(unit_lists: list[list[Hashable]], load: Callable, workers: int) -> Iterator[dict]:
    """For each list in turn, {unit: load(unit), or the exception it raised} over its distinct
    units (media paths). With `workers` >= 1 that many processes (at most one per CPU core) load
    the units, each its own, a list ahead of the one the caller holds: a batch's videos decode
    side by side, and the next batch's while the model generates. With 0, each list is loaded in
    turn, here, when it is asked for. Either way the results and their order are the same.
    `load` must pickle (a module-level function or a functools.partial of one) where processes
    start by spawn. Close it when done (contextlib.closing): the workers then stop at once; left
    to the garbage collector after an exception, each of them waits out a 5 s timeout."""
    import torch.utils.data

    lists = [list(dict.fromkeys(units)) for units in unit_lists]
    units = [u for units in lists for u in units]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(workers, cpus, len(units))  # text-only items: nothing to decode, no processes
    # Each worker keeps `ahead` units queued: together the longest list, so that a whole list
    # is decoding while the caller holds the one before.
    ahead = max(1, -(-max(map(len, lists), default=0) // workers)) if workers else None
    loader = torch.utils.data.DataLoader(_Loads(units, load), batch_size=None, collate_fn=_as_is, num_workers=workers,
                                         prefetch_factor=ahead, worker_init_fn=die_with_parent)
    loaded = iter(loader)
    for units in lists:
        yield {u: next(loaded) for u in units}


class _Loads:
    """The DataLoader's dataset: item i is unit i, loaded."""

    def __init__(self, units: list[Hashable], load: Callable):
        self.units, self.load = units, load

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int):
        return _outcome(self.load, self.units[i])


def _as_is(x):
    return x  # the default would turn the frames' numpy arrays into tensors


def _outcome(load: Callable, unit):
    try:
        return load(unit)
    except Exception as e:  # noqa: BLE001 - handed to the caller, which decides what it skips
        return e


def die_with_parent(worker_id: int | None = None) -> None:
    """DataLoader worker_init_fn (training's and the decoders here): the worker is killed with
    its parent. A parent killed with -9 never tells its workers to stop; torch's watchdog ends an
    idle one within 5 s, but one whose results fill the pipe to the dead parent (a batch of
    decoded frames does) waits on it for ever, holding the run's memory and, under a
    subprocess, its output pipes. Linux only (prctl PR_SET_PDEATHSIG); elsewhere nothing."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
