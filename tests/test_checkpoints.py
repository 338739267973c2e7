"""A corpus of malformed model folders, generated here from real checkpoints: truncated, swapped, shortened,
NaN, wrong types, symlinks, pickles. Each must be refused with a `CheckpointError` naming what is wrong (never a
crash, never another exception, never code run from a pickle), and the healthy models beside them must keep serving.

Loading runs in a child process, so that a crash (a segmentation fault, `double free`) fails the test with the
case that caused it instead of taking pytest down.
"""
import json, os, pickle, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch

from movie_genie.data import load_movielens, split
from movie_genie.models import get_model
from movie_genie.serving import ModelService

TYPES = ("pop", "itemknn", "ease", "bpr", "sasrec")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    "One real checkpoint of each kind of model (item-item sparse, dense, factor, sequence), trained on the sample."
    torch.set_num_threads(1)
    ds = load_movielens("sample")
    train = split(ds.ratings, "random", seed=0).train
    d = tmp_path_factory.mktemp("good")
    fitted = {"pop": get_model("pop").fit(train), "itemknn": get_model("itemknn").fit(train), "ease": get_model("ease").fit(train),
              "bpr": get_model("bpr", embedding_dim=8).fit(train, num_epochs=1, batch_size=8192, progress=False),
              "sasrec": get_model("sasrec", hidden_size=16, num_layers=1, max_sequence_length=20).fit(
                  train, num_epochs=1, batch_size=512, progress=False)}
    for name, m in fitted.items(): m.save_pretrained(d / name, metrics={"ndcg@10": 0.1}, movies=ds.movies)
    return d


class Evil:
    "A pickle that would create a file when unpickled: loading must never run it."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def _json(p, f=None):
    return json.loads((p / f).read_text()) if f else json.loads(p.read_text())


def _put(p, f, obj): (p / f).write_text(json.dumps(obj))


def _state(p): return torch.load(p / "pytorch_model.bin", weights_only=True)


def _save(p, state): torch.save(state, p / "pytorch_model.bin")


def _edit_state(fn):
    def apply(p):
        s = _state(p); fn(s); _save(p, s)
    return apply


def _edit(f, fn):
    def apply(p):
        obj = _json(p, f); obj = fn(obj) or obj; _put(p, f, obj)
    return apply


def _first_float(s): return next(k for k, v in s.items() if k.startswith("model.") and v.is_floating_point())


