"""The training entry point end to end: configs, MLflow runs read back from a real store, exact resume,
non-torch models, the CLI and the papermill notebook nbs/train.ipynb (all on the built-in sample, tiny)."""
import contextlib
import io
import json
from pathlib import Path

import papermill
import pytest
import torch
import yaml

from movie_genie.models import CheckpointError, Recommender, get_model_class
from movie_genie.training import (Callback, ConfigError, TrainingError, load_config, mlflow_name, train_from_config)

ROOT = Path(__file__).resolve().parent.parent
MF_CONFIG = ROOT / "configs" / "matrix_factorization.yaml"
TINY = {"model.embedding_dim": 16, "training.num_epochs": 4, "training.batch_size": 2048,
        "evaluation.metrics": ["rmse", "mae", "ndcg@10"]}


def no_time(d):
    "Drop wall-clock fields (they differ between runs)."
    if isinstance(d, list): return [no_time(x) for x in d]
    return {k: v for k, v in d.items() if not k.endswith("time_s")}


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


# -- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_are_valid_and_match_model_defaults(path):
    cfg = load_config(path)
    cls = get_model_class(cfg["model"]["type"])
    given = {k: v for k, v in yaml.safe_load(path.read_text())["model"].items() if k != "type"}
    defaults = cls.default_params()
    assert given == {k: defaults[k] for k in given}, f"{path.name}: model section differs from {cls.__name__}'s defaults"
    assert cfg["data"]["dataset"] == "sample"


def test_config_errors_name_the_key_and_the_valid_values():
    with pytest.raises(ConfigError, match=r"training\.batch_sise.*batch_size.*learning_rate"):
        load_config(MF_CONFIG, {"training.batch_sise": 8})
    with pytest.raises(ConfigError, match=r"training\.num_epochs: expected int"):
        load_config(MF_CONFIG, {"training.num_epochs": "ten"})
    with pytest.raises(ConfigError, match=r"model\.type.*Available:.*bpr.*matrix_factorization"):
        load_config(MF_CONFIG, {"model.type": "svd"})
    with pytest.raises(ConfigError, match=r"model\.embeding_dim.*Valid: embedding_dim, dropout"):
        load_config(MF_CONFIG, {"model.embeding_dim": 8})
    with pytest.raises(ConfigError, match=r"model\.embedding_dim: expected int"):
        load_config(MF_CONFIG, {"model.embedding_dim": 8.5})
    with pytest.raises(ConfigError, match=r"scheduler\.name.*reduce_on_plateau"):
        load_config(MF_CONFIG, {"scheduler.name": "linear"})
    with pytest.raises(FileNotFoundError, match="matrix_factorization.yaml"):
        load_config(ROOT / "configs" / "nope.yaml")
    cfg = load_config(MF_CONFIG, {"model.type": "mf", "training.learning_rate": 1})     # alias, int for float
    assert cfg["model"]["type"] == "matrix_factorization" and cfg["training"]["learning_rate"] == 1.0


# -- a run read back from MLflow ----------------------------------------------------------------
def test_mlflow_run_is_complete(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient
    out = train_from_config(MF_CONFIG, TINY, output_dir=tmp_path / "models", reports_dir=tmp_path / "reports",
                            progress=False)
    assert out["tracking_uri"] == mlflow_uri
    client = MlflowClient(mlflow_uri)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "matrix_factorization" and exp.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())
    p = run.data.params
    assert p["model.type"] == "matrix_factorization" and p["model.embedding_dim"] == "16"
    assert p["training.num_epochs"] == "4" and p["data.dataset"] == "sample" and p["evaluation.monitor"] == "rmse"
    t = run.data.tags
    assert t["model_type"] == "matrix_factorization" and t["dataset"] == "sample" and t["split"] == "random"
    n = len(out["history"])
    for key in ["train_loss", "lr", "valid_rmse", "valid_mae", "valid_ndcg_at_10"]:
        hist = client.get_metric_history(out["run_id"], key)
        assert [m.step for m in hist] == list(range(1, n + 1)), key
    assert [m.value for m in client.get_metric_history(out["run_id"], "valid_rmse")] == \
        pytest.approx([h["valid_rmse"] for h in out["history"]])
    m = run.data.metrics
    assert m["test_rmse"] == pytest.approx(out["test_metrics"]["rmse"]) and m["test_rmse"] < 1.2
    assert m[mlflow_name("test_ndcg@10")] == pytest.approx(out["test_metrics"]["ndcg@10"])
    assert m["best_valid_rmse"] == pytest.approx(min(h["valid_rmse"] for h in out["history"]), rel=1e-5)
    report = {Path(a.path).name for a in client.list_artifacts(out["run_id"], "report")}
    assert {"metrics.json", "loss.png", "metrics.png", "config.yaml"} <= report
    model = {Path(a.path).name for a in client.list_artifacts(out["run_id"], "model")}
    assert {"config.json", "pytorch_model.bin", "metrics.json", "id_maps.json", "movies.parquet"} <= model
    local = Path(client.download_artifacts(out["run_id"], "report/metrics.json", str(tmp_path)))
    assert json.loads(local.read_text())["test"]["rmse"] == pytest.approx(out["test_metrics"]["rmse"])


