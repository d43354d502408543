"""A caller cannot starve the server of connections or descriptors (against a real ``vqdb serve``):
idle, slowloris and slow-body clients are cut after their deadlines, a flood of idle sockets under a
lowered descriptor limit leaves /healthz answering and the log small, 1,001 collections open under
that limit, and a collection whose files are damaged answers 409 consistently. Bounds on times are
generous (the machine is shared): a deadline must be enforced, not met to the millisecond."""

from __future__ import annotations

import json
import shutil
import socket
import time

import httpx
import numpy as np
import pytest
from vqdb_server_harness import Server, write_keys_file

TIMEOUTS = {
    "VQDB_HEADER_TIMEOUT": "1",
    "VQDB_BODY_TIMEOUT": "1",
    "VQDB_BODY_MIN_RATE": "100",
    "VQDB_KEEP_ALIVE_TIMEOUT": "1",
}
SLACK = 10.0  # seconds a cut may come late on a loaded machine


@pytest.fixture(scope="module", params=["httptools", "h11"])
def srv(request, tmp_path_factory):
    """A server on each HTTP parser: the guards hook into both."""
    root = tmp_path_factory.mktemp("conns")
    env = {**TIMEOUTS, "VQDB_HTTP": request.param}
    server = Server(root / "data", keys_file=write_keys_file(root / "keys.txt"), env=env).start()
    yield server
    server.stop()


def _connect(srv) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=30)


def _read_until_closed(sock: socket.socket, limit: float = 30.0) -> tuple[float, bytes]:
    """(seconds until the server closed the socket, everything it sent)."""
    start = time.monotonic()
    sock.settimeout(limit)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return time.monotonic() - start, data
        data += chunk


