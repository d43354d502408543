"""``vqdb serve --ray-address local``: the private Ray cluster serves sharded collections and its
processes stop with the server (two Ray agents used to outlive SIGTERM). (Ray cannot be bound to
loopback: see ``vqdb.distributed._ray.start_local``.)"""

from __future__ import annotations

import time

import pytest
from vqdb_server_harness import Server, write_keys_file

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray")


def test_local_ray_stops_with_the_server(tmp_path):
    server = Server(
        tmp_path / "data",
        keys_file=write_keys_file(tmp_path / "keys.txt"),
        extra_args=["--ray-address", "local"],
    ).start(timeout=240)
    try:
        with server.client("admin") as http:
            r = http.post("/collections", json={"name": "sharded", "dim": 4, "shards": 2})
            assert r.status_code == 201, r.text
            points = [{"id": i, "vector": [1.0, 2.0, 3.0, float(i)]} for i in range(10)]
            assert http.post("/collections/sharded/points", json={"points": points}).status_code == 200
            hits = http.post("/collections/sharded/search", json={"vector": [1, 2, 3, 9], "k": 10}).json()
            assert sorted(h["id"] for h in hits["results"]) == list(range(10))  # both shards answered
            assert http.get("/collections/sharded").json()["count"] == 10
        ray_procs = [p for p in psutil.Process(server.proc.pid).children(recursive=True)]
        assert ray_procs, "Ray started no process"
    finally:
        server.stop(timeout=120)  # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal
        assert server.proc.poll() is not None
    assert "Traceback" not in server.read_log(), server.read_log()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = [p for p in ray_procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.5)
    assert not alive, [(p.pid, " ".join(p.cmdline()[:3])) for p in alive]
