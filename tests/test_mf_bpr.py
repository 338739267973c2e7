"""Quality floors of the factor models on MovieLens 100K (skipped without ../shared/data).

Protocol: every rating is an interaction, per-user random 80/10/10 split with seed 0
(`split(ratings, "random", (0.8, 0.1, 0.1), seed=0)`), models trained with their configs in configs/,
early stopping on the validation split, the best epoch measured on test. Ranking is full ranking over the
catalog with each user's train and valid movies masked.
"""
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
