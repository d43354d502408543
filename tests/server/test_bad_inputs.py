"""Every bad input gets a 4xx with a message that says what is wrong — never a 5xx."""

from __future__ import annotations

import base64
import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pytest

NAME = "bad-inputs"
DIM = 8


@pytest.fixture(scope="module")
def col(admin):
    r = admin.post("/collections", json={"name": NAME, "dim": DIM, "metric": "cos"})
    assert r.status_code == 201, r.text
    rng = np.random.default_rng(0)
    points = [
        {"id": i, "vector": rng.normal(size=DIM).tolist(), "payload": {"text": f"p{i}", "year": 2000 + i}}
        for i in range(20)
    ]
    assert admin.post(f"/collections/{NAME}/points", json={"points": points}).status_code == 200
    yield NAME
    admin.delete(f"/collections/{NAME}")


def _expect(r, status: int, *words: str):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["status"] == status and body["error"] and body["detail"]
    text = json.dumps(body["detail"]).lower()
    for w in words:
        assert w.lower() in text, (w, body)


V = [0.1] * DIM


@pytest.mark.parametrize(
    "body, words",
    [
        ({"name": "../etc", "dim": 8}, ["pattern"]),
        ({"name": ".hidden", "dim": 8}, ["pattern"]),
        ({"name": "a/b", "dim": 8}, ["pattern"]),
        ({"name": "x" * 65, "dim": 8}, ["64"]),
        ({"name": "ok", "dim": 0}, ["greater"]),
        ({"name": "ok", "dim": "many"}, ["integer"]),
        ({"name": "ok", "dim": 8, "metric": "l2"}, ["cos"]),
        ({"name": "ok", "dim": 8, "colour": "red"}, ["extra"]),
        ({"dim": 8}, ["missing"]),
    ],
)
def test_create_collection_schema_errors(admin, body, words):
    _expect(admin.post("/collections", json=body), 422, *words)


def test_create_collection_above_the_dimension_limit(admin):
    _expect(admin.post("/collections", json={"name": "ok", "dim": 60_000}), 400, "VQDB_MAX_DIM")


def test_create_collection_unknown_preset(admin):
    _expect(admin.post("/collections", json={"name": "ok", "dim": 8, "quantizer": "turbo-9"}), 400, "turbo-4")


def test_malformed_json(admin):
    r = admin.post("/collections", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/collections/..%2F..%2Fetc",
        "/collections/%2e%2e",
        "/collections/a%00b",
        "/collections/" + "y" * 65,
        "/collections/.secret",
    ],
)
def test_path_traversal_names(admin, path):
    r = admin.get(path)
    assert r.status_code in (404, 422), (path, r.status_code, r.text)


def test_points_errors(admin, col):
    url = f"/collections/{col}/points"
    _expect(
        admin.post(url, json={"points": [{"id": 1, "vector": [0.1] * 7}]}), 400, "7 dimensions", "expects 8"
    )
    for raw in (
        b'{"points": [{"id": 1, "vector": [NaN, 0,0,0,0,0,0,0]}]}',
        b'{"points": [{"id": 1, "vector": [Infinity, 0,0,0,0,0,0,0]}]}',
    ):
        _expect(admin.post(url, content=raw, headers={"Content-Type": "application/json"}), 422, "finite")
    _expect(admin.post(url, json={"points": [{"id": 1, "vector": [1e39] + V[1:]}]}), 400, "nan or inf")
    _expect(admin.post(url, json={"points": [{"id": 1, "vector": [0.0] * DIM}]}), 400, "zeros")
    _expect(admin.post(url, json={"points": [{"id": -1, "vector": V}]}), 422, "greater")
    _expect(admin.post(url, json={"points": [{"id": 2**63, "vector": V}]}), 422, "less")
    # a string id is valid JSON for a point, but this collection holds integer ids: one kind per collection
    _expect(admin.post(url, json={"points": [{"id": "x", "vector": V}]}), 400, "integers as ids")
    _expect(
        admin.post(url, json={"points": [{"id": 1, "vector": V}, {"id": 1, "vector": V}]}),
        400,
        "more than once",
    )
    _expect(admin.post(url, json={"points": [{"id": 1, "vector": V, "payload": {"a": {"b": 1}}}]}), 422)
    _expect(
        admin.post(url, json={"points": [{"id": 1, "vector": V, "payload": {"year": "soon"}}]}), 400, "year"
    )
    _expect(admin.post(url, json={"points": [{"id": 1, "vector": V, "payload": {"__id": 3}}]}), 400, "__")
    _expect(admin.post(url, json={"points": []}), 422)
    _expect(admin.post(url, json={"points": [{"id": 1}]}), 422, "missing")


