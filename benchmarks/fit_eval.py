#!/usr/bin/env python
"""Fit and full-ranking evaluation time of the classic baselines, against a bare `torch.topk`.

For each dataset (ML-100K and ml-latest-small from ../shared/data by default) and model (pop, itemknn,
ease with their default hyperparameters), on the per-user random 80/10/10 split (seed 0):

- fit_s: `model.fit(train, valid)`;
- eval_s: `evaluate_model(..., fit=False)`: full ranking of every test user, train+valid masked, all
  metrics at k = 10, 20, 50, 100 (scoring included);
- topk_s: the baseline on the same work: the same batched `_score` calls, then a bare `torch.topk(100)`
  (no masking, no metrics); ratio = eval_s / topk_s;
- and, on the score matrix precomputed once (pre_*): `metrics.evaluate_scores` against `torch.topk` of
  that matrix (r_pre) and of the same matrix with the seen movies masked (mask_tk, r_mask), i.e. what
  masking and metrics cost on top of the top-k itself.

Times are the best of `--repeats` runs. Usage: python benchmarks/fit_eval.py [--datasets ...] [--repeats 10]
"""
import os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # see the note printed at the end
import argparse, platform, time

import numpy as np
import torch

from movie_genie.data import IdMap, find_shared_data, load_movielens, split
from movie_genie.evaluation import _eval_matrices, evaluate_model
from movie_genie.metrics import DEFAULT_KS, evaluate_scores, mask_scores
from movie_genie.models import get_model


def best_of(f, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter(); out = f(); ts.append(time.perf_counter() - t0)
    return min(ts), out


def rows_of(S, pos):
    "score_fn over a precomputed matrix `S` whose row `pos[u]` is user u's: a view when a batch is a run of rows."
    def f(b):
        lo, hi = pos[b[0]], pos[b[-1]] + 1
        return S[lo:hi] if hi - lo == len(b) else S[pos[b]]
    return f


def bench(dataset, data_dir, names, repeats, batch_size=1024):
    ds = load_movielens(dataset, data_dir)
    s = split(ds.ratings, "random", (0.8, 0.1, 0.1), seed=0)
    kmax = max(DEFAULT_KS)
    rows = []
    for name in names:
        model = get_model(name)
        fit_s, _ = best_of(lambda: model.fit(s.train, s.valid), repeats)
        eval_s, m = best_of(lambda: evaluate_model(model, s.train, s.test, s.valid, k=DEFAULT_KS, batch_size=batch_size, fit=False), repeats)
        users = model.user_map.index(np.unique(s.test.user_id.to_numpy()))      # all test users are known on this split

        def score_topk():
            with torch.no_grad():
                for b in range(0, len(users), batch_size):
                    torch.topk(model._score(users[b:b + batch_size]).float(), kmax, dim=1)
        topk_s, _ = best_of(score_topk, repeats)

        with torch.no_grad():
            S = torch.cat([model._score(users[b:b + batch_size]).float() for b in range(0, len(users), batch_size)])
        pos = np.full(model.n_users, -1); pos[users] = np.arange(len(users))
        truth, _, excl = _eval_matrices(model, s.train, s.test, s.valid, IdMap([]))  # as evaluate_model builds them
        pre_eval_s, _ = best_of(lambda: evaluate_scores(rows_of(S, pos), users, truth, excl, k=DEFAULT_KS, batch_size=batch_size), repeats)

        def pre_topk(M):
            for b in range(0, len(users), batch_size): torch.topk(M[b:b + batch_size], kmax, dim=1)
        pre_topk_s, _ = best_of(lambda: pre_topk(S), repeats)
        Sm = mask_scores(S.clone(), excl, users)                  # the masked matrix that evaluation ranks
        pre_topk_masked_s, _ = best_of(lambda: pre_topk(Sm), repeats)
        rows.append(dict(dataset=dataset, model=name, users=model.n_users, items=model.n_items, fit_s=fit_s, eval_s=eval_s,
                         topk_s=topk_s, ratio=eval_s / topk_s, pre_eval_s=pre_eval_s, pre_topk_s=pre_topk_s,
                         ratio_pre=pre_eval_s / pre_topk_s, ratio_pre_masked=pre_eval_s / pre_topk_masked_s, ndcg10=m["ndcg@10"]))
        r = rows[-1]
        print(f"{dataset:16s} {name:8s} {r['items']:6d} {fit_s:8.3f} {eval_s:8.3f} {topk_s:8.3f} {r['ratio']:6.2f}"
              f" {pre_eval_s * 1e3:9.1f} {pre_topk_s * 1e3:9.1f} {r['ratio_pre']:6.2f} {pre_topk_masked_s * 1e3:9.1f}"
              f" {r['ratio_pre_masked']:6.2f} {r['ndcg10']:7.4f}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="ml-100k,ml-latest-small")
    p.add_argument("--models", default="pop,itemknn,ease")
    p.add_argument("--data-dir", default=None, help="folder holding the MovieLens folders (default: ../shared/data)")
    p.add_argument("--repeats", type=int, default=10, help="best of this many runs (the evaluations take milliseconds: few runs are noisy)")
    a = p.parse_args()
    data_dir = a.data_dir or find_shared_data()
    if data_dir is None: raise SystemExit("MovieLens data not found: pass --data-dir or put it under ../shared/data.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.1f}; best of {a.repeats}")
    print(f"{'dataset':16s} {'model':8s} {'items':>6s} {'fit_s':>8s} {'eval_s':>8s} {'topk_s':>8s} {'ratio':>6s}"
          f" {'pre_ev_ms':>9s} {'pre_tk_ms':>9s} {'r_pre':>6s} {'mask_tk_ms':>9s} {'r_mask':>6s} {'ndcg@10':>7s}")
    rows = []
    for d in a.datasets.split(","):
        rows += bench(d.strip(), data_dir, [m.strip() for m in a.models.split(",")], a.repeats)
    worst = max(r["ratio"] for r in rows)
    print(f"\nevaluation vs scoring + bare torch.topk: worst ratio {worst:.2f} (floor <= 2: {'OK' if worst <= 2 else 'ABOVE'})")
    print(f"on a precomputed score matrix, evaluate_scores vs torch.topk: worst ratio {max(r['ratio_pre'] for r in rows):.2f}; "
          f"vs torch.topk of the masked matrix: {max(r['ratio_pre_masked'] for r in rows):.2f}")
    print("(pop's unmasked rows are all equal, which makes a bare topk on them several times faster than on any masked or real score matrix)")
    print(f"load average now {os.getloadavg()[0]:.1f} (timings on a shared machine are upper bounds)")


if __name__ == "__main__":
    main()
