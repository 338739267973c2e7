#!/usr/bin/env python
"""How every model's time and memory grow from MovieLens-1M to -25M size, on this machine.

Synthetic data in MovieLens's own file layouts (`movie_genie.data.write_synthetic_movielens`: 1M = 6,040 users x
3,706 movies, 10M = 69,878 x 10,677, 25M = 162,541 x 59,047, popularity tail, per-user histories and timestamps)
is read by the loaders as a user's download. For each size and model (its `configs/<model>.yaml`, with the data
overridden), a child process does, timing each step and sampling its peak resident memory every 20 ms:

- load: `load_movielens`; split: the config's split (random 80/10/10, or leave-one-out for sequence models);
- fit: torch models train one epoch of at most `--max-batches` batches (`training.max_batches`; samples/s is the
  Trainer's own count over training time) and validate on a sample of `--eval-users` users
  (`evaluation.valid_users`); the others fit fully; a model that cannot fit refuses before starting;
- eval: full-ranking test metrics (train+valid masked) for a fixed sample of `--eval-users` users: seconds per user.

Matrix factorization and BPR also train one *full* epoch at each size (`--full-epoch-models`): their samples/s
at steady state, the floors being a flat cost per sample (25M >= 0.7x 1M) and a BPR epoch at 25M within
10 minutes. `--jobs SIZE:MODEL[:full] ...` re-runs single rows, keeping the others.
Run it alone: other jobs on the cores measure contention, not code. Writes `results.json`, `results.md` and
`scaling.png` (time and memory against ratings, log-log) to `--out`.

    python benchmarks/scaling.py [--sizes ml-1m ml-10m ml-25m] [--models pop,itemknn,...] [--threads 2]
"""
import os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import argparse, json, subprocess, sys, threading, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = "pop,itemknn,ease,matrix_factorization,bpr,sasrec,bert4rec,two_tower"
PARAMS = {"ease": {"ml-25m": {"model.max_items": 20000}, "ml-32m": {"model.max_items": 20000}}}   # the way out EASE offers


