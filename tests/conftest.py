"""Shared pytest fixtures: the real MovieLens data in ../shared/data (skipped with a reason when absent)."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads: spinning OpenMP threads starve other workers
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
from movie_genie.data import find_shared_data, load_movielens


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
