"""The HTTP API against a real uvicorn server on 127.0.0.1, talked to over HTTP with httpx.

Checkpoints are real models trained on the built-in sample (pop, itemknn, ease, and matrix_factorization, bpr
and a small sasrec for one quick epoch; mf is served under the `mf` alias too) plus a truncated SVD defined here that keeps
the base class's similarity. A corrupt checkpoint sits next to the good ones. Every response of the session is recorded and none may be a 5xx.
"""
import http.client, json, queue, re, shutil, socket, subprocess, sys, threading, time
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch
import uvicorn

from movie_genie.data import load_movielens, split
from movie_genie.models import Recommender, get_model, register_model
from movie_genie.api import create_app
from movie_genie.serving import MAX_ID, ModelService

# -- models --------------------------------------------------------------------------------------

@register_model
class SvdMF(Recommender):
    "A truncated SVD of the training matrix, with the base class's co-occurrence similarity (served as models/svd)."
    name = "_test_svd"
    def __init__(self, factors: int = 16): self.factors = factors
    def _fit(self, data, valid):
        u, s, vt = sla.svds(data.matrix().astype(np.float64), k=self.factors, random_state=0)
        self.user_factors = torch.tensor((u * s).copy(), dtype=torch.float32)
        self.item_factors = torch.tensor(vt.T.copy(), dtype=torch.float32)
    def _score(self, users): return self.user_factors[torch.as_tensor(users)] @ self.item_factors.T
    def _state(self): return {"user_factors": self.user_factors, "item_factors": self.item_factors}
    def _load_state(self, s): self.user_factors, self.item_factors = s["user_factors"], s["item_factors"]

@pytest.fixture(scope="module", autouse=True)
def torch_one_thread():
    "What `serve()` does: one torch thread (a request's tensors are small); restored for other test modules."
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, torch_one_thread):
    ds = load_movielens("sample")
    parts = split(ds.ratings, "random", seed=0)
    d = tmp_path_factory.mktemp("serving") / "models"
    models = {"matrix_factorization": get_model("matrix_factorization").fit(parts.train, num_epochs=1, batch_size=8192, progress=False),
              "pop": get_model("pop").fit(parts.train), "ease": get_model("ease").fit(parts.train),
              "bpr": get_model("bpr").fit(parts.train, num_epochs=1, batch_size=8192, progress=False),
              "itemknn": get_model("itemknn").fit(parts.train), "svd": SvdMF().fit(parts.train),
              "sasrec": get_model("sasrec", hidden_size=16, num_layers=1, max_sequence_length=20).fit(
                  parts.train, num_epochs=1, batch_size=256, progress=False)}
    for name, m in models.items(): m.save_pretrained(d / name, metrics={"ndcg@10": 0.1}, movies=ds.movies)
    shutil.copytree(d / "pop", d / "broken")
    (d / "broken" / "pytorch_model.bin").write_bytes(b"\x00truncated")
    return {"dir": d, "models": models, "train": parts.train, "movies": ds.movies}


# -- a real server -------------------------------------------------------------------------------

RESPONSES = []   # (method, url, status) of every response of the session

def _record(response):
    RESPONSES.append((response.request.method, str(response.request.url), response.status_code))


class ThreadServer:
    "uvicorn on a socket bound to a free 127.0.0.1 port, in a background thread."
    def __init__(self, app):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive(): raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def server(trained):
    with ThreadServer(create_app(trained["dir"])) as s: yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30, event_hooks={"response": [_record]}) as c:
        yield c


@pytest.fixture(scope="module", autouse=True)
def no_server_errors():
    yield
    bad = [r for r in RESPONSES if r[2] >= 500]
    assert not bad, f"5xx responses: {bad[:10]}"


def same_ranking(got: list[dict], model, uid, k, tol=1e-5):
    "`got` is the model's own top-k up to float rounding: same scores, and items swapped only within a tie."
    ref = model.recommend([uid], k=k + 20)
    ref_score = dict(zip(ref.movie_id.tolist(), ref.score.tolist()))
    assert np.allclose([g["score"] for g in got], ref.score[:k], rtol=tol, atol=tol)
    assert all(abs(ref_score.get(g["movie_id"], -1e9) - g["score"]) <= tol * max(1, abs(g["score"])) for g in got)


