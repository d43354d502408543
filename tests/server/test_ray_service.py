"""``vqdb serve --ray-address local``: the private Ray cluster serves sharded collections, every one of
its processes listens on loopback only, and all of them stop with the server (two Ray agents used to
outlive SIGTERM; the GCS and raylet used to listen on every interface)."""

from __future__ import annotations

import re
import time

import pytest
from vqdb_server_harness import Server, write_keys_file

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray")

from vqdb.distributed._ports import exposed, listeners, process_tree  # noqa: E402


def _session_names(procs) -> set[str]:
    """The Ray session directory names (``session_<date>_<pid>``) in the command lines of ``procs``."""
    names = set()
    for p in procs:
        try:
            names.update(re.findall(r"session_\d{4}-\d\d-\d\d_[\d-]+_\d+_\d+", " ".join(p.cmdline())))
        except psutil.Error:
            pass
    return names


def _running_with(names: set[str]) -> list:
    """Every process of this machine whose command line names one of the session directories."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(n in cmd for n in names):
            out.append(p)
    return out


def test_local_ray_is_loopback_only_and_stops_with_the_server(tmp_path):
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
        tree = process_tree(server.proc.pid)
        ray_procs = tree[1:]
        assert ray_procs, "Ray started no process"
        found = listeners(tree)
        names = {x.process for x in found}
        assert {"gcs_server", "raylet"} <= names, found  # the check sees Ray's ports at all
        assert any(x.process.startswith("ray::") for x in found), found  # and the shard actors' ones
        assert exposed(found) == [], exposed(found)
        sessions = _session_names(ray_procs)
        assert len(sessions) == 1, sessions
    finally:
        server.stop(timeout=120)  # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal
        assert server.proc.poll() is not None
    log = server.read_log()
    assert "Traceback" not in log, log
    assert "other hosts can reach" not in log, log
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = [p for p in ray_procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        alive += [p for p in _running_with(sessions) if p.pid not in {q.pid for q in alive}]
        if not alive:
            break
        time.sleep(0.5)
    assert not alive, [(p.pid, " ".join(p.cmdline()[:3])) for p in alive]
