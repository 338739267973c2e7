"""RP3beta (nbs/13_rp3beta.ipynb): accuracy floors on ML-100K and ml-latest-small (skipped without ../shared/data),
tuning, config and bad parameters; checkpoints and serving are in tests/test_item_item.py (shared with SLIM).

Protocol (the one of tests/test_baselines.py): every rating a positive, per-user random 80/10/10 split with seed 0,
hyperparameters chosen on valid with `tune` (fit on train, train masked), the chosen model fitted on train only and
evaluated on test by full ranking with the train and valid movies masked. Each dataset is tuned on its own valid split
(a wide search offline, the grids around its optimum here); ItemKNN runs with its tuned settings (k=20 on
ml-latest-small).

The issue (#15) asks for RP3beta's test NDCG@10 >= ItemKNN's on both datasets. Measured: ML-100K 0.3126 vs 0.3091
(met); ml-latest-small 0.2384 vs 0.2490 (not met: 4 % short with the settings chosen on valid, alpha=0.6, beta=0,
k=100; see the notebook's "Tuning" section). A wider search on valid (alpha 0.4-1.3, beta 0-0.9, k 10-1000; top-k by
rows as in Dacrema et al.'s RP3betaRecommender, by columns, normalised or not; alpha before or after the product) finds
nothing better than 0.2005 on valid (ItemKNN 0.2015): the implementation is right, the model is weaker here. The issue's floor is asserted on both, as a strict xfail on
ml-latest-small, so that a change that meets it is noticed; a regression floor (within 5 % of ItemKNN) holds on both.
"""
from pathlib import Path

import pytest
import yaml

from movie_genie.data import load_movielens, split
from movie_genie.evaluation import evaluate_model, tune
from movie_genie.models import Recommender, get_model, get_model_class

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DATASETS = ["ml-100k", "ml-latest-small"]
TUNED = {"ml-100k": {"alpha": 0.7, "beta": 0.3, "k": 100, "normalize": True},        # = the class defaults and config
         "ml-latest-small": {"alpha": 0.6, "beta": 0.0, "k": 100, "normalize": True}}
ITEMKNN = {"ml-100k": {}, "ml-latest-small": {"k": 20}}
# grids around each optimum of the offline search (alpha 0-1.5, beta 0-0.8, k 20-500, normalize both ways: 480 settings)
GRIDS = {"ml-100k": {"alpha": [0.6, 0.7, 0.8], "beta": [0.0, 0.2, 0.3, 0.4], "k": [50, 100, 200], "normalize": [True]},
         "ml-latest-small": {"alpha": [0.5, 0.6, 0.7], "beta": [0.0, 0.2, 0.3], "k": [50, 100, 200], "normalize": [True]}}
MEASURED = {"ml-100k": (0.3126, 0.3091), "ml-latest-small": (0.2384, 0.2490)}     # (RP3beta, ItemKNN) test NDCG@10


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module", params=DATASETS)
def data(request, shared_data):
    ds = load_movielens(request.param, shared_data)
    return request.param, split(ds.ratings, "random", (0.8, 0.1, 0.1), seed=0)


@pytest.fixture(scope="module")
def results(data):
    "dataset -> {model: test metrics}, RP3beta and ItemKNN with their tuned settings."
    name, s = data
    out = {m: evaluate_model(get_model(m, **p), s.train, s.test, s.valid, k=(10,))
           for m, p in (("rp3beta", TUNED[name]), ("itemknn", ITEMKNN[name]))}
    print(f"\n{name}: " + ", ".join(f"{m} {r['ndcg@10']:.4f} (fit {r['fit_time_s']:.2f}s)" for m, r in out.items()))
    return name, out


def test_measured(results):
    "RP3beta's figures quoted in the notebook and above, reproduced (the fit is deterministic)."
    name, out = results
    assert out["rp3beta"]["ndcg@10"] == pytest.approx(MEASURED[name][0], abs=1e-3)
    assert out["rp3beta"]["n_cold_users"] == 0


def test_regression_floor(results):
    name, out = results
    assert out["rp3beta"]["ndcg@10"] >= 0.95 * out["itemknn"]["ndcg@10"], (name, out)


def test_issue_floor(results, request):
    "Issue #15: RP3beta's test NDCG@10 >= ItemKNN's (not met on ml-latest-small: a strict xfail there)."
    name, out = results
    if name == "ml-latest-small":
        request.applymarker(pytest.mark.xfail(strict=True, reason="RP3beta 0.2384 < ItemKNN 0.2490 on test (see the docstring)"))
    assert out["rp3beta"]["ndcg@10"] >= out["itemknn"]["ndcg@10"], out


def test_tuned_on_valid(data):
    "The settings used above (and the class defaults, for ML-100K) are what `tune` picks on valid."
    name, s = data
    best, table = tune("rp3beta", GRIDS[name], s, metric="ndcg@10", k=(10,))
    print(f"\n{name}:\n{table.head(5).round(4).to_string()}")
    assert best == TUNED[name]


def test_defaults_and_config():
    assert get_model_class("rp3beta").default_params() == TUNED["ml-100k"]
    cfg = yaml.safe_load((CONFIGS / "rp3beta.yaml").read_text())
    model = dict(cfg["model"])
    assert model.pop("type") == "rp3beta" and model == get_model_class("rp3beta").default_params()
    assert cfg["evaluation"]["monitor"] == "ndcg@10" and cfg["data"]["split"] == "random"


def test_train_from_config(tmp_path):
    "The project's training entry point with configs/rp3beta.yaml (on the sample): checkpoint and reload."
    from movie_genie.training import train_from_config
    out = train_from_config(CONFIGS / "rp3beta.yaml", {"data.dataset": "sample"}, output_dir=tmp_path / "models",
                            reports_dir=tmp_path / "reports", mlflow=False, verbose=False, progress=False)
    assert 0 < out["test_metrics"]["ndcg@10"] < 1
    back = Recommender.from_pretrained(out["model_dir"])
    assert back.name == "rp3beta" and back.get_params() == get_model_class("rp3beta").default_params()


def test_bad_params():
    for bad, frag in [(dict(k=0), "k (sources"), (dict(alpha=-0.1), "alpha"), (dict(beta=float("inf")), "beta"),
                      (dict(normalize="false"), "normalize"), (dict(gamma=1), "Unknown parameter")]:
        with pytest.raises(ValueError, match=frag.replace("(", r"\(")):
            get_model("rp3beta", **bad)
