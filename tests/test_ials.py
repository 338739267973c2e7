"""iALS (`movie_genie.models.ials`, nbs/14_ials.ipynb): the half-step against numpy, the accuracy floor on ML-100K,
checkpoints and serving.

Floor (issue #15): test NDCG@10 of iALS with its defaults (configs/ials.yaml, chosen on ML-100K's validation split)
at least implicit's ALS on the same split. implicit 0.7.3's `AlternatingLeastSquares` (conjugate gradient, 15
iterations, one thread), with factors, regularization and alpha chosen on valid from the grid of
`benchmarks/peers.py` (`IMPLICIT_GRIDS`: factors {32, 64, 128, 256} x regularization {3, 10, 30, 100} x alpha
{1, 2, 4, 10}), gets test NDCG@10 **0.3287** (factors 64, regularization 30, alpha 4; valid 0.2710); that number is the
floor here, so the test needs no `implicit`. (The earlier, narrower grid stopped at regularization 10, where it chose
32, 10, 1: test 0.3198.) Protocol: every rating a positive,
per-user random 80/10/10 split with seed 0, fit on train, full ranking with train and valid masked.

ml-latest-small (slow tests): the ML-100K defaults do not carry over (test 0.2178: with l2_exponent 1 each penalty grows
with the catalog, 5.4 times larger). Both libraries were tuned on this split's valid with comparable grids
(`benchmarks/peers.py --dataset ml-latest-small`): implicit over factors {64, 128, 256} x regularization {3, 10, 30, 100}
x alpha {1, 2, 4, 10} (48 fits) picks 128, 10, 1: valid 0.2083, test **0.2552** (IMPLICIT_ALS_MLS_NDCG10); ours over the
same grid with l2_exponent 0 (implicit's model: its alpha a is our alpha a - 1; at the 48 points the two differ by
0.0014 on valid in the median, 0.0111 at most, -0.0007 on average: different local optima of one loss; the best of
each, 0.2081 and 0.2083) and with the frequency-scaled penalty (l2_exponent 1, factors {128, 256}, alpha {2, 3, 5}, l2
{0.005, 0.01, 0.02}), 15 epochs. Best valid: 256 factors, alpha 3, l2 0.01, nu 1 (0.2087, test 0.2642), but it fits in
2.2x implicit's time, over the floor's 2x budget; the best setting inside the budget, 128 factors (TUNED_MLS: valid
0.2086, a tie; test **0.2597**, fit 0.56x implicit's), is the one asserted. Without the frequency-scaled penalty our best
is 0.2081 on valid (128 factors, alpha 0, l2 10: implicit's own choice).
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import yaml

from movie_genie.data import load_movielens, split
from movie_genie.evaluation import evaluate_model, tune
from movie_genie.models import CheckpointError, Recommender, get_model, get_model_class
from movie_genie.models.ials import IALS, IALS_SOLVERS, ials_l2, ials_solve, row_blocks

ROOT = Path(__file__).resolve().parent.parent
IMPLICIT_ALS_NDCG10 = 0.3287       # implicit's ALS on this split, chosen on valid (see above)
IMPLICIT_ALS_MLS_NDCG10 = 0.2552   # implicit's ALS on ml-latest-small's split, chosen on valid (see above)
TUNED_MLS = {"factors": 128, "alpha": 3.0, "l2": 0.01, "l2_exponent": 1.0, "epochs": 15}   # chosen on its valid (see above)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def ml_split(ml100k):
    return split(ml100k.ratings, "random", (0.8, 0.1, 0.1), seed=0)


@pytest.fixture(scope="module")
def fitted(sample_split):
    return get_model("ials", factors=16, epochs=5).fit(sample_split.train)


# -- the worked case -----------------------------------------------------------------------------
@pytest.mark.parametrize("exponent", [0.0, 1.0])
@pytest.mark.parametrize("solver", IALS_SOLVERS)
def test_half_step_solves_the_normal_equations(solver, exponent):
    "One half-step = each user's normal equations written out over every movie, solved by numpy (float64)."
    P = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=np.float32)
    a0, alpha, lam = 0.5, 3.0, 0.2
    C = sp.csr_matrix(P * (1 + alpha))
    Y = torch.from_numpy(np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32))
    l2 = ials_l2(C, lam, a0, exponent)
    W = np.where(P > 0, 1 + alpha, a0)
    assert np.allclose(l2.numpy(), lam * W.sum(1) ** exponent, rtol=1e-6)
    Yn = Y.double().numpy()
    want = np.array([np.linalg.solve(Yn.T @ (W[u][:, None] * Yn) + float(l2[u]) * np.eye(3), Yn.T @ (W[u] * P[u])) for u in range(4)])
    for pairs in (100, 2):                                   # one block; blocks of at most two watched pairs
        U = torch.zeros(4, 3)
        ials_solve(row_blocks(C, pairs, None if solver == "cg" else pairs), Y, U, l2, a0, solver, cg_steps=3)
        assert np.abs(U.numpy() - want).max() < 1e-4, (solver, pairs)


# -- accuracy on ML-100K ---------------------------------------------------------------------------
def test_floor_ml100k(ml_split):
    "Test NDCG@10 with the defaults >= implicit's ALS on the same split."
    m = evaluate_model(get_model("ials"), ml_split.train, ml_split.test, ml_split.valid, k=(10,))
    print({k: round(v, 4) for k, v in m.items()})
    assert m["n_users"] == 943 and m["n_cold_users"] == 0
    assert m["ndcg@10"] >= IMPLICIT_ALS_NDCG10, m["ndcg@10"]


@pytest.fixture(scope="module")
def mls_split(shared_data):
    return split(load_movielens("ml-latest-small", shared_data).ratings, "random", (0.8, 0.1, 0.1), seed=0)


@pytest.mark.slow
def test_floor_ml_latest_small(mls_split):
    "Test NDCG@10 with the settings chosen on ml-latest-small's valid >= implicit's ALS chosen the same way."
    s = mls_split
    m = evaluate_model(get_model("ials", **TUNED_MLS), s.train, s.test, s.valid, k=(10,))
    print({k: round(v, 4) for k, v in m.items()})
    assert m["ndcg@10"] == pytest.approx(0.2597, abs=1e-3)
    assert m["ndcg@10"] >= IMPLICIT_ALS_MLS_NDCG10, m["ndcg@10"]


@pytest.mark.slow
def test_tuned_on_valid_ml_latest_small(mls_split):
    "TUNED_MLS is what `tune` picks on ml-latest-small's valid from a grid around the optimum (128 factors, frequency-scaled)."
    grid = {"factors": [128], "alpha": [2.0, 3.0, 5.0], "l2": [0.005, 0.01, 0.02], "l2_exponent": [1.0], "epochs": [15]}
    best, table = tune("ials", grid, mls_split)
    print(table.head())
    assert best == TUNED_MLS


def test_defaults_are_tuned(ml_split):
    "The defaults are what `tune` picks on ML-100K's valid split (a small grid around the optimum of a wider search)."
    best, table = tune("ials", {"factors": [32, 64], "alpha": [1.5, 3.0], "l2": [0.015, 0.02, 0.03]}, ml_split)
    print(table.head())
    defaults = get_model_class("ials").default_params()
    assert {k: defaults[k] for k in best} == best


def test_config_matches_defaults():
    cfg = yaml.safe_load((ROOT / "configs" / "ials.yaml").read_text())
    model = dict(cfg["model"])
    assert model.pop("type") == "ials" and model == IALS.default_params()
    assert cfg["evaluation"]["monitor"] == "ndcg@10" and cfg["data"]["split"] == "random"


# -- the model ---------------------------------------------------------------------------------------
def test_loss_goes_down_and_beats_pop(sample_split):
    s = sample_split
    m = get_model("ials", factors=16, epochs=6)
    m.track_loss = True
    r = evaluate_model(m, s.train, s.test, s.valid, k=(10,))
    loss = np.array([h["loss"] for h in m.history])
    assert len(loss) == 6 and (np.diff(loss) <= 1e-5 * loss[:-1]).all(), loss
    pop = evaluate_model(get_model("pop"), s.train, s.test, s.valid, k=(10,))
    assert r["ndcg@10"] > pop["ndcg@10"] + 0.02, (r["ndcg@10"], pop["ndcg@10"])


def test_seeded(sample_split):
    a, b = (get_model("ials", factors=8, epochs=2, seed=3).fit(sample_split.train) for _ in range(2))
    assert torch.equal(a.item_factors, b.item_factors) and torch.equal(a.user_factors, b.user_factors)


def test_fold_in_is_the_user_half_step(fitted):
    m = fitted
    C = m.confidence()
    lu = ials_l2(C, m.l2, m.unobserved_weight, m.l2_exponent)
    for u in (0, 7, m.n_users - 1):
        x = torch.zeros(1, m.factors)
        ials_solve(row_blocks(C[u], 10**6, 10**6), m.item_factors, x, lu[u:u + 1], m.unobserved_weight, "cholesky")
        assert torch.allclose(m.fold_in(m.seen[u].indices).float(), x[0], atol=1e-4)
    h = m.item_map.id(m.seen[0].indices)
    fresh = m.recommend_from_history(h, k=10)
    assert not fresh.fallback.any() and fresh.because_movie_id.isin(h).all()
    assert len(set(fresh.movie_id) & set(m.recommend(m.user_map.id([0]), k=10).movie_id)) >= 7


def test_save_load_and_serve(fitted, sample_split, tmp_path):
    from movie_genie.serving import ModelService
    m, s = fitted, sample_split
    movies = load_movielens("sample").movies
    m.save_pretrained(tmp_path / "models" / "ials", metrics={"ndcg@10": 0.1}, movies=movies)
    back = Recommender.from_pretrained(tmp_path / "models" / "ials")
    assert isinstance(back, IALS) and back.get_params() == m.get_params()
    assert torch.equal(back.user_factors, m.user_factors) and torch.equal(back.item_factors, m.item_factors)
    users = s.test.user_id.unique()[:20]
    pd.testing.assert_frame_equal(back.recommend(users, k=10), m.recommend(users, k=10))
    svc = ModelService(tmp_path / "models")
    assert "ials" in svc.models and not svc.unavailable
    u = int(users[0])
    out = svc.recommend("ials", u, k=5)
    assert [r["movie_id"] for r in out["recommendations"]] == m.recommend([u], k=5).movie_id.tolist() and not out["fallback"]
    assert len(svc.recommend_batch("ials", users.tolist(), k=5)["results"]) == len(users)
    hist = m.item_map.id(m.seen[3].indices[:6]).tolist()
    sess = svc.recommend_session("ials", hist, k=5)
    want = m.recommend_from_history(hist, k=5)
    assert [r["movie_id"] for r in sess["recommendations"]] == want.movie_id.tolist()
    assert all(r["because_movie_id"] in hist for r in sess["recommendations"])
    sim = svc.similar_movies("ials", hist[0], k=5)
    assert [r["movie_id"] for r in sim["similar"]] == m.similar_items([hist[0]], k=5).similar_movie_id.tolist()


def test_bad_checkpoint_is_refused(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "ials")
    state = torch.load(tmp_path / "ials" / "pytorch_model.bin", weights_only=True)
    state["model.user_factors"] = state["model.user_factors"][:, :-1]
    torch.save(state, tmp_path / "ials" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="user_factors has shape"):
        Recommender.from_pretrained(tmp_path / "ials")


def test_bad_params():
    for bad, frag in [(dict(l2=0), "l2 must be positive"), (dict(alpha=-1), "alpha"), (dict(factors=0), "factors"),
                      (dict(solver="lu"), "cholesky"), (dict(cg_steps=0), "cg_steps"), (dict(device="tpu"), "device"),
                      (dict(gamma=1), "Unknown parameter")]:
        with pytest.raises(ValueError, match=frag):
            get_model("ials", **bad)


def test_train_from_config(tmp_path):
    "The project's training entry point with configs/ials.yaml (on the sample): checkpoint and reload."
    from movie_genie.training import train_from_config
    out = train_from_config(ROOT / "configs" / "ials.yaml", {"data.dataset": "sample"}, output_dir=tmp_path / "models",
                            reports_dir=tmp_path / "reports", mlflow=False, verbose=False, progress=False)
    assert 0.1 < out["test_metrics"]["ndcg@10"] < 1
    back = Recommender.from_pretrained(out["model_dir"])
    assert back.name == "ials" and back.get_params() == IALS.default_params()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("solver", IALS_SOLVERS)
def test_cuda_matches_cpu(sample_split, solver):
    cpu = get_model("ials", factors=16, epochs=3, solver=solver).fit(sample_split.train)
    gpu = get_model("ials", factors=16, epochs=3, solver=solver, device="cuda").fit(sample_split.train)
    assert gpu.item_factors.device.type == "cpu"
    assert torch.allclose(cpu.item_factors, gpu.item_factors, atol=1e-3), (cpu.item_factors - gpu.item_factors).abs().max()
