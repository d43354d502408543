"""Authentication and authorisation: every endpoint refuses a missing/unknown key (401) and a key whose
scope is too small (403); health endpoints are open; without keys only loopback is served."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from vqdb_server_harness import KEYS

OPEN = {"/healthz", "/readyz", "/qdrant"}  # /qdrant: version info, open as in Qdrant
# (method, path template) -> smallest scope allowed
READ, WRITE, ADMIN = "read", "write", "admin"
SCOPES = ("read", "write", "admin")


def _needed(method: str, path: str) -> str:
    if path in ("/metrics",) or method == "GET" and "/snapshots" not in path:
        return READ
    if path.endswith(("/search", "/search/arrow", "/points/get", "/points/scroll")):
        return READ
    if path.startswith("/collections/{name}/points") or path.endswith("/compact"):
        return WRITE
    return ADMIN


CORE_TAGS = {"health", "collections", "points", "search", "snapshots"}


def _operations(spec, *, core_only: bool = False):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                if not core_only or set(op.get("tags", ())) & CORE_TAGS:
                    yield method.upper(), path


def _concrete(path: str) -> str:
    return (
        path.replace("{name}", "no-such-collection")
        .replace("{point_id}", "1")
        .replace("{snapshot}", "no-such-collection-20260101T000000000000Z.tar")
    )


@pytest.fixture(scope="module")
def http(server):
    """One connection pool without credentials (a new httpx client per request costs ~0.1 s)."""
    with server.client(None) as c:
        yield c


@pytest.fixture(scope="module")
def spec(http):
    return http.get("/openapi.json").json()


@pytest.fixture(scope="module")
def operations(spec):
    """Every operation, extension routers included (e.g. vqdb.rag's text endpoints)."""
    ops = sorted(set(_operations(spec)))
    assert len(ops) >= 20
    return ops


@pytest.fixture(scope="module")
def core_operations(spec):
    """The service's own operations, whose scopes this file states in ``_needed``."""
    return sorted(set(_operations(spec, core_only=True)))


def test_health_is_open(http):
    for path in OPEN:
        assert http.get(path).status_code == 200


def test_every_endpoint_needs_a_key(http, operations):
    for method, path in operations:
        if path in OPEN:
            continue
        for headers in (
            {},
            {"Authorization": "Bearer wrong-key"},
            {"api-key": "wrong-key"},
            {"Authorization": "Basic YWRtaW46YWRtaW4="},
        ):
            r = http.request(method, _concrete(path), headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            if path.startswith("/qdrant"):  # the Qdrant-compatible subset answers in Qdrant's error shape
                assert "API key" in r.json()["status"]["error"], r.text
                continue
            assert r.json()["error"] == "AuthenticationError"
            assert r.headers.get("www-authenticate") == "Bearer"


def test_scopes(http, core_operations):
    for method, path in core_operations:
        if path in OPEN:
            continue
        needed = SCOPES.index(_needed(method, path))
        for have, scope in enumerate(SCOPES):
            for headers in ({"Authorization": f"Bearer {KEYS[scope]}"}, {"api-key": KEYS[scope]}):
                r = http.request(method, _concrete(path), headers=headers)
                if have < needed:
                    assert r.status_code == 403, (method, path, scope, r.status_code, r.text)
                    assert "needs" in r.json()["detail"]
                else:  # allowed through auth: any answer but 401/403 (and never a 5xx)
                    assert r.status_code not in (401, 403) and r.status_code < 500, (
                        method,
                        path,
                        scope,
                        r.text,
                    )


def test_read_key_can_search_but_not_write(http):
    read = {"Authorization": f"Bearer {KEYS['read']}"}
    r = http.post("/collections/wordnet/search", json={"id": 1, "k": 3}, headers=read)
    assert r.status_code == 200 and len(r.json()["results"]) == 3
    r = http.post(
        "/collections/wordnet/points", headers=read, json={"points": [{"id": 1, "vector": [0.1] * 384}]}
    )
    assert r.status_code == 403


def test_without_keys_only_loopback_clients_are_served(tmp_path):
    from vqdb.server.app import create_app
    from vqdb.server.settings import Settings

    app = create_app(Settings(data=tmp_path / "d", demo=False))
    with TestClient(app, client=("10.1.2.3", 5555)) as remote:
        assert remote.get("/healthz").status_code == 200
        r = remote.get("/collections")
        assert r.status_code == 403 and "loopback" in r.json()["detail"]
    with TestClient(app, client=("127.0.0.1", 5555)) as local:
        assert local.get("/collections").status_code == 200


def test_refuses_to_bind_elsewhere_without_a_key(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("VQDB_")}
    out = subprocess.run(
        [sys.executable, "-m", "vqdb.cli", "serve", "--host", "0.0.0.0", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2
    assert "refusing to listen on '0.0.0.0' without an API key" in out.stderr


def test_bad_keys_file_is_reported(tmp_path):
    bad = tmp_path / "keys.txt"
    bad.write_text("superuser abc\n")
    out = subprocess.run(
        [sys.executable, "-m", "vqdb.cli", "serve", "--keys-file", str(bad), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "line 1" in out.stderr


def test_the_key_is_checked_before_the_body_is_parsed(http):
    broken = {"Content-Type": "application/json"}
    r = http.post("/collections", content=b"{not json", headers=broken)
    assert r.status_code == 401 and r.json()["error"] == "AuthenticationError"  # was 422
    r = http.post("/collections", content=b"{not json", headers={**broken, "api-key": KEYS["read"]})
    assert r.status_code == 403 and "needs 'admin'" in r.json()["detail"]
    r = http.post("/collections", content=b"{not json", headers={**broken, "api-key": KEYS["admin"]})
    assert r.status_code == 422  # with the right key the body is parsed, and found wanting


def test_the_key_is_checked_before_the_body_is_read(server):
    """A request that announces 1 MB of body (under the limit) and sends one byte of it is answered 401
    at once, and the connection closed: the server never waits for the body of a request it refuses."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(
            b"POST /collections/wordnet/points HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n{"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"connection: close" in head.lower(), head
    assert json.loads(body)["error"] == "AuthenticationError"
