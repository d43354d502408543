"""Search reader processes (``vqdb serve --readers 2``) against real servers: a reader answers exactly what
the serving process answers (hits, payloads, filters, errors), a client that wrote sees its write in the
very next search (also right after the readers caught up), deletes vanish at once, and a killed reader
costs no error."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import time

import numpy as np
import pytest
from vqdb_server_harness import Server, write_keys_file

NAME = "readers"
N = 3000


def b64(x: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(x, dtype="<f4").tobytes()).decode("ascii")


def _reader_searches(http) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("vqdb_reader_searches_total"):
            return float(line.split()[-1])
    return 0.0


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        return [int(p) for p in f.read().split()]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, wordnet):
    """(without readers, with 2 readers), each over its own copy of one data directory."""
    root = tmp_path_factory.mktemp("readers")
    keys = write_keys_file(root / "keys.txt")
    plain = Server(root / "plain", keys_file=keys).start()
    with plain.client() as http:
        assert http.post("/collections", json={"name": NAME, "dim": 384, "metric": "cos"}).status_code == 201
        body = {
            "ids": list(range(N)),
            "vectors": b64(wordnet.base[:N]),
            "payloads": [{"n": i, "even": i % 2 == 0} for i in range(N)],
        }
        assert http.post(f"/collections/{NAME}/points/b64", json=body).status_code == 200
    plain.stop()
    shutil.copytree(root / "plain", root / "readers")
    plain.start()
    served = Server(root / "readers", keys_file=keys, env={"VQDB_READERS": "2"}).start()
    yield plain, served
    served.stop()
    plain.stop()


def _until_readers_answer(http, body: dict, timeout: float = 120.0) -> None:
    """Search until a reader has answered one (the readers open their snapshots after a first search)."""
    before = _reader_searches(http)
    deadline = time.monotonic() + timeout
    while _reader_searches(http) == before:
        assert time.monotonic() < deadline, "no search was answered by a reader"
        assert http.post(f"/collections/{NAME}/search", json=body).status_code == 200
        time.sleep(0.1)


def _answer(http, body: dict) -> tuple[int, dict]:
    r = http.post(f"/collections/{NAME}/search", json=body)
    doc = r.json()
    doc.pop("time_ms", None)
    return r.status_code, doc


def test_a_reader_answers_what_the_serving_process_answers(servers, wordnet):
    plain, served = servers
    q = wordnet.queries[:6].astype(np.float32)
    bodies = []
    for k in (1, 10, 100):
        bodies += [
            {"vector": q[0].tolist(), "k": k, "with_payload": False},
            {"vector_b64": b64(q[1]), "k": k},
            {"vectors_b64": b64(q[2:6]), "k": k, "layout": "columns"},
            {"vector": q[3].tolist(), "k": k, "filter": {"even": True}},
        ]
    bad = [
        {"k": 10},  # no query
        {"vector": q[0].tolist(), "vector_b64": b64(q[0]), "k": 10},  # two queries
        {"vector": q[0].tolist()[:100], "k": 10},  # wrong dimension
        {"vector_b64": "not base64!", "k": 10},
        {"vector_b64": b64(q[0]), "k": 10**6},  # over max_k
        {"vector": q[0].tolist(), "k": 0},
        {"vector": q[0].tolist(), "k": 10, "filter": {"$bogus": 1}},
    ]
    with plain.client("read") as a, served.client("read") as b:
        _until_readers_answer(b, bodies[0])
        before = _reader_searches(b)
        for body in bodies + bad:
            assert _answer(b, body) == _answer(a, body), body
        assert _reader_searches(b) - before >= len(bodies) // 2  # most of them came from the readers
        hits = _answer(b, {"vector": q[3].tolist(), "k": 20, "filter": {"even": True}})[1]["results"]
        assert len(hits) == 20 and all(h["payload"]["even"] for h in hits)
        # the key is checked before any reader sees the body
        assert (
            b.post(f"/collections/{NAME}/search", json=bodies[0], headers={"Authorization": ""}).status_code
            == 401
        )


def test_a_client_sees_its_write_in_the_next_search(servers):
    _, served = servers
    rng = np.random.default_rng(7)
    with served.client("write") as http:
        for i in range(24):
            if i % 4 == 0:  # let the readers catch up, so the next search would find a current reader
                _until_readers_answer(http, {"vector": rng.normal(size=384).tolist(), "k": 1})
            point = 100_000 + i
            v = rng.normal(size=384).astype(np.float32)
            r = http.post(
                f"/collections/{NAME}/points", json={"points": [{"id": point, "vector": v.tolist()}]}
            )
            assert r.status_code == 200, r.text
            hits = http.post(f"/collections/{NAME}/search", json={"vector_b64": b64(v), "k": 1}).json()[
                "results"
            ]
            assert hits[0]["id"] == point, (i, hits)
            r = http.post(f"/collections/{NAME}/points/delete", json={"ids": [point]})
            assert r.status_code == 200, r.text
            hits = http.post(f"/collections/{NAME}/search", json={"vector_b64": b64(v), "k": 3}).json()[
                "results"
            ]
            assert point not in [h["id"] for h in hits], (i, hits)


def test_a_killed_reader_costs_no_error(servers, wordnet):
    _, served = servers
    q = wordnet.queries[:50].astype(np.float32)
    with served.client("read") as http:
        _until_readers_answer(http, {"vector_b64": b64(q[0]), "k": 10})
        expected = [
            http.post(f"/collections/{NAME}/search", json={"vector_b64": b64(v), "k": 10}).json() for v in q
        ]
        readers = _children(served.proc.pid)
        assert len(readers) == 2
        os.kill(readers[0], signal.SIGKILL)
        for v, want in zip(q, expected):
            r = http.post(f"/collections/{NAME}/search", json={"vector_b64": b64(v), "k": 10})
            assert r.status_code == 200, r.text
            assert r.json()["results"] == want["results"]
        assert http.get("/healthz").status_code == 200
        # another reader takes its place, and the readers answer again
        deadline = time.monotonic() + 120
        while len([p for p in _children(served.proc.pid) if p != readers[0]]) < 2:
            assert time.monotonic() < deadline, "the killed reader was not replaced"
            time.sleep(0.2)
        _until_readers_answer(http, {"vector_b64": b64(q[1]), "k": 10})
