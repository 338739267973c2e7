#!/usr/bin/env python
"""BPR's scoring step and LazyAdam's row update, each against the plain version it replaced, in the same run.

1. Scoring: forward and backward of the `[b, 1 + k]` scores of a batch, `movie_genie.models.bpr.sampled_scores`
   (SDDMM for the scores, `embedding_bag` for both gradients) against the lookup and elementwise product
   (`(Q[idx] * P[:, None]).sum(-1)` with autograd), with a dense table gradient (a catalog the size of
   ML-100K's) and a sparse one (ML-25M's 59,047 movies, the rows of a step only).
2. LazyAdam: one step on the rows a BPR batch touches in a 59,047 x d table, `fused=True` (torch's fused Adam
   kernel on the gathered rows) against `fused=False` (the same update written as nine tensor operations).

Each timing is the median of `--repeats` rounds, the two versions alternating; the ratio is plain / new.
Run it alone (`--threads`, default 1, are the torch threads): other jobs on the cores measure contention.

    python benchmarks/bpr_step.py [--threads 1] [--batch 4096] [--negatives 8] [--dim 256] [--repeats 7]
"""
import os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import argparse, statistics, time

import torch
import torch.nn.functional as F

from movie_genie.models.bpr import sampled_scores
from movie_genie.training import _FUSED_ADAM, LazyAdam


def timed(fn, repeats: int, inner: int = 5) -> float:
    "Median over `repeats` rounds of the mean seconds of `inner` calls (one warm-up call first)."
    fn()
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner): fn()
        rounds.append((time.perf_counter() - t0) / inner)
    return statistics.median(rounds)


def scoring(n_items: int, sparse: bool, a) -> tuple[float, float]:
    "Seconds of forward + backward of the plain and the new scoring, on one batch of random indices."
    torch.manual_seed(0)
    table = torch.nn.Embedding(n_items, a.dim, sparse=sparse)
    users = torch.randn(a.batch, a.dim, requires_grad=True)
    idx = torch.randint(n_items, (a.batch, 1 + a.negatives))
    g = torch.randn(a.batch, 1 + a.negatives)
    def plain():
        users.grad = table.weight.grad = None
        (table(idx) * users.unsqueeze(1)).sum(-1).backward(g)
    def new():
        users.grad = table.weight.grad = None
        sampled_scores(users, table.weight, idx, sparse).backward(g)
    return timed(plain, a.repeats), timed(new, a.repeats)


def lazy_adam(n_items: int, a) -> tuple[float, float]:
    "Seconds of one LazyAdam step, fused=False and fused=True, on the rows of one BPR batch."
    torch.manual_seed(0)
    rows = torch.randint(n_items, (a.batch * (1 + a.negatives),))
    grad = torch.sparse_coo_tensor(rows.unsqueeze(0), torch.randn(len(rows), a.dim), (n_items, a.dim), check_invariants=False).coalesce()
    out = []
    for fused in (False, True):
        w = torch.nn.Parameter(torch.randn(n_items, a.dim))
        opt = LazyAdam([w], lr=1e-3, weight_decay=1e-5, fused=fused)
        def step():
            w.grad = grad
            opt.step()
        out.append(timed(step, a.repeats))
    return tuple(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--negatives", type=int, default=8)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"batch {a.batch}, {a.negatives} negatives, dim {a.dim}, {a.threads} thread(s); medians of {a.repeats} rounds")
    print("| step | plain (ms) | new (ms) | plain / new |\n|---|---|---|---|")
    for label, n, sparse in [("scoring, 1,682 movies (ML-100K), dense gradient", 1682, False),
                             ("scoring, 59,047 movies (ML-25M), sparse gradient", 59047, True)]:
        old, new = scoring(n, sparse, a)
        print(f"| {label} | {old * 1e3:.1f} | {new * 1e3:.1f} | {old / new:.1f}x |")
    if _FUSED_ADAM:
        old, new = lazy_adam(59047, a)
        print(f"| LazyAdam step, 59,047 x {a.dim} table, the rows of one batch | {old * 1e3:.1f} | {new * 1e3:.1f} | {old / new:.1f}x |")
    else: print("(LazyAdam's fused update needs torch >= 2.6: not measured)")


if __name__ == "__main__":
    main()
