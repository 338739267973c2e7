"""Fold-in on MovieLens 100K (skipped without ../shared/data): a trained model, told a user's training history as a
list of movies (`recommend_from_history`, as a visitor without an account would), should rank about as well for
that user as the model's own answer by user id (`recommend`), which it learned in training.

Protocol: per-user random 80/10/10 split, seed 0. For every test user, top-10 from the model's `recommend(user)`
and from `recommend_from_history(the user's training movies)`, each a full ranking of the catalog with the
training movies masked (the history's own movies, for fold-in); NDCG@10 against the test movies, the ratio of the
two is what is asserted. Item-item models score the history row exactly as in training (ratio 1), popularity ignores
it (ratio 1); the factor models solve the user's vector in closed form, so they land near their trained vectors.
MF and BPR train for a few epochs only: the ratio, not the absolute figure, is under test.
"""
import time

import numpy as np
import pandas as pd
import pytest
import torch

from movie_genie.data import split
from movie_genie.metrics import evaluate
from movie_genie.models import get_model


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def parts(ml100k):
    return split(ml100k.ratings, "random", seed=0)


def ndcg_own_and_foldin(model, parts, ratings: bool = False) -> tuple[float, float]:
    "NDCG@10 on test of the model's own answers and of its fold-in of each test user's training history."
    users = np.unique(parts.test.user_id.to_numpy())
    own = evaluate(model.recommend(users, k=10), parts.test, k=10)
    train = parts.train.sort_values(["user_id", "timestamp"], kind="stable")
    frames = []
    for u, h in train[train.user_id.isin(users)].groupby("user_id", sort=True):
        df = model.recommend_from_history(h.movie_id.to_numpy(), ratings=h.rating.to_numpy() if ratings else None, k=10)
        assert not df.fallback.any() and not df.attrs["unknown_movie_ids"]
        frames.append(df.assign(user_id=u))
    fold = evaluate(pd.concat(frames, ignore_index=True), parts.test, k=10)
    assert own["n_users"] == fold["n_users"] == len(users)
    return own["ndcg@10"], fold["ndcg@10"]


def report(name, own, fold, t0):
    print(f"{name:>22}: own NDCG@10 {own:.4f}, fold-in {fold:.4f}, ratio {fold / own:.3f} ({time.perf_counter() - t0:.0f}s)")
    return fold / own


@pytest.mark.parametrize("name, params, floor", [("ease", {}, 0.95), ("itemknn", {}, 0.95), ("ease", {"max_items": 800}, 0.95)])
def test_item_item_fold_in_is_the_trained_answer(parts, name, params, floor):
    t0 = time.perf_counter()
    model = get_model(name, **params).fit(parts.train)
    own, fold = ndcg_own_and_foldin(model, parts)
    assert report(f"{name} {params or ''}", own, fold, t0) >= floor
    assert abs(fold - own) < 1e-6                     # x B, x W: the same row as in training


def test_popularity_ignores_the_history(parts):
    t0 = time.perf_counter()
    own, fold = ndcg_own_and_foldin(get_model("pop").fit(parts.train), parts)
    assert abs(report("pop", own, fold, t0) - 1) < 0.01


def test_factor_models_fold_in(parts):
    t0 = time.perf_counter()
    mf = get_model("matrix_factorization").fit(parts.train, parts.valid, num_epochs=5, progress=False)
    own, with_ratings = ndcg_own_and_foldin(mf, parts, ratings=True)
    assert report("mf (with ratings)", own, with_ratings, t0) >= 0.8
    _, without = ndcg_own_and_foldin(mf, parts)
    assert report("mf (5 stars each)", own, without, t0) >= 0.8
    t0 = time.perf_counter()
    bpr = get_model("bpr").fit(parts.train, parts.valid, num_epochs=10, progress=False)
    own, fold = ndcg_own_and_foldin(bpr, parts)
    assert report("bpr", own, fold, t0) >= 0.8
