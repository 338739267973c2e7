#!/usr/bin/env python
"""EASE's scoring product against this machine's memory bandwidth: how far it is from the hardware's bound.

EASE scores a user by summing the rows of the dense `n x n` matrix B that belong to the movies of their history
(`movie_genie.models.ease`: `embedding_bag` over B). Each user therefore reads `history x n x 4` bytes of B: with
10M's catalog (n = 10,677) and 95 movies, 4 MB a user. This benchmark times, with `--threads` threads:

- `embedding_bag`: the product as EASE runs it, on `--users` users of `--history` random movies each, in ms a
  user and in GB/s of B's rows read (rows shared by users in the same batch may come from cache);
- the same product by torch's sparse CSR `X @ B` (MKL's sparse-dense kernel), in ms a user;
- the machine's streaming read of B: a matrix-vector product `B @ x` (GEMV, bound by memory), in GB/s;
- for scale, ItemKNN's product at the same sizes: a sparse `n x n` matrix of `--neighbours` weights a row
  (scipy's `csr @ csr`, then dense), in ms a user.

Each figure is the best of `--repeats` runs. If `embedding_bag`'s GB/s is close to the streaming read's, the
product is bound by memory: what is left to gain is B's reuse from cache across a batch of users (column blocks:
1.5x, measured in the README), not a 200x shorter row like ItemKNN's. Run it alone: other jobs on the cores measure contention.

    python benchmarks/ease_scoring.py [--items 10677] [--users 1024] [--history 95] [--neighbours 50] [--threads 2]
"""
import os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import argparse, sys, time, warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F


def best(fn, repeats: int) -> float:
    "The fastest of `repeats` timed calls, after one warm-up call."
    fn(); times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=10_677)
    p.add_argument("--users", type=int, default=1024)
    p.add_argument("--history", type=int, default=95)
    p.add_argument("--neighbours", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    if min(a.items, a.users, a.history, a.neighbours, a.threads, a.repeats) < 1 or a.history > a.items or a.neighbours > a.items:
        print("error: every figure must be at least 1, and --history and --neighbours at most --items.", file=sys.stderr); sys.exit(2)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    B = torch.randn(a.items, a.items, generator=torch.Generator().manual_seed(0))
    hist = np.stack([rng.choice(a.items, a.history, replace=False) for _ in range(a.users)])
    idx, offsets = torch.from_numpy(hist.reshape(-1)), torch.arange(0, a.users * a.history, a.history)
    gb = B.numel() * 4 / 1e9
    t_bag = best(lambda: F.embedding_bag(idx, B, offsets, mode="sum"), a.repeats)
    x = torch.randn(a.items)
    t_read = best(lambda: B @ x, a.repeats)
    crow = torch.arange(0, a.users * a.history + 1, a.history)
    with warnings.catch_warnings():                           # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        Xt = torch.sparse_csr_tensor(crow, torch.from_numpy(np.sort(hist, 1).reshape(-1)), torch.ones(hist.size), (a.users, a.items))
        t_csr = best(lambda: Xt @ B, a.repeats)
    cols = np.stack([rng.choice(a.items, a.neighbours, replace=False) for _ in range(a.items)]).reshape(-1)
    W = sp.csr_matrix((rng.random(len(cols), dtype=np.float32), (np.repeat(np.arange(a.items), a.neighbours), cols)), shape=(a.items, a.items))
    X = sp.csr_matrix((np.ones(hist.size, np.float32), (np.repeat(np.arange(a.users), a.history), hist.reshape(-1))), shape=(a.users, a.items))
    t_knn = best(lambda: (X @ W).toarray(), a.repeats)
    rows_gb = a.users * a.history * a.items * 4 / 1e9
    print(f"B: {a.items:,} x {a.items:,} float32 ({gb:.2f} GB); {a.users:,} users of {a.history} movies; {a.threads} thread(s); best of {a.repeats}")
    print("| step | ms a user | GB/s |\n|---|---|---|")
    print(f"| EASE's product (`embedding_bag` over B's rows) | {1e3 * t_bag / a.users:.3f} | {rows_gb / t_bag:.1f} of rows read |")
    print(f"| the same product, torch's sparse CSR `X @ B` (MKL) | {1e3 * t_csr / a.users:.3f} | {rows_gb / t_csr:.1f} of rows read |")
    print(f"| streaming read of B (`B @ x`, GEMV) | – | {gb / t_read:.1f} |")
    print(f"| ItemKNN's product ({a.neighbours} weights a row, scipy `csr @ csr`, then dense) | {1e3 * t_knn / a.users:.3f} | – |")


if __name__ == "__main__":
    main()
