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


# --- Reliability II (issue #13): missing values, messages that name file/line/column, stale temps ---------

LAYOUTS = {   # family: (dataset, folder, ratings file, separator, header, column labels in messages)
    "100k": ("ml-100k", "ml-100k", "u.data", "\t", "", ["1: user_id", "2: movie_id", "3: rating", "4: timestamp"]),
    "dat": ("ml-1m", "ml-1m", "ratings.dat", "::", "", ["1: user_id", "2: movie_id", "3: rating", "4: timestamp"]),
    "csv": ("ml-latest-small", "ml-latest-small", "ratings.csv", ",", "userId,movieId,rating,timestamp\n",
            ["userId", "movieId", "rating", "timestamp"]),
}
GOOD = [("1", "1", "4", "964982703"), ("1", "2", "5", "964982704")]


def write_layout(d, fmt, rows, movies=None):
    "A tiny dataset of family `fmt` with ratings `rows` (None: a blank line); returns (dataset name, ratings path)."
    name, folder, fname, sep, head, _ = LAYOUTS[fmt]
    root = Path(d) / folder
    root.mkdir(exist_ok=True)
    (root / fname).write_text(head + "".join(sep.join(r) + "\n" if r else "\n" for r in rows))
    if fmt == "100k":
        (root / "u.genre").write_text("unknown|0\nDrama|1\n")
        (root / "u.item").write_text(movies or "".join(f"{m}|Movie {m} (1995)|01-Jan-1995||http://x|0|1\n" for m in (1, 2)))
        (root / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    elif fmt == "dat":
        (root / "movies.dat").write_text(movies or "1::Movie 1 (1995)::Drama\n2::Movie 2 (1995)::Drama\n")
    else:
        (root / "movies.csv").write_text(movies or 'movieId,title,genres\n1,"Movie 1, The (1995)",Drama\n2,Movie 2 (1995),Drama\n')
    return name, root / fname


@pytest.mark.parametrize("fmt", list(LAYOUTS))
@pytest.mark.parametrize("col", range(4))
@pytest.mark.parametrize("bad", ["", "NA", "nan", "1.5", "abc"])
def test_ratings_reject_missing_and_non_integer_values(tmp_path, fmt, col, bad):
    if col == 2 and bad == "1.5": bad = "4..5"                              # 1.5 is a fine rating
    row = list(GOOD[1]); row[col] = bad
    name, path = write_layout(tmp_path, fmt, [GOOD[0], None, row])           # the bad line follows a blank one
    line = 3 + bool(LAYOUTS[fmt][4])                                         # editor lines: header counted
    with pytest.raises(DataError) as e:
        load_movielens(name, tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{path} (line {line}, column {LAYOUTS[fmt][5][col]}): "), msg
    if bad in ("", "NA", "nan"): assert "missing" in msg
    elif col == 2: assert f"rating '{bad}' is not a number" in msg
    else: assert f"'{bad}' is not an integer" in msg


def test_rating_1_5_loads_and_ids_stay_int32(tmp_path):
    name, _ = write_layout(tmp_path, "csv", [GOOD[0], ("1", "2", "1.5", "5")])
    ds = load_movielens(name, tmp_path)
    assert ds.ratings.rating.tolist() == [4.0, 1.5] and str(ds.ratings.user_id.dtype) == "int32"


def test_issue_reproducer_na_user_never_reaches_id_maps(tmp_path):
    name, path = write_layout(tmp_path, "100k", [GOOD[0], ("NA", "2", "4", "5")])
    with pytest.raises(DataError, match=r"u\.data \(line 2, column 1: user_id\): missing user id \('NA'\)"):
        load_movielens(name, tmp_path)
    nan_ids = pd.DataFrame({"user_id": [1.0, np.nan], "movie_id": [1, 2], "rating": [4.0, 5.0], "timestamp": [0, 1]})
    with pytest.raises(DataError, match="user_id must hold integer ids"):
        prepare(nan_ids)


@pytest.mark.parametrize("fmt,movies,line,label", [
    ("csv", "movieId,title,genres\n1,Heat (1995),Drama\n,Toy Story (1995),Comedy\n", 3, "movieId"),
    ("csv", 'movieId,title,genres\n1,"Heat,\nThe (1995)",Drama\nabc,Toy Story (1995),Comedy\n', 4, "movieId"),
    ("dat", "1::Heat (1995)::Drama\n\n1.5::Toy Story (1995)::Comedy\n", 3, "1: movie_id"),
    ("100k", "1|Heat (1995)|01-Jan-1995||http://x|0|1\nNA|Toy (1995)|01-Jan-1995||http://x|0|1\n", 2, "1: movie_id"),
])
def test_movie_files_reject_bad_ids(tmp_path, fmt, movies, line, label):
    name, path = write_layout(tmp_path, fmt, [GOOD[0]], movies)
    mfile = path.parent / {"csv": "movies.csv", "dat": "movies.dat", "100k": "u.item"}[fmt]
    with pytest.raises(DataError) as e:
        load_movielens(name, tmp_path)
    assert str(e.value).startswith(f"{mfile} (line {line}, column {label}): "), str(e.value)


def test_table_checks_name_the_file_line_and_integer_ids(tmp_path):
    name, path = write_layout(tmp_path, "csv", [GOOD[0], None, ("12", "2", "4", "5"), ("12", "2", "3", "6")])
    with pytest.raises(DataError) as e:
        load_movielens(name, tmp_path)
    assert str(e.value) == f"{path} (line 5): user 12 rates movie 2 twice (first on line 4)."
    name, path = write_layout(tmp_path, "dat", [GOOD[0], None, ("3", "1", "7", "5")])
    with pytest.raises(DataError, match=r"ratings\.dat \(line 3, column 3: rating\): rating 7 is outside"):
        load_movielens(name, tmp_path)
    name, path = write_layout(tmp_path, "100k", [GOOD[0], ("1", "9", "4", "5")])
    with pytest.raises(DataError) as e:
        load_movielens(name, tmp_path)
    assert str(e.value).startswith(f"{path} (line 2, column 2: movie_id): movie 9 is missing from the movie file {path.parent / 'u.item'}")


def test_bad_line_past_the_first_block_is_found(tmp_path):
    "The reader works in 16 MB blocks; the scan starts at the failing block and still counts lines from the top."
    name, path = write_layout(tmp_path, "csv", GOOD)
    n = 1_000_000                                                            # ~24 MB: two blocks
    lines = [f"{1 + i // 100},{1 + i % 2},4.0,{900000000 + i}\n" for i in range(n)]
    lines[n - 7] = f"{1 + (n - 7) // 100},,4.0,1\n"
    lines.insert(10, "\n")
    path.write_text("userId,movieId,rating,timestamp\n" + "".join(lines))
    with pytest.raises(DataError) as e:
        load_movielens(name, tmp_path, validate=False, progress=False)
    assert str(e.value).startswith(f"{path} (line {n - 7 + 3}, column movieId): missing movie id"), str(e.value)


WRITER = """
import sys, time
from pathlib import Path
from movie_genie.data import _atomic_dir
with _atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "ratings.parquet").write_bytes(b"half written")
    print(tmp, flush=True)
    time.sleep(600)
"""


def test_killed_writers_temp_is_removed_live_writers_kept(tmp_path):
    import signal
    from movie_genie.data import save_prepared
    dest = tmp_path / "processed" / "sample"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(dest)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        killed, live = (Path(p.stdout.readline().strip()) for p in procs)
        procs[0].send_signal(signal.SIGKILL); procs[0].wait()
        assert killed.is_dir() and live.is_dir() and oct(killed.stat().st_mode & 0o777) == "0o700"
        toy = pd.DataFrame({"user_id": [1, 2], "movie_id": [1, 1], "rating": [4.0, 5.0], "timestamp": [0, 1]})
        save_prepared(prepare(toy), dest)                                    # the next write of that destination
        assert not killed.exists() and live.is_dir() and load_prepared(dest)[0].info["n_kept"] == 2
        save_prepared(prepare(toy), dest)                                    # replacing: nothing left aside
        assert sorted(p.name for p in dest.parent.iterdir()) == sorted(["sample", live.name])
    finally:
        for p in procs: p.kill(); p.wait()


def test_stale_json_temp_of_a_dead_pid_is_removed(tmp_path):
    from movie_genie.data import _HOST, write_json_atomic
    dead = subprocess.Popen([sys.executable, "-c", "pass"]); dead.wait()
    stale = tmp_path / f".metrics.json.tmp-{_HOST}-{dead.pid}-abcdefgh"
    stale.write_text("{")
    write_json_atomic(tmp_path / "other.json", {"a": 1})                     # any atomic write in that folder
    assert not stale.exists() and json.loads((tmp_path / "other.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["other.json"]
