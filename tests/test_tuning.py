"""Tuning with Optuna (`movie_genie.tuning`, `movie-genie tune`): the command line end to end on the sample, pruning
of a Trainer model, bad search spaces, reproducibility, and the floor on ML-100K.

Floor (issue #15): with 30 trials (seed 0) Optuna finds EASE and ItemKNN settings at least as good on valid as
today's grids (those of tests/test_baselines.py, small grids around the optimum of a wider offline search).
Protocol: ML-100K, every rating a positive, per-user random 80/10/10 split with seed 0, fit on train, valid
NDCG@10 with the training movies masked; the search spaces are the `search` sections of configs/ease.yaml and
configs/itemknn.yaml, as `movie-genie tune --config configs/<m>.yaml --trials 30 --set data.dataset=ml-100k` runs.
Measured (valid NDCG@10; test NDCG@10 of the same settings fitted on train in brackets): EASE grid 0.2701 (0.3265),
l2=250; Optuna 0.2706 (0.3268), l2=275. ItemKNN grid 0.2576 (0.3091), k=50, shrink=5, alpha=0.85; Optuna 0.2590
(0.3121), k=36, shrink=13.8, alpha=0.87. Other seeds: EASE 0.2706-0.2709 for seeds 0-4; ItemKNN 0.2590, 0.2521,
0.2595, 0.2591, 0.2444 (three of five above the grid; nbs/06a_tuning.ipynb discusses it).
"""
import contextlib
import io
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from movie_genie.cli import run
from movie_genie.data import generate_sample, split
from movie_genie.evaluation import evaluate_model, tune
from movie_genie.models import get_model
from movie_genie.training import ConfigError, TrainingData, load_config, read_yaml
from movie_genie.tuning import study_storage, tune_config, tune_split

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
GRIDS = {                                   # today's grids (tests/test_baselines.py)
    "ease": {"l2": [100.0, 200.0, 250.0, 300.0, 500.0, 1000.0]},
    "itemknn": {"k": [30, 50, 100], "shrink": [0.0, 5.0, 10.0], "alpha": [0.5, 0.85], "weighting": ["none"]},
}


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = run(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def store(tmp_path, monkeypatch):
    "A real MLflow SQLite store in a temporary folder (the study goes beside it, in optuna.db)."
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.fixture(scope="module")
def small():
    "A small synthetic dataset, split, as `tune_config` takes it (`data=`)."
    ds = generate_sample(n_users=300, n_movies=400, n_ratings=15_000)
    return TrainingData("sample", split(ds.ratings, "random", (0.8, 0.1, 0.1), seed=0), ds.movies, {"n_users": 300, "n_items": 400})


def test_cli_round_trip(store, one_thread):
    "tune on the sample: one parent run with a child per trial, the study beside mlflow.db, continued by name; the best config trains."
    from mlflow.tracking import MlflowClient
    reports = store / "reports"
    code, out, err = cli("tune", "--config", str(CONFIGS / "itemknn.yaml"), "--trials", "4", "--reports-dir", str(reports))
    assert code == 0, err
    r = json.loads(out)
    assert r["study"] == "itemknn" and r["monitor"] == "ndcg@10" and r["trials"] == {"complete": 4, "pruned": 0, "fail": 0}
    assert r["new_trials"] == 4                                           # the config's own trial among them
    assert r["storage"] == f"sqlite:///{store / 'optuna.db'}" == study_storage() and (store / "optuna.db").exists()
    assert set(r["best_params"]) == {"model.k", "model.shrink", "model.alpha", "model.weighting"}
    summary = json.loads((reports / "tune" / "itemknn" / "summary.json").read_text())
    first = pd.read_csv(reports / "tune" / "itemknn" / "trials.csv").iloc[0]      # a new study starts from the config's settings
    own = read_yaml(CONFIGS / "itemknn.yaml")["model"]
    assert [first[f"model.{k}"] for k in ("k", "shrink", "alpha", "weighting")] == [own[k] for k in ("k", "shrink", "alpha", "weighting")]
    assert summary["config_trial"] == 0 and summary["config_value"] == first["value"] <= r["best_value"]
    assert sum(l.startswith("trial ") for l in err.splitlines()) == 4 and "movie-genie train --config" in err
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    parent = client.get_run(r["mlflow_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["optuna.study"] == "itemknn"
    assert parent.data.metrics["best_valid_ndcg_at_10"] == r["best_value"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "tune")} >= {"tune/best.yaml", "tune/trials.csv", "tune/summary.json"}
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == [0, 1, 2, 3]
    assert max(c.data.metrics["best_valid_ndcg_at_10"] for c in children) == r["best_value"]
    assert all(set(c.data.params) == set(r["best_params"]) for c in children)
    # the same command again continues the study, under the same parent run
    code, out2, err2 = cli("tune", "--config", str(CONFIGS / "itemknn.yaml"), "--trials", "2", "--reports-dir", str(reports), "--quiet")
    r2 = json.loads(out2)
    assert code == 0 and r2["new_trials"] == 2 and sum(r2["trials"].values()) == 6 and r2["mlflow_run_id"] == r["mlflow_run_id"]
    assert r2["best_value"] >= r["best_value"] and err2 == ""
    assert len(client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")) == 6
    assert len(pd.read_csv(reports / "tune" / "itemknn" / "trials.csv")) == 6
    # the best config: the given one with the best settings; it trains, and gives the same valid figure
    best = Path(r2["best_config"])
    assert best == reports / "tune" / "itemknn" / "best.yaml"
    cfg = load_config(best)
    assert {f"model.{k}": v for k, v in cfg["model"].items() if k != "type"} == r2["best_params"]
    assert read_yaml(best)["data"] == read_yaml(CONFIGS / "itemknn.yaml")["data"]
    code, out3, err3 = cli("train", "--config", str(best), "--no-mlflow", "--quiet", "--output-dir", str(store / "models"),
                           "--reports-dir", str(reports))
    assert code == 0, err3
    trained = json.loads((reports / "itemknn" / "metrics.json").read_text())
    assert trained["valid"]["ndcg@10"] == pytest.approx(r2["best_value"], abs=1e-12)


def test_no_config_trial_and_prune_after(store, small, one_thread):
    "--no-config-trial leaves the first trial to the sampler; prune_from sets the pruner's first epoch (default: the patience)."
    common = dict(data=small, mlflow=False, log=None, reports_dir=store / "reports")
    own = tune_config(CONFIGS / "ease.yaml", trials=1, study="own", **common)
    free = tune_config(CONFIGS / "ease.yaml", trials=1, study="free", config_trial=False, **common)
    assert own.best_params == {"model.l2": read_yaml(CONFIGS / "ease.yaml")["model"]["l2"]} != free.best_params
    assert json.loads((store / "reports" / "tune" / "free" / "summary.json").read_text())["config_value"] is None
    cfg = {"model": {"type": "bpr", "embedding_dim": 8}, "training": {"num_epochs": 1, "early_stopping_patience": 7},
           "search": {"training.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}}
    for prune_from, expected in [(None, 7), (3, 3)]:
        tune_config(cfg, trials=1, study=f"p{expected}", prune_from=prune_from, **common)
        assert json.loads((store / "reports" / "tune" / f"p{expected}" / "summary.json").read_text())["prune_after"] == expected
    code, out, err = cli("tune", "--config", str(CONFIGS / "bpr.yaml"), "--prune-after", "0", "--no-mlflow")
    assert code == 2 and err.startswith("error: --prune-after: a positive number of epochs"), err


def test_restart_and_other_config(store, one_thread):
    "A study is continued only with the same config and space; --restart starts it afresh; --study names another."
    args = ["tune", "--config", str(CONFIGS / "ease.yaml"), "--trials", "2", "--reports-dir", str(store / "reports"), "--quiet", "--no-mlflow"]
    assert cli(*args)[0] == 0
    code, out, err = cli(*args, "--set", "model.max_items=500")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: study 'ease'") and "--restart" in err
    code, out, _ = cli(*args, "--set", "model.max_items=500", "--restart")
    assert code == 0 and json.loads(out)["trials"]["complete"] == 2
    code, out, _ = cli(*args, "--study", "ease-b")
    assert code == 0 and json.loads(out)["study"] == "ease-b" and (store / "reports" / "tune" / "ease-b" / "best.yaml").exists()
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(study_storage())) == ["ease", "ease-b"]


def test_trainer_model_pruned_and_tracked(store, small, one_thread):
    "A Trainer model: per-epoch curves in each child run; a hopeless trial is pruned (child run KILLED, tagged PRUNED)."
    from mlflow.tracking import MlflowClient
    cfg = {"model": {"type": "bpr", "embedding_dim": 16, "num_negatives": 2},
           "training": {"num_epochs": 5, "batch_size": 512, "device": "cpu", "early_stopping_patience": None},
           "evaluation": {"ks": [10], "metrics": ["ndcg@10"], "monitor": "ndcg@10"},
           "search": {"training.learning_rate": {"choices": [0.01, 0.02, 0.05, 1e-6]}}}
    r = tune_config(cfg, trials=4, data=small, reports_dir=store / "reports", log=None, seed=0,
                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
                    enqueue=[{"training.learning_rate": lr} for lr in (0.01, 0.02, 0.05, 1e-6)])   # three good ones, then a hopeless one
    states = [t.state.name for t in r.study.trials]
    assert states == ["COMPLETE"] * 3 + ["PRUNED"] and r.counts == {"complete": 3, "pruned": 1, "fail": 0}
    assert r.study.trials[-1].last_step == 2
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = {int(c.data.tags["optuna.trial"]): c for c in client.search_runs(
        [client.get_run(r.run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{r.run_id}'")}
    assert [runs[i].info.status for i in range(4)] == ["FINISHED"] * 3 + ["KILLED"] and runs[3].data.tags["optuna.state"] == "PRUNED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "valid_ndcg_at_10")] == [1, 2, 3, 4, 5]
    assert [m.step for m in client.get_metric_history(runs[3].info.run_id, "valid_ndcg_at_10")] == [1, 2]
    trials = pd.read_csv(store / "reports" / "tune" / "bpr" / "trials.csv")
    assert trials.state.tolist() == states and trials.last_epoch.tolist() == [5, 5, 5, 2]


@pytest.mark.parametrize("search, frags", [
    ({"model.l3": {"low": 1, "high": 2}}, ["search.model.l3", "unknown parameter for model 'ease'", "Valid: l2"]),
    ({"model.l2": {"low": 5000, "high": 10, "log": True}}, ["search.model.l2", "low (5000) must be below high (10)"]),
    ({"model.l2": {"low": 0, "high": 10, "log": True}}, ["search.model.l2", "log scale needs low > 0"]),
    ({"model.l2": {"low": 1, "high": 10, "log": "yes"}}, ["search.model.l2.log", "true or false"]),
    ({"model.l2": {"high": 10}}, ["search.model.l2", "missing low"]),
    ({"model.l2": {"low": 1, "high": 10, "scale": "log"}}, ["search.model.l2", "unknown field 'scale'"]),
    ({"model.l2": {"low": 1, "high": 10, "step": 4}}, ["search.model.l2.step", "does not divide"]),
    ({"model.l2": {"choices": "10, 100"}}, ["search.model.l2.choices", "non-empty list"]),
    ({"model.l2": {"choices": [10, "big"]}}, ["search.model.l2.choices", "'big' is not a valid value"]),
    ({"model.l2": {"choices": [10], "low": 1}}, ["search.model.l2", "either choices or a range"]),
    ({"model.device": {"low": 0, "high": 1}}, ["search.model.device", "choices"]),
    ({"training.learning_rate": {"low": 0.001, "high": 0.1}}, ["search.training.learning_rate", "not trained by the Trainer"]),
    ({"evaluation.monitor": {"choices": ["ndcg@10", "recall@10"]}}, ["search.evaluation.monitor", "cannot be searched"]),
    ({"data.min_rating": {"low": 1, "high": 4}}, ["search.data.min_rating", "cannot be searched"]),
    ({"l2": {"low": 1, "high": 2}}, ["search.l2", "SECTION.KEY"]),
    ({"model.l2.low": 10}, ["search.model.l2.low", "SECTION.KEY"]),
    ([{"model.l2": [1, 2]}], ["search: expected a mapping"]),
])
def test_bad_search_space(tmp_path, search, frags):
    "A bad space: one `error:` line naming the key, exit status 2, before any data is loaded or any study is made."
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"type": "ease"}, "search": search}))
    with pytest.raises(ConfigError) as e: load_config(path)
    assert all(f in str(e.value) for f in frags), str(e.value)
    code, out, err = cli("tune", "--config", str(path), "--no-mlflow", "--storage", f"sqlite:///{tmp_path / 'o.db'}",
                         "--reports-dir", str(tmp_path / "r"))
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: search") and all(f in err for f in frags), err
    assert not (tmp_path / "o.db").exists()


@pytest.mark.parametrize("model, search, frags", [
    ("itemknn", {"model.k": {"low": 10.5, "high": 50}}, ["search.model.k.low", "integer setting"]),
    ("itemknn", {"model.k": {"low": 10, "high": 50, "type": "float"}}, ["search.model.k.type"]),
    ("itemknn", {"model.weighting": {"choices": ["none", "okapi"]}}, ["search.model.weighting.choices", "okapi"]),
    ("bpr", {"training.learning_rate": {"low": -1, "high": 0.1}}, ["search.training.learning_rate.low", "must be > 0"]),
    ("bpr", {"training.seed": {"choices": [0, 1]}}, ["search.training.seed", "cannot be searched"]),
    ("bpr", {"optimizer.nme": {"choices": ["adam"]}}, ["search.optimizer.nme", "unknown key", "Valid keys of `optimizer`"]),
    ("bpr", {"optimizer.name": {"choices": ["adam", "adagrad"]}}, ["search.optimizer.name.choices", "adagrad"]),
    ("bpr", {"optimizer.betas": {"choices": [[0.9, 0.99]]}}, ["search.optimizer.betas.choices", "a number, a string"]),
])
def test_bad_search_space_other_models(model, search, frags):
    with pytest.raises(ConfigError) as e: load_config({"model": {"type": model}, "search": search})
    assert all(f in str(e.value) for f in frags), str(e.value)


def test_nothing_to_tune_and_bad_arguments(tmp_path):
    common = ["--no-mlflow", "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--reports-dir", str(tmp_path / "r")]
    for argv, frag in [(["--config", str(CONFIGS / "pop.yaml")], "has no `search` section"),
                       (["--config", str(CONFIGS / "ease.yaml"), "--trials", "0"], "--trials: a positive integer"),
                       (["--config", str(CONFIGS / "ease.yaml"), "--timeout", "-1"], "--timeout: a positive number"),
                       (["--config", str(CONFIGS / "ease.yaml"), "--study", "a/b"], "--study"),
                       (["--config", str(CONFIGS / "ease.yaml"), "--set", "model.l3=1"], "model.l3"),
                       (["--config", str(tmp_path / "none.yaml")], "not found")]:
        code, out, err = cli("tune", *argv, *common)
        assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error:") and frag in err, (argv, err)


def test_configs_declare_a_space():
    "Every model with a `search` section in its config; each space is valid and holds the config's own values."
    for name in ("ease", "itemknn", "rp3beta", "ials", "bpr", "multvae", "recvae"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg["search"], name
        for key, s in cfg["search"].items():
            sec, k = key.split(".")
            value = cfg[sec][k]
            assert value in s["choices"] if "choices" in s else s["low"] <= value <= s["high"], (name, key, value)


def test_same_seed_same_trials(tmp_path, small, one_thread):
    "The same seed gives the same trials with the same values; another seed, other trials."
    def study(seed, where):
        return tune_config(CONFIGS / "itemknn.yaml", trials=12, seed=seed, data=small, mlflow=False, log=None,
                           storage=f"sqlite:///{tmp_path / where}.db", reports_dir=tmp_path / where).study
    a, b, c = study(0, "a"), study(0, "b"), study(1, "c")
    assert [(t.params, t.value) for t in a.trials] == [(t.params, t.value) for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    assert (tmp_path / "a" / "tune" / "itemknn" / "best.yaml").read_text().split("\n", 2)[2] == \
           (tmp_path / "b" / "tune" / "itemknn" / "best.yaml").read_text().split("\n", 2)[2]


def test_evaluation_tune_is_the_grid(small):
    "`movie_genie.evaluation.tune` (Optuna's grid sampler now) gives the table of the hand-written loop it replaced."
    s = small.split
    grid = {"l2": [50.0, 500.0, 5000.0]}
    best, table = tune("ease", grid, s)
    by_hand = [evaluate_model(get_model("ease", l2=v), s.train, s.valid, None, k=(10,))["ndcg@10"] for v in grid["l2"]]
    assert table["l2"].tolist() == [grid["l2"][i] for i in sorted(range(3), key=lambda i: -by_hand[i])]
    assert table["ndcg@10"].tolist() == sorted(by_hand, reverse=True) and best == {"l2": table.loc[0, "l2"]}
    best2, table2 = tune("ease", {"l2": {"low": 10, "high": 5000, "log": True}}, s, trials=8)
    assert len(table2) == 8 and table2.loc[0, "ndcg@10"] == table2["ndcg@10"].max()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_floor_ml100k(name, shared_data, ml100k, tmp_path, one_thread):
    "30 trials of Optuna (seed 0) over the config's space reach at least the best valid NDCG@10 of today's grid."
    s = split(ml100k.ratings, "random", (0.8, 0.1, 0.1), seed=0)
    grid_best, grid_table = tune(name, GRIDS[name], s, metric="ndcg@10", k=(10,))
    r = tune_config(CONFIGS / f"{name}.yaml", trials=30, seed=0, overrides={"data.dataset": "ml-100k", "data.data_dir": str(shared_data)},
                    mlflow=False, storage=f"sqlite:///{tmp_path / 'optuna.db'}", reports_dir=tmp_path, log=None,
                    config_trial=False)       # the configs hold the grids' optima: the sampler alone has to find them
    print(f"{name}: grid {grid_table.loc[0, 'ndcg@10']:.4f} {grid_best}; optuna {r.best_value:.4f} {r.best_params} "
          f"(trial {r.best_trial})")
    assert r.best_value >= grid_table.loc[0, "ndcg@10"], (r.best_value, grid_table.loc[0, "ndcg@10"])
