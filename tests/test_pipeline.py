"""The DVC pipeline (dvc.yaml, params.yaml) end to end on the built-in sample, in a temporary git copy of the
repository, as a fresh clone would run it: `dvc repro` runs every stage and tracks every run in MLflow, a second
`dvc repro` does nothing, changing one model's parameter re-runs only that model and the comparison, and
`dvc metrics show|diff`, `dvc params diff` and `dvc plots show` work, and the README's main job leaves
`git status` clean. Tiny settings (1 epoch, small vectors) keep it to a few minutes."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=Movie Genie tests", "-c", "user.email=tests@movie-genie.invalid", "-c", "commit.gpgsign=false"]


def sh(args, cwd, env, timeout=1200) -> str:
    "Run a command; fail with its output if it fails. Returns stdout and stderr together."
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"`{' '.join(map(str, args))}` failed ({p.returncode}):\n{out[-6000:]}"
    return out


def ran(output: str) -> list[str]:
    "The stages a `dvc repro` output says it ran."
    return re.findall(r"Running stage '([^']+)'", output)


def test_params_yaml_trains_every_config_as_it_is():
    """The committed params.yaml has a stage for every configs/<name>.yaml and, but for the quick run's epoch cap
    (training.num_epochs) and the data folder, trains each model exactly as its config says: the settings behind
    the README's numbers."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs").glob("*.yaml"))}
    missing = sorted(set(configs) - set(params["models"]))
    assert not missing, f"configs {missing} have no stage: add `<name>: {{}}` under `models:` in params.yaml"
    for name, own in params["models"].items():
        assert name in configs, f"params.yaml: models.{name} has no configs/{name}.yaml"
        sections = {s: dict(params.get(s) or {}) for s in ("data", "training", "optimizer", "scheduler", "evaluation")}
        for section, values in (own or {}).items(): sections.setdefault(section, {}).update(values)
        sections["training"].pop("num_epochs", None)                    # the quick run's cap
        sections["data"].pop("data_dir", None)                          # where the raw files are, not what they are
        for section, values in sections.items():
            for key, value in values.items():
                if value is None: continue                      # null keeps the config's value
                want = configs[name].get(section, {}).get(key)
                assert value == want, f"params.yaml sets {section}.{key} = {value!r} for {name}, configs/{name}.yaml says {want!r}"
    for stage in ("compare", "sequential"):
        listed = params[stage]["models"].split(",")
        assert set(listed) <= set(configs), f"params.yaml: {stage}.models {listed} names a model without a config"


