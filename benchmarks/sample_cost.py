#!/usr/bin/env python
"""Does anyone's BPR keep a flat cost per training sample from MovieLens-1M to -25M size on this machine?

#12's floor asks our BPR for samples/s at 25M >= 0.7x its samples/s at 1M. This benchmark asks the same of the
implementations we are measured against, on the same synthetic data (`write_synthetic_movielens`, as
`benchmarks/scaling.py`), the same random 80/10/10 split (seed 0) and the same threads, one after the other:

- ours: `configs/bpr.yaml` as it is (Adam; LazyAdam row updates of the tables larger than four batches), and
  with `optimizer.name: rowwise_adagrad`; `--batches` batches of 4,096 positives x 8 negatives, dim 256
  (`training.max_batches`): the Trainer's samples/s over its training time (set-up and validation excluded);
- a hand-written PyTorch loop doing the same work per sample: `nn.Embedding(sparse=True)` tables,
  `torch.optim.SparseAdam`, 8 uniform negatives, dim 256, batch 4,096: the mean step after 10 warm-up steps;
- cornac's BPR (Cython SGD, one negative per positive, updated in place; `k=256`) and implicit's BPR (the same,
  `factors=256`): the seconds of one epoch are (fit of 3 iterations - fit of 1) / 2, so that set-up is not counted.
  Their samples are positives, each compared with one negative: the peers' absolute samples/s are not comparable
  with ours (8 negatives a positive), their *ratio* between the sizes is.

Prints, for each, samples/s at both sizes and their ratio (the floor's figure), and writes the table (Markdown and
JSON) to `--out`. cornac and implicit come with the `bench` extra; without them their rows say so. Run it alone:
other jobs on the cores measure contention, not code. The 25M run takes about 8 minutes, most of it cornac building
its `Dataset` from 20M Python tuples (47 s, 11 GB peak).

    pip install -e ".[bench]" && python benchmarks/sample_cost.py [--sizes ml-1m ml-25m] [--threads 2] [--batches 200]
"""
import os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MOVIE_GENIE_QUIET", "1")
import argparse, importlib.util, json, sys, time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DIM, BATCH, NEGATIVES = 256, 4096, 8
ROWWISE = {"optimizer.name": "rowwise_adagrad", "optimizer.fused": False, "training.learning_rate": 0.07, "model.dropout": 0.6}   # configs/bpr.yaml's note


def ours(s, threads: int, batches: int, sets: dict | None = None) -> float:
    "Our BPR's samples/s over `batches` batches of one epoch (the Trainer's own count)."
    from movie_genie.models import get_model
    from movie_genie.training import TrainerConfig, load_config
    cfg = load_config(ROOT / "configs" / "bpr.yaml", {"training.num_epochs": 1, "training.threads": threads,
                      "training.max_batches": batches, "evaluation.valid_users": 200, **(sets or {})})
    model = get_model("bpr", **{k: v for k, v in cfg["model"].items() if k != "type"})
    model.fit(s.train, s.valid, config=TrainerConfig.from_config(cfg, progress=False))
    return model.training_result.samples_per_s


def torch_loop(users, items, n_users, n_items, batches: int) -> float:
    "samples/s of a hand-written BPR step: sparse embedding tables, SparseAdam, the `[b, 1 + k, d]` lookup."
    g = torch.Generator().manual_seed(0)
    U, V = torch.nn.Embedding(n_users, DIM, sparse=True), torch.nn.Embedding(n_items, DIM, sparse=True)
    opt = torch.optim.SparseAdam([U.weight, V.weight], lr=1e-3)
    u, i = torch.from_numpy(users.astype(np.int64)), torch.from_numpy(items.astype(np.int64))
    order = torch.randperm(len(u), generator=g)
    warm, t0 = 10, None
    for step in range(warm + batches):
        if step == warm: t0 = time.perf_counter()
        b = order[(step * BATCH) % (len(u) - BATCH):][:BATCH]
        ij = torch.cat([i[b, None], torch.randint(n_items, (BATCH, NEGATIVES), generator=g)], 1)
        x = (V(ij) * U(u[b])[:, None]).sum(-1)
        loss = -F.logsigmoid(x[:, :1] - x[:, 1:]).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    return batches * BATCH / (time.perf_counter() - t0)


def epoch_seconds(fit) -> float:
    "Seconds of one epoch: (fit(3 iterations) - fit(1)) / 2."
    t = {}
    for it in (1, 3):
        t0 = time.perf_counter(); fit(it); t[it] = time.perf_counter() - t0
    return (t[3] - t[1]) / 2


def implicit_bpr(X, threads: int) -> float:
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    fit = lambda it: BayesianPersonalizedRanking(factors=DIM - 1, iterations=it, num_threads=threads, random_state=0).fit(X, show_progress=False)
    return X.nnz / epoch_seconds(fit)                         # (implicit adds a bias column: DIM in all)


