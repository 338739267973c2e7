"""SLIM (`movie_genie.models.slim`, nbs/15_slim.ipynb): the columns against a direct solution of the objective,
parallel = sequential, the accuracy floors on ML-100K and ml-latest-small (skipped without ../shared/data),
tuning and config; checkpoints and serving are in tests/test_item_item.py (shared with RP3beta).

Protocol (the one of tests/test_baselines.py): every rating a positive, per-user random 80/10/10 split with seed 0,
hyperparameters chosen on valid (fit on train, train masked), the chosen model fitted on train only and evaluated
on test by full ranking with the train and valid movies masked. Each dataset is tuned on its own valid split
(offline, see the notebook's "Tuning" section; ML-100K's choice is checked here from a grid around it).

Floor (issue #15): SLIM's test NDCG@10 >= 0.98 x EASE's on both datasets. EASE (l2=250 on ML-100K, l2=100 on
ml-latest-small) gets 0.3265 and 0.2698 (checked here too). Measured: ML-100K, with the defaults l1=0.5, l2=150,
topk=300 (chosen on valid, `test_tuned_on_valid`): 0.3290 (met, above EASE); ml-latest-small, with l1=1, l2=60,
topk=200 chosen on its own valid (an offline search of 9 (l1, l2) pairs, see the notebook): 0.2702 (met, above EASE).
The fits are deterministic (cyclic coordinate descent), whatever `n_jobs`. Slow: a SLIM fit takes about 12 s on
ML-100K and 1.5 to 4 minutes on ml-latest-small on this 2-core machine (`n_jobs=2`).
"""
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml
from scipy.optimize import minimize

from movie_genie.data import load_movielens, split
from movie_genie.evaluation import evaluate_model, tune
from movie_genie.models import InsufficientMemoryError, Recommender, get_model, get_model_class, list_models
from movie_genie.models.slim import SLIM, sklearn_penalty, slim_weights

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DATASETS = ["ml-100k", "ml-latest-small"]
TUNED = {"ml-100k": {"l1": 0.5, "l2": 150.0, "topk": 300},             # = the class defaults and config
         "ml-latest-small": {"l1": 1.0, "l2": 60.0, "topk": 200}}
EASE = {"ml-100k": {"l2": 250.0}, "ml-latest-small": {"l2": 100.0}}
EASE_NDCG10 = {"ml-100k": 0.3265, "ml-latest-small": 0.2698}                # EASE's test NDCG@10 on these splits
MEASURED = {"ml-100k": 0.3290, "ml-latest-small": 0.2702}                                                     # SLIM's test NDCG@10 with TUNED
GRID_100K = {"l1": [0.3, 0.5, 1.0], "l2": [100.0, 150.0], "topk": [300]}   # around the optimum of the offline search


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


# -- the columns ------------------------------------------------------------------------------------
def reference(X, l1, l2):
    "SLIM's columns by L-BFGS-B on the smooth form of the objective (w >= 0, so ||w||_1 = sum(w)), dense float64."
    D = X.toarray().astype(np.float64)
    n = D.shape[1]
    G, W = D.T @ D, np.zeros((n, n))
    for j in range(n):
        q = D.T @ D[:, j]
        f = lambda w: (0.5 * w @ G @ w - q @ w + l1 * w.sum() + 0.5 * l2 * w @ w, G @ w - q + l1 + l2 * w)
        W[:, j] = minimize(f, np.zeros(n), jac=True, method="L-BFGS-B", bounds=[(0, 0) if i == j else (0, None) for i in range(n)],
                           options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000}).x
    return W


@pytest.mark.parametrize("l1, l2", [(0.5, 1.0), (2.0, 5.0), (0.0, 3.0), (1.0, 0.1)])
def test_columns_solve_the_objective(l1, l2):
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((50, 20)) < rng.uniform(0.1, 0.5, (50, 1))).astype(np.float32))
    W = slim_weights(X, l1, l2, topk=100, max_iter=10_000, tol=1e-10).toarray().astype(np.float64)
    assert W.min() >= 0 and np.diag(W).sum() == 0 and (W > 0).any()
    assert np.abs(W - reference(X, l1, l2)).max() < 1e-4


def test_worked_case():
    "Two movies sharing one user: W_01 = max(0, 1 - l1) / (2 + l2)."
    X = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 1]], dtype=np.float32))
    for l1, l2 in [(0.5, 1.0), (0.0, 2.0), (0.9, 10.0), (1.0, 1.0), (3.0, 0.0)]:
        w = max(0.0, 1 - l1) / (2 + l2)
        assert np.allclose(slim_weights(X, l1, l2, tol=1e-12).toarray(), [[0, w], [w, 0]], atol=1e-6)
    alpha, ratio = sklearn_penalty(3.0, 7.0, 100)
    assert alpha == pytest.approx(0.1) and ratio == pytest.approx(0.3)


def test_parallel_is_sequential_and_topk(fitted):
    "Processes and chunks that do not divide the catalog give exactly the one-process weights; topk keeps the largest."
    _, _, m = fitted
    W = slim_weights(m.seen, m.l1, m.l2, m.topk, n_jobs=2, chunk_size=370)
    assert (W != m.W).nnz == 0 and (np.diff(W.tocsc().indptr) <= m.topk).all()
    rng = np.random.default_rng(2)
    X = sp.csr_matrix((rng.random((200, 80)) < rng.uniform(0.05, 0.4, (200, 1))).astype(np.float32))
    full, cut = (slim_weights(X, 0.5, 5.0, k).toarray() for k in (10**6, 4))
    for j in range(80):
        f, c = full[:, j], cut[:, j]
        assert np.allclose(np.sort(c[c > 0])[::-1], np.sort(f[f > 0])[::-1][:4])


