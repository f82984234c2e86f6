"""Session fixtures for the whole suite: a small synthetic world and one folder of tiny presets
(built once, reused by every test that loads one). Folders may override `world`."""

import pytest

from mmalign.world import build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    build_world(out, n_videos=8, seed=1, show_progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tiny-models"))
