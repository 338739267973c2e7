#!/usr/bin/env python
"""BPR's scoring step, its table updates and its bias lookup, each against the version it replaced, in the same run.

1. Scoring: forward and backward of the `[b, 1 + k]` scores of a batch, `movie_genie.models.bpr.sampled_scores`
   (SDDMM for the scores, `embedding_bag` for both gradients) against the lookup and elementwise product
   (`(Q[idx] * P[:, None]).sum(-1)` with autograd), with a dense table gradient (a catalog the size of
   ML-100K's) and a sparse one (ML-25M's 59,047 movies, the rows of a step only).
2. LazyAdam: one step on the rows a BPR batch touches in a 59,047 x d table, `fused=True` (torch's fused Adam
   kernel on the gathered rows) against `fused=False` (the same update written as nine tensor operations).
3. Row-wise Adagrad (`optimizer.name: rowwise_adagrad`, one number of state per row) against that fused
   LazyAdam step, on the same rows.
4. The lookup of a batch's movie biases (`[b, 1 + k]` ids into a 1,682 x 1 table), forward and backward:
   `nn.Embedding` against `movie_genie.models.matrix_factorization.lookup` (`index_select`; the same gradient).

Each timing is the median of `--repeats` rounds; the ratio is old / new. Freed memory is reused, as in the `Trainer`.
Run it alone (`--threads`, default 1, are the torch threads): other jobs on the cores measure contention.

    python benchmarks/bpr_step.py [--threads 1] [--batch 4096] [--negatives 8] [--dim 256] [--repeats 7]
"""
import os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import argparse, statistics, time

import torch
import torch.nn.functional as F

from movie_genie.models.bpr import sampled_scores
from movie_genie.models.matrix_factorization import lookup
from movie_genie.training import _FUSED_ADAM, LazyAdam, RowWiseAdagrad, reuse_freed_memory


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


def row_updates(n_items: int, a) -> dict:
    "Seconds of one optimizer step on the rows of one BPR batch: LazyAdam unfused and fused, RowWiseAdagrad."
    torch.manual_seed(0)
    rows = torch.randint(n_items, (a.batch * (1 + a.negatives),))
    grad = torch.sparse_coo_tensor(rows.unsqueeze(0), torch.randn(len(rows), a.dim), (n_items, a.dim), check_invariants=False).coalesce()
    makers = {"rowwise": lambda w: RowWiseAdagrad([w], lr=0.07, weight_decay=1e-5), "lazy": lambda w: LazyAdam([w], lr=1e-3, weight_decay=1e-5)}
    if _FUSED_ADAM: makers["lazy_fused"] = lambda w: LazyAdam([w], lr=1e-3, weight_decay=1e-5, fused=True)
    out = {}
    for name, make in makers.items():
        w = torch.nn.Parameter(torch.randn(n_items, a.dim))
        opt = make(w)
        def step():
            w.grad = grad
            opt.step()
        out[name] = timed(step, a.repeats)
    return out


def bias_lookup(n_items: int, a) -> tuple[float, float]:
    "Seconds of forward + backward of a batch's `[b, 1 + k]` bias lookups: `nn.Embedding`, then `lookup`."
    torch.manual_seed(0)
    table = torch.nn.Embedding(n_items, 1)
    idx = torch.randint(n_items, (a.batch, 1 + a.negatives))
    g = torch.randn(a.batch, 1 + a.negatives, 1)
    def run(f):
        table.weight.grad = None
        f(idx).backward(g)
    return timed(lambda: run(table), a.repeats), timed(lambda: run(lambda i: lookup(table, i)), a.repeats)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--negatives", type=int, default=8)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    with reuse_freed_memory(): report(a)


def report(a):
    "The table (inside `reuse_freed_memory`, as in the `Trainer`)."
    print(f"batch {a.batch}, {a.negatives} negatives, dim {a.dim}, {a.threads} thread(s); medians of {a.repeats} rounds")
    print("| step | old (ms) | new (ms) | old / new |\n|---|---|---|---|")
    for label, n, sparse in [("scoring, 1,682 movies (ML-100K), dense gradient", 1682, False),
                             ("scoring, 59,047 movies (ML-25M), sparse gradient", 59047, True)]:
        old, new = scoring(n, sparse, a)
        print(f"| {label} | {old * 1e3:.1f} | {new * 1e3:.1f} | {old / new:.1f}x |")
    r = row_updates(59047, a)
    if _FUSED_ADAM:
        print(f"| LazyAdam step, 59,047 x {a.dim} table, the rows of one batch: unfused / fused | {r['lazy'] * 1e3:.1f} | "
              f"{r['lazy_fused'] * 1e3:.1f} | {r['lazy'] / r['lazy_fused']:.1f}x |")
        print(f"| the same rows: fused LazyAdam / RowWiseAdagrad | {r['lazy_fused'] * 1e3:.1f} | {r['rowwise'] * 1e3:.1f} | "
              f"{r['lazy_fused'] / r['rowwise']:.1f}x |")
    else:
        print("(LazyAdam's fused update needs torch >= 2.6: not measured)")
        print(f"| the same rows: LazyAdam / RowWiseAdagrad | {r['lazy'] * 1e3:.1f} | {r['rowwise'] * 1e3:.1f} | {r['lazy'] / r['rowwise']:.1f}x |")
    old, new = bias_lookup(1682, a)
    print(f"| movie-bias lookup, 1,682 x 1 table, [{a.batch}, {1 + a.negatives}] ids: nn.Embedding / lookup | "
          f"{old * 1e3:.2f} | {new * 1e3:.2f} | {old / new:.1f}x |")


if __name__ == "__main__":
    main()
