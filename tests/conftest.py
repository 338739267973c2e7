"""Shared pytest fixtures: the real MovieLens data in ../shared/data (skipped with a reason when absent)."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads: spinning OpenMP threads starve other workers
os.environ.setdefault("MPLBACKEND", "Agg")

import socket

import pytest
from movie_genie.data import find_shared_data, load_movielens


@pytest.fixture(scope="module")
def one_thread():
    "One torch thread for a module's tests (figures that do not depend on the machine's cores), restored after it."
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def free_port() -> int:
    "A free TCP port on 127.0.0.1, for a real server the module starts."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def shared_data():
    path = find_shared_data()
    if path is None:
        pytest.skip("real MovieLens data not found: set MOVIE_GENIE_TEST_DATA or put ml-100k under ../shared/data")
    return path


@pytest.fixture(scope="session")
def ml100k(shared_data):
    return load_movielens("ml-100k", shared_data)


@pytest.fixture(scope="session")
def sample():
    return load_movielens("sample")


@pytest.fixture(scope="module")
def sample_split(sample):
    "The built-in sample's random 80/10/10 split (seed 0), once per test module."
    from movie_genie.data import split
    return split(sample.ratings, "random", seed=0)


# Accuracy floors that train models for minutes (BPR/MF on ML-100K, the sequence models on two datasets) are
# marked `slow`: run them with `pytest --runslow` (or MOVIE_GENIE_SLOW=1); the default run skips them, saying so.
def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run the slow accuracy-floor tests")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains models for minutes; run with --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("MOVIE_GENIE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow accuracy floor: run with `pytest --runslow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
