"""Shared fixtures: a small synthetic world, and stub model services that stand in for the
model (deterministic, instant) where a test is about the generators or the runner."""

import pytest

from mmalign.world import build_world
from mmalign.perturb.pair import Backend
from perturb_stubs import stub_complete, stub_generate, stub_yes_prob


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    build_world(out, n_videos=6, seed=1, show_progress=False)
    return out


@pytest.fixture
def backend():
    return Backend(stub_generate, stub_complete, stub_yes_prob)
