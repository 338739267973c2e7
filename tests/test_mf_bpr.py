"""Quality floors of the factor models on MovieLens 100K (skipped without ../shared/data), and benchmarks/sample_cost.py.

Protocol: every rating is an interaction, per-user random 80/10/10 split with seed 0
(`split(ratings, "random", (0.8, 0.1, 0.1), seed=0)`), models trained with their configs in configs/,
early stopping on the validation split, the best epoch measured on test. Ranking is full ranking over the
catalog with each user's train and valid movies masked.
"""
import json, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

from movie_genie.data import split
from movie_genie.training import load_config, load_training_data, train_from_config

ROOT = Path(__file__).resolve().parent.parent


def train_on_ml100k(name, shared_data, tmp_path):
    over = {"data.dataset": "ml-100k", "data.data_dir": str(shared_data)}
    out = train_from_config(ROOT / "configs" / f"{name}.yaml", over, output_dir=tmp_path / "models",
                            reports_dir=tmp_path / "reports", mlflow=False, progress=False)
    t = out["test_metrics"]
    print(f"{name} on ML-100K: best epoch {out['best_epoch']} of {len(out['history'])}, "
          + ", ".join(f"{k} {t[k]:.4f}" for k in ("rmse", "mae", "ndcg@10", "recall@10", "recall@50") if k in t)
          + f", {out['train_time_s']:.0f}s")
    return out


def test_the_split_is_the_reference_split(ml100k, shared_data):
    cfg = load_config(ROOT / "configs" / "bpr.yaml", {"data.dataset": "ml-100k", "data.data_dir": str(shared_data)})
    ours = load_training_data(cfg["data"]).split
    ref = split(ml100k.ratings, "random", (0.8, 0.1, 0.1), seed=0)
    for a, b in zip(ours, ref):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@pytest.mark.slow
def test_matrix_factorization_rmse_on_ml100k(shared_data, tmp_path):
    out = train_on_ml100k("matrix_factorization", shared_data, tmp_path)
    assert out["test_metrics"]["rmse"] <= 0.93
    assert out["test_metrics"]["mae"] < 0.75


@pytest.mark.slow
def test_bpr_ndcg_on_ml100k(shared_data, tmp_path):
    out = train_on_ml100k("bpr", shared_data, tmp_path)
    assert out["test_metrics"]["ndcg@10"] >= 0.31
    assert out["test_metrics"]["n_users"] == 943


def sample_cost(*args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sample_cost.py"), *args], capture_output=True, text=True, timeout=600)


def test_sample_cost_benchmark(tmp_path):
    "benchmarks/sample_cost.py (samples/s at two sizes) on its smallest synthetic data: our BPR and the PyTorch loop."
    r = sample_cost("--sizes", "ml-1m", "ml-10m", "--scale", "0.01", "--impls", "ours,torch_loop", "--batches", "2",
                    "--threads", "1", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "sample_cost.json").read_text())["results"]
    assert res["ml-10m"]["n_items"] > res["ml-1m"]["n_items"] and all(res[s][i] > 0 for s in res for i in ("ours", "torch_loop"))
    assert "| ours (Adam) |" in (tmp_path / "out" / "sample_cost.md").read_text()


def test_sample_cost_bad_arguments(tmp_path):
    for args, frag in [(["--impls", "ours,bogus"], "'bogus'"), (["--sizes", "ml-1m", "ml-1b"], "'ml-1b'"),
                       (["--threads", "0"], "--threads"), (["--scale", "2"], "--scale")]:
        r = sample_cost(*args, "--out", str(tmp_path))
        assert r.returncode == 2 and r.stderr.startswith("error: ") and frag in r.stderr, (args, r.stderr)
