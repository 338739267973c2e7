"""The training entry point end to end: configs, MLflow runs read back from a real store, exact resume,
non-torch models, the CLI and the papermill notebook nbs/train.ipynb (all on the built-in sample, tiny)."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest
import torch
import yaml

from movie_genie.models import CheckpointError, Recommender, get_model_class
from movie_genie.training import (SCHEMA, Callback, ConfigError, OutputError, TrainingError, load_config, mlflow_name,
                                  train_from_config)

ROOT = Path(__file__).resolve().parent.parent
MF_CONFIG = ROOT / "configs" / "matrix_factorization.yaml"
TINY = {"model.embedding_dim": 16, "training.num_epochs": 4, "training.batch_size": 2048,
        "evaluation.metrics": ["rmse", "mae", "ndcg@10"]}


MOVIE_GENIE = Path(sys.executable).parent / "movie-genie"      # the console script, as a user runs it


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
    as_yaml = lambda d: json.loads(json.dumps(d))                  # tuples (immutable defaults) read back as YAML lists
    assert given == as_yaml({k: defaults[k] for k in given}), f"{path.name}: model section differs from {cls.__name__}'s defaults"
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


def test_every_numeric_setting_is_range_checked_and_named(tmp_path):
    """A negative patience trained 0 epochs and saved an untrained model as a success; the whole class is refused up
    front now: NaN, a wrong type or a negative value of any numeric setting, with the key in the message."""
    with pytest.raises(ConfigError, match=r"training\.early_stopping_patience: must be >= 0, got -1"):
        train_from_config(MF_CONFIG, {"training.early_stopping_patience": -1}, output_dir=tmp_path / "m", reports_dir=tmp_path / "r",
                          mlflow=False, progress=False)
    assert not any(tmp_path.iterdir())
    numeric = [(f"{sec}.{k}", spec) for sec, keys in SCHEMA.items() for k, (spec, _) in keys.items()
               if spec.rstrip("?").removeprefix("list[").rstrip("]") in ("int", "float")]
    for key, spec in numeric:
        for bad in (float("nan"), float("inf"), "lots", *([-1] if key != "data.min_rating" else [])):
            value = [bad] * 3 if spec.startswith("list") else bad
            with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")):
                load_config(MF_CONFIG, {key: value})
    for key, zero in [("training.batch_size", 0), ("training.learning_rate", 0.0), ("training.num_epochs", 0),
                      ("scheduler.factor", 0.0), ("evaluation.batch_size", 0), ("evaluation.ks", [0]), ("training.max_grad_norm", 0.0)]:
        with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")):
            load_config(MF_CONFIG, {key: zero})


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    "PyYAML (YAML 1.1) reads `1e-3` as a string; configs and params.yaml are read as YAML 1.2 reads them."
    text = MF_CONFIG.read_text().replace("learning_rate: 0.001", "learning_rate: 1e-3").replace("min_lr: 1.0e-05", "min_lr: 1E-5")
    assert "learning_rate: 1e-3" in text and "min_lr: 1E-5" in text
    (tmp_path / "mf.yaml").write_text(text)
    cfg = load_config(tmp_path / "mf.yaml", {"training.weight_decay": "2e-4"})           # (and numbers given as strings)
    assert cfg["training"]["learning_rate"] == 0.001 and cfg["scheduler"]["min_lr"] == 1e-5 and cfg["training"]["weight_decay"] == 2e-4
    assert cfg == load_config(MF_CONFIG, {"training.weight_decay": 2e-4})


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


def test_bpr_with_rowwise_adagrad_learns_and_resumes_exactly(tmp_path):
    "`optimizer.name: rowwise_adagrad`: every table sparse, one number of state per row, an exact resume."
    over = {"model.embedding_dim": 16, "training.num_epochs": 4, "training.early_stopping_patience": None,
            "optimizer.name": "rowwise_adagrad", "optimizer.fused": False, "training.learning_rate": 0.07}
    kw = dict(reports_dir=tmp_path / "reports", mlflow=False, progress=False)
    straight = train_from_config(ROOT / "configs" / "bpr.yaml", over, output_dir=tmp_path / "a", **kw)
    assert straight["history"][-1]["train_loss"] < straight["history"][0]["train_loss"] and straight["test_metrics"]["ndcg@10"] > 0.05
    with pytest.raises(KeyboardInterrupt):
        train_from_config(ROOT / "configs" / "bpr.yaml", over, output_dir=tmp_path / "b", callbacks=[Interrupt(2)], **kw)
    ck = torch.load(tmp_path / "b" / ".checkpoints" / "bpr" / "checkpoint.pt", weights_only=True)
    opt = ck["optimizers"][-1]                                           # RowWiseAdagrad, after Adagrad for the rest
    assert opt["state"] and all(set(st) == {"sum"} and st["sum"].dim() == 1 for st in opt["state"].values())
    resumed = train_from_config(ROOT / "configs" / "bpr.yaml", over, output_dir=tmp_path / "b", resume=True, **kw)
    assert no_time(resumed["history"]) == no_time(straight["history"])
    assert no_time(resumed["test_metrics"]) == no_time(straight["test_metrics"])


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


def cli(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    "Run the real `movie-genie` command (one thread: exact, comparable runs)."
    return subprocess.run([str(MOVIE_GENIE), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_one_error(p, *fragments) -> str:
    "Exit status 2, the last line of stderr the only `error:` line (containing `fragments`), no traceback."
    lines = p.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert p.returncode == 2 and errors == lines[-1:] and "Traceback" not in p.stderr, (p.returncode, p.stderr[-3000:])
    assert all(f in errors[0] for f in fragments), (fragments, errors[0])
    return errors[0]


def run_cli(argv) -> tuple[int, str]:
    "`movie_genie.cli.run` in this process: the exit status and stderr."
    from movie_genie.cli import run
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = run([str(a) for a in argv])
    return rc, err.getvalue()


def test_cli_bad_configs_are_one_error_line(tmp_path):
    out = ["--no-mlflow", "--quiet", "--output-dir", tmp_path / "models", "--reports-dir", tmp_path / "reports"]
    cases = [(["--config", MF_CONFIG, "--set", "training.early_stopping_patience=-1"], "training.early_stopping_patience: must be >= 0, got -1"),
             (["--config", MF_CONFIG, "--set", "training.learning_rate=NaN"], "training.learning_rate: must be a finite number"),
             (["--config", MF_CONFIG, "--set", "evaluation.batch_size=0"], "evaluation.batch_size: must be >= 1"),
             (["--config", ROOT / "configs"], "is a folder, not a YAML file", "matrix_factorization.yaml"),
             (["--config", tmp_path / "missing.yaml"], "missing.yaml not found")]
    for name, text, fragment in [("list", "- model: {type: ease}\n", "a YAML list, not a mapping"), ("null", "null\n", "the config is empty"),
                                 ("empty", "", "the config is empty"), ("no_type", "model: {embedding_dim: 8}\n", "with a `type` is required"),
                                 ("type_list", "model: {type: [ease, pop]}\n", "model.type: one model's registry name"),
                                 ("model_list", "model: [ease]\n", "with a `type` is required"),
                                 ("huge", MF_CONFIG.read_text().replace("embedding_dim: 128", "embedding_dim: 1000000000"), "GiB")]:
        (tmp_path / f"{name}.yaml").write_text(text)
        cases.append((["--config", tmp_path / f"{name}.yaml"], fragment))
    for args, *fragments in cases:
        rc, err = run_cli(["train", *args, *out])
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and all(f in lines[0] for f in fragments), (args, err)
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()     # refused before any work
    # the same through the real command: one line, no traceback
    assert_one_error(cli("train", "--config", tmp_path / "type_list.yaml", *out), "model.type")
    huge = assert_one_error(cli("train", "--config", tmp_path / "huge.yaml", *out), "GiB", "model.embedding_dim")
    print(huge)


def test_cli_malformed_training_checkpoint_is_one_error_line(tmp_path):
    ckpt = tmp_path / "models" / ".checkpoints" / "matrix_factorization" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    args = ["train", "--config", MF_CONFIG, "--no-mlflow", "--quiet", "--resume", "--set", "model.embedding_dim=8",
            "--output-dir", tmp_path / "models", "--reports-dir", tmp_path / "reports"]
    for content, fragment in [([1, 2, 3], "holds a list"), ({"epoch": 1, "net": {}}, "missing finished"), ("text", "holds a str"),
                              ({"epoch": "1", "finished": False, "net": {}, "history": [], "best_epoch": 1, "bad_epochs": 0, "rng": {}},
                               "wrong epoch")]:
        torch.save(content, ckpt)
        rc, err = run_cli(args)
        assert rc == 2 and err.strip().splitlines()[-1].startswith("error: ") and str(ckpt) in err and fragment in err, err
    ckpt.write_bytes(b"PK\x03\x04not a zip")
    assert_one_error(cli(*args), str(ckpt), "corrupt training checkpoint")
    assert not (tmp_path / "models" / "matrix_factorization").exists()


@pytest.fixture
def mount_tmpfs(tmp_path):
    "Mount a small tmpfs (root only; skipped otherwise): a really full disk, a really read-only folder. Unmounted after."
    mounted = []
    def mount(name, size="64k", read_only=False):
        d = tmp_path / name
        d.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True).returncode:
            pytest.skip("mounting a small tmpfs (a full disk) needs root")
        mounted.append(d)
        return d
    yield mount
    for d in mounted: subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_cli_disk_full_is_one_error_line(tmp_path, mount_tmpfs):
    "A full disk: torch's `inline_container.cc` error (the checkpoint, the model) and an ENOSPC OSError (the report)."
    full = mount_tmpfs("full", "64k")
    base = ["train", "--config", MF_CONFIG, "--no-mlflow", "--quiet", "--set", "model.embedding_dim=16", "--set", "training.num_epochs=1"]
    line = assert_one_error(cli(*base, "--output-dir", full / "models", "--reports-dir", tmp_path / "reports"),
                            "could not write the training checkpoint", str(full / "models"), "no space left")
    print(line)
    assert [p.name for p in full.rglob("*") if p.is_file()] == []                    # no partial file left
    assert_one_error(cli(*base, "--output-dir", tmp_path / "models", "--reports-dir", full / "reports"),
                     "could not write the report", str(full / "reports"), "no space left")
    assert not (full / "reports" / "matrix_factorization").exists()


def test_cli_unwritable_output_folder_is_refused_before_any_work(tmp_path, mount_tmpfs):
    if os.geteuid() == 0: locked = mount_tmpfs("locked", "1m", read_only=True)      # root writes through permissions
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
    base = ["train", "--config", MF_CONFIG, "--no-mlflow", "--quiet"]
    for extra, what in [(["--output-dir", locked / "models", "--reports-dir", tmp_path / "r"], "the model"),
                        (["--output-dir", tmp_path / "m", "--reports-dir", locked / "reports"], "the report")]:
        rc, err = run_cli([*base, *extra])
        assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"error: could not write {what} to {locked}"), err
        assert "Read-only file system" in err or "Permission denied" in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()
    (tmp_path / "a_file").write_text("")
    assert_one_error(cli(*base, "--output-dir", tmp_path / "a_file" / "models"), "is a file, not a folder")


def test_cli_resume_after_a_kill_ends_as_an_uninterrupted_run(tmp_path):
    """`movie-genie train --resume` on a run killed (SIGKILL) after its second epoch ends with the model and metrics of
    the same run uninterrupted; without a checkpoint it starts from scratch; either way it says which."""
    args = ["train", "--config", MF_CONFIG, "--no-mlflow", "--set", "model.embedding_dim=16", "--set", "training.num_epochs=8",
            "--set", "training.early_stopping_patience=null", "--set", "training.batch_size=256", "--reports-dir", tmp_path / "reports"]
    straight = cli(*args, "--output-dir", tmp_path / "a", "--resume")
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert f"no checkpoint at {tmp_path / 'a'}/.checkpoints/matrix_factorization/checkpoint.pt: starting from scratch" in straight.stderr
    proc = subprocess.Popen([str(MOVIE_GENIE), *map(str, args), "--output-dir", tmp_path / "b"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stderr:                              # the epoch's line comes once its checkpoint is written
        if "epoch   2/8" in line: proc.kill(); break
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -9 and not (tmp_path / "b" / "matrix_factorization").exists()
    resumed = cli(*args, "--output-dir", tmp_path / "b", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = [line for line in resumed.stderr.splitlines() if line.startswith("resuming from")]
    assert said and int(said[0].split("after epoch ")[1]) in range(2, 8), resumed.stderr[-2000:]
    assert no_time(json.loads(resumed.stdout)) == no_time(json.loads(straight.stdout))
    wa = torch.load(tmp_path / "a" / "matrix_factorization" / "pytorch_model.bin", weights_only=True)
    wb = torch.load(tmp_path / "b" / "matrix_factorization" / "pytorch_model.bin", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ha = json.loads((tmp_path / "reports" / "matrix_factorization" / "metrics.json").read_text())["history"]
    assert len(ha) == 8
    # --quiet still says which; a model fitted in one step has nothing to resume
    again = cli(*args, "--output-dir", tmp_path / "b", "--resume", "--quiet")
    assert again.returncode == 0 and f"resuming from {tmp_path / 'b'}/.checkpoints/matrix_factorization/checkpoint.pt" in again.stderr.splitlines()
    assert no_time(json.loads(again.stdout)) == no_time(json.loads(straight.stdout))
    pop = cli("train", "--config", ROOT / "configs" / "pop.yaml", "--no-mlflow", "--quiet", "--resume", "--output-dir", tmp_path / "p",
              "--reports-dir", tmp_path / "reports")
    assert pop.returncode == 0 and "pop: nothing to resume" in pop.stderr


# -- the papermill notebook ---------------------------------------------------------------------
def test_train_notebook_runs_with_papermill(tmp_path):
    """The notebook trains, reports and (with `resume`) continues an interrupted run: here one interrupted after its
    first epoch in this process, which the notebook finishes with the metrics of an uninterrupted run."""
    over = {"data.dataset": "sample", "model.embedding_dim": 8, "training.num_epochs": 2}    # what the parameters below set
    kw = dict(reports_dir=tmp_path / "straight-reports", mlflow=False, progress=False, verbose=False)
    straight = train_from_config(MF_CONFIG, over, output_dir=tmp_path / "straight", **kw)
    with pytest.raises(KeyboardInterrupt):
        train_from_config(MF_CONFIG, over, output_dir=tmp_path / "models", callbacks=[Interrupt(1)], **kw)
    out_nb = tmp_path / "train-out.ipynb"
    papermill.execute_notebook(str(ROOT / "nbs" / "train.ipynb"), str(out_nb), cwd=str(tmp_path), kernel_name="python3",
                               progress_bar=False,
                               parameters=dict(model="matrix_factorization", dataset="sample", embedding_dim=8, num_epochs=2,
                                               output_dir=str(tmp_path / "models"), reports_dir=str(tmp_path / "reports"),
                                               mlflow=False, resume=True, metrics_file=str(tmp_path / "metrics" / "mf.json")))
    assert (tmp_path / "models" / "matrix_factorization" / "config.json").exists()
    assert sorted(p.name for p in (tmp_path / "reports" / "matrix_factorization").iterdir()) == \
        ["config.yaml", "loss.png", "metrics.json", "metrics.png"]
    text = out_nb.read_text()
    for fragment in ["resuming from", "after epoch 1", "epoch   2/2", "image/png", "ndcg@10", "User ", "in test", "favourites"]:
        assert fragment in text, fragment
    assert "epoch   1/2" not in text                                           # (epoch 1 came from the checkpoint)
    assert json.loads((tmp_path / "models" / "matrix_factorization" / "config.json").read_text())["embedding_dim"] == 8
    saved = json.loads((tmp_path / "models" / "matrix_factorization" / "metrics.json").read_text())
    assert no_time(saved["test"]) == no_time(json.loads(json.dumps(straight["test_metrics"])))
    assert json.loads((tmp_path / "metrics" / "mf.json").read_text()) == saved          # metrics_file: the pipeline's copy
