"""Restart the server process — gracefully, then by a crash (SIGKILL) — and find all data still there."""

from __future__ import annotations

import base64

import pytest
from vqdb_server_harness import Server, write_keys_file


def _ids_of(http, name, q, k=10):
    r = http.post(f"/collections/{name}/search", json={"vectors": q.tolist(), "k": k, "with_payload": False})
    assert r.status_code == 200, r.text
    return [[h["id"] for h in row] for row in r.json()["results"]]


def test_restart_keeps_collections_points_payloads_and_results(tmp_path, wordnet):
    keys = write_keys_file(tmp_path / "keys.txt")
    server = Server(tmp_path / "data", keys_file=keys).start()
    x, q = wordnet.base[:600], wordnet.queries[:20]
    try:
        with server.client("admin") as http:
            assert (
                http.post(
                    "/collections", json={"name": "docs", "dim": 384, "metric": "ip", "store_vectors": True}
                ).status_code
                == 201
            )
            body = {
                "ids": list(range(600)),
                "vectors": base64.b64encode(x.astype("<f4").tobytes()).decode(),
                "payloads": [{"n": i, "text": wordnet.texts[i]} for i in range(600)],
            }
            assert http.post("/collections/docs/points/b64", json=body).status_code == 200
            assert http.post("/collections/docs/points/delete", json={"ids": [5, 6]}).json()["count"] == 598
            before = _ids_of(http, "docs", q)
            exact_before = http.post(
                "/collections/docs/search", json={"vectors": q[:3].tolist(), "k": 5, "rerank": True}
            ).json()
    finally:
        server.stop()

    server.start()  # graceful stop: collections were saved and closed
    try:
        with server.client("read") as http:
            names = [c["name"] for c in http.get("/collections").json()["collections"]]
            assert names == ["docs"]
            info = http.get("/collections/docs").json()
            assert info["count"] == 598 and info["metric"] == "ip" and info["store_vectors"] is True
            assert _ids_of(http, "docs", q) == before
            assert (
                http.post(
                    "/collections/docs/search", json={"vectors": q[:3].tolist(), "k": 5, "rerank": True}
                ).json()["results"]
                == exact_before["results"]
            )
            assert http.get("/collections/docs/points/7").json()["payload"] == {
                "n": 7,
                "text": wordnet.texts[7],
            }
            assert http.get("/collections/docs/points/5").status_code == 404
        with server.client("write") as http:  # acknowledged writes, then a crash
            more = {
                "points": [
                    {"id": 1000 + i, "vector": wordnet.base[600 + i].tolist(), "payload": {"n": -i}}
                    for i in range(30)
                ]
            }
            assert http.post("/collections/docs/points", json=more).json()["count"] == 628
            assert (
                http.post("/collections/docs/points/delete", json={"filter": {"n": {"$gte": 590}}}).json()[
                    "deleted"
                ]
                == 10
            )
            after = _ids_of(http, "docs", q)
            count = http.get("/collections/docs").json()["count"]
    finally:
        server.kill()

    server.start()  # crash: the write-ahead log brings every acknowledged write back
    try:
        second = Server(server.data, keys_file=keys)  # a second server on the same data directory is refused
        with pytest.raises(RuntimeError, match="another"):
            second.start(timeout=60)
        with server.client("read") as http:
            assert http.get("/collections/docs").json()["count"] == count
            assert _ids_of(http, "docs", q) == after
            assert http.get("/collections/docs/points/1001").json()["payload"] == {"n": -1}
    finally:
        server.stop()


def test_demo_is_created_on_the_first_start_only(tmp_path, monkeypatch):
    """First start with an empty data dir builds the demo; a restart after deleting it does not."""
    from fastapi.testclient import TestClient

    from vqdb.server import demo
    from vqdb.server.app import create_app
    from vqdb.server.settings import Settings

    calls = []

    def tiny_demo(store):
        calls.append(1)
        store.create(demo.DEMO_NAME, dim=4, quantizer="turbo-2")

    monkeypatch.setattr(demo, "create_demo", tiny_demo)
    settings = Settings(data=tmp_path / "d")
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as http:
        assert [c["name"] for c in http.get("/collections").json()["collections"]] == ["wordnet"]
        assert http.delete("/collections/wordnet").status_code == 204
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as http:
        assert http.get("/collections").json()["collections"] == []
    assert calls == [1]
