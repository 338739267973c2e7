"""Benchmark: every model of the project on chronological leave-one-out, with fit time and time per epoch.

Protocol (`movie_genie.models.sasrec.evaluate_leave_one_out`): `split(ratings, "leave_one_out")` (each user's
last interaction is test, the second-to-last valid, the rest train; every rating a positive). Models trained by
the `Trainer` are first fitted on train with early stopping on valid (train masked), which picks the number of
epochs E*; then a fresh model with the same hyperparameters and seed is fitted on train+valid for E* epochs (the
selection run's learning rates replayed) and evaluated on test. Models without a training loop (pop, itemknn,
ease) are fitted on train+valid. Test: full ranking of the whole catalog, the user's train+valid movies masked.
So every model's input history at test time includes the valid interaction, and nothing is chosen on test.
Hyperparameters and training settings come from configs/<model>.yaml (model section; training, optimizer and
scheduler sections for torch models).

It prints one table per dataset (NDCG@10, HR@10 = Recall@10 with one test item, MRR@10, final fit time, the
selection run's best epoch and its mean seconds per epoch) with each model's NDCG@10 relative to popularity and
EASE, and writes them to reports/sequential/results.{json,md}.

    python benchmarks/sequential.py [--datasets ml-100k ml-latest-small] [--models pop,itemknn,ease,bpr,sasrec,...]
                                    [--device cpu|cuda|auto] [--max-epochs N] [--data-dir ../shared/data] [--out reports/sequential]
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
ALL = ["pop", "itemknn", "ease", "bpr", "sasrec", "gsasrec", "bert4rec", "two_tower"]


def cpu_timer():
    "A Trainer callback recording the CPU seconds (all threads of this process) of each epoch: robust to other load."
    from movie_genie.training import Callback
    class EpochCPUTime(Callback):
        def __init__(self): self.times, self._t = [], None
        def on_epoch_start(self, trainer, epoch): self._t = time.process_time()
        def on_epoch_end(self, trainer, record): self.times.append(time.process_time() - self._t)
    return EpochCPUTime()


def model_factory(name: str, cfg: dict, movies: pd.DataFrame):
    "A function making a fresh model from its config (two_tower gets the movie catalog)."
    from movie_genie.models import get_model
    params = {k: v for k, v in cfg["model"].items() if k != "type"}
    def make():
        m = get_model(cfg["model"]["type"], **params)
        if hasattr(m, "set_movies"): m.set_movies(movies)
        return m
    return make


def run(datasets, models, device, max_epochs, data_dir, out_dir, verbose=False):
    from movie_genie.data import find_shared_data, load_movielens, split
    from movie_genie.models import get_model_class
    from movie_genie.models.sasrec import evaluate_leave_one_out
    from movie_genie.training import TorchRecommender, TrainerConfig, load_config
    data_dir = data_dir or find_shared_data()
    if data_dir is None: sys.exit("real MovieLens data not found: pass --data-dir or set MOVIE_GENIE_TEST_DATA")
    results = {}
    for ds_name in datasets:
        ds = load_movielens(ds_name, data_dir)
        s = split(ds.ratings, "leave_one_out")
        print(f"\n== {ds_name}: {s} ({ds.n_users} users, {ds.n_movies} movies)", flush=True)
        rows = {}
        for name in models:
            path = ROOT / "configs" / f"{name}.yaml"
            if not path.exists():
                print(f"  {name}: no configs/{name}.yaml, skipped"); continue
            try: get_model_class(name)
            except ValueError: print(f"  {name}: not in this project yet, skipped"); continue
            cfg = load_config(path, {"data.dataset": ds_name})
            make = model_factory(name, cfg, ds.movies)
            fit_kwargs = None
            if issubclass(get_model_class(cfg["model"]["type"]), TorchRecommender):
                tc = TrainerConfig.from_config(cfg, progress=False, verbose=verbose)
                over = {"device": device}
                if max_epochs: over["num_epochs"] = min(tc.num_epochs, max_epochs)
                cpu = cpu_timer()
                fit_kwargs = {"config": tc, "callbacks": [cpu], **over}
            t0 = time.perf_counter()
            r = evaluate_leave_one_out(make, s, k=(10,), fit_kwargs=fit_kwargs)
            r["total_time_s"] = time.perf_counter() - t0
            r["epoch_cpu_s"] = float(np.mean(cpu.times)) if fit_kwargs and cpu.times else None
            r.pop("model", None); rows[name] = r
            print(f"  {name:10s} ndcg@10 {r['ndcg@10']:.4f}  hr@10 {r['hit@10']:.4f}  fit {r['fit_time_s']:7.1f}s"
                  + (f"  best epoch {r['best_epoch']}  {r['epoch_time_s']:.2f}s/epoch ({r['epoch_cpu_s']:.1f} CPU s)  (selection {r['selection_time_s']:.0f}s)"
                     if r["best_epoch"] else ""), flush=True)
        results[ds_name] = rows
    return results


def table(rows: dict) -> pd.DataFrame:
    df = pd.DataFrame({n: {"NDCG@10": r["ndcg@10"], "HR@10": r["hit@10"], "Recall@10": r["recall@10"], "MRR@10": r["mrr@10"],
                           "fit_s": r["fit_time_s"], "best_epoch": r["best_epoch"], "s/epoch": r["epoch_time_s"],
                           "cpu_s/epoch": r.get("epoch_cpu_s"),
                           "users": r["n_users"]} for n, r in rows.items()}).T
    for ref in ("pop", "ease"):
        if ref in rows: df[f"vs {ref}"] = df["NDCG@10"] / rows[ref]["ndcg@10"]
    return df


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    p.add_argument("--models", default=",".join(ALL), help="comma-separated registry names")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (training device of torch models)")
    p.add_argument("--max-epochs", type=int, default=None, help="cap on the selection run's epochs (default: the config's)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--verbose", action="store_true", help="one line per training epoch")
    p.add_argument("--out", default=str(ROOT / "reports" / "sequential"))
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available(): sys.exit("--device cuda: CUDA is not available here")
    t0 = time.perf_counter()
    results = run(a.datasets, [m.strip() for m in a.models.split(",") if m.strip()], a.device, a.max_epochs, a.data_dir, a.out, a.verbose)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    dev = torch.cuda.get_device_name() if a.device != "cpu" and torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    md = [f"# Leave-one-out comparison\n\ndevice: {dev}; total {time.perf_counter() - t0:.0f}s\n"]
    for ds_name, rows in results.items():
        if not rows: continue
        df = table(rows)
        print(f"\n{ds_name} (device {dev})\n{df.to_string(float_format=lambda x: f'{x:.4f}')}")
        md.append(f"\n## {ds_name}\n\n{df.to_markdown(floatfmt='.4f') if hasattr(df, 'to_markdown') else df.to_string()}\n")
    clean = {d: {n: {k: v for k, v in r.items() if k != "history"} | {"history": r.get("history", [])} for n, r in rows.items()}
             for d, rows in results.items()}
    (out / "results.json").write_text(json.dumps({"device": dev, "results": clean}, indent=2, default=float))
    (out / "results.md").write_text("".join(md))
    print(f"\nwritten: {out / 'results.json'}, {out / 'results.md'}")


if __name__ == "__main__":
    main()