def cornac_bpr(users, items, threads: int) -> float:
    import cornac
    data = cornac.data.Dataset.from_uir(list(zip(users.tolist(), items.tolist(), [1.0] * len(users))), seed=0)
    fit = lambda it: cornac.models.BPR(k=DIM, max_iter=it, learning_rate=0.01, lambda_reg=0.01, seed=0, num_threads=threads,
                                       verbose=False).fit(data)
    return len(users) / epoch_seconds(fit)


def fail(message: str):
    print(f"error: {message}", file=sys.stderr); sys.exit(2)


IMPLS = {"ours": "ours (Adam)", "ours_rowwise": "ours (rowwise_adagrad)", "torch_loop": "hand-written PyTorch loop (SparseAdam)",
         "cornac": "cornac BPR (Cython, 1 negative)", "implicit": "implicit BPR (Cython, 1 negative)"}
PEER_MODULE = {"cornac": "cornac", "implicit": "implicit"}


def measure(size: str, a) -> dict:
    "samples/s of every implementation at one size (None: its library is not installed)."
    from movie_genie.data import MOVIELENS, load_movielens, split, write_synthetic_movielens
    data_dir = a.data_dir if a.scale == 1 else a.data_dir / f"scale-{a.scale:g}"
    if not (data_dir / MOVIELENS[size][1]).exists(): write_synthetic_movielens(size, data_dir, scale=a.scale)
    s = split(load_movielens(size, data_dir, progress=False).ratings, "random", (0.8, 0.1, 0.1), seed=0)
    _, users = np.unique(s.train.user_id.to_numpy(), return_inverse=True)
    _, items = np.unique(s.train.movie_id.to_numpy(), return_inverse=True)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    out = {"n_train": len(users), "n_users": n_users, "n_items": n_items}
    for impl in a.impls:
        if impl in PEER_MODULE and importlib.util.find_spec(PEER_MODULE[impl]) is None:
            out[impl] = None; print(f"{size}: {impl} is not installed (pip install -e '.[bench]'): skipped", flush=True); continue
        torch.manual_seed(0)
        if impl == "ours": v = ours(s, a.threads, a.batches)
        elif impl == "ours_rowwise": v = ours(s, a.threads, a.batches, ROWWISE)
        elif impl == "torch_loop": v = torch_loop(users, items, n_users, n_items, a.batches)
        elif impl == "implicit":
            v = implicit_bpr(sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(n_users, n_items)), a.threads)
        else: v = cornac_bpr(users, items, a.threads)
        out[impl] = v
        print(f"{size}: {IMPLS[impl]}: {v:,.0f} samples/s", flush=True)
    return out


def table(res: dict, sizes) -> str:
    small, large = sizes
    lines = [f"| BPR | samples/s at {small} | at {large} | {large} / {small} |", "|---|---|---|---|"]
    for impl, label in IMPLS.items():
        if impl not in res[small]: continue
        x, y = res[small][impl], res[large][impl]
        lines.append(f"| {label} | " + (f"{x:,.0f} | {y:,.0f} | **{y / x:.2f}** |" if x and y else "not installed | – | – |"))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs=2, default=["ml-1m", "ml-25m"], metavar=("SMALL", "LARGE"))
    p.add_argument("--impls", default=",".join(IMPLS), help=f"some of {','.join(IMPLS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=200, help="batches our BPR and the PyTorch loop time at each size")
    p.add_argument("--scale", type=float, default=1.0, help="the synthetic datasets at this fraction of their size (tests)")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "movie-genie-synthetic")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "scaling")
    a = p.parse_args(argv)
    from movie_genie.data import SYNTHETIC_SIZES, write_json_atomic
    a.impls = a.impls.split(",")
    bad = [x for x in a.impls if x not in IMPLS] + [x for x in a.sizes if x not in SYNTHETIC_SIZES]
    if bad: fail(f"unknown {', '.join(map(repr, bad))}; implementations: {', '.join(IMPLS)}; sizes: {', '.join(SYNTHETIC_SIZES)}.")
    if a.threads < 1 or a.batches < 1: fail(f"--threads and --batches must be at least 1, got {a.threads} and {a.batches}.")
    if not 0 < a.scale <= 1: fail(f"--scale must be in (0, 1], got {a.scale}.")
    torch.set_num_threads(a.threads)
    res = {size: measure(size, a) for size in a.sizes}
    md = (f"BPR samples/s at two sizes, {a.threads} thread(s), one after the other (`benchmarks/sample_cost.py`)\n\n"
          + table(res, a.sizes) + "\n")
    a.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(a.out / "sample_cost.json", {"threads": a.threads, "batches": a.batches, "scale": a.scale, "results": res})
    tmp = a.out / "sample_cost.md.tmp"; tmp.write_text(md); tmp.replace(a.out / "sample_cost.md")
    print(md)


if __name__ == "__main__":
    main()