def _mutations(good: Path, marker: Path) -> dict:
    "name -> (model type to start from, function altering a copy of its folder)."
    m = {}
    for t in TYPES:
        m[f"{t}: truncated weights"] = (t, lambda p: (p / "pytorch_model.bin").write_bytes((p / "pytorch_model.bin").read_bytes()[:300]))
        m[f"{t}: 5 movie ids fewer"] = (t, _edit("id_maps.json", lambda o: {**o, "movie_ids": o["movie_ids"][:-5]}))
        m[f"{t}: 5 movie ids more"] = (t, _edit("id_maps.json", lambda o: {**o, "movie_ids": o["movie_ids"] + list(range(10**9, 10**9 + 5))}))
        m[f"{t}: 5 movie ids more, config agrees"] = (t, lambda p: (_edit("id_maps.json", lambda o: {**o, "movie_ids": o["movie_ids"] + list(range(10**9, 10**9 + 5))})(p),
                                                                    _edit("config.json", lambda c: {**c, "n_items": c["n_items"] + 5})(p)))
        m[f"{t}: 3 user ids fewer, config agrees"] = (t, lambda p: (_edit("id_maps.json", lambda o: {**o, "user_ids": o["user_ids"][:-3]})(p),
                                                                    _edit("config.json", lambda c: {**c, "n_users": c["n_users"] - 3})(p)))
        m[f"{t}: all-NaN weights"] = (t, _edit_state(lambda s: s[_first_float(s)].fill_(float("nan"))) if t != "pop" else
                                      _edit_state(lambda s: s["model.counts"].fill_(float("nan"))))
        m[f"{t}: one infinite weight"] = (t, _edit_state(lambda s: s[_first_float(s)].view(-1).__setitem__(0, float("inf"))))
        m[f"{t}: seen index past the catalog"] = (t, _edit_state(lambda s: s["seen.indices"].__setitem__(0, 10**6)))
        m[f"{t}: seen index negative"] = (t, _edit_state(lambda s: s["seen.indices"].__setitem__(-1, -7)))
        m[f"{t}: seen row pointers shuffled"] = (t, _edit_state(lambda s: s.__setitem__("seen.indptr", s["seen.indptr"].flip(0))))
        m[f"{t}: seen row pointers short"] = (t, _edit_state(lambda s: s.__setitem__("seen.indptr", s["seen.indptr"][:-10])))
        m[f"{t}: weights of another model"] = (t, lambda p, t=t: shutil.copy(good / ("ease" if t != "ease" else "pop") / "pytorch_model.bin", p))
    m["pop: counts shorter than the catalog"] = ("pop", _edit_state(lambda s: s.__setitem__("model.counts", s["model.counts"][:-5])))
    m["itemknn: W index past the catalog"] = ("itemknn", _edit_state(lambda s: s["model.W.indices"].__setitem__(0, 10**7)))
    m["itemknn: W pointers past the data"] = ("itemknn", _edit_state(lambda s: s["model.W.indptr"].__setitem__(-1, 10**7)))
    m["itemknn: W data shorter"] = ("itemknn", _edit_state(lambda s: s.__setitem__("model.W.data", s["model.W.data"][:-3])))
    m["ease: B not square"] = ("ease", _edit_state(lambda s: s.__setitem__("model.B", s["model.B"][:, :-1])))
    m["bpr: item table short"] = ("bpr", _edit_state(lambda s: s.__setitem__("model.item_embedding.weight", s["model.item_embedding.weight"][:-4])))
    m["bpr: a table missing"] = ("bpr", _edit_state(lambda s: s.pop("model.user_embedding.weight")))
    m["sasrec: sequence item past the catalog"] = ("sasrec", _edit_state(lambda s: s["model.seq_items"].__setitem__(0, 10**6)))
    m["sasrec: a weight of another shape"] = ("sasrec", _edit_state(lambda s: s.__setitem__(_first_float(s), torch.zeros(3))))
    # types
    m["config.json is a list"] = ("pop", lambda p: _put(p, "config.json", [1, 2]))
    m["config.json is null"] = ("pop", lambda p: _put(p, "config.json", None))
    m["config.json is empty"] = ("pop", lambda p: (p / "config.json").write_text(""))
    m["config.json is binary"] = ("pop", lambda p: (p / "config.json").write_bytes(b"\xff\xfe\x00garbage"))
    m["model_type missing"] = ("pop", _edit("config.json", lambda c: {k: v for k, v in c.items() if k != "model_type"}))
    m["model_type a list"] = ("pop", _edit("config.json", lambda c: {**c, "model_type": ["pop"]}))
    m["model_type unknown"] = ("pop", _edit("config.json", lambda c: {**c, "model_type": "no_such_model"}))
    m["model_type of another model"] = ("ease", _edit("config.json", lambda c: {**c, "model_type": "itemknn", "params": {}}))
    m["params a list"] = ("itemknn", _edit("config.json", lambda c: {**c, "params": [1]}))
    m["params invalid"] = ("itemknn", _edit("config.json", lambda c: {**c, "params": {"k": -1}}))
    m["params unknown"] = ("itemknn", _edit("config.json", lambda c: {**c, "params": {"nope": 1}}))
    m["id_maps.json a list"] = ("pop", lambda p: _put(p, "id_maps.json", []))
    m["movie ids are floats"] = ("pop", _edit("id_maps.json", lambda o: {**o, "movie_ids": [i + 0.5 for i in o["movie_ids"]]}))
    m["movie ids are strings"] = ("pop", _edit("id_maps.json", lambda o: {**o, "movie_ids": [str(i) for i in o["movie_ids"]]}))
    m["user id negative"] = ("pop", _edit("id_maps.json", lambda o: {**o, "user_ids": [-1] + o["user_ids"][1:]}))
    m["user id twice"] = ("pop", _edit("id_maps.json", lambda o: {**o, "user_ids": o["user_ids"][:1] * 2 + o["user_ids"][2:]}))
    m["movie id past int64"] = ("pop", _edit("id_maps.json", lambda o: {**o, "movie_ids": [2**64] + o["movie_ids"][1:]}))
    m["user_ids missing"] = ("pop", _edit("id_maps.json", lambda o: {"movie_ids": o["movie_ids"]}))
    m["weights a list"] = ("pop", lambda p: _save(p, [torch.zeros(3)]))
    m["weights a tensor"] = ("pop", lambda p: _save(p, torch.zeros(3)))
    m["weights hold a number"] = ("pop", _edit_state(lambda s: s.__setitem__("model.counts", 5)))
    m["weights without seen"] = ("pop", _edit_state(lambda s: s.pop("seen.indptr")))
    m["seen indices as floats"] = ("pop", _edit_state(lambda s: s.__setitem__("seen.indices", s["seen.indices"].float())))
    m["metrics.json a list"] = ("pop", lambda p: _put(p, "metrics.json", [1]))
    m["movies.parquet garbage"] = ("pop", lambda p: (p / "movies.parquet").write_bytes(b"PAR1 not really"))
    # missing files, links, devices
    for f in ("config.json", "id_maps.json", "pytorch_model.bin"):
        m[f"{f} missing"] = ("pop", lambda p, f=f: (p / f).unlink())
        m[f"{f} a folder"] = ("pop", lambda p, f=f: ((p / f).unlink(), (p / f).mkdir()))
        m[f"{f} a link to /dev/zero"] = ("pop", lambda p, f=f: ((p / f).unlink(), (p / f).symlink_to("/dev/zero")))
        m[f"{f} a dangling link"] = ("pop", lambda p, f=f: ((p / f).unlink(), (p / f).symlink_to(p / "nowhere")))
        m[f"{f} a link loop"] = ("pop", lambda p, f=f: ((p / f).unlink(), (p / f).symlink_to(p / f)))
    m["weights a FIFO"] = ("pop", lambda p: ((p / "pytorch_model.bin").unlink(), os.mkfifo(p / "pytorch_model.bin")))
    # pickles: none may run
    m["weights a pickle"] = ("pop", lambda p: (p / "pytorch_model.bin").write_bytes(pickle.dumps(Evil(marker))))
    m["weights a torch pickle of an object"] = ("pop", lambda p: torch.save({"x": Evil(marker)}, p / "pytorch_model.bin"))
    m["weights a pickle in a dict"] = ("pop", lambda p: torch.save({**_state(p), "model.extra": Evil(marker)}, p / "pytorch_model.bin"))
    m["movies.parquet a pickle"] = ("pop", lambda p: (p / "movies.parquet").write_bytes(pickle.dumps(Evil(marker))))
    m["metrics.json a pickle"] = ("pop", lambda p: (p / "metrics.json").write_bytes(pickle.dumps(Evil(marker))))
    return m


