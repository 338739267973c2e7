"""gSASRec (`movie_genie.models.gsasrec`, nbs/18_gsasrec.ipynb): gBCE against numpy, the training loss written out,
checkpoints, fold-in, the training entry point, and the floors on MovieLens.

Floors (issue #15): under the protocol of benchmarks/sequential.py and tests/test_sequential.py (chronological
leave-one-out; fitted on train+valid for the number of epochs that early stopping on the valid items chose, the
whole catalog ranked for the test movie with train+valid masked; 1 torch thread, seed 0), gSASRec with its
defaults (configs/gsasrec.yaml: every training window of each user (max_windows_per_user null), num_negatives 256,
gbce_t 0.75, learning rate 0.001; chosen on ml-latest-small valid, valid NDCG@10 0.0720) is compared with SASRec's
README figures, 0.0935 on ML-100K and 0.0507 on ml-latest-small (SASRec's config trains one window per user).
Measured: 0.1038 on ML-100K (1.11x, HR@10 0.1877, 12 epochs) and 0.0509 on ml-latest-small (1.00x, HR@10 0.0934,
22 epochs). The issue asks for 0.95x on both (FLOOR): met on both. SASRec trained on every window too reaches 0.1057
and 0.0522 (one run each, measured for the README, not asserted): gSASRec is at 0.98x and 0.975x of that.
Speed: on ml-latest-small, on the same training windows (the newest of each user, SASRec's setting), a gSASRec
epoch costs less CPU time than a SASRec epoch: 256 sampled negatives a window against a softmax over 9,724 movies.
Both are measured in the same test (CPU seconds of this process). gSASRec's default, every window of each user,
makes an epoch about 3x the windows; its epoch then cost 0.84x SASRec's one-window epoch once, but that margin is
within what another job on the machine does to CPU time, so the test compares equal work.
"""
from pathlib import Path
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from movie_genie.data import load_movielens, split
from movie_genie.models import CheckpointError, Recommender, get_model, get_model_class, list_models
from movie_genie.models.gsasrec import GSASRec, gbce_beta, gbce_loss, gbce_prior_logit
from movie_genie.models.sasrec import PAD, SASRec, evaluate_leave_one_out
from movie_genie.training import Callback, TrainerConfig, load_config, train_from_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SASREC_NDCG10 = {"ml-100k": 0.0935, "ml-latest-small": 0.0507}     # README, leave-one-out tables (1 thread)
FLOOR = {"ml-100k": 0.95, "ml-latest-small": 0.95}                 # x SASRec (see above)
EPOCHS = {"ml-100k": 12, "ml-latest-small": 22}                    # chosen by early stopping on valid (benchmarks/sequential.py)

pytestmark = pytest.mark.usefixtures("one_thread")                  # tests/conftest.py


# -- gBCE ------------------------------------------------------------------------------------------------
def test_gbce_against_numpy():
    "The loss on a tiny tensor = the definition in float64 numpy; t=0 is plain BCE; t=1 gives beta=alpha."
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(size=5) * 3, rng.normal(size=(5, 4)) * 3
    keep = rng.random((5, 4)) > 0.2
    beta = gbce_beta(4, 21, 0.6)
    alpha = 4 / 20
    assert abs(beta - alpha * (0.6 * (1 - 1 / alpha) + 1 / alpha)) < 1e-12
    sig = lambda x: 1 / (1 + np.exp(-x))
    want = np.mean(-np.log(sig(pos) ** beta) - (np.log(1 - sig(neg)) * keep).sum(1))
    got = gbce_loss(torch.tensor(pos), torch.tensor(neg), beta, torch.tensor(keep))
    assert abs(got.item() - want) < 1e-5
    assert gbce_beta(4, 21, 0.0) == 1.0 and abs(gbce_beta(4, 21, 1.0) - alpha) < 1e-12
    p, n = torch.tensor(pos, dtype=torch.float32), torch.tensor(neg, dtype=torch.float32)
    bce = F.binary_cross_entropy_with_logits(torch.cat([p[:, None], n], 1), torch.cat([torch.ones(5, 1), torch.zeros(5, 4)], 1),
                                             reduction="none").sum(1).mean()
    assert torch.allclose(gbce_loss(p, n, gbce_beta(4, 21, 0.0)), bce)
    assert abs(gbce_prior_logit(4, 21, 0.6) - np.log(beta / 4)) < 1e-12


@pytest.mark.parametrize("bad", [dict(num_negatives=0), dict(gbce_t=-0.1), dict(gbce_t=1.5)])
def test_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match=next(iter(bad))): get_model("gsasrec", **bad)


# -- the model on the sample -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loo(sample):
    return split(sample.ratings[sample.ratings.user_id <= 200], "leave_one_out")


@pytest.fixture(scope="module")
def fitted(loo):
    return get_model("gsasrec", hidden_size=16, num_layers=1, num_negatives=32).fit(
        loo.train, loo.valid, num_epochs=2, batch_size=64, progress=False)


def test_registered_and_inherits():
    assert "gsasrec" in list_models() and issubclass(get_model_class("gsasrec"), SASRec)
    cfg = yaml.safe_load((CONFIGS / "gsasrec.yaml").read_text())
    assert cfg["model"]["type"] == "gsasrec" and cfg["data"]["split"] == "leave_one_out"
    assert {k: v for k, v in cfg["model"].items() if k != "type"} == get_model_class("gsasrec").default_params()


