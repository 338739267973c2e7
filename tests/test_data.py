"""Data layer on the real MovieLens files and through the installed command line."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movie_genie.data import DataError, load_movielens, load_prepared, prepare, split

CLI = str(Path(sys.executable).parent / "movie-genie")   # the installed console script


def test_ml100k_counts(ml100k):
    assert (len(ml100k.ratings), ml100k.n_users, ml100k.n_movies) == (100_000, 943, 1_682)
    assert dict(ml100k.ratings.dtypes.astype(str)) == {"user_id": "int32", "movie_id": "int32", "rating": "float32", "timestamp": "int64"}
    assert ml100k.users is not None and len(ml100k.users) == 943
    assert ml100k.movies.year.notna().mean() > 0.99


def test_ml_latest_small_counts(shared_data):
    ds = load_movielens("ml-latest-small", shared_data)
    assert (len(ds.ratings), ds.n_users, len(ds.movies)) == (100_836, 610, 9_742)
    assert set(np.unique(ds.ratings.rating)) <= set(np.arange(0.5, 5.01, 0.5))
    assert ds.movies.genres.map(len).min() == 0          # '(no genres listed)' becomes []


def test_data_dir_from_environment(shared_data, monkeypatch):
    monkeypatch.setenv("MOVIE_GENIE_DATA", str(shared_data))
    assert len(load_movielens("ml-100k").ratings) == 100_000


@pytest.mark.parametrize("method", ["random", "leave_one_out", "temporal"])
def test_splits_on_ml100k(ml100k, method):
    s = split(ml100k.ratings, method, seed=0)
    parts = pd.concat([s.train, s.valid, s.test])
    assert not parts.duplicated(["user_id", "movie_id"]).any()
    if method == "leave_one_out":
        assert len(s.test) == len(s.valid) == 943
        before = s.train.groupby("user_id").timestamp.max()
        assert (before <= s.valid.set_index("user_id").timestamp.loc[before.index]).all()
        assert (s.valid.set_index("user_id").timestamp <= s.test.set_index("user_id").timestamp.loc[s.valid.user_id]).all()
    if method == "temporal":
        assert s.train.timestamp.max() <= s.valid.timestamp.min() and s.valid.timestamp.max() <= s.test.timestamp.min()
    a, b = split(ml100k.ratings, method, seed=0), s
    pd.testing.assert_frame_equal(a.test, b.test)


def test_implicit_kcore_on_ml100k(ml100k):
    p = prepare(ml100k.ratings, min_rating=4, user_core=10, item_core=10)
    assert p.ratings.groupby("user_idx").size().min() >= 10 and p.ratings.groupby("item_idx").size().min() >= 10
    assert (p.ratings.rating >= 4).all() and len(p.ratings) < 55_375


def test_cli_prepare(tmp_path, shared_data):
    env = {**os.environ, "MOVIE_GENIE_DATA": str(shared_data)}
    out = subprocess.run([CLI, "data", "prepare", "ml-100k", "--out-dir", str(tmp_path),
                          "--min-rating", "4"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    prep, movies = load_prepared(tmp_path / "ml-100k")
    assert len(prep.ratings) == 55_375 and len(movies) == 1_682
    assert json.loads((tmp_path / "ml-100k" / "info.json").read_text())["dataset"] == "ml-100k"


def test_cli_errors_are_one_line(tmp_path):
    out = subprocess.run([CLI, "data", "prepare", "ml-1m", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error:") and "Traceback" not in out.stderr
    assert "movie-genie data download ml-1m" in out.stderr


def test_offline_download_fails_fast(tmp_path):
    import time
    from movie_genie.data import download_movielens
    t = time.time()
    with pytest.raises(DataError, match="extract it so that"):
        download_movielens("ml-100k", tmp_path, base_url="http://127.0.0.1:9", timeout=3)
    assert time.time() - t < 10 and not any(tmp_path.iterdir())
