"""Training throughput of movie_genie.training.Trainer against a minimal hand-written PyTorch loop.

Same network (MatrixFactorizationModel), same data (ML-100K from ../shared/data, else the built-in sample),
same loss, optimizer (Adam) and batch size, same in-memory batching (randperm + slicing), in the same run.
Both run in float32 (our trainer's automatic mixed precision is switched off so that the work is equal;
`--amp` switches it on for our trainer). The two loops run back to back in each of `--repeats` rounds; the
headline is the median over rounds of the ratio of the two (robust to a machine whose load changes), with
the best round of each also shown. Throughput is reported on wall-clock
time and, on the CPU, also on the process's CPU time (steadier on a shared machine; use `--threads 1`
to make it meaningful). Validation and checkpoints are off: this
measures the cost of the loop itself (batching, progress bookkeeping, NaN checks, autocast contexts).

    python benchmarks/train_throughput.py                    # CPU
    python benchmarks/train_throughput.py --device cuda      # a GPU, larger batches: --batch-size 8192
    python benchmarks/train_throughput.py --loss bpr         # the BPR model (uniform negatives on the device)

Prints samples/s of both and the ratio (ours / hand-written; the floor is 0.8).
"""
import argparse, sys, time

import numpy as np
import torch
import torch.nn.functional as F

from movie_genie.data import find_shared_data, load_movielens
from movie_genie.models.matrix_factorization import MatrixFactorizationModel
from movie_genie.training import Trainer, TrainerConfig, positive_keys, sample_negatives


def data_tensors(dataset, data_dir=None):
    if dataset == "auto": dataset = "ml-100k" if find_shared_data() else "sample"
    ds = load_movielens(dataset, data_dir or (find_shared_data() if dataset != "sample" else None), progress=False)
    r = ds.ratings
    users, uidx = np.unique(r.user_id.to_numpy(), return_inverse=True)
    items, iidx = np.unique(r.movie_id.to_numpy(), return_inverse=True)
    t = {"users": torch.from_numpy(uidx.astype(np.int64)), "items": torch.from_numpy(iidx.astype(np.int64)),
         "ratings": torch.from_numpy(r.rating.to_numpy(np.float32).copy())}
    return dataset, t, len(users), len(items)


