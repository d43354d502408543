"""Fuzz the /qdrant routes (tag "qdrant") with schemathesis against a live server: no 5xx, whatever
the body. Bounded: <= ~20 s of fuzzing."""

from __future__ import annotations

import subprocess
import sys

import httpx
from vqdb_server_harness import KEYS, Server, write_keys_file


def test_qdrant_routes_give_no_server_error(tmp_path):
    keys = write_keys_file(tmp_path / "keys.txt")
    server = Server(tmp_path / "data", keys_file=keys, env={"VQDB_MAX_DIM": "64"}).start()
    try:
        with httpx.Client(base_url=server.url, headers={"api-key": KEYS["admin"]}, timeout=120) as http:
            assert (
                http.put(
                    "/qdrant/collections/fz", json={"vectors": {"size": 4, "distance": "Dot"}}
                ).status_code
                == 200
            )
            body = {
                "points": [
                    {"id": i, "vector": [1.0, i, 0.0, 0.5], "payload": {"n": i, "s": "x"}} for i in range(20)
                ]
            }
            assert http.put("/qdrant/collections/fz/points", json=body).status_code == 200
        cmd = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "-H",
            f"api-key: {KEYS['admin']}",
            "--checks",
            "not_a_server_error",
            "--include-tag",
            "qdrant",
            "--max-examples",
            "12",
            "--max-time",
            "20",
            "--generation-deterministic",
            "--request-timeout",
            "30",
            "--no-color",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        report = out.stdout[-6000:] + out.stderr[-2000:]
        assert out.returncode == 0, f"schemathesis failed:\n{report}\n--- server log ---\n{server.read_log()}"
        assert "generated" in out.stdout and " failed" not in out.stdout.split("Test cases:")[-1], report
    finally:
        server.stop()
    assert "Traceback" not in server.read_log(), server.read_log()
