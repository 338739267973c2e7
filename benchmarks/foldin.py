"""Benchmark: recommending from a list of movies (fold-in), per model, through the service.

Trains pop, itemknn, ease, matrix_factorization (served as `mf`), bpr and sasrec on ML-100K (from
../shared/data or --data-dir when it is there; else a synthetic dataset of ML-100K's size written by
`movie_genie.data.write_synthetic_movielens`), saves them to a temporary models folder and loads a
`ModelService` on it, on the CPU with one torch thread (what `serve` runs). The factor models and SASRec train
for a few epochs only: what a request costs does not depend on how well they are trained. Then, per model:

  session:   ModelService.recommend_session(model, movie_ids, k=10) for N histories (default 1,000) of
             20 movies each (a training user's movies, 20 at random, in time order): fold-in + top-10
  baseline:  ModelService.recommend(model, user_id, k=10) for N known users: the precomputed path

and prints p50 and p99 of each and their ratio. Each phase is warmed up first (100 calls). Check: session p99
<= 20 ms for every model (exit status 1 otherwise).

    OMP_NUM_THREADS=1 python benchmarks/foldin.py [--histories 1000] [--length 20] [--data-dir DIR] [--models pop,ease,...]
"""
import argparse, os, shutil, sys, tempfile, time
from pathlib import Path

import numpy as np

MODELS = {   # route: (model type, parameters, fit settings)
    "pop": ("pop", {}, {}),
    "itemknn": ("itemknn", {}, {}),
    "ease": ("ease", {}, {}),
    "mf": ("matrix_factorization", {}, {"num_epochs": 3, "progress": False}),
    "bpr": ("bpr", {}, {"num_epochs": 3, "progress": False}),
    "sasrec": ("sasrec", {}, {"num_epochs": 2, "progress": False}),
}
FLOOR_P99_MS = 20.0


def load_data(data_dir, tmp: Path):
    "ML-100K if present, else a synthetic dataset of its size: `(dataset, description)`."
    from movie_genie.data import find_shared_data, load_movielens, write_synthetic_movielens
    root = Path(data_dir) if data_dir else find_shared_data()
    if root is not None and (root / "ml-100k").is_dir():
        return load_movielens("ml-100k", root), f"ML-100K from {root}"
    # ml-1m's layout at a tenth of its ratings: about 600 users, 1,200 movies, 100,000 ratings
    write_synthetic_movielens("ml-1m", tmp / "data", scale=0.1, seed=0)
    return load_movielens("ml-1m", tmp / "data"), "synthetic, ML-100K size (write_synthetic_movielens('ml-1m', scale=0.1))"


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(fn, args_list, warmup: int = 100) -> list[float]:
    for a in args_list[:warmup]: fn(*a)
    out = []
    for a in args_list:
        t = time.perf_counter(); fn(*a); out.append((time.perf_counter() - t) * 1000)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--histories", type=int, default=1000)
    ap.add_argument("--length", type=int, default=20, help="movies per history")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--torch-threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.torch_threads)
    from movie_genie.data import split
    from movie_genie.models import get_model
    from movie_genie.serving import ModelService

    routes = [r.strip() for r in args.models.split(",") if r.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="foldin-bench-"))
    ds, desc = load_data(args.data_dir, tmp)
    parts = split(ds.ratings, "random", seed=0)
    print(f"data: {desc}: {ds.n_users:,} users, {ds.n_movies:,} movies, {len(ds):,} ratings; "
          f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    for route in routes:
        kind, params, fit = MODELS[route]
        t = time.perf_counter()
        m = get_model(kind, **params).fit(parts.train, parts.valid, **fit)
        m.save_pretrained(tmp / "models" / route, movies=ds.movies)
        print(f"  {route}: {m!r} fit in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    svc = ModelService(tmp / "models")
    print(f"service loaded in {time.perf_counter() - t:.1f}s: {svc}")

    rng = np.random.default_rng(0)
    train = parts.train.sort_values(["user_id", "timestamp"], kind="stable")
    by_user = {u: g.movie_id.to_numpy() for u, g in train.groupby("user_id")}
    long_enough = [u for u, h in by_user.items() if len(h) >= args.length]
    histories = []
    for u in rng.choice(long_enough, args.histories):
        h = by_user[u]
        histories.append(h[np.sort(rng.choice(len(h), args.length, replace=False))].tolist())
    users = rng.choice(np.array(list(by_user)), args.histories).tolist()

    rows, failed = [], []
    for route in routes:
        sess = timed(lambda h: svc.recommend_session(route, h, k=10), [(h,) for h in histories])
        base = timed(lambda u: svc.recommend(route, u, k=10), [(int(u),) for u in users])
        (s50, s99), (b50, b99) = percentiles(sess), percentiles(base)
        rows.append((route, s50, s99, b50, b99))
        if s99 > FLOOR_P99_MS: failed.append(route)
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.histories:,} histories of {args.length} movies, top-10, CPU, {torch.get_num_threads()} torch thread(s):\n")
    print("| model | session p50 (ms) | session p99 (ms) | known user p50 (ms) | known user p99 (ms) | ratio p50 | ratio p99 |")
    print("|---|---|---|---|---|---|---|")
    for route, s50, s99, b50, b99 in rows:
        print(f"| {route} | {s50:.3f} | {s99:.3f} | {b50:.3f} | {b99:.3f} | {s50 / b50:.1f}x | {s99 / b99:.1f}x |")
    print(f"\nfloor: session p99 <= {FLOOR_P99_MS:.0f} ms: " + ("ok" if not failed else f"FAILED for {', '.join(failed)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
