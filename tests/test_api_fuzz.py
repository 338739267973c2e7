"""Property-based test of the HTTP API: schemathesis generates requests from the OpenAPI document and sends them to a
real `movie-genie serve` on a loopback port, with every check on (no 5xx, answers that match the schema, schema-valid
requests accepted, invalid ones refused, 405 for undocumented methods, ...). Bounded: a fixed number of examples per
operation and a fixed seed, so it is reproducible and takes well under a minute.

A few realistic malformed-request cases are sent by hand as well, to the same server: slow headers, a slow body,
a batch over the size limit.
"""
import json, os, re, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

import httpx
import pytest

from movie_genie.data import load_movielens, split
from movie_genie.models import get_model

pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency: pip install -e '.[dev]'")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.fixture(scope="module")
def server(tmp_path_factory, free_port):
    "`movie-genie serve` (the real command) over pop, ease, sasrec and a broken folder, with a 2 s timeout for slow clients."
    import torch
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("fuzz") / "models"
    ds = load_movielens("sample")
    train = split(ds.ratings, "random", seed=0).train
    for name, m in {"pop": get_model("pop").fit(train), "ease": get_model("ease").fit(train),
                    "sasrec": get_model("sasrec", hidden_size=16, num_layers=1, max_sequence_length=20).fit(
                        train, num_epochs=1, batch_size=512, progress=False)}.items():
        m.save_pretrained(d / name, movies=ds.movies)
    shutil.copytree(d / "pop", d / "broken")
    (d / "broken" / "id_maps.json").write_text(json.dumps({"user_ids": [1], "movie_ids": [1, 2]}))
    port = free_port
    code = ("import sys; from movie_genie.api import serve; "
            f"serve({str(d)!r}, port={port}, log_level='warning', access_log=False, timeout=2.0)")
    log = open(d.parent / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None: pytest.fail(f"server exited: {(d.parent / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200: break
        except httpx.HTTPError: time.sleep(0.2)
    yield {"url": url, "port": port, "log": d.parent / "server.log"}
    proc.send_signal(signal.SIGINT)
    try: proc.wait(10)
    except subprocess.TimeoutExpired: proc.kill()


def test_schemathesis_finds_nothing(server):
    r = subprocess.run([str(SCHEMATHESIS), "run", server["url"] + "/openapi.json", "--checks", "all", "--max-examples", "25",
                        "--seed", "1", "--no-shrink", "--request-timeout", "10"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out)
    print(f"\nschemathesis: {counts.group(0)}")
    assert counts and int(counts.group(1)) == int(counts.group(2)) >= 300, out[-3000:]   # hundreds of cases, every one passed
    assert "Traceback" not in server["log"].read_text()                                  # and the server logged no internal error


def test_slow_clients_are_cut_off(server):
    "A client that sends half its headers, or half its body, is dropped after the timeout (2 s here), not held forever."
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")        # headers never finished
        t = time.perf_counter()
        assert s.recv(1024) == b"" and 1.5 < time.perf_counter() - t < 8     # closed by the server
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        s.sendall(b"POST /api/recommendations/pop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 40\r\n\r\n{\"user_id\": 1")                   # body never finished
        t = time.perf_counter()
        answer = s.recv(4096)
        while b"request_timeout" not in answer and (more := s.recv(4096)): answer += more     # headers and body may come apart
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer and 1.5 < time.perf_counter() - t < 8
    assert httpx.get(server["url"] + "/api/health").json()["status"] == "ok"  # the server is fine


def test_limits_and_broken_models(server):
    url = server["url"]
    big = httpx.post(url + "/api/recommendations/ease/batch", json={"user_ids": list(range(1, 1001)), "k": 1000})
    assert big.status_code == 422 and "1,000,000 movies" in big.json()["error"]["message"]
    ok = httpx.post(url + "/api/recommendations/ease/batch", json={"user_ids": list(range(1, 101)), "k": 1000}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 100
    models = httpx.get(url + "/api/models").json()
    assert [m["name"] for m in models["unavailable"]] == ["broken"] and "id_maps.json" in models["unavailable"][0]["error"]
    e = httpx.post(url + "/api/recommendations/broken", json={"user_id": 1}).json()["error"]
    assert e["status"] == 404 and "failed to load" in e["message"]
    assert httpx.head(url + "/api/health").status_code == 200
    assert httpx.request("PATCH", url + "/api/health").headers["allow"] == "GET"
