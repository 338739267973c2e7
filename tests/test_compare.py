"""nbs/compare.ipynb runs through papermill with small settings and writes its three outputs."""
import json
from pathlib import Path

import pandas as pd
import papermill
import pytest

NB = Path(__file__).resolve().parent.parent / "nbs" / "compare.ipynb"


def run(tmp_path, **params):
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


def test_compare_bad_params(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="not in models"):
        run(tmp_path, dataset="sample", models="pop", params='{"ease": {"l2": 1.0}}')
    assert not (tmp_path / "reports").exists()