def _build(good: Path, into: Path, marker: Path, prefix: str = "case") -> dict:
    "Write every malformed folder under `into` (folder name -> what is wrong with it)."
    cases = {}
    for i, (name, (base, alter)) in enumerate(_mutations(good, marker).items()):
        p = into / f"{prefix}{i:03d}"
        shutil.copytree(good / base, p)
        alter(p)
        cases[p.name] = name
    return cases


@pytest.fixture(scope="module")
def corpus(good, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    marker = root / "PICKLE_RAN"
    return {"root": root, "cases": _build(good, root / "bad", marker), "marker": marker}


LOADER = """
import json, sys
from pathlib import Path
from movie_genie.models import CheckpointError, Recommender
for p in sorted(Path(sys.argv[1]).iterdir()):
    print(json.dumps({"case": p.name, "started": True}), flush=True)
    try:
        Recommender.from_pretrained(p); out = {"case": p.name, "loaded": True}
    except CheckpointError as e: out = {"case": p.name, "error": "CheckpointError", "message": str(e)}
    except BaseException as e: out = {"case": p.name, "error": type(e).__name__, "message": str(e)[:300]}
    print(json.dumps(out), flush=True)
"""


def test_every_malformed_folder_is_refused_clearly(corpus):
    r = subprocess.run([sys.executable, "-c", LOADER, str(corpus["root"] / "bad")], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    ends = {d["case"]: d for d in lines if "started" not in d}
    started = [d["case"] for d in lines if "started" in d]
    assert r.returncode == 0, f"the loader died ({r.returncode}) on {corpus['cases'][started[-1]]!r}: {r.stderr[-1500:]}"
    assert len(ends) == len(corpus["cases"]) >= 100
    wrong = {corpus["cases"][c]: d for c, d in ends.items() if d.get("error") != "CheckpointError"}
    assert not wrong, wrong
    for c, d in ends.items():   # each message names the folder and says what to do or what is wrong
        assert "case" in d["message"] and len(d["message"]) < 600, (corpus["cases"][c], d["message"])
    assert not corpus["marker"].exists(), "a pickle ran"
    print(f"\n{len(ends)} malformed folders, each refused:")
    for c, d in sorted(ends.items()): print(f"  {corpus['cases'][c]:45s} {d['message'][:150]}")


def test_the_healthy_models_keep_serving(good, corpus, tmp_path):
    "One models folder: every healthy model beside every malformed one; the service loads what it can."
    d = tmp_path / "models"
    shutil.copytree(good, d)
    _build(good, d, corpus["marker"], prefix="bad")
    svc = ModelService(d)
    assert sorted(svc.models) == sorted(TYPES)
    assert len(svc.unavailable) == len(corpus["cases"])
    for name in TYPES:
        out = svc.recommend(name, int(svc.models[name].model.user_map.ids[0]), k=5)
        assert len(out["recommendations"]) == 5 and not out["fallback"]
        batch = svc.recommend_batch(name, svc.models[name].model.user_map.ids[:50].tolist(), k=5)
        assert len(batch["results"]) == 50
    assert not corpus["marker"].exists()