def test_loss_written_out(fitted):
    "The model's loss = the per-position gBCE written out in float64, same negatives (same seed), positives' duplicates dropped."
    tok = fitted.training_tensors(None)["tokens"][:3]
    fitted.net.eval()
    try:
        with torch.no_grad():
            torch.manual_seed(5); got = fitted.loss({"tokens": tok}).item()
            torch.manual_seed(5); negs = fitted.sample_negatives(3, "cpu")
            out, E, b = fitted.net(tok[:, :-1]).double(), fitted.net.item_embedding.weight.double(), fitted.net.score_bias.double()
            terms = []
            for r in range(3):
                for t in range(tok.shape[1] - 1):
                    if tok[r, t] == PAD or tok[r, t + 1] == PAD: continue
                    s = lambda j: out[r, t] @ E[j] + b
                    terms.append(-fitted.beta * F.logsigmoid(s(tok[r, t + 1])).item()
                                 - sum(F.logsigmoid(-s(j)).item() for j in negs[r].tolist() if j != tok[r, t + 1]))
    finally: fitted.net.train()
    assert abs(got - np.mean(terms)) < 1e-4 * abs(got)


def test_checkpoint_round_trip(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "gs")
    back = Recommender.from_pretrained(tmp_path / "gs")
    assert isinstance(back, GSASRec) and back.get_params() == fitted.get_params()
    users = np.arange(fitted.n_users)
    assert torch.equal(back._score(users), fitted._score(users))
    state = torch.load(tmp_path / "gs" / "pytorch_model.bin", weights_only=True)
    state["model.net.score_bias"] = torch.zeros(2)
    torch.save(state, tmp_path / "gs" / "pytorch_model.bin")
    with pytest.raises(CheckpointError): Recommender.from_pretrained(tmp_path / "gs")


def test_recommend_from_history(fitted, loo):
    user = int(loo.train.user_id.iloc[0])
    hist = loo.train[loo.train.user_id == user].sort_values("timestamp", kind="stable").movie_id.tolist()
    recs = fitted.recommend_from_history(hist, ratings=[4.0] * len(hist), k=5)
    assert len(recs) == 5 and not recs.movie_id.isin(hist).any() and recs.because_movie_id.isna().all()
    assert recs.movie_id.tolist() == fitted.recommend([user], k=5).movie_id.tolist()


def test_seeded(loo):
    kw = dict(fit_kwargs={"num_epochs": 2, "batch_size": 64}, select_epochs=False)
    make = lambda: get_model("gsasrec", hidden_size=16, num_layers=1, num_negatives=32)
    a, b = evaluate_leave_one_out(make, loo, **kw), evaluate_leave_one_out(make, loo, **kw)
    assert a["ndcg@10"] == b["ndcg@10"] and a["recall@10"] == b["recall@10"]


def test_train_from_config(tmp_path):
    "`movie-genie train --config configs/gsasrec.yaml` on the sample (one short epoch): checkpoint, reload, same answers."
    over = {"training.num_epochs": 1, "model.max_sequence_length": 20, "data.dataset": "sample", "training.device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = train_from_config(CONFIGS / "gsasrec.yaml", over, output_dir=tmp_path / "models", reports_dir=tmp_path / "reports",
                                mlflow=False, progress=False)
    assert 0 < out["test_metrics"]["ndcg@10"] < 1 and len(out["history"]) == 1
    back = Recommender.from_pretrained(out["model_dir"])
    user = int(back.user_map.ids[0])
    pd.testing.assert_frame_equal(back.recommend([user], k=5), out["model"].recommend([user], k=5))


# -- MovieLens ---------------------------------------------------------------------------------------------
def _fit_kwargs(name: str, **over) -> dict:
    return {"config": TrainerConfig.from_config(load_config(CONFIGS / f"{name}.yaml"), progress=False), "device": "cpu", **over}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["ml-100k", "ml-latest-small"])
def test_floor(dataset, shared_data):
    "Test NDCG@10 >= FLOOR x SASRec's, trained for the epochs chosen on valid (leave-one-out, as tests/test_sequential.py)."
    ds = load_movielens(dataset, shared_data)
    r = evaluate_leave_one_out(lambda: get_model("gsasrec"), split(ds.ratings, "leave_one_out"),
                               fit_kwargs=_fit_kwargs("gsasrec", num_epochs=EPOCHS[dataset]), select_epochs=False)
    print(dataset, {k: round(r[k], 4) for k in ("ndcg@10", "hit@10", "mrr@10", "fit_time_s")})
    assert r["ndcg@10"] >= FLOOR[dataset] * SASREC_NDCG10[dataset], (dataset, r["ndcg@10"])


class _EpochCPU(Callback):
    def __init__(self): self.times = []
    def on_epoch_start(self, trainer, epoch): self._t = time.process_time()
    def on_epoch_end(self, trainer, record): self.times.append(time.process_time() - self._t)


@pytest.mark.slow
def test_cheaper_epochs_than_sasrec(shared_data):
    "On ml-latest-small (9,724 movies), 3 training epochs of each on the same windows, same script: gSASRec's CPU s/epoch < SASRec's."
    s = split(load_movielens("ml-latest-small", shared_data).ratings, "leave_one_out")
    cost = {}
    for name in ("sasrec", "gsasrec"):
        cpu = _EpochCPU()
        get_model(name, max_windows_per_user=1).fit(s.train, None, callbacks=[cpu], **_fit_kwargs(name, num_epochs=3, early_stopping_patience=None, monitor=None))
        cost[name] = float(np.mean(cpu.times))
    print({k: round(v, 2) for k, v in cost.items()})
    assert cost["gsasrec"] < cost["sasrec"], cost                  # measured 1.05 against 3.8 CPU s (another job running)