def test_outputs_and_reload(tmp_path):
    out = train_from_config(MF_CONFIG, TINY, output_dir=tmp_path / "models", reports_dir=tmp_path / "reports",
                            mlflow=False, progress=False)
    assert out["run_id"] is None and not (tmp_path / "mlflow.db").exists()
    mdir, rdir = tmp_path / "models" / "matrix_factorization", tmp_path / "reports" / "matrix_factorization"
    assert out["model_dir"] == mdir and out["report_dir"] == rdir
    assert sorted(p.name for p in mdir.iterdir()) == ["config.json", "id_maps.json", "metrics.json", "movies.parquet", "pytorch_model.bin"]
    assert sorted(p.name for p in rdir.iterdir()) == ["config.yaml", "loss.png", "metrics.json", "metrics.png"]
    assert (rdir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((rdir / "metrics.json").read_text())
    assert len(metrics["history"]) == len(out["history"]) and metrics["best_epoch"] == out["best_epoch"]
    config = json.loads((mdir / "config.json").read_text())
    assert config["model_type"] == "matrix_factorization" and config["embedding_dim"] == 16 and config["num_items"] == config["n_items"]
    model = Recommender.from_pretrained(mdir)
    assert model.metrics["test"]["rmse"] == pytest.approx(out["test_metrics"]["rmse"])
    assert len(model.recommend([1, 2], k=5)) == 10 and model.movies is not None
    from movie_genie.models.matrix_factorization import MatrixFactorizationModel
    net = MatrixFactorizationModel.from_pretrained(mdir)
    assert net.embedding_dim == 16 and torch.equal(net.item_embedding.weight, model.net.item_embedding.weight)
    from movie_genie.serving import ModelService                     # the API server loads what training wrote
    svc = ModelService(tmp_path / "models")
    assert "matrix_factorization" in svc.models and not svc.unavailable
    assert len(svc.recommend("mf", 1, k=3)["recommendations"]) == 3


# -- resume -------------------------------------------------------------------------------------
class Interrupt(Callback):
    def __init__(self, after): self.after = after
    def on_epoch_end(self, trainer, record):
        if record["epoch"] == self.after: raise KeyboardInterrupt("simulated interruption")


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient
    over = {**TINY, "training.early_stopping_patience": None, "scheduler.name": "cosine", "model.dropout": 0.2}
    kw = dict(reports_dir=tmp_path / "reports", progress=False)
    straight = train_from_config(MF_CONFIG, over, output_dir=tmp_path / "a", **kw)
    with pytest.raises(KeyboardInterrupt):
        train_from_config(MF_CONFIG, over, output_dir=tmp_path / "b", callbacks=[Interrupt(2)], **kw)
    assert not (tmp_path / "b" / "matrix_factorization").exists()          # nothing half-written
    resumed = train_from_config(MF_CONFIG, over, output_dir=tmp_path / "b", resume=True, **kw)
    assert no_time(resumed["history"]) == no_time(straight["history"]) and len(straight["history"]) == 4
    assert len({h["lr"] for h in straight["history"]}) > 1                  # the scheduler state was resumed too
    assert no_time(resumed["test_metrics"]) == no_time(straight["test_metrics"])
    wa = torch.load(tmp_path / "a" / "matrix_factorization" / "pytorch_model.bin", weights_only=True)
    wb = torch.load(tmp_path / "b" / "matrix_factorization" / "pytorch_model.bin", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # the resumed training continued its MLflow run: every epoch logged once, and it finished
    client = MlflowClient(mlflow_uri)
    assert resumed["run_id"] != straight["run_id"]
    assert [m.step for m in client.get_metric_history(resumed["run_id"], "train_loss")] == [1, 2, 3, 4]
    assert client.get_run(resumed["run_id"]).info.status == "FINISHED"
    # a resume with another configuration is refused; a damaged checkpoint is a clear error
    with pytest.raises(TrainingError, match="different configuration"):
        train_from_config(MF_CONFIG, {**over, "training.learning_rate": 0.01}, output_dir=tmp_path / "b", resume=True,
                          mlflow=False, **kw)
    (tmp_path / "b" / ".checkpoints" / "matrix_factorization" / "checkpoint.pt").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(CheckpointError, match="corrupt"):
        train_from_config(MF_CONFIG, over, output_dir=tmp_path / "b", resume=True, mlflow=False, **kw)


# -- every model through the same entry point ---------------------------------------------------
def test_non_torch_model_goes_through_the_same_entry_point(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient
    out = train_from_config({"model": {"type": "pop"}}, output_dir=tmp_path / "models", reports_dir=tmp_path / "reports")
    assert out["history"] == [] and out["best_epoch"] is None and 0 < out["test_metrics"]["ndcg@10"] < 1
    assert (tmp_path / "models" / "pop" / "config.json").exists() and (tmp_path / "reports" / "pop" / "metrics.json").exists()
    run = MlflowClient(mlflow_uri).get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["model_type"] == "pop"
    assert run.data.metrics[mlflow_name("test_ndcg@10")] == pytest.approx(out["test_metrics"]["ndcg@10"])
    assert "training.batch_size" not in run.data.params


def test_bpr_trains_from_its_config(tmp_path):
    out = train_from_config(ROOT / "configs" / "bpr.yaml", {"model.embedding_dim": 16, "training.num_epochs": 2},
                            output_dir=tmp_path / "models", reports_dir=tmp_path / "reports", mlflow=False, progress=False)
    assert len(out["history"]) == 2 and "valid_ndcg@10" in out["history"][0]
    assert out["history"][1]["train_loss"] < out["history"][0]["train_loss"] and out["test_metrics"]["ndcg@10"] > 0.05
    assert json.loads((tmp_path / "models" / "bpr" / "config.json").read_text())["model_type"] == "bpr"


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_train(tmp_path, monkeypatch):
    from movie_genie.cli import run
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run(["train", "--config", str(MF_CONFIG), "--set", "training.num_epochs=1", "--set", "model.embedding_dim=8",
                  "--output-dir", str(tmp_path / "models"), "--no-mlflow"])
    assert rc == 0, err.getvalue()
    assert "rmse" in json.loads(out.getvalue())
    assert (tmp_path / "models" / "matrix_factorization" / "pytorch_model.bin").exists()
    assert (tmp_path / "reports" / "matrix_factorization" / "metrics.json").exists()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run(["train", "--config", str(MF_CONFIG), "--set", "training.batch_sise=3", "--no-mlflow"]) == 2
    assert err.getvalue().startswith("error:") and "batch_size" in err.getvalue()


# -- the papermill notebook ---------------------------------------------------------------------
def test_train_notebook_runs_with_papermill(tmp_path):
    out_nb = tmp_path / "train-out.ipynb"
    papermill.execute_notebook(str(ROOT / "nbs" / "train.ipynb"), str(out_nb), cwd=str(tmp_path), kernel_name="python3",
                               progress_bar=False,
                               parameters=dict(model="matrix_factorization", dataset="sample", embedding_dim=8, num_epochs=2,
                                               output_dir=str(tmp_path / "models"), reports_dir=str(tmp_path / "reports"),
                                               mlflow=False))
    assert (tmp_path / "models" / "matrix_factorization" / "config.json").exists()
    assert sorted(p.name for p in (tmp_path / "reports" / "matrix_factorization").iterdir()) == \
        ["config.yaml", "loss.png", "metrics.json", "metrics.png"]
    text = out_nb.read_text()
    for fragment in ["epoch   2/2", "image/png", "ndcg@10", "User ", "in test", "favourites"]:
        assert fragment in text, fragment
    assert json.loads((tmp_path / "models" / "matrix_factorization" / "config.json").read_text())["embedding_dim"] == 8