class PeakRSS:
    "The peak resident memory of this process while a step runs, sampled every 20 ms."
    def __init__(self):
        import psutil
        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
    def _run(self):
        while not self.stop.wait(0.02): self.peak = max(self.peak, self.proc.memory_info().rss)
    def __enter__(self):
        self.peak = self.proc.memory_info().rss; self.t = threading.Thread(target=self._run, daemon=True); self.t.start()
        self.t0 = time.perf_counter(); return self
    def __exit__(self, *a):
        self.seconds = time.perf_counter() - self.t0; self.stop.set(); self.t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def child(size, model_name, data_dir, max_batches, eval_users, threads, full_epoch, sets=()):
    "One model at one size: the steps' times and peaks, as a JSON line on stdout."
    import numpy as np, torch
    from movie_genie.data import load_movielens, split
    from movie_genie.evaluation import eval_set, evaluate_on
    from movie_genie.models import InsufficientMemoryError, get_model
    from movie_genie.training import TorchRecommender, TrainerConfig, load_config
    torch.set_num_threads(threads)
    over = {"data.dataset": size, "data.data_dir": str(data_dir), "training.num_epochs": 1, "training.threads": threads,
            "training.max_batches": None if full_epoch else max_batches, "evaluation.valid_users": eval_users,
            **PARAMS.get(model_name, {}).get(size, {}), **parse_sets(sets, model_name)}
    cfg = load_config(ROOT / "configs" / f"{model_name}.yaml", over)
    out = {"size": size, "model": model_name, "threads": threads, "params": {k: v for k, v in cfg["model"].items() if k != "type"},
           "full_epoch": bool(full_epoch), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    with PeakRSS() as m: ds = load_movielens(size, data_dir, progress=False)
    out.update(n_ratings=len(ds.ratings), load_s=m.seconds, load_peak=m.peak)
    d = cfg["data"]
    with PeakRSS() as m: s = split(ds.ratings, d["split"], tuple(d["ratios"]), seed=d["seed"])
    out.update(split_s=m.seconds, split_peak=m.peak)
    del ds
    model = get_model(model_name, **out["params"])
    try:
        with PeakRSS() as m:
            if isinstance(model, TorchRecommender):
                model.fit(s.train, s.valid, config=TrainerConfig.from_config(cfg, progress=False))
                r = model.training_result
                out.update(samples_per_s=r.samples_per_s, train_s=r.train_time_s, max_batches=model.trainer_config.max_batches,
                           batch_size=cfg["training"]["batch_size"])
            else: model.fit(s.train, s.valid, progress=False)
        out.update(fit_s=m.seconds, fit_peak=m.peak)
    except InsufficientMemoryError as e:
        out.update(refused=" ".join(str(e).split())); print(json.dumps(out), flush=True); return
    users = np.random.default_rng(0).choice(np.unique(s.test.user_id.to_numpy()), min(eval_users, s.test.user_id.nunique()), replace=False)
    with PeakRSS() as m:
        res = evaluate_on(model, eval_set(model, s.train, s.test, s.valid, users=users), k=(10,))
    out.update(eval_s=m.seconds, eval_peak=m.peak, eval_users=int(res["n_users"]), eval_ms_per_user=1000 * m.seconds / max(res["n_users"], 1),
               test_ndcg10=res["ndcg@10"])
    out["peak"] = max(out[k] for k in ("load_peak", "split_peak", "fit_peak", "eval_peak"))
    print(json.dumps(out), flush=True)


def parse_sets(sets, model_name) -> dict:
    "`MODEL:KEY=VALUE` overrides (`--set`) that apply to `model_name`, as `{KEY: value}` (the value read as YAML)."
    import yaml
    out = {}
    for s in sets:
        target, _, kv = s.partition(":")
        key, eq, value = kv.partition("=")
        if not (target and key and eq): sys.exit(f"error: --set takes MODEL:KEY=VALUE (e.g. ease:model.max_items=null), got {s!r}.")
        if target in (model_name, "*"): out[key] = yaml.safe_load(value)
    return out


def run_child(size, model, a, full_epoch=False):
    cmd = [sys.executable, __file__, "--child", size, model, "--data-dir", str(a.data_dir), "--max-batches", str(a.max_batches),
           "--eval-users", str(a.eval_users), "--threads", str(a.threads)] + (["--full-epoch"] if full_epoch else []) \
          + [x for s in a.set for x in ("--set", s)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MOVIE_GENIE_QUIET": "1"})
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        err = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"size": size, "model": model, "failed": err, "wall_s": time.perf_counter() - t0}
    return {**json.loads(lines[-1]), "wall_s": time.perf_counter() - t0}


def table(rows) -> str:
    gb = lambda x: f"{x / 2**30:.1f}" if x else "–"
    f = lambda x, p=1: f"{x:.{p}f}" if isinstance(x, (int, float)) else "–"
    lines = ["| size | model | load s | split s | fit s | samples/s | eval ms/user | peak GB (fit / eval) | test NDCG@10 (sample) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["model"] + (" (full epoch)" if r.get("full_epoch") else "")
        if "failed" in r: lines.append(f"| {r['size']} | {name} | failed: {r['failed']} |||||||"); continue
        if "refused" in r:
            lines.append(f"| {r['size']} | {name} | {f(r['load_s'])} | {f(r['split_s'])} | refused up front: {r['refused']} ||||| "); continue
        sps = f"{r['samples_per_s']:,.0f}" if r.get("samples_per_s") else "–"
        lines.append(f"| {r['size']} | {name} | {f(r['load_s'])} | {f(r['split_s'])} | {f(r['fit_s'])} | {sps} | "
                     f"{f(r['eval_ms_per_user'], 2)} | {gb(r['fit_peak'])} / {gb(r['eval_peak'])} | {f(r['test_ndcg10'], 4)} |")
    return "\n".join(lines)


def plot(rows, path):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((r["n_ratings"], r["fit_s"] + r["eval_s"], r["peak"]) for r in rows
                     if r["model"] == model and "eval_s" in r and not r.get("full_epoch"))
        if not pts: continue
        x = [p[0] for p in pts]
        ax1.plot(x, [p[1] for p in pts], marker="o", label=model)
        ax2.plot(x, [p[2] / 2**30 for p in pts], marker="o", label=model)
    for ax, title in [(ax1, "fit (bounded epochs) + evaluation (sampled users), s"), (ax2, "peak resident memory, GiB")]:
        ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("ratings"); ax.set_title(title, fontsize=10); ax.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)
    p.add_argument("--full-epoch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sizes", nargs="+", default=["ml-1m", "ml-10m", "ml-25m"])
    p.add_argument("--models", default=MODELS)
    p.add_argument("--full-epoch-models", default="matrix_factorization,bpr",
                   help="models that also train one full epoch at every size (their samples/s at steady state)")
    p.add_argument("--jobs", nargs="+", default=None, metavar="SIZE:MODEL[:full]",
                   help="run only these, replacing their rows in --out's results.json (the others are kept)")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "movie-genie-synthetic")
    p.add_argument("--max-batches", type=int, default=100)
    p.add_argument("--eval-users", type=int, default=5000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "scaling")
    p.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                   help="override a config key for one model (* for all), e.g. ease:model.max_items=null or *:training.device=cuda")
    a = p.parse_args(argv)
    if a.threads is None:
        from movie_genie.training import physical_cores
        a.threads = physical_cores()
    if a.child:
        try: child(*a.child, a.data_dir, a.max_batches, a.eval_users, a.threads, a.full_epoch, a.set)
        except MemoryError as e: sys.exit(f"MemoryError: {' '.join(str(e).split())[:300]}")
        return
    from movie_genie.data import MOVIELENS, write_synthetic_movielens
    a.out.mkdir(parents=True, exist_ok=True)
    if a.jobs:
        jobs = [(j.split(":")[0], j.split(":")[1], j.endswith(":full")) for j in a.jobs]
        old = json.loads((a.out / "results.json").read_text()) if (a.out / "results.json").exists() else []
        rows = [r for r in old if (r["size"], r["model"], bool(r.get("full_epoch"))) not in set(jobs)]
    else:
        rows, models = [], a.models.split(",")
        jobs = [(size, m, full) for size in a.sizes for m, full in
                [(m, False) for m in models] + [(m, True) for m in a.full_epoch_models.split(",") if m in models]]
    for size, model, full in jobs:
        if not (a.data_dir / MOVIELENS[size][1]).exists():
            t0 = time.perf_counter(); write_synthetic_movielens(size, a.data_dir)
            print(f"{size}: synthetic data written in {time.perf_counter() - t0:.0f}s", flush=True)
        r = run_child(size, model, a, full)
        rows.append(r)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "params"}), flush=True)
        (a.out / "results.json").write_text(json.dumps(rows, indent=2))
    order = {s: i for i, s in enumerate(["ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m"])}
    models = MODELS.split(",")
    rows.sort(key=lambda r: (order.get(r["size"], 9), bool(r.get("full_epoch")), models.index(r["model"]) if r["model"] in models else 99))
    (a.out / "results.json").write_text(json.dumps(rows, indent=2))
    md = table(rows)
    (a.out / "results.md").write_text(md + "\n")
    plot(rows, a.out / "scaling.png")
    print(md)


if __name__ == "__main__":
    main()