def copy_checkout(dest: Path):
    "Copy what a clone of this checkout would hold (tracked and new, not ignored, files; working-tree versions)."
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    if not (ROOT / ".git").exists(): pytest.skip("not a git checkout: the pipeline test copies the checkout's files")
    tmp = tmp_path_factory.mktemp("pipeline")
    repo = tmp / "repo"
    repo.mkdir()
    copy_checkout(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["training"]["num_epochs"] = 1                      # tiny settings: the pipeline, not the models, is tested
    for name in params["models"]:
        model = yaml.safe_load((repo / "configs" / f"{name}.yaml").read_text())["model"]
        small = {key: 8 for key in ("embedding_dim", "hidden_size") if key in model}
        if small: params["models"][name] = {**(params["models"][name] or {}), "model": small}
    params["sequential"].update(models="pop,itemknn", max_epochs=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site-cache"), "MPLBACKEND": "Agg"}
    sh(["git", "init", "-q"], repo, env)
    sh([*GIT, "add", "-A"], repo, env)
    sh([*GIT, "commit", "-q", "-m", "a fresh clone"], repo, env)
    first = sh(["dvc", "repro"], repo, env)
    return {"repo": repo, "env": env, "params": params, "first": first, "tmp": tmp}


def test_repro_runs_every_stage(pipeline):
    repo, params = pipeline["repo"], pipeline["params"]
    models = list(params["models"])
    assert ran(pipeline["first"]) == ["prepare", *(f"train@{m}" for m in models), "compare", "sequential"]
    assert (repo / "data" / "processed" / "sample" / "ratings.parquet").exists()
    for m in models:
        assert sorted(p.name for p in (repo / "models" / m).iterdir()) == \
            ["config.json", "id_maps.json", "metrics.json", "movies.parquet", "pytorch_model.bin"], m
        assert {"metrics.json", "config.yaml"} <= {p.name for p in (repo / "reports" / m).iterdir()}, m
        # the pipeline's copy of the metrics, committed with dvc.lock (models/ is git-ignored)
        assert json.loads((repo / "metrics" / f"{m}.json").read_text()) == json.loads((repo / "models" / m / "metrics.json").read_text()), m
        assert json.loads((repo / f"reports/{m}.ipynb").read_text())["metadata"]["papermill"]["parameters"]["model"] == m
    # params.yaml reached the models: the shared training settings and each model's own
    mf = json.loads((repo / "models/matrix_factorization/metrics.json").read_text())
    assert mf["params"]["embedding_dim"] == 8 and len(json.loads((repo / "reports/matrix_factorization/metrics.json").read_text())["history"]) == 1
    # the comparison has the models of compare.models, with the metrics their training measured
    compared = params["compare"]["models"].split(",")
    cmp = json.loads((repo / "reports/compare/metrics.json").read_text())
    assert list(cmp["models"]) == compared and cmp["run"]["dataset"] == "sample" and cmp["run"]["split"] == "random"
    for m in compared:
        trained = json.loads((repo / "models" / m / "metrics.json").read_text())["test"]
        assert cmp["models"][m]["metrics"]["ndcg@10"] == pytest.approx(trained["ndcg@10"]), m
    assert (repo / "reports/compare/comparison.csv").read_text().count("\n") == len(compared) + 1
    assert cmp["models"]["ease"]["metrics"]["ndcg@10"] > cmp["models"]["pop"]["metrics"]["ndcg@10"]
    # each model trained on its own split (the sequence models on leave-one-out); the benchmark ran its models
    for m in models:
        split = (params["models"][m] or {}).get("data", {}).get("split", params["data"]["split"])
        assert json.loads((repo / "models" / m / "metrics.json").read_text())["split"] == split, m
    seq = json.loads((repo / "reports/sequential/results.json").read_text())["results"]["sample"]
    assert set(seq) == {"pop", "itemknn"} and 0 < seq["pop"]["ndcg@10"] < seq["itemknn"]["ndcg@10"] < 1


def test_every_training_run_is_in_mlflow(pipeline):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(pipeline["env"]["MLFLOW_TRACKING_URI"])
    for m in pipeline["params"]["models"]:
        exp = client.get_experiment_by_name(m)
        assert exp is not None, m
        runs = client.search_runs([exp.experiment_id])
        assert len(runs) >= 1 and all(r.info.status == "FINISHED" for r in runs), m
        run = runs[-1]                                                    # the first run: that of the first repro
        assert run.data.tags["dataset"] == "sample" and run.data.params["model.type"] == m
        assert {"metrics.json"} <= {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "report")}
    mf = client.search_runs([client.get_experiment_by_name("matrix_factorization").experiment_id])[0]
    assert mf.data.params["model.embedding_dim"] == "8" and mf.data.params["training.num_epochs"] == "1"
    saved = json.loads((pipeline["repo"] / "models/matrix_factorization/metrics.json").read_text())
    assert mf.data.metrics["test_ndcg_at_10"] == pytest.approx(saved["test"]["ndcg@10"])
    assert [h.step for h in client.get_metric_history(mf.info.run_id, "train_loss")] == [1]


def test_second_repro_does_nothing_and_one_change_reruns_one_model(pipeline):
    repo, env = pipeline["repo"], pipeline["env"]
    # commit the results as a maintainer does (dvc.lock and the metrics), so that diffs have a base
    metrics = [str(p.relative_to(repo)) for p in [*repo.glob("metrics/*.json"), repo / "reports/compare/metrics.json",
                                                   repo / "reports/sequential/results.json"]]
    assert len(metrics) == len(pipeline["params"]["models"]) + 2
    sh([*GIT, "add", "-A"], repo, env)
    sh([*GIT, "add", "-f", *metrics], repo, env)
    sh([*GIT, "commit", "-q", "-m", "results"], repo, env)

    again = sh(["dvc", "repro"], repo, env)
    assert ran(again) == [] and "Data and pipelines are up to date" in again
    assert json.loads(sh(["dvc", "status", "--json"], repo, env)) == {}

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["itemknn"] = {"model": {"k": 20}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(sh(["dvc", "status", "--json"], repo, env))) == {"train@itemknn", "compare"}
    assert ran(sh(["dvc", "repro", "--dry"], repo, env)) == ["train@itemknn", "compare"]
    assert ran(sh(["dvc", "repro"], repo, env)) == ["train@itemknn", "compare"]
    assert json.loads((repo / "models/itemknn/config.json").read_text())["params"]["k"] == 20

    pdiff = json.loads(sh(["dvc", "params", "diff", "--json"], repo, env))
    assert list(pdiff) == ["params.yaml"] and list(pdiff["params.yaml"]) == ["models.itemknn.model.k"]
    assert pdiff["params.yaml"]["models.itemknn.model.k"]["new"] == 20
    mdiff = json.loads(sh(["dvc", "metrics", "diff", "--json"], repo, env))
    assert "test.ndcg@10" in mdiff["metrics/itemknn.json"] and "metrics/pop.json" not in mdiff
    assert "models.itemknn.metrics.ndcg@10" in mdiff["reports/compare/metrics.json"]


def test_metrics_and_plots_show(pipeline):
    repo, env = pipeline["repo"], pipeline["env"]
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo, env))
    data = shown[""]["data"]
    for m in pipeline["params"]["models"]:
        assert 0 <= data[f"metrics/{m}.json"]["data"]["test"]["ndcg@10"] <= 1, m
    assert set(data["reports/compare/metrics.json"]["data"]["models"]) == set(pipeline["params"]["compare"]["models"].split(","))
    assert "ndcg@10" in data["reports/sequential/results.json"]["data"]["results"]["sample"]["itemknn"]
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], repo, env))
    assert not plots.get("errors") and "reports/compare/comparison.csv" in plots["data"]
    assert not (repo / "dvc_plots").exists()