def _error_of(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_idle_connections_are_closed_after_the_header_timeout(srv):
    socks = [_connect(srv) for _ in range(50)]
    start = time.monotonic()
    for s in socks:
        _, data = _read_until_closed(s)
        assert data == b""  # nothing was asked, nothing is answered
        s.close()
    assert time.monotonic() - start < 1 + SLACK


def test_slowloris_head_gets_408_and_is_closed(srv):
    s = _connect(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):  # a header byte now and then, never the end of the head
        time.sleep(0.2)
        try:
            s.sendall(b"X")
        except OSError:
            break
    lived, data = _read_until_closed(s)
    status, body = _error_of(data)
    assert status == 408 and body["error"] == "RequestTimeoutError" and "head" in body["detail"]
    assert lived < 1 + SLACK


def test_trickling_body_gets_408_and_is_closed(srv):
    s = _connect(srv)
    head = (
        b"POST /collections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer admin-key-0123\r\nContent-Length: 10000\r\n\r\n"
    )
    s.sendall(head + b"{")
    start = time.monotonic()
    try:
        for _ in range(40):  # 1 byte every 0.1 s: 10 bytes/s, under the 100 bytes/s minimum
            time.sleep(0.1)
            s.sendall(b" ")
    except OSError:
        pass
    _, data = _read_until_closed(s)
    status, body = _error_of(data)
    assert status == 408 and "too slowly" in body["detail"]
    assert time.monotonic() - start < 1 + 1 + SLACK


def test_keep_alive_connection_is_closed_when_idle_and_a_fast_client_is_served(srv):
    s = _connect(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    lived, data = _read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 200") and b'"ok"' in data
    assert lived < 1 + SLACK


def test_metrics_count_what_the_guards_cut(srv):
    with srv.client("read") as http:
        text = http.get("/metrics").text
    cut = {
        line.split('"')[1]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("vqdb_connections_closed_total{")
    }
    assert cut["head_timeouts"] >= 51 and cut["body_timeouts"] >= 1, cut


# ---- a flood under a lowered descriptor limit -------------------------------------------------------


def test_idle_flood_under_a_low_descriptor_limit_leaves_healthz_answering(tmp_path):
    """256 descriptors for the server, 600 idle sockets: new connections reap the idle ones; the accept
    loop never runs out of descriptors and the log stays small."""
    server = Server(
        tmp_path / "data",
        keys_file=write_keys_file(tmp_path / "keys.txt"),
        env={"VQDB_HEADER_TIMEOUT": "30", "VQDB_MAX_OPEN_COLLECTIONS": "16"},
        max_open_files=256,
    ).start()
    flood = []
    try:
        for _ in range(600):
            flood.append(_connect(server))
        codes = []
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(20):
                codes.append(http.get("/healthz", headers={"Connection": "close"}).status_code)
        assert codes == [200] * 20
        assert server.open_files() < 256
        with server.client("read") as http:
            metrics = http.get("/metrics").text
        reaped = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('vqdb_connections_closed_total{reason="reaped_idle"}')
        )
        assert reaped >= 600 - 256, metrics[-2000:]
    finally:
        for s in flood:
            s.close()
        server.stop()
    log = server.read_log()
    assert "out of system resource" not in log and "Too many open files" not in log, log[-3000:]
    assert server.log.stat().st_size < 64 << 10


# ---- many collections, few descriptors --------------------------------------------------------------


def _tiny_collection_dir(root, dim=4):
    """One small collection made over HTTP, its directory copied (collection.json + index/)."""
    server = Server(root / "seed", keys_file=write_keys_file(root / "seed-keys.txt")).start()
    try:
        with server.client("admin") as http:
            assert http.post("/collections", json={"name": "c0000", "dim": dim}).status_code == 201
            points = [
                {"id": i, "vector": [1.0 + i, 2.0, 3.0, 4.0 - i], "payload": {"n": i}} for i in range(3)
            ]
            assert http.post("/collections/c0000/points", json={"points": points}).status_code == 200
    finally:
        server.stop()
    return root / "seed" / "collections" / "c0000"


def test_a_thousand_and_one_collections_under_256_descriptors(tmp_path):
    seed = _tiny_collection_dir(tmp_path)
    data = tmp_path / "data"
    (data / "collections").mkdir(parents=True)
    names = [f"c{i:04d}" for i in range(1001)]
    for name in names:
        shutil.copytree(seed, data / "collections" / name, ignore=shutil.ignore_patterns("LOCK"))
    server = Server(
        data,
        keys_file=write_keys_file(tmp_path / "keys.txt"),
        env={"VQDB_MAX_OPEN_COLLECTIONS": "32"},
        max_open_files=256,
    ).start()
    try:
        with server.client("admin") as http:
            listed = [c["name"] for c in http.get("/collections").json()["collections"]]
            assert listed == names
            assert {c["count"] for c in http.get("/collections").json()["collections"]} == {3}
            rng = np.random.default_rng(0)
            for name in rng.choice(names, size=60, replace=False):
                r = http.post(f"/collections/{name}/search", json={"vector": [4.0, 2.0, 3.0, 1.0], "k": 1})
                assert r.status_code == 200, r.text
                assert r.json()["results"][0]["id"] == 2
            # writes go to whichever collection, closed or open, and survive its closing
            assert http.post("/collections/c0007/points/delete", json={"ids": [2]}).json()["count"] == 2
            for name in names[100:140]:  # push c0007 out of the 32 open indexes
                assert http.get(f"/collections/{name}").status_code == 200
            assert http.get("/collections/c0007").json()["count"] == 2
            assert server.open_files() < 200
    finally:
        server.stop()
    log = server.read_log()
    assert "not opened" not in log and "damaged" not in log and "Too many open files" not in log, log[-3000:]


def test_a_collection_with_a_missing_manifest_answers_409_everywhere(tmp_path):
    keys = write_keys_file(tmp_path / "keys.txt")
    server = Server(tmp_path / "data", keys_file=keys).start()
    with server.client("admin") as http:
        assert http.post("/collections", json={"name": "hurt", "dim": 4}).status_code == 201
    server.stop()
    (tmp_path / "data" / "collections" / "hurt" / "index" / "manifest.json").unlink()
    server.start()
    try:
        with server.client("admin") as http:
            answers = [
                http.get("/collections/hurt"),
                http.post("/collections/hurt/search", json={"vector": [1, 2, 3, 4], "k": 1}),
                http.post("/collections", json={"name": "hurt", "dim": 4}),
            ]
            for r in answers:
                assert r.status_code == 409, r.text
                body = r.json()
                assert (
                    body["error"] == "DamagedCollectionError" and "manifest.json is missing" in body["detail"]
                )
                assert str(tmp_path) not in r.text
            assert [c["name"] for c in http.get("/collections").json()["collections"]] == []
            assert http.delete("/collections/hurt").status_code == 204  # frees the name
            assert http.get("/collections/hurt").status_code == 404
            assert http.post("/collections", json={"name": "hurt", "dim": 4}).status_code == 201
    finally:
        server.stop()