def ok(r):
    assert r.status_code == 200, (r.status_code, r.text[:500])
    body = r.json()
    assert body["success"] is True
    return body


def err(r, status, type_=None):
    assert r.status_code == status, (r.request.url, r.status_code, r.text[:500])
    body = r.json()
    assert body["success"] is False and body["error"]["status"] == status and body["error"]["message"], body
    if type_: assert body["error"]["type"] == type_, body
    return body["error"]


# -- endpoints -----------------------------------------------------------------------------------

def test_health_and_models(client, trained):
    h = ok(client.get("/api/health"))
    assert h["status"] == "ok" and h["models_loaded"] == len(trained["models"]) and h["models_unavailable"] == 1
    m = ok(client.get("/api/models"))
    assert {x["name"] for x in m["models"]} == set(trained["models"])
    mf = next(x for x in m["models"] if x["name"] == "matrix_factorization")
    assert mf["type"] == "matrix_factorization" and mf["metrics"] == {"ndcg@10": 0.1} and mf["trained_at"]
    assert mf["n_users"] == 1000 and mf["n_items"] == 1500 and mf["params"] == {"embedding_dim": 128, "dropout": 0.1}
    assert m["aliases"]["mf"] == "matrix_factorization"
    assert {x["name"] for x in m["models"] if x["sessions"]} == {"sasrec"} and mf["sessions"] is False
    # the corrupt checkpoint is reported with its reason; the others serve
    assert [u["name"] for u in m["unavailable"]] == ["broken"] and "corrupt" in m["unavailable"][0]["error"]


@pytest.mark.parametrize("name", ["matrix_factorization", "bpr", "pop", "ease", "itemknn", "svd", "sasrec"])
def test_recommend_matches_model(client, trained, name):
    model = trained["models"][name]
    for uid in [1, 123, 1000]:
        body = ok(client.post(f"/api/recommendations/{name}", json={"user_id": uid, "k": 10}))
        recs = body["recommendations"]
        assert body["model"] == name and body["user_id"] == uid and body["fallback"] is False
        same_ranking(recs, model, uid, 10)
        assert [r["rank"] for r in recs] == list(range(1, 11))
        assert all(set(r) >= {"movie_id", "title", "genres", "score", "rank"} for r in recs)
    movies = trained["movies"].set_index("movie_id")
    r0 = recs[0]
    assert r0["title"] == movies.title[r0["movie_id"]] and r0["genres"] == list(movies.genres[r0["movie_id"]])


def test_alias_and_guide_command(client):
    # the developers' guide: curl -X POST http://localhost:5001/api/recommendations/mf -H "Content-Type: application/json" -d '{"user_id": 123, "k": 10}'
    r = client.post("/api/recommendations/mf", content=b'{"user_id": 123, "k": 10}', headers={"Content-Type": "application/json"})
    body = ok(r)
    assert body["model"] == "matrix_factorization" and len(body["recommendations"]) == 10
    assert ok(client.post("/api/recommendations/matrix_factorization", json={"user_id": 123}))["recommendations"] == body["recommendations"]


def test_exclude_seen_and_default_k(client, trained):
    train = trained["train"]
    seen = set(train.movie_id[train.user_id == 1])
    recs = ok(client.post("/api/recommendations/mf", json={"user_id": 1, "k": 1000}))["recommendations"]
    assert len(recs) == 1000 and not seen & {r["movie_id"] for r in recs}
    recs = ok(client.post("/api/recommendations/mf", json={"user_id": 1, "k": 1000, "exclude_seen": False}))["recommendations"]
    assert seen & {r["movie_id"] for r in recs}
    assert len(ok(client.post("/api/recommendations/pop", json={"user_id": 1}))["recommendations"]) == 10


def test_cold_start(client, trained):
    for uid in [10**9, 0, MAX_ID]:
        body = ok(client.post("/api/recommendations/mf", json={"user_id": uid, "k": 5}))
        assert body["fallback"] is True
        assert [r["movie_id"] for r in body["recommendations"]] == trained["models"]["pop"].recommend([10**9], k=5).movie_id.tolist()