def test_b64_errors(admin, col):
    url = f"/collections/{col}/points/b64"
    good = base64.b64encode(np.ones((2, DIM), "<f4").tobytes()).decode()
    _expect(admin.post(url, json={"ids": [1, 2], "vectors": "***"}), 400, "base64")
    _expect(admin.post(url, json={"ids": [1, 2, 3], "vectors": good}), 400, "bytes")
    _expect(admin.post(url, json={"ids": [1, 2], "vectors": good, "payloads": [{}]}), 400, "payloads")
    nan = base64.b64encode(np.full((2, DIM), np.nan, "<f4").tobytes()).decode()
    _expect(admin.post(url, json={"ids": [1, 2], "vectors": nan}), 400, "nan")
    _expect(admin.post(url, content=b"{oops", headers={"Content-Type": "application/json"}), 422, "json")
    _expect(admin.post(url, json={"ids": [1, 2], "vectors": good, "colour": 1}), 422, "extra")
    _expect(admin.post(url, json={"ids": [-1, 2], "vectors": good}), 422, "greater")


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def test_arrow_errors(admin, col):
    url = f"/collections/{col}/points/arrow"
    h = {"Content-Type": "application/vnd.apache.arrow.stream"}
    _expect(admin.post(url, content=b"garbage", headers=h), 400, "arrow")
    _expect(admin.post(url, content=_arrow(pa.table({"id": [1]})), headers=h), 400, "vector")
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(7, np.float32)), 7)
    _expect(
        admin.post(url, content=_arrow(pa.table({"id": [1], "vector": vec})), headers=h), 400, "7 dimensions"
    )
    vec8 = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(8, np.float32)), 8)
    _expect(
        admin.post(url, content=_arrow(pa.table({"id": ["a"], "vector": vec8})), headers=h), 400, "integers"
    )
    _expect(
        admin.post(url, content=_arrow(pa.table({"id": [1], "vector": vec8, "blob": [b"\xff"]})), headers=h),
        400,
        "blob",
    )


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"k": 3}, 400, ["exactly one"]),
        ({"vector": V, "id": 1, "k": 3}, 400, ["exactly one"]),
        ({"vector": V, "k": 0}, 422, ["greater"]),
        ({"vector": V, "k": 10**9}, 400, ["limit"]),
        ({"vector": V[:3], "k": 3}, 400, ["expects 8"]),
        ({"vectors": [V, V[:3]], "k": 3}, 400, ["dimensions"]),
        ({"vectors": [], "k": 3}, 422, []),
        ({"vector": V, "filter": {"colour": "red"}}, 400, ["unknown metadata field"]),
        ({"vector": V, "filter": {"year": {"$near": 3}}}, 400, ["operator"]),
        ({"vector": V, "filter": {"year": {"$in": 3}}}, 400, ["list"]),
        ({"vector": V, "filter": {"year": "soon"}}, 400, []),
        ({"vector": V, "filter": {"$or": []}}, 400, ["$or"]),
        ({"vector": V, "rerank": True}, 400, ["store_vectors"]),
        ({"vector": V, "nprobe": 0}, 422, []),
        ({"id": 123456, "k": 3}, 404, ["123456"]),
    ],
)
def test_search_errors(admin, col, body, status, words):
    _expect(admin.post(f"/collections/{col}/search", json=body), status, *words)


def test_delete_errors(admin, col):
    url = f"/collections/{col}/points/delete"
    _expect(admin.post(url, json={}), 400, "exactly one")
    _expect(admin.post(url, json={"ids": [1], "filter": {"year": 2001}}), 400, "exactly one")
    _expect(admin.post(url, json={"filter": {}}), 400, "empty filter")
    _expect(admin.post(url, json={"filter": {"nope": 1}}), 400, "unknown metadata field")


def test_snapshot_errors(admin, col):
    _expect(admin.get(f"/collections/{col}/snapshots/{col}-1.tar"), 404)
    assert admin.get(f"/collections/{col}/snapshots/..%2Fcollection.json").status_code in (404, 422)
    _expect(admin.get(f"/collections/{col}/snapshots/evil.txt"), 422)
    _expect(admin.post(f"/collections/{col}/snapshots/{col}-1.tar/restore", json={"collection": "x"}), 404)
    snap = admin.post(f"/collections/{col}/snapshots").json()["name"]
    _expect(admin.post(f"/collections/{col}/snapshots/{snap}/restore", json={"collection": "../x"}), 422)
    _expect(
        admin.post(f"/collections/{col}/snapshots/{snap}/restore", json={"collection": col}), 409, "exists"
    )
    up = "/collections/uploaded/snapshots/upload"
    h = {"Content-Type": "application/x-tar"}
    _expect(admin.post(up, content=b"not a tar", headers=h), 400, "tar")
    # a tar whose member escapes the destination is refused, and nothing is written outside
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("collection.json", b"{}"), ("index/../../escaped.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _expect(admin.post(up, content=buf.getvalue(), headers=h), 400)
    assert admin.get("/collections/uploaded").status_code == 404
    assert admin.delete(f"/collections/{col}/snapshots/{snap}").status_code == 204


def test_oversized_bodies_get_413(admin, col):
    url = f"/collections/{col}/points"
    big = b'{"points": [' + b" " * (3 << 20) + b"]}"
    _expect(admin.post(url, content=big, headers={"Content-Type": "application/json"}), 413, "limit")

    def chunks():  # no Content-Length: the limit is counted while the body streams in
        yield b'{"points": ['
        for _ in range(48):
            yield b" " * (64 << 10)
        yield b"]}"

    _expect(admin.post(url, content=chunks(), headers={"Content-Type": "application/json"}), 413, "limit")
    bulk = _arrow(
        pa.table(
            {
                "id": np.arange(3000),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(3000 * 1024, np.float32)), 1024),
            }
        )
    )
    _expect(
        admin.post(
            f"/collections/{col}/points/arrow",
            content=bulk,
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
        ),
        413,
        "limit",
    )
    # the server is fine afterwards
    assert admin.post(f"/collections/{col}/search", json={"vector": V, "k": 3}).status_code == 200


def test_unknown_route_and_method(admin):
    assert admin.get("/nope").status_code == 404
    assert admin.put("/collections").status_code == 405
