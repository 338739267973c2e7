"""`movie-genie train` under torchrun: 2 CPU processes (gloo) against 1 process, on the built-in sample.

Matrix factorization without dropout is deterministic given the batch order: rank 0's shuffled order is
broadcast and each global batch of `training.batch_size` is split between the ranks, whose gradients
DistributedDataParallel averages, so 2 processes follow 1 process's optimisation up to float summation
order (measured: identical RMSE to 6 decimals; tolerance 1e-3). BPR draws its negatives per rank, so
2 processes are a different random run: its test NDCG@10 must agree within 0.03 (two seeds of one
process differ by about 0.01 here). Evaluation is sharded by user and gathered in both cases.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def train(tmp_path, name, nproc, model, *sets):
    out = tmp_path / name
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m", "movie_genie.cli"]
           if nproc > 1 else [sys.executable, "-m", "movie_genie.cli"])
    cmd += ["train", "--config", str(ROOT / f"configs/{model}.yaml"), "--no-mlflow", "--quiet", "--output-dir", str(out / "models"),
            "--reports-dir", str(out / "reports"), "--set", "data.dataset=sample", "--set", "training.num_epochs=3", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = json.loads(r.stdout)                       # rank 0 alone prints: one JSON document
    saved = json.loads((out / "models" / model / "metrics.json").read_text())
    history = json.loads((out / "reports" / model / "metrics.json").read_text())["history"]
    leftovers = [p.name for p in (out / "models").iterdir() if p.name.startswith(".") and p.name != ".checkpoints"]
    assert leftovers == [], leftovers                    # one writer: no temporary folders left behind
    return printed, saved, history


def test_two_processes_match_one_mf(tmp_path):
    sets = ["--set", "model.dropout=0.0", "--set", "training.batch_size=512"]
    one, saved1, h1 = train(tmp_path, "one", 1, "matrix_factorization", *sets)
    two, saved2, h2 = train(tmp_path, "two", 2, "matrix_factorization", *sets)
    assert one == saved1["test"] and two == saved2["test"]
    assert len(h1) == len(h2) == 3
    for a, b in zip(h1, h2):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-3 and abs(a["valid_rmse"] - b["valid_rmse"]) < 1e-3
    for m in ["rmse", "mae", "ndcg@10", "recall@10"]:
        assert abs(one[m] - two[m]) < 1e-3, (m, one[m], two[m])
    assert one["n_users"] == two["n_users"] == 1000      # every user evaluated once, across the two ranks


def test_two_processes_bpr(tmp_path):
    one, _, _ = train(tmp_path, "one", 1, "bpr", "--set", "model.embedding_dim=32")
    two, _, h2 = train(tmp_path, "two", 2, "bpr", "--set", "model.embedding_dim=32")
    assert len(h2) == 3 and abs(one["ndcg@10"] - two["ndcg@10"]) < 0.03, (one["ndcg@10"], two["ndcg@10"])
    assert one["n_users"] == two["n_users"]