def test_batch(client, trained):
    body = ok(client.post("/api/recommendations/mf/batch", json={"user_ids": [1, 10**9, 123], "k": 3}))
    assert [x["user_id"] for x in body["results"]] == [1, 10**9, 123]
    assert [x["fallback"] for x in body["results"]] == [False, True, False]
    one = ok(client.post("/api/recommendations/mf", json={"user_id": 123, "k": 3}))["recommendations"]
    assert [r["movie_id"] for r in body["results"][2]["recommendations"]] == [r["movie_id"] for r in one]
    many = ok(client.post("/api/recommendations/pop/batch", json={"user_ids": list(range(1, 1001)), "k": 10}))
    assert len(many["results"]) == 1000 and all(len(x["recommendations"]) == 10 for x in many["results"])
    err(client.post("/api/recommendations/mf/batch", json={"user_ids": [], "k": 3}), 422)
    err(client.post("/api/recommendations/mf/batch", json={"user_ids": list(range(1001))}), 422)
    err(client.post("/api/recommendations/mf/batch", json={"user_ids": [1, "2"]}), 422)
    err(client.post("/api/recommendations/nope/batch", json={"user_ids": [1]}), 404, "unknown_model")


def _session(trained, user_id=1, n=3):
    "The last `n` training movies of a user, oldest first: a session."
    train = trained["train"]
    return train[train.user_id == user_id].sort_values("timestamp").movie_id.tolist()[-n:]


