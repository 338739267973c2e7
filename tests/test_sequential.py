"""Sequence models (SASRec, BERT4Rec, two-tower): leave-one-out floors on MovieLens, configs, training entry point.

Protocol (`movie_genie.models.sasrec.evaluate_leave_one_out`, the one of benchmarks/sequential.py): chronological
leave-one-out split (last interaction test, second-to-last valid); every model is fitted on train+valid and
evaluated on test by full ranking of the catalog with the train+valid movies masked, so the valid interaction is
part of every model's input at test time. Torch models train for the number of epochs that early stopping on the
valid items chose in benchmarks/sequential.py (EPOCHS below: selected on valid, never on test), with the training
settings of their config; pop and EASE (config l2) are fitted on train+valid. Everything is seeded.

Floors: SASRec's test NDCG@10 beats EASE's and popularity's by a clear margin (SASREC_MARGIN, relative);
BERT4Rec and two-tower beat popularity.
"""
from pathlib import Path
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from movie_genie.data import load_movielens, split
from movie_genie.models import get_model, get_model_class
from movie_genie.models.sasrec import evaluate_leave_one_out
from movie_genie.training import TrainerConfig, load_config, train_from_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SEQUENTIAL = ["sasrec", "bert4rec", "two_tower"]
DATASETS = ["ml-100k", "ml-latest-small"]
# epochs chosen by early stopping on the valid items (benchmarks/sequential.py, selection run, CPU)
EPOCHS = {"ml-100k": {"sasrec": 16, "bert4rec": 92, "two_tower": 16},
          "ml-latest-small": {"sasrec": 16, "bert4rec": 54, "two_tower": 36}}
SASREC_MARGIN = 1.15          # SASRec NDCG@10 >= 1.15 x EASE's and x popularity's


def fit_kwargs(name: str, dataset: str) -> dict:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    return {"config": TrainerConfig.from_config(cfg, progress=False), "num_epochs": EPOCHS[dataset][name], "device": "cpu"}


@pytest.fixture(scope="module", params=DATASETS)
def loo(request, shared_data):
    ds = load_movielens(request.param, shared_data)
    return request.param, ds, split(ds.ratings, "leave_one_out")


@pytest.fixture(scope="module")
def results(loo):
    name, ds, s = loo
    out = {"pop": evaluate_leave_one_out(lambda: get_model("pop"), s),
           "ease": evaluate_leave_one_out(lambda: get_model("ease", **_params("ease")), s)}
    for m in SEQUENTIAL:
        make = lambda m=m: get_model(m, **_params(m)).set_movies(ds.movies) if m == "two_tower" else get_model(m, **_params(m))
        out[m] = evaluate_leave_one_out(make, s, fit_kwargs=fit_kwargs(m, name), select_epochs=False)
    print(f"\n{name}: " + ", ".join(f"{m} {r['ndcg@10']:.4f} ({r['fit_time_s']:.0f}s)" for m, r in out.items()))
    return name, out


def _params(name: str) -> dict:
    return {k: v for k, v in load_config(CONFIGS / f"{name}.yaml")["model"].items() if k != "type"}


@pytest.mark.slow
def test_sasrec_beats_ease_and_pop(results):
    name, r = results
    sas, ease, pop = r["sasrec"]["ndcg@10"], r["ease"]["ndcg@10"], r["pop"]["ndcg@10"]
    assert r["sasrec"]["n_users"] == r["ease"]["n_users"] == r["pop"]["n_users"]
    assert sas >= SASREC_MARGIN * ease and sas >= SASREC_MARGIN * pop, (name, sas, ease, pop)


@pytest.mark.parametrize("model", ["bert4rec", "two_tower"])
@pytest.mark.slow
def test_beats_pop(results, model):
    name, r = results
    assert r[model]["ndcg@10"] > r["pop"]["ndcg@10"], (name, model, r[model]["ndcg@10"], r["pop"]["ndcg@10"])


# -- fast checks on the built-in sample ---------------------------------------------------------------

@pytest.mark.parametrize("name", SEQUENTIAL)
def test_config_matches_model_defaults(name):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert cfg["model"]["type"] == name
    assert {k: v for k, v in cfg["model"].items() if k != "type"} == get_model_class(name).default_params()
    assert cfg["data"]["split"] == "leave_one_out"


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_train_from_config(name, tmp_path):
    "One short run through the project's single training entry point: checkpoint, report, reload, sessions."
    from movie_genie.models import Recommender
    over = {"training.num_epochs": 1, "model.max_sequence_length": 20, "data.dataset": "sample", "training.device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = train_from_config(CONFIGS / f"{name}.yaml", over, output_dir=tmp_path / "models", reports_dir=tmp_path / "reports",
                                mlflow=False, progress=False)
    assert 0 < out["test_metrics"]["ndcg@10"] < 1 and len(out["history"]) == 1
    back = Recommender.from_pretrained(out["model_dir"])
    assert back.name == name and back.movies is not None
    user = int(back.user_map.ids[0])
    pd.testing.assert_frame_equal(back.recommend([user], k=5), out["model"].recommend([user], k=5), check_exact=False, atol=1e-5)
    recs = back.recommend_for_history([int(back.item_map.ids[0]), int(back.item_map.ids[1])], k=5)
    assert len(recs) == 5 and not recs.movie_id.isin(back.item_map.ids[:2]).any()


def test_seeded(sample):
    "Same seed, same metrics."
    s = split(sample.ratings[sample.ratings.user_id <= 200], "leave_one_out")
    kw = dict(fit_kwargs={"num_epochs": 2, "batch_size": 64}, select_epochs=False)
    a = evaluate_leave_one_out(lambda: get_model("sasrec", hidden_size=16, num_layers=1), s, **kw)
    b = evaluate_leave_one_out(lambda: get_model("sasrec", hidden_size=16, num_layers=1), s, **kw)
    assert a["ndcg@10"] == b["ndcg@10"] and a["recall@10"] == b["recall@10"]
