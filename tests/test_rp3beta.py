"""RP3beta (nbs/13_rp3beta.ipynb): accuracy floors on ML-100K and ml-latest-small (skipped without ../shared/data),
tuning, config and bad parameters, benchmarks/split_seeds.py; checkpoints and serving are in tests/test_item_item.py
(shared with SLIM).

Protocol (the one of tests/test_baselines.py): every rating a positive, per-user random 80/10/10 split with seed 0,
hyperparameters chosen on valid with `tune` (fit on train, train masked), the chosen model fitted on train only and
evaluated on test by full ranking with the train and valid movies masked. Each dataset is tuned on its own valid split
(a wide search offline, the grids around its optimum here); ItemKNN runs with its tuned settings (k=20 on
ml-latest-small).

The issue (#15) asks for RP3beta's test NDCG@10 >= ItemKNN's on both datasets. Measured with the walk on the
rating-weighted graph (`weights="rating"`, chosen on both valid splits): ML-100K 0.3124 vs 0.3091, ml-latest-small
0.2499 vs 0.2490; both margins are well inside the paired bootstrap's noise (+0.0034 [-0.0055, +0.0121] and +0.0009
[-0.0119, +0.0133]). The binary walk gave 0.3126 and 0.2384. Over five split seeds (benchmarks/split_seeds.py, the
notebook's "Tuning" section) the weighted walk beats ItemKNN on every split of both datasets. A regression floor
(within 5 % of ItemKNN) holds on both as well.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from movie_genie.data import load_movielens, split
from movie_genie.evaluation import evaluate_model, tune
from movie_genie.models import Recommender, get_model, get_model_class

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
DATASETS = ["ml-100k", "ml-latest-small"]
TUNED = {"ml-100k": {"alpha": 0.7, "beta": 0.3, "k": 100, "normalize": True, "weights": "rating"},   # = the defaults and config
         "ml-latest-small": {"alpha": 0.6, "beta": 0.25, "k": 70, "normalize": True, "weights": "rating"}}
ITEMKNN = {"ml-100k": {}, "ml-latest-small": {"k": 20}}
# grids around each optimum of the offline search (binary: alpha 0-1.5, beta 0-0.8, k 20-500, normalize both ways, 480
# settings; rating-weighted: alpha 0.4-1, beta 0-0.6, k 50-200 around it), both edge weightings
GRIDS = {"ml-100k": {"alpha": [0.6, 0.7, 0.8], "beta": [0.0, 0.2, 0.3, 0.4], "k": [50, 100, 200], "normalize": [True],
                     "weights": ["binary", "rating"]},
         "ml-latest-small": {"alpha": [0.5, 0.6, 0.7], "beta": [0.0, 0.25], "k": [70, 100], "normalize": [True],
                             "weights": ["binary", "rating"]}}
MEASURED = {"ml-100k": (0.3124, 0.3091), "ml-latest-small": (0.2499, 0.2490)}     # (RP3beta, ItemKNN) test NDCG@10


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


def test_issue_floor(results):
    "Issue #15: RP3beta's test NDCG@10 >= ItemKNN's (within noise on both: see the docstring)."
    name, out = results
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


def split_seeds(*args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "split_seeds.py"), *args], capture_output=True,
                          text=True, timeout=600)


def test_split_seeds(shared_data, tmp_path):
    "benchmarks/split_seeds.py: seed 0 reproduces the figures above; every seed is a different split."
    r = split_seeds("--dataset", "ml-100k", "--seeds", "2", "--model", "itemknn", "--model", "rp3beta",
                    "--data-dir", str(shared_data), "--threads", "1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    table = json.loads((tmp_path / "ml-100k.json").read_text())
    assert set(table) == {"itemknn", "rp3beta"} and (tmp_path / "ml-100k.md").exists()
    rp3, knn = MEASURED["ml-100k"]
    assert table["rp3beta"]["seed 0"] == pytest.approx(rp3, abs=1e-3) and table["itemknn"]["seed 0"] == pytest.approx(knn, abs=1e-3)
    assert table["rp3beta"]["seed 1"] != table["rp3beta"]["seed 0"] and table["rp3beta"]["beats itemknn"].endswith("/2")


def test_split_seeds_bad_arguments(tmp_path):
    for args, frag in [(["--model", "nope"], "unknown model 'nope'"), (["--model", "ease {l2: 1}"], "not JSON"),
                       (["--model", "ease [1]"], "JSON object"), (["--model", 'rp3beta {"k": 0}'], "k (sources kept"),
                       (["--model", "ease", "--seeds", "0"], "--seeds"), (["--model", "ease", "--threads", "0"], "--threads"),
                       (["--model", "ease", "--dataset", "ml-1b", "--data-dir", str(tmp_path)], "ml-1b")]:
        r = split_seeds(*args, "--out", str(tmp_path))
        assert r.returncode == 2 and r.stderr.startswith("error: ") and frag in r.stderr, (args, r.stderr)