def test_session(client, trained):
    sas, watched = trained["models"]["sasrec"], _session(trained)
    body = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": watched, "k": 10}))
    assert body["model"] == "sasrec" and body["model_type"] == "sasrec" and body["movie_ids"] == watched
    assert body["unknown_movie_ids"] == [] and body["fallback"] is False
    ref = sas.recommend_for_history(watched, k=10)
    recs = body["recommendations"]
    assert [r["movie_id"] for r in recs] == ref.movie_id.tolist() and np.allclose([r["score"] for r in recs], ref.score, atol=1e-6)
    assert [r["rank"] for r in recs] == list(range(1, 11))
    movies = trained["movies"].set_index("movie_id")
    r0 = recs[0]
    assert r0["title"] == movies.title[r0["movie_id"]] and r0["genres"] == list(movies.genres[r0["movie_id"]])
    assert r0["year"] == movies.year[r0["movie_id"]]
    # the default k
    assert len(ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": watched}))["recommendations"]) == 10


def test_session_unknown_ids(client, trained):
    watched = _session(trained)
    unknown = [10**9, MAX_ID]
    body = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": [unknown[0], *watched, unknown[1]], "k": 5}))
    assert body["unknown_movie_ids"] == unknown and body["fallback"] is False and body["movie_ids"] == [unknown[0], *watched, unknown[1]]
    same = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": watched, "k": 5}))
    assert body["recommendations"] == same["recommendations"]                       # unknown ids are ignored
    cold = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": unknown, "k": 5}))
    assert cold["fallback"] is True and cold["unknown_movie_ids"] == unknown
    assert [r["movie_id"] for r in cold["recommendations"]] == trained["models"]["pop"].recommend([10**9], k=5).movie_id.tolist()


def test_session_exclude_seen(client, trained):
    watched = _session(trained, n=10)
    masked = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": watched, "k": 1000}))["recommendations"]
    assert len(masked) == 1000 and not set(watched) & {r["movie_id"] for r in masked}
    full = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": watched, "k": 1000, "exclude_seen": False}))
    full = [r["movie_id"] for r in full["recommendations"]]
    assert [r["movie_id"] for r in masked][:900] == [m for m in full if m not in watched][:900]
    ref = trained["models"]["sasrec"].recommend_for_history(watched, k=1000, exclude_seen=False)
    assert full == ref.movie_id.tolist()


def test_session_long_and_repeated(client, trained):
    "1,000 ids (the limit) are accepted; the model reads the last max_sequence_length (20) of them."
    ids = trained["models"]["sasrec"].item_map.ids[:1000].tolist()
    a = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": ids, "k": 10, "exclude_seen": False}))
    b = ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": ids[-20:], "k": 10, "exclude_seen": False}))
    assert a["recommendations"] == b["recommendations"] and len(a["movie_ids"]) == 1000
    assert ok(client.post("/api/recommendations/sasrec/session", json={"movie_ids": [1, 1, 1], "k": 3}))["movie_ids"] == [1, 1, 1]


@pytest.mark.parametrize("name", ["mf", "matrix_factorization", "ease", "pop", "svd"])
def test_session_any_model(client, trained, name):
    "Models that only know their training users answer a session too, by fold-in (no more 404 unsupported_model)."
    r = ok(client.post(f"/api/recommendations/{name}/session", json={"movie_ids": [1, 2, 10**12], "k": 5}))
    got = [x["movie_id"] for x in r["recommendations"]]
    ref = trained["models"][{"mf": "matrix_factorization"}.get(name, name)].recommend_from_history([1, 2, 10**12], k=5)
    assert got == ref.movie_id.tolist() and len(got) == 5 and not {1, 2} & set(got)
    assert r["unknown_movie_ids"] == [10**12] and r["fallback"] is False


def test_session_errors(client):
    err(client.post("/api/recommendations/nope/session", json={"movie_ids": [1]}), 404, "unknown_model")
    err(client.post("/api/recommendations/broken/session", json={"movie_ids": [1]}), 404, "unknown_model")
    err(client.post("/api/recommendations/sasrec/session", content=b"{not json", headers={"Content-Type": "application/json"}),
        400, "malformed_json")
    err(client.post("/api/recommendations/sasrec/session", content=b" " * 1_000_001), 413, "payload_too_large")
    err(client.get("/api/recommendations/sasrec/session"), 405, "method_not_allowed")


@pytest.mark.parametrize("body", [
    {"movie_ids": []}, {"movie_ids": list(range(1001))}, {"movie_ids": ["1"]}, {"movie_ids": [1, "abc"]}, {"movie_ids": [1.5]},
    {"movie_ids": [True]}, {"movie_ids": [None]}, {"movie_ids": [-1]}, {"movie_ids": [2**63]}, {"movie_ids": [10**30]},
    {"movie_ids": 1}, {"movie_ids": "1,2"}, {"movie_ids": {"1": 2}}, {"movie_ids": None}, {}, {"movie_id": [1]},
    {"movie_ids": [1], "user_id": 1}, {"movie_ids": [1], "K": 5}, {"movie_ids": [1], "k": 0}, {"movie_ids": [1], "k": 1001},
    {"movie_ids": [1], "k": "5"}, {"movie_ids": [1], "exclude_seen": "no"}, {"movie_ids": [[1]]}, [1, 2], 123, None])
def test_session_bad_bodies(client, body):
    r = client.post("/api/recommendations/sasrec/session", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    e = err(r, 422, "validation_error")
    assert e["details"] and all("input" not in d for d in e["details"])
    # the same body to a model without sessions: the body is checked first
    err(client.post("/api/recommendations/mf/session", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}), 422)


def test_movies(client, trained):
    movies = trained["movies"]
    m = ok(client.get("/api/movies/1"))["movie"]
    assert m == {"movie_id": 1, "title": movies.title.iloc[0], "year": int(movies.year.iloc[0]), "genres": list(movies.genres.iloc[0])}
    sim = ok(client.get("/api/movies/1/similar", params={"k": 5, "model": "mf"}))
    ref = trained["models"]["matrix_factorization"].similar_items([1], k=5)
    assert sim["movie"]["movie_id"] == 1 and [x["movie_id"] for x in sim["similar"]] == ref.similar_movie_id.tolist()
    dflt = ok(client.get("/api/movies/1/similar"))
    assert len(dflt["similar"]) == 10 and 1 not in [x["movie_id"] for x in dflt["similar"]]
    for name in ["pop", "ease", "itemknn", "svd"]:        # svd: the base class's similarity, precomputed by the service
        got = ok(client.get("/api/movies/1/similar", params={"model": name, "k": 20}))["similar"]
        ref = trained["models"][name].similar_items([1], k=20)
        assert np.allclose([x["score"] for x in got], ref.score, atol=1e-5), name


def test_search(client):
    res = ok(client.get("/api/movies/search", params={"q": "cafe"}))
    assert res["query"] == "cafe" and res["results"] and all(x["title"].startswith("Café") for x in res["results"])
    assert ok(client.get("/api/movies/search", params={"q": "CAFÉ"}))["results"] == res["results"]
    assert ok(client.get("/api/movies/search", params={"q": "CAFE\u0301"}))["results"] == res["results"]   # decomposed accent
    naive = ok(client.get("/api/movies/search", params={"q": "naive", "k": 100}))["results"]
    assert naive and all("Naïve" in x["title"] for x in naive)
    assert ok(client.get("/api/movies/search", params={"q": "qqqqzzzz"}))["results"] == []
    err(client.get("/api/movies/search", params={"q": ""}), 422)
    assert ok(client.get("/api/movies/search", params={"q": "!!!"}))["results"] == []     # symbols only: nothing matches
    err(client.get("/api/movies/search"), 422)
    err(client.get("/api/movies/search", params={"q": "x" * 201}), 422)
    err(client.get("/api/movies/search", params={"q": "cafe", "k": 0}), 422)


def test_user_history(client, trained):
    train = trained["train"]
    h = ok(client.get("/api/users/1/history"))
    assert h["user_id"] == 1 and {m["movie_id"] for m in h["movies"]} == set(train.movie_id[train.user_id == 1])
    assert h["n_movies"] == len(h["movies"])
    assert ok(client.get("/api/users/1/history", params={"model": "pop"}))["model"] == "pop"
    err(client.get("/api/users/999999/history"), 404, "not_found")
    err(client.get("/api/users/1/history", params={"model": "nope"}), 404, "unknown_model")


def test_docs(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/recommendations/{model}", "/api/recommendations/{model}/batch", "/api/recommendations/{model}/session",
            "/api/movies/search", "/api/movies/{movie_id}",
            "/api/movies/{movie_id}/similar", "/api/users/{user_id}/history", "/api/models", "/api/health"} <= set(spec["paths"])
    sess = spec["paths"]["/api/recommendations/{model}/session"]["post"]
    assert sess["requestBody"]["content"]["application/json"]["schema"]["properties"]["movie_ids"]["maxItems"] == 1000
    assert {"200", "400"} <= set(sess["responses"]) and sess["description"]


# -- errors --------------------------------------------------------------------------------------

def test_unknown_model_lists_available(client, trained):
    e = err(client.post("/api/recommendations/nope", json={"user_id": 1}), 404, "unknown_model")
    assert set(e["available"]) == set(trained["models"]) and "matrix_factorization" in e["message"]
    e = err(client.post("/api/recommendations/broken", json={"user_id": 1}), 404, "unknown_model")
    assert "failed to load" in e["message"] and "corrupt" in e["message"]


@pytest.mark.parametrize("name", ["..%2Fetc", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2E%2E%2F", ".", "models", "%2Fetc%2Fpasswd",
                                  "pop%00", "broken%2F..%2Fpop", "~", "C:%5Cwindows", "mf%20", "x" * 150])
def test_path_like_model_names(client, name):
    r = client.post(f"/api/recommendations/{name}", json={"user_id": 1})
    assert r.status_code == 404 and r.json()["success"] is False, (name, r.status_code, r.text)


def test_raw_paths(server):
    "Paths sent verbatim (httpx would normalise `..` away): dot segments and NULs never reach a lookup as a path."
    for path in ["/api/recommendations/..", "/api/recommendations/../../etc/passwd", "/api/recommendations/%2e%2e/batch",
                 "/api/recommendations/../session", "/api/recommendations/%2e%2e/session",
                 "/api/movies/..", "/api/movies/%00", "/api/users/../history"]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST" if "recommendations" in path else "GET", path, body=b'{"user_id": 1}', headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        RESPONSES.append(("RAW", path, resp.status))
        assert 400 <= resp.status < 500 and body["success"] is False, (path, resp.status, body)
        conn.close()


def test_malformed_json(client):
    for raw in [b"{not json", b'{"user_id": 1,', b"", b"\xff\xfe\x00", b'{"user_id": 1}}', b"[" * 100_000 + b"]" * 100_000]:
        r = client.post("/api/recommendations/mf", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["success"] is False, (raw[:20], r.status_code, r.text[:300])
    err(client.post("/api/recommendations/mf", content=b"{not json", headers={"Content-Type": "application/json"}), 400, "malformed_json")


@pytest.mark.parametrize("body", [
    {"user_id": "abc"}, {"user_id": "123"}, {"user_id": 1.5}, {"user_id": True}, {"user_id": None}, {"user_id": [1]},
    {"user_id": {"id": 1}}, {}, {"userId": 1}, {"user_id": 1, "K": 5}, {"user_id": 1, "k": "10"}, {"user_id": 1, "k": 2.5},
    {"user_id": 1, "exclude_seen": "yes"}, {"user_id": 1, "exclude_seen": 1}, [1, 2], "user_id", 123, None])
def test_wrong_types(client, body):
    r = client.post("/api/recommendations/mf", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    e = err(r, 422, "validation_error")
    assert e["details"] and all("input" not in d for d in e["details"])


@pytest.mark.parametrize("k", [0, -1, 1001, 10**6, 2**70])
def test_k_out_of_range(client, k):
    e = err(client.post("/api/recommendations/mf", json={"user_id": 1, "k": k}), 422, "validation_error")
    assert "k" in e["message"]


def test_k_bounds_accepted(client):
    assert len(ok(client.post("/api/recommendations/mf", json={"user_id": 1, "k": 1}))["recommendations"]) == 1
    assert len(ok(client.post("/api/recommendations/mf", json={"user_id": 10**9, "k": 1000}))["recommendations"]) == 1000


def test_huge_and_negative_ids(client):
    for uid in [2**63, 2**64, 10**30, -1, -(2**63)]:
        err(client.post("/api/recommendations/mf", json={"user_id": uid}), 422)
    body = "{" + '"user_id": 1' + "0" * 5000 + "}"
    r = client.post("/api/recommendations/mf", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text[:300]
    err(client.post("/api/recommendations/mf", content=b'{"user_id": 1e400}', headers={"Content-Type": "application/json"}), 422)
    for path in [f"/api/movies/{2**63}", f"/api/movies/{10**40}", "/api/movies/-1", "/api/movies/abc", "/api/movies/1.5",
                 f"/api/movies/{10**40}/similar", f"/api/users/{2**64}/history", "/api/users/abc/history"]:
        err(client.get(path), 422)


def test_unknown_movie(client):
    e = err(client.get("/api/movies/999999"), 404, "not_found")
    assert "999999" in e["message"]
    err(client.get(f"/api/movies/{MAX_ID}"), 404, "not_found")
    err(client.get("/api/movies/999999/similar"), 404, "not_found")
    err(client.get("/api/movies/1/similar", params={"model": "nope"}), 404, "unknown_model")
    err(client.get("/api/movies/1/similar", params={"k": 1001}), 422)


def test_body_size_and_chunked_bodies(client):
    e = err(client.post("/api/recommendations/mf", content=b" " * 1_000_001, headers={"Content-Type": "application/json"}), 413)
    assert e["type"] == "payload_too_large"
    err(client.post("/api/recommendations/mf/batch", content=b" " * 1_000_001), 413)
    chunks = iter([b'{"user_id": ', b'1, "k"', b': 2}'])                  # chunked transfer encoding: several receive()s
    assert len(ok(client.post("/api/recommendations/mf", content=chunks))["recommendations"]) == 2


def test_routes_and_methods(client):
    err(client.get("/api/recommendations/mf"), 405, "method_not_allowed")
    err(client.get("/api/nothing"), 404, "not_found")
    err(client.delete("/api/movies/1"), 405)
    r = client.post("/api/recommendations/mf", content=b'{"user_id": 1}', headers={"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500 or r.status_code == 200, r.text


def test_concurrent_requests(server, trained):
    "Many clients at once get the same answers as one at a time."
    url = f"http://127.0.0.1:{server.port}/api/recommendations/mf"
    with httpx.Client(timeout=30, event_hooks={"response": [_record]}) as c:
        want = {u: [x["movie_id"] for x in c.post(url, json={"user_id": u, "k": 5}).json()["recommendations"]] for u in range(1, 41)}
    got, errors = {}, []
    def worker(users):
        with httpx.Client(timeout=30, event_hooks={"response": [_record]}) as c:
            for u in users:
                r = c.post(url, json={"user_id": u, "k": 5})
                if r.status_code != 200: errors.append(r.status_code)
                else: got[u] = [x["movie_id"] for x in r.json()["recommendations"]]
    threads = [threading.Thread(target=worker, args=(range(i, 41, 8),)) for i in range(1, 9)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors and got == want


def test_coalesced_requests(trained, client):
    """Every catalog coalesced (`coalesce_min_items=0`): many clients at once, for two models, several k and
    exclude_seen, a cold-start user and bad requests among them, get the answers of the plain app, one at a time."""
    app = create_app(trained["dir"], coalesce_min_items=0)
    cases = [(m, u, k, x) for m in ("mf", "bpr") for u in [*range(1, 25), 10**9] for k, x in ((5, True), (12, False))]
    want = {c: ok(client.post(f"/api/recommendations/{c[0]}", json={"user_id": c[1], "k": c[2], "exclude_seen": c[3]})) for c in cases}
    bad = [("mf", {"user_id": 1, "k": 0}, 422), ("nope", {"user_id": 1}, 404), ("bpr", {"user_id": -1}, 422)]
    got, statuses = {}, []
    with ThreadServer(app) as s:
        def worker(part):
            with httpx.Client(base_url=f"http://127.0.0.1:{s.port}", timeout=30, event_hooks={"response": [_record]}) as c:
                for m, u, k, x in part:
                    got[m, u, k, x] = c.post(f"/api/recommendations/{m}", json={"user_id": u, "k": k, "exclude_seen": x})
                for m, body, status in bad: statuses.append((c.post(f"/api/recommendations/{m}", json=body).status_code, status))
        threads = [threading.Thread(target=worker, args=(cases[i::8],)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
    assert all(a == b for a, b in statuses) and len(statuses) == 8 * len(bad)
    for c in cases:
        g, w = ok(got[c]), want[c]
        assert {k: v for k, v in g.items() if k != "recommendations"} == {k: v for k, v in w.items() if k != "recommendations"}
        assert [r["movie_id"] for r in g["recommendations"]] == [r["movie_id"] for r in w["recommendations"]], c
        assert np.allclose([r["score"] for r in g["recommendations"]], [r["score"] for r in w["recommendations"]], atol=1e-5)
    batches = app.state.coalescer.batches; print("coalesced batches by size:", dict(batches))
    assert sum(n * count for n, count in batches.items()) == len(cases) and max(batches) <= 64   # every good request, batched


# -- the command line: `movie-genie serve` in a subprocess -----------------------------------------

def test_cli_serve_subprocess(trained):
    "`movie-genie serve --models-dir D --port 0` binds 127.0.0.1 and answers the guide's curl command."
    # port 0: the OS picks a free port (no race with other processes), read back from uvicorn's startup line;
    # the stand-in model class lives in this module: import it first so that it is registered
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_api; from movie_genie.cli import run; "
            "sys.exit(run(sys.argv[2:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), "serve", "--models-dir", str(trained["dir"]),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, found = [], queue.Queue()
    def reader():
        for line in proc.stdout:
            lines.append(line)
            if m := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line): found.put(int(m.group(1)))
        found.put(None)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        try: port = found.get(timeout=120)
        except queue.Empty: port = None
        assert port, f"server did not start: {''.join(lines)[-3000:]}"
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-s", "-X", "POST", f"http://localhost:{port}/api/recommendations/mf",
                                  "-H", "Content-Type: application/json", "-d", '{"user_id": 123, "k": 10}'],
                                 capture_output=True, text=True, timeout=30).stdout
        else:
            out = httpx.post(f"http://127.0.0.1:{port}/api/recommendations/mf", json={"user_id": 123, "k": 10}, timeout=30).text
        body = json.loads(out)
        assert body["success"] and len(body["recommendations"]) == 10
        if _has_psutil():       # bound to the loopback interface only
            conns = [c for c in __import__("psutil").Process(proc.pid).net_connections() if c.status == "LISTEN"]
            assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns)
    finally:
        proc.terminate()
        try: proc.wait(timeout=15)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        thread.join(10)
    out = "".join(lines)
    assert "unavailable: broken" in out and "Traceback" not in out, out[-2000:]


def _has_psutil():
    try:
        import psutil  # noqa: F401
        return True
    except ImportError: return False


def test_missing_models_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="models folder not found"):
        ModelService(tmp_path / "nope")
    empty = ModelService(tmp_path)
    assert empty.health()["status"] == "no_models" and empty.models == {}
