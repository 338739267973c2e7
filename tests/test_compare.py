"""nbs/compare.ipynb runs through papermill with small settings and writes its three outputs."""
import json
from pathlib import Path

import pandas as pd
import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "nbs" / "compare.ipynb"


def run(tmp_path, **params):
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "reports"
    papermill.execute_notebook(str(NB), str(tmp_path / "executed.ipynb"), cwd=str(tmp_path),
                               parameters=dict(reports_dir=str(out), **params), progress_bar=False, kernel_name="python3")
    return out


def test_compare_sample(tmp_path):
    out = run(tmp_path, dataset="sample", models="pop,ease", k=[10, 20], params='{"ease": {"l2": 100.0}}')
    assert sorted(p.name for p in out.iterdir()) == ["comparison.csv", "comparison.png", "metrics.json"]
    df = pd.read_csv(out / "comparison.csv", index_col="label")
    assert list(df.index) == ["pop", "ease"]
    assert {"recall@10", "ndcg@10", "hit@10", "mrr@10", "coverage@10", "ndcg@20", "fit_time_s", "eval_time_s"} <= set(df.columns)
    assert df.loc["pop", "ndcg@10"] < df.loc["ease", "ndcg@10"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["run"]["dataset"] == "sample" and m["run"]["k"] == [10, 20]
    assert m["models"]["ease"]["params"] == {"l2": 100.0, "max_items": None, "device": "auto"}
    assert m["models"]["ease"]["metrics"]["ndcg@10"] == pytest.approx(df.loc["ease", "ndcg@10"])
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the intervals: every ranking metric's own, and the paired difference to the best model (EASE, far ahead of pop)
    assert {"ndcg@10_lo", "ndcg@10_hi", "recall@20_lo", "diff_to_best", "diff_lo", "diff_hi", "significant"} <= set(df.columns)
    assert (df["ndcg@10_lo"] < df["ndcg@10"]).all() and (df["ndcg@10"] < df["ndcg@10_hi"]).all()
    assert m["run"]["bootstrap"]["best"] == "ease" and m["run"]["bootstrap"]["primary"] == "ndcg@10"
    assert m["models"]["ease"]["vs_best"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "significant": False}
    pop = m["models"]["pop"]["vs_best"]
    assert pop["significant"] and pop["lo"] < pop["diff"] < pop["hi"] < 0
    assert pop["diff"] == pytest.approx(df.loc["pop", "ndcg@10"] - df.loc["ease", "ndcg@10"])
    assert m["models"]["pop"]["metrics"]["ndcg@10_hi"] == pytest.approx(df.loc["pop", "ndcg@10_hi"])
    executed = (tmp_path / "executed.ipynb").read_text()
    assert "**ease** is the best model by ndcg@10" in executed and "significantly worse" in executed


def test_compare_trained_models(tmp_path):
    """source=models, as the DVC stage runs it: the intervals come from the trained models, ranked again on their
    rebuilt split, which must reproduce the test metrics their training saved."""
    from movie_genie.training import train_from_config
    for name in ("pop", "ease"):
        train_from_config(ROOT / "configs" / f"{name}.yaml", {"data.dataset": "sample"}, output_dir=tmp_path / "models",
                          reports_dir=tmp_path / "trained", mlflow=False, verbose=False, progress=False)
    out = run(tmp_path, source="models", models="pop,ease", models_dir=str(tmp_path / "models"), k=[10, 20])
    df = pd.read_csv(out / "comparison.csv", index_col="label")
    for name in ("pop", "ease"):
        saved = json.loads((tmp_path / "models" / name / "metrics.json").read_text())["test"]
        assert df.loc[name, "ndcg@10"] == pytest.approx(saved["ndcg@10"], abs=1e-12)
        assert df.loc[name, "ndcg@10_lo"] < saved["ndcg@10"] < df.loc[name, "ndcg@10_hi"]
    assert df.loc["pop", "significant"] and not df.loc["ease", "significant"] and df.loc["ease", "diff_to_best"] == 0
    # another split (seed 1) is not the one the models were trained on: ranked again they do not match, an error ...
    with pytest.raises(papermill.PapermillExecutionError, match="could not be rebuilt"):
        run(tmp_path / "other", source="models", models="pop,ease", models_dir=str(tmp_path / "models"), k=[10, 20], seed=1)
    # ... unless the intervals are off: then the saved metrics are read as they are
    out = run(tmp_path / "plain", source="models", models="pop,ease", models_dir=str(tmp_path / "models"), k=[10, 20], bootstrap=0)
    df = pd.read_csv(out / "comparison.csv", index_col="label")
    assert "diff_to_best" not in df.columns and "ndcg@10_lo" not in df.columns
    assert "vs_best" not in json.loads((out / "metrics.json").read_text())["models"]["ease"]


def test_compare_bad_params(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="not in models"):
        run(tmp_path, dataset="sample", models="pop", params='{"ease": {"l2": 1.0}}')
    assert not (tmp_path / "reports").exists()