# -- accuracy on MovieLens -------------------------------------------------------------------------
@pytest.fixture(scope="module", params=DATASETS)
def data(request, shared_data):
    ds = load_movielens(request.param, shared_data)
    return request.param, split(ds.ratings, "random", (0.8, 0.1, 0.1), seed=0)


@pytest.mark.slow
def test_floor(data):
    "Issue #15: SLIM's test NDCG@10 with its tuned settings >= 0.98 x EASE's (and the figure quoted, reproduced)."
    name, s = data
    m = evaluate_model(get_model("slim", **TUNED[name], n_jobs=2), s.train, s.test, s.valid, k=(10,))
    print(f"\n{name}: SLIM {m['ndcg@10']:.4f} (fit {m['fit_time_s']:.1f}s, 2 processes), EASE {EASE_NDCG10[name]}")
    assert m["n_cold_users"] == 0
    assert m["ndcg@10"] == pytest.approx(MEASURED[name], abs=1e-3)
    assert m["ndcg@10"] >= 0.98 * EASE_NDCG10[name], m["ndcg@10"]


@pytest.mark.slow
def test_ease_figures(data):
    "EASE's numbers used above, on the same split."
    name, s = data
    assert evaluate_model(get_model("ease", **EASE[name], device="cpu"), s.train, s.test, s.valid, k=(10,))["ndcg@10"] \
        == pytest.approx(EASE_NDCG10[name], abs=1e-3)


@pytest.mark.slow
def test_tuned_on_valid(ml100k):
    """The defaults are what `tune` picks on ML-100K's valid split from a grid around them (ml-latest-small's search:
    the notebook; a fit there takes minutes)."""
    s = split(ml100k.ratings, "random", (0.8, 0.1, 0.1), seed=0)
    best, table = tune("slim", {**GRID_100K, "n_jobs": [2]}, s, metric="ndcg@10", k=(10,))
    print(f"\n{table.round(4).to_string()}")
    best.pop("n_jobs")
    assert best == TUNED["ml-100k"]


def test_defaults_and_config():
    assert "slim" in list_models()
    defaults = get_model_class("slim").default_params()
    assert {k: defaults[k] for k in TUNED["ml-100k"]} == TUNED["ml-100k"]
    cfg = yaml.safe_load((CONFIGS / "slim.yaml").read_text())
    model = dict(cfg["model"])
    assert model.pop("type") == "slim" and model == defaults
    assert cfg["evaluation"]["monitor"] == "ndcg@10" and cfg["data"]["split"] == "random"


# -- the model ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(sample):
    s = split(sample.ratings, "random", seed=0)
    return sample, s, get_model("slim").fit(s.train, s.valid)


def test_scores_and_fold_in(fitted):
    sample, s, m = fitted
    users = np.array([0, 3, m.n_users - 1])
    assert np.allclose(m._score(users).numpy(), m.seen[users].toarray() @ m.W.toarray(), atol=1e-5)
    u = m.user_map.ids[3]
    hist = m.item_map.id(m.seen[3].indices).tolist()
    fresh, own = m.recommend_from_history(hist, k=10), m.recommend([u], k=10)
    assert fresh.movie_id.tolist() == own.movie_id.tolist() and np.allclose(fresh.score, own.score, atol=1e-5)
    H = m.seen[3].indices
    assert torch.allclose(m._score_history(H, None), Recommender._score_history(m, H, None))   # = the base class's rule
    assert (m._because(H, m.item_map.index(fresh.movie_id)) == Recommender._because(m, H, m.item_map.index(fresh.movie_id))).all()
    sim = m.similar_items(hist[:1], k=5)
    i = m.item_map.index(hist[:1])[0]
    row = m.W[i].toarray().ravel(); row[i] = -np.inf
    assert np.allclose(sim.score, np.sort(row)[::-1][:5]) and hist[0] not in set(sim.similar_movie_id)
    pop = evaluate_model(get_model("pop"), s.train, s.test, s.valid, k=(10,))
    assert evaluate_model(m, s.train, s.test, s.valid, k=(10,), fit=False)["ndcg@10"] > pop["ndcg@10"]


def test_train_from_config(tmp_path):
    "The project's training entry point with configs/slim.yaml (on the sample): checkpoint and reload."
    from movie_genie.training import train_from_config
    out = train_from_config(CONFIGS / "slim.yaml", {"data.dataset": "sample"}, output_dir=tmp_path / "models",
                            reports_dir=tmp_path / "reports", mlflow=False, verbose=False, progress=False)
    assert 0 < out["test_metrics"]["ndcg@10"] < 1
    back = Recommender.from_pretrained(out["model_dir"])
    assert back.name == "slim" and back.get_params() == get_model_class("slim").default_params()


def test_bad_params():
    for bad, frag in [(dict(topk=0), "topk"), (dict(l1=-0.1), "l1"), (dict(l2=float("inf")), "l2"),
                      (dict(l1=0, l2=0), "both be 0"), (dict(n_jobs=0), "n_jobs"), (dict(gamma=1), "Unknown parameter")]:
        with pytest.raises(ValueError, match=frag):
            get_model("slim", **bad)
    with pytest.raises(InsufficientMemoryError, match="model.topk"):
        get_model("slim", topk=10**6).check_memory(10**6, 10**6)
