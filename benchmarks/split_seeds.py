"""Accuracy over several random splits: how far one split's test figure moves with the split's luck, and whether one
model's lead over another holds on every split.

The paired bootstrap (`movie_genie.evaluation.paired_bootstrap`) resamples the test users of one split; it does not
see which ratings the split happened to put in test. This script repeats the README's protocol (every rating a
positive, per-user random 80/10/10 split, fit on train, test by full ranking with train and valid masked) for split
seeds 0..N-1, each model with fixed hyperparameters (chosen on seed 0's valid), and prints test NDCG@10 per seed,
its mean and standard deviation, and on how many seeds each model beats the first one.

    python benchmarks/split_seeds.py --dataset ml-latest-small --seeds 5 \\
        --model 'itemknn {"k": 20}' --model 'rp3beta {"alpha": 0.6, "beta": 0.25, "k": 70}' [--out reports/split_seeds]

Each `--model` is a registry name, optionally followed by its hyperparameters as JSON. Results go to
<out>/<dataset>.{json,md}. Fits are deterministic, so a rerun gives the same table.
"""
import argparse, json, os, sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent


def fail(message: str):
    print(f"error: {message}", file=sys.stderr); sys.exit(2)


def parse_model(spec: str) -> tuple[str, dict]:
    "'name {json}' -> (name, params), checked by building the model once, before any data is read."
    from movie_genie.models import get_model, list_models
    name, _, params = spec.strip().partition(" ")
    if name not in list_models(): fail(f"--model {spec!r}: unknown model {name!r}; known: {', '.join(list_models())}.")
    try: params = json.loads(params) if params.strip() else {}
    except json.JSONDecodeError as e: fail(f"--model {spec!r}: the hyperparameters are not JSON ({e}).")
    if not isinstance(params, dict): fail(f"--model {spec!r}: the hyperparameters must be a JSON object.")
    try: get_model(name, **params)
    except (TypeError, ValueError) as e: fail(f"--model {spec!r}: {e}")
    return name, params


def label(name: str, params: dict) -> str:
    return name + (" " + ", ".join(f"{k}={v}" for k, v in params.items()) if params else "")


def run(dataset: str, seeds: int, models: list[tuple[str, dict]], data_dir=None) -> pd.DataFrame:
    "Test NDCG@10 of each model (rows) on each split seed (columns)."
    from movie_genie.data import find_shared_data, load_movielens, split
    from movie_genie.evaluation import evaluate_model
    from movie_genie.models import get_model
    data_dir = data_dir or find_shared_data()
    if data_dir is None: fail("real MovieLens data not found: pass --data-dir or set MOVIE_GENIE_TEST_DATA")
    from movie_genie.data import DataError
    try: ratings = load_movielens(dataset, data_dir).ratings
    except DataError as e: fail(str(e))
    rows = {}
    for seed in range(seeds):
        s = split(ratings, "random", (0.8, 0.1, 0.1), seed=seed)
        for name, params in models:
            r = evaluate_model(get_model(name, **params), s.train, s.test, s.valid, k=(10,))
            rows.setdefault(label(name, params), {})[f"seed {seed}"] = r["ndcg@10"]
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows).T


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    "The per-seed table with its mean, standard deviation and the seeds on which each model beats the first row."
    out = table.copy()
    out["mean"], out["sd"] = table.mean(axis=1), table.std(axis=1)
    out[f"beats {table.index[0]}"] = [f"{int((table.loc[m] > table.iloc[0]).sum())}/{table.shape[1]}" for m in table.index]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--model", action="append", required=True, help="a registry name, optionally followed by JSON hyperparameters")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "reports" / "split_seeds"))
    a = p.parse_args(argv)
    if a.seeds < 1: fail("--seeds must be at least 1.")
    if a.threads < 1: fail("--threads must be at least 1.")
    torch.set_num_threads(a.threads)
    from movie_genie.data import write_json_atomic
    table = summarize(run(a.dataset, a.seeds, [parse_model(m) for m in a.model], a.data_dir))
    md = table.round(4).to_markdown()
    print(f"{a.dataset}: test NDCG@10 by split seed\n{md}")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{a.dataset}.md.tmp"                               # both files written whole or not at all
    tmp.write_text(f"{a.dataset}: test NDCG@10 by split seed\n\n{md}\n"); os.replace(tmp, out / f"{a.dataset}.md")
    write_json_atomic(out / f"{a.dataset}.json", table.round(6).to_dict(orient="index"))


if __name__ == "__main__":
    main()
