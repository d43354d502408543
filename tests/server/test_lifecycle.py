"""The whole life of a collection over HTTP against the real server: create, ingest three ways, get,
search (single, batch, by id, filtered), delete by ids and by filter, compact, snapshot, restore, delete."""

from __future__ import annotations

import base64
import io
import tarfile

import numpy as np
import pyarrow as pa
import pytest

from vqdb.testing import recall_at_k

NAME = "life"


@pytest.fixture(scope="module")
def data(wordnet):
    """1,000 real passages split into three ingest batches; payload = text + a category."""
    n = 1000
    return {
        "x": wordnet.base[:n],
        "texts": wordnet.texts[:n],
        "q": wordnet.queries[:50],
        "cat": [("even" if i % 2 == 0 else "odd") for i in range(n)],
    }


@pytest.fixture(scope="module")
def life(admin, data):
    r = admin.post("/collections", json={"name": NAME, "dim": 384, "metric": "cos", "quantizer": "turbo-4"})
    assert r.status_code == 201, r.text
    yield NAME
    admin.delete(f"/collections/{NAME}")


def _payload(data, i):
    return {"text": data["texts"][i], "cat": data["cat"][i], "n": i}


def test_demo_collection_serves_real_text(admin):
    info = admin.get("/collections/wordnet").json()
    assert info["count"] == 5000 and info["dim"] == 384 and info["bytes"] > 0
    r = admin.post("/collections/wordnet/search", json={"id": 42, "k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert len(hits) == 5 and hits[0]["id"] == 42
    assert all(h["payload"].get("_text") or h["payload"].get("text") for h in hits)  # text collection or not
    assert hits[0]["score"] >= hits[-1]["score"]


def test_ingest_three_ways(admin, life, data):
    x = data["x"]
    # 1) JSON points, ids 0..149
    points = [{"id": i, "vector": x[i].tolist(), "payload": _payload(data, i)} for i in range(150)]
    r = admin.post(f"/collections/{life}/points", json={"points": points})
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": 150, "count": 150}
    # 2) base64 float32, ids 150..599
    ids = list(range(150, 600))
    body = {
        "ids": ids,
        "vectors": base64.b64encode(x[150:600].astype("<f4").tobytes()).decode(),
        "payloads": [_payload(data, i) for i in ids],
    }
    r = admin.post(f"/collections/{life}/points/b64", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 600
    # 3) Arrow IPC stream, ids 600..999
    ids = np.arange(600, 1000)
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(x[600:1000].ravel()), 384),
            "text": [data["texts"][i] for i in ids],
            "cat": [data["cat"][i] for i in ids],
            "n": ids,
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    r = admin.post(
        f"/collections/{life}/points/arrow",
        content=sink.getvalue(),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": 400, "count": 1000}
    info = admin.get(f"/collections/{life}").json()
    assert info["count"] == 1000 and info["bytes"] > 0


def test_get_points(admin, life, data):
    r = admin.get(f"/collections/{life}/points/7", params={"with_vector": True})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["id"] == 7 and p["payload"]["text"] == data["texts"][7] and len(p["vector"]) == 384
    r = admin.post(f"/collections/{life}/points/get", json={"ids": [650, 123456, 3]})
    assert sorted(p["id"] for p in r.json()["points"]) == [3, 650]
    assert admin.get(f"/collections/{life}/points/123456").status_code == 404


def test_search_single_batch_filter(admin, life, data, wordnet):
    q = data["q"]
    r = admin.post(
        f"/collections/{life}/search", json={"vectors": q.tolist(), "k": 10, "with_payload": False}
    )
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert len(rows) == len(q) and all(len(row) == 10 for row in rows)
    found = np.array([[h["id"] for h in row] for row in rows])
    truth = np.argsort(-(q @ data["x"].T), axis=1)[:, :10]
    assert recall_at_k(found, truth, 10) >= 0.6  # turbo-4 codes, no re-rank
    single = admin.post(f"/collections/{life}/search", json={"vector": q[0].tolist(), "k": 10}).json()[
        "results"
    ]
    assert [h["id"] for h in single] == list(found[0])
    assert single[0]["payload"]["text"]
    flt = admin.post(
        f"/collections/{life}/search",
        json={"vectors": q[:5].tolist(), "k": 10, "filter": {"cat": "odd", "n": {"$gte": 500}}},
    ).json()
    for row in flt["results"]:
        assert len(row) == 10
        assert all(h["payload"]["cat"] == "odd" and h["payload"]["n"] >= 500 for h in row)


def test_delete_by_ids_and_filter(admin, life):
    r = admin.post(f"/collections/{life}/points/delete", json={"ids": [0, 1, 2]})
    assert r.json() == {"deleted": 3, "count": 997}
    assert admin.delete(f"/collections/{life}/points/3").status_code == 204
    assert admin.delete(f"/collections/{life}/points/3").status_code == 404
    r = admin.post(f"/collections/{life}/points/delete", json={"filter": {"n": {"$gte": 990}}})
    assert r.json() == {"deleted": 10, "count": 986}
    r = admin.post(f"/collections/{life}/points/get", json={"ids": [0, 3, 995, 4]})
    assert [p["id"] for p in r.json()["points"]] == [4]
    r = admin.post(f"/collections/{life}/compact")
    assert r.status_code == 200 and r.json()["count"] == 986


def test_upsert_replaces(admin, life, data):
    x = data["x"]
    r = admin.post(
        f"/collections/{life}/points",
        json={"points": [{"id": 10, "vector": x[20].tolist(), "payload": {"text": "replaced"}}]},
    )
    assert r.json()["count"] == 986
    hit = admin.post(f"/collections/{life}/search", json={"vector": x[20].tolist(), "k": 2}).json()["results"]
    assert {h["id"] for h in hit} == {10, 20}
    assert admin.get(f"/collections/{life}/points/10").json()["payload"] == {"text": "replaced"}


def test_snapshot_restore_into_new_collection(admin, life, data, tmp_path):
    snap = admin.post(f"/collections/{life}/snapshots")
    assert snap.status_code == 201, snap.text
    snap = snap.json()
    assert snap["size_bytes"] > 0 and snap["name"].endswith(".tar")
    listed = admin.get(f"/collections/{life}/snapshots").json()["snapshots"]
    assert snap["name"] in [s["name"] for s in listed]
    # download: a tar holding the collection
    r = admin.get(f"/collections/{life}/snapshots/{snap['name']}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        assert "collection.json" in tar.getnames()
    # writes after the snapshot are not in it
    admin.post(f"/collections/{life}/points/delete", json={"ids": [500]})
    r = admin.post(
        f"/collections/{life}/snapshots/{snap['name']}/restore", json={"collection": "life-restored"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["count"] == 986
    q = data["q"][:5].tolist()
    a = admin.post(
        f"/collections/{life}/search", json={"vectors": q, "k": 10, "filter": {"n": {"$ne": 500}}}
    ).json()
    b = admin.post(
        "/collections/life-restored/search", json={"vectors": q, "k": 10, "filter": {"n": {"$ne": 500}}}
    ).json()
    assert [[h["id"] for h in row] for row in a["results"]] == [
        [h["id"] for h in row] for row in b["results"]
    ]
    # restoring onto an existing name is refused; an uploaded tar restores too
    r = admin.post(
        f"/collections/{life}/snapshots/{snap['name']}/restore", json={"collection": "life-restored"}
    )
    assert r.status_code == 409
    r = admin.post(
        "/collections/life-uploaded/snapshots/upload",
        content=admin.get(f"/collections/{life}/snapshots/{snap['name']}").content,
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["count"] == 986
    for name in ("life-restored", "life-uploaded"):
        assert admin.delete(f"/collections/{name}").status_code == 204
    assert admin.delete(f"/collections/{life}/snapshots/{snap['name']}").status_code == 204


def test_metrics_count_requests_and_vectors(admin, life):
    text = admin.get("/metrics").text
    assert 'vqdb_requests_total{method="POST",route="/collections/{name}/search",status="200"}' in text
    assert "vqdb_request_duration_seconds_bucket" in text
    assert f'vqdb_collection_vectors{{collection="{life}"}}' in text
    assert 'vqdb_collection_bytes{collection="wordnet"}' in text


def test_delete_collection(admin):
    r = admin.post("/collections", json={"name": "short-lived", "dim": 8})
    assert r.status_code == 201
    assert admin.post("/collections", json={"name": "short-lived", "dim": 8}).status_code == 409
    assert "short-lived" in [c["name"] for c in admin.get("/collections").json()["collections"]]
    assert admin.delete("/collections/short-lived").status_code == 204
    assert admin.get("/collections/short-lived").status_code == 404
    assert admin.post("/collections/short-lived/search", json={"vector": [0.0] * 8}).status_code == 404


def test_docs_and_openapi_are_served(admin):
    assert admin.get("/docs").status_code == 200
    spec = admin.get("/openapi.json").json()
    assert "/collections/{name}/search" in spec["paths"]


def test_presets_list_bytes_per_vector(admin):
    r = admin.get("/presets", params={"dim": 384})
    assert r.status_code == 200, r.text
    table = {p["name"]: p["bytes_per_vector"] for p in r.json()["presets"]}
    assert "turbo-4" in table and 0 < table["turbo-2"] < table["turbo-4"] < 384 * 4
    assert admin.get("/presets", params={"dim": 1}).status_code == 422
