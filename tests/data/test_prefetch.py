"""Decoding ahead in worker processes: the same results in the same order as decoding in turn,
errors handed back per unit, and workers that die with their parent."""

import os
import subprocess
import sys
import time

import numpy as np

from mmalign.data.prefetch import decoded_ahead


def frames(unit: int):
    if unit == 3:
        raise ValueError("unit 3 does not decode")
    return np.full((4, 8, 8, 3), unit, np.uint8)


def test_workers_give_what_loading_in_turn_gives():
    lists = [[0, 1, 1], [], [2, 3], [4]]
    runs = {w: list(decoded_ahead(lists, frames, w)) for w in (0, 2)}
    for w, got in runs.items():
        assert [list(d) for d in got] == [[0, 1], [], [2, 3], [4]], w  # distinct units, in order
        assert int(got[2][2][0, 0, 0, 0]) == 2 and str(got[2][3]) == "unit 3 does not decode", w


PARENT = """
import os, sys, time
import numpy as np
from mmalign.data.prefetch import decoded_ahead

def big(unit):  # 4 MB: more than the pipe to the parent holds
    print(os.getpid(), flush=True)
    return np.zeros(4 << 20, np.uint8)

loads = decoded_ahead([[i] for i in range(8)], big, 2)
next(loads)
time.sleep(1)  # the workers' next results fill their pipes
os.kill(os.getpid(), 9)
"""


def test_a_parent_killed_with_minus_9_takes_its_workers_with_it(tmp_path):
    """torch's watchdog ends an idle orphan within 5 s; one whose results fill the pipe to the
    dead parent would wait on it for ever (and keep a caller's output pipes open)."""
    out = tmp_path / "pids"
    with open(out, "w") as f:
        proc = subprocess.run([sys.executable, "-c", PARENT], stdout=f, stderr=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == -9
    workers = {int(line) for line in out.read_text().split()}
    assert len(workers) == 2
    deadline = time.time() + 3  # within the watchdog's 5 s: the kill, not the watchdog, ended them
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
        time.sleep(0.1)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
    for pid in alive:
        os.kill(pid, 9)
    assert alive == []
