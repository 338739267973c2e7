"""Benchmark: load + prepare a MovieLens-25M-sized ratings CSV against a bare `pyarrow.csv.read_csv`.

Generates a synthetic `ratings.csv` (25,000,095 rows, ML-25M's size and id ranges) and a `movies.csv` in a
temporary `ml-25m/` folder, then in separate child processes (so each peak RSS is its own):
  baseline: pyarrow.csv.read_csv of the same file
  ours:     movie_genie.data.load_movielens("ml-25m", dir) (parse, compact dtypes, validation) + prepare()
and prints wall times, the ratio ours/baseline (floor: <= 3) and each peak RSS (floor: <= 4 GB).

    python benchmarks/data_prep.py [--rows 25000095] [--keep DIR]
"""
import argparse, multiprocessing as mp, resource, shutil, sys, tempfile, time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


def make_files(root: Path, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_users, n_movies = 162_541, 62_423
    root.mkdir(parents=True, exist_ok=True)
    movie_ids = np.sort(rng.choice(209_171, n_movies, replace=False)) + 1
    titles = [f"Movie {i} ({1900 + i % 120})" for i in movie_ids]
    pacsv.write_csv(pa.table({"movieId": movie_ids, "title": titles, "genres": ["Drama|Comedy"] * n_movies}), root / "movies.csv")
    # unique (user, movie) pairs: each user rates a contiguous run of a random permutation of movies
    per_user = np.full(n_users, rows // n_users); per_user[: rows - per_user.sum()] += 1
    users = np.repeat(np.arange(1, n_users + 1, dtype=np.int32), per_user)
    perm = rng.permutation(n_movies)
    offsets = np.repeat(rng.integers(0, n_movies, n_users), per_user)
    pos = np.arange(rows) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    movies = movie_ids[perm[(offsets + pos) % n_movies]].astype(np.int32)
    ratings = (rng.integers(1, 11, rows) / 2).astype(np.float32)
    ts = rng.integers(789_652_009, 1_574_327_703, rows)
    with pacsv.CSVWriter(root / "ratings.csv", pa.schema([("userId", pa.int32()), ("movieId", pa.int32()),
                                                          ("rating", pa.float32()), ("timestamp", pa.int64())]),
                         write_options=pacsv.WriteOptions(quoting_style="none")) as w:
        step = 2_000_000
        for s in range(0, rows, step):
            w.write_table(pa.table({"userId": users[s:s + step], "movieId": movies[s:s + step],
                                    "rating": ratings[s:s + step], "timestamp": ts[s:s + step]}))


def _baseline(path, q):
    t = time.perf_counter()
    table = pacsv.read_csv(path)
    q.put((time.perf_counter() - t, table.num_rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _ours(data_dir, q):
    from movie_genie.data import load_movielens, prepare
    t = time.perf_counter()
    ds = load_movielens("ml-25m", data_dir)
    prep = prepare(ds.ratings)
    q.put((time.perf_counter() - t, len(prep.ratings), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def run_child(fn, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start(); p.join()
    if p.exitcode != 0: sys.exit(f"{fn.__name__} failed (exit code {p.exitcode})")
    return q.get()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=25_000_095)
    ap.add_argument("--keep", default=None, help="folder to generate into and keep (default: a temp folder)")
    a = ap.parse_args()
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="mg-bench-"))
    root = tmp / "ml-25m"
    if not (root / "ratings.csv").exists():
        t = time.perf_counter(); make_files(root, a.rows)
        print(f"generated {a.rows:,} ratings ({(root / 'ratings.csv').stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")
    try:
        tb, nb, rb = run_child(_baseline, str(root / "ratings.csv"))
        to, no, ro = run_child(_ours, str(tmp))
        assert nb == no == a.rows, (nb, no)
        print(f"{'':28s}{'seconds':>9s}{'peak RSS (GB)':>15s}")
        print(f"{'pyarrow.csv.read_csv':28s}{tb:9.2f}{rb / 1e6:15.2f}")
        print(f"{'load_movielens + prepare':28s}{to:9.2f}{ro / 1e6:15.2f}")
        print(f"ratio ours/baseline: {to / tb:.2f} (floor <= 3); peak RSS ours: {ro / 1e6:.2f} GB (floor <= 4)")
    finally:
        if not a.keep: shutil.rmtree(tmp, ignore_errors=True)
