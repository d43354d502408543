"""`vqdb serve --ray-address ...`: a collection created with ``shards > 1`` is a ShardedIndex, served by the
same REST API, and reopened as one after a restart of the service."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vqdb.distributed import ShardedIndex  # noqa: E402

LOOPBACK = ("127.0.0.1", 50000)  # no API key configured: the service serves loopback clients only


def _app(data, ray_address):
    from vqdb.server.app import create_app
    from vqdb.server.settings import Settings

    return create_app(Settings(data=data, demo=False, ray_address=ray_address))


def test_sharded_collection_over_rest(ray_cluster, wordnet, tmp_path):
    x = wordnet.base[:400]
    points = [{"id": i, "vector": x[i].tolist(), "payload": {"pos": i % 3}} for i in range(400)]
    q = wordnet.queries[:3]
    with TestClient(_app(tmp_path, "local"), client=LOOPBACK) as client:
        r = client.post("/collections", json={"name": "wn", "dim": 384, "shards": 2})
        assert r.status_code == 201, r.text
        assert r.json()["shards"] == 2
        store = client.app.state.store
        with store.get("wn").lease() as index:
            assert isinstance(index, ShardedIndex)
        assert client.post("/collections/wn/points", json={"points": points}).status_code in (200, 201)
        hits = client.post("/collections/wn/search", json={"vectors": q.tolist(), "k": 5}).json()["results"]
        assert [len(h) for h in hits] == [5, 5, 5]
        with store.get("wn").lease() as index:
            want = index.search(q, 5).ids
        assert [[h["id"] for h in row] for row in hits] == want.tolist()
        filtered = client.post(
            "/collections/wn/search", json={"vector": q[0].tolist(), "k": 5, "filter": {"pos": 1}}
        ).json()["results"]
        assert all(h["id"] % 3 == 1 for h in filtered)
        described = client.get("/collections/wn").json()
        assert described["count"] == 400 and described["stats"]["n_shards"] == 2
    with TestClient(
        _app(tmp_path, "local"), client=LOOPBACK
    ) as client:  # the service restarted: reopened as sharded
        described = client.get("/collections/wn").json()
        assert described["count"] == 400 and described["shards"] == 2
        hits = client.post("/collections/wn/search", json={"vectors": q.tolist(), "k": 5}).json()["results"]
        assert [[h["id"] for h in row] for row in hits] == want.tolist()


def test_shards_without_a_ray_address_is_a_clear_4xx(tmp_path, monkeypatch):
    from vqdb.distributed import service

    monkeypatch.setattr(service, "_address", None)
    with TestClient(_app(tmp_path, None), client=LOOPBACK) as client:
        r = client.post("/collections", json={"name": "wn", "dim": 8, "shards": 2})
        assert 400 <= r.status_code < 500 and "--ray-address" in r.text
        assert client.get("/collections/wn").status_code == 404