def make_loss(kind, net, n_items, keys, num_negatives):
    if kind == "mse":
        return lambda b: F.mse_loss(net(b["users"], b["items"]), b["ratings"])
    def bpr(b):
        u, i = b["users"], b["items"]
        j = sample_negatives(u, n_items, num_negatives, keys)
        p = net.user_embedding(u)
        pos = (p * net.item_embedding(i)).sum(-1) + net.item_bias(i).squeeze(-1)
        neg = (p.unsqueeze(1) * net.item_embedding(j)).sum(-1) + net.item_bias(j).squeeze(-1)
        return -F.logsigmoid(pos.unsqueeze(1) - neg).mean()
    return bpr


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def hand_written(net, loss_fn, tensors, epochs, batch_size, lr, device):
    "The minimal loop: tensors on the device, randperm, slices, Adam."
    sync(device); t0, c0 = time.perf_counter(), time.process_time()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    tensors = {k: v.to(device) for k, v in tensors.items()}
    n = len(tensors["users"])
    for _ in range(epochs):
        perm = torch.randperm(n, device=device)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            loss = loss_fn({k: v[idx] for k, v in tensors.items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return epochs * n / (time.perf_counter() - t0), epochs * n / (time.process_time() - c0)


def ours(net, loss_fn, tensors, epochs, batch_size, lr, device, amp, progress):
    cfg = TrainerConfig(batch_size=batch_size, learning_rate=lr, num_epochs=epochs, early_stopping_patience=None,
                        scheduler="none", device=str(device), mixed_precision="auto" if amp else "none", progress=progress)
    sync(device); t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(net, loss_fn, tensors, cfg)
    trainer.fit()
    sync(device)
    return epochs * trainer.n_samples / (time.perf_counter() - t0), epochs * trainer.n_samples / (time.process_time() - c0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dataset", default="auto", help="auto (ml-100k if ../shared/data has it, else sample) | sample | ml-100k | "
                   "ml-25m ... (with --data-dir)")
    p.add_argument("--data-dir", default=None, help="the folder holding the dataset (e.g. synthetic data written by "
                   "benchmarks/scaling.py); default: ../shared/data")
    p.add_argument("--loss", default="mse", choices=["mse", "bpr"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--embedding-dim", type=int, default=128)
    p.add_argument("--num-negatives", type=int, default=4)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--amp", action="store_true", help="let our trainer use mixed precision (CUDA)")
    p.add_argument("--progress", action="store_true", help="show our trainer's progress bar (default off)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if a.threads: torch.set_num_threads(a.threads)
    if device.type == "cuda" and not torch.cuda.is_available(): sys.exit("error: CUDA is not available here.")
    dataset, tensors, n_users, n_items = data_tensors(a.dataset, a.data_dir)
    keys = positive_keys(tensors["users"].numpy(), tensors["items"].numpy(), n_items, device) if a.loss == "bpr" else None
    print(f"{dataset}: {len(tensors['users']):,} samples, {n_users} users, {n_items} items; loss={a.loss}, "
          f"dim={a.embedding_dim}, batch={a.batch_size}, epochs={a.epochs}, device={device}, threads={torch.get_num_threads()}")

    def fresh():
        torch.manual_seed(0)
        return MatrixFactorizationModel(n_users, n_items, a.embedding_dim, dropout=0.0).to(device)

    # warm-up (allocator, kernels) for both
    for fn in (hand_written, ours):
        net = fresh()
        args = (net, make_loss(a.loss, net, n_items, keys, a.num_negatives), tensors, 1, a.batch_size, 1e-3, device)
        fn(*args) if fn is hand_written else fn(*args, a.amp, False)
    wall, cpu = {"hand-written": 0.0, "Trainer": 0.0}, {"hand-written": 0.0, "Trainer": 0.0}
    paired = []   # per round: (wall ratio, CPU-time ratio) of the two runs made back to back
    for r in range(a.repeats):
        this = {}
        for name in ("hand-written", "Trainer"):
            net = fresh()
            args = (net, make_loss(a.loss, net, n_items, keys, a.num_negatives), tensors, a.epochs, a.batch_size, 1e-3, device)
            w, c = hand_written(*args) if name == "hand-written" else ours(*args, a.amp, a.progress)
            wall[name], cpu[name] = max(wall[name], w), max(cpu[name], c)
            this[name] = (w, c)
            print(f"  round {r + 1}: {name:12s} {w:12,.0f} samples/s wall   {c:12,.0f} samples/s of CPU time")
        paired.append(tuple(this["Trainer"][i] / this["hand-written"][i] for i in (0, 1)))
    ratio = float(np.median([p[0] for p in paired]))
    print(f"hand-written loop: {wall['hand-written']:,.0f} samples/s (best of {a.repeats}, wall clock)")
    print(f"our Trainer:       {wall['Trainer']:,.0f} samples/s (best of {a.repeats}, wall clock)")
    print(f"ratio of the bests (Trainer / hand-written), wall clock: {wall['Trainer'] / wall['hand-written']:.3f}")
    if device.type == "cpu":
        print(f"ratio of the bests (Trainer / hand-written), CPU time:   {cpu['Trainer'] / cpu['hand-written']:.3f} "
              f"(median of the rounds {np.median([p[1] for p in paired]):.3f})")
    print(f"RATIO (median over rounds of Trainer / hand-written, wall clock): {ratio:.3f}  "
          f"(floor 0.8: {'ok' if ratio >= 0.8 else 'BELOW'})")
    return ratio


if __name__ == "__main__":
    main()
