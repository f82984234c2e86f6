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