def test_main_job_leaves_git_status_clean(pipeline):
    """The README's main job (`papermill nbs/train.ipynb reports/train.ipynb`, here 1 epoch) and `movie-genie train`,
    run by hand in a checkout with the pipeline's results committed, change no tracked file and add no untracked
    one: everything they write (models/, reports/, mlflow.db, mlartifacts/) is git-ignored, and the pipeline's
    committed metrics live in metrics/, where only the DVC stages write."""
    repo = pipeline["repo"]
    env = {k: v for k, v in pipeline["env"].items() if k != "MLFLOW_TRACKING_URI"}      # MLflow at the project root, as by hand
    sh([*GIT, "add", "-A"], repo, env)
    sh([*GIT, "commit", "-q", "--allow-empty", "-m", "the pipeline's results"], repo, env)
    assert sh(["git", "status", "--porcelain"], repo, env) == ""
    committed = {p: (repo / p).read_bytes() for p in sh(["git", "ls-files", "metrics"], repo, env).split()}
    assert committed
    sh(["papermill", "nbs/train.ipynb", "reports/train.ipynb", "-p", "num_epochs", "1"], repo, env)
    sh(["movie-genie", "train", "--config", "configs/bpr.yaml", "--set", "training.num_epochs=1", "--quiet"], repo, env)
    assert (repo / "models/matrix_factorization/pytorch_model.bin").exists() and (repo / "mlflow.db").exists()
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], repo, env) == ""
    assert {p: (repo / p).read_bytes() for p in committed} == committed
