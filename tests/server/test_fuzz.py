"""Fuzz our own OpenAPI schema with schemathesis against the live server: no 5xx on any input, and
every response (status, content type, headers, body) matches the schema. Bounded: <= ~30 s of fuzzing."""

from __future__ import annotations

import subprocess
import sys

from vqdb_server_harness import KEYS, Server, write_keys_file

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
# routers of optional extensions (e.g. tag "text" of vqdb.rag) are fuzzed by their own tests
CORE_TAGS = ("health", "collections", "points", "search", "snapshots")


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(tmp_path):
    keys = write_keys_file(tmp_path / "keys.txt")
    # small collections keep each generated create cheap (a dense rotation costs d^3 to draw)
    server = Server(tmp_path / "data", keys_file=keys, demo=True, env={"VQDB_MAX_DIM": "64"}).start()
    try:
        cmd = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {KEYS['admin']}",
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--max-time",
            "30",
            "--generation-deterministic",
            "--request-timeout",
            "30",
            "--no-color",
            "--workers",
            "1",
            # hypothesis health checks judge the generator, not the server: the binary Arrow and
            # base64 bodies make it discard many drafts, which must not fail our run
            "--suppress-health-check",
            "all",
        ]
        for tag in CORE_TAGS:
            cmd += ["--include-tag", tag]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        report = out.stdout[-6000:] + out.stderr[-2000:]
        assert out.returncode == 0, f"schemathesis failed:\n{report}\n--- server log ---\n{server.read_log()}"
        assert "passed" in out.stdout
    finally:
        server.stop()
    assert "Traceback" not in server.read_log(), server.read_log()
