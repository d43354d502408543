"""The search hot path on the live server: binary query vectors, the search lane, searches in parallel.

Binary (base64 float32 / float16) queries must give exactly what the same numbers as JSON give; the
lane that serves ``POST /collections/{name}/search`` outside the router must keep the key check, the
metrics, the error shapes and read-your-writes.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

NAME = "search-path"
N = 2000


def b64(x: np.ndarray, dtype: str = "<f4") -> str:
    return base64.b64encode(np.ascontiguousarray(x, dtype=dtype).tobytes()).decode("ascii")


@pytest.fixture(scope="module")
def col(admin, wordnet):
    r = admin.post("/collections", json={"name": NAME, "dim": 384, "metric": "cos"})
    assert r.status_code == 201, r.text
    x = wordnet.base[:N]
    body = {"ids": list(range(N)), "vectors": b64(x), "payloads": [{"n": i} for i in range(N)]}
    assert admin.post(f"/collections/{NAME}/points/b64", json=body).status_code == 200
    yield NAME
    admin.delete(f"/collections/{NAME}")


def _search(http, body: dict) -> dict:
    r = http.post(f"/collections/{NAME}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _pairs(hits: list[dict]) -> list[tuple]:
    return [(h["id"], h["score"]) for h in hits]


def test_base64_float32_query_gives_what_json_gives(admin, col, wordnet):
    q = wordnet.queries[:5].astype(np.float32)
    for k in (1, 10, 100):
        one_json = _search(admin, {"vector": q[0].tolist(), "k": k, "with_payload": False})["results"]
        one_b64 = _search(admin, {"vector_b64": b64(q[0]), "k": k, "with_payload": False})["results"]
        assert len(one_json) == k and _pairs(one_b64) == _pairs(one_json)
        batch_json = _search(admin, {"vectors": q.tolist(), "k": k, "with_payload": False})["results"]
        batch_b64 = _search(admin, {"vectors_b64": b64(q), "k": k, "with_payload": False})["results"]
        assert len(batch_b64) == 5 and [_pairs(r) for r in batch_b64] == [_pairs(r) for r in batch_json]
    with_payload = _search(admin, {"vector_b64": b64(q[0]), "k": 3})["results"]
    assert [h["payload"] for h in with_payload] == [{"n": h["id"]} for h in with_payload]


def test_base64_float16_query_is_the_float16_values(admin, col, wordnet):
    q16 = wordnet.queries[:3].astype(np.float16)
    as_json = _search(admin, {"vectors": q16.astype(np.float32).tolist(), "k": 10, "with_payload": False})
    as_b64 = _search(
        admin, {"vectors_b64": b64(q16, "<f2"), "dtype": "float16", "k": 10, "with_payload": False}
    )
    assert [_pairs(r) for r in as_b64["results"]] == [_pairs(r) for r in as_json["results"]]
    # the same bytes read as float32 are other numbers (half as many): refused, not misread
    r = admin.post(f"/collections/{NAME}/search", json={"vector_b64": b64(q16[0], "<f2"), "k": 3})
    assert r.status_code == 400 and "bytes" in r.json()["detail"]


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"vector_b64": "not base64!", "k": 3}, 400, ["base64"]),
        ({"vector_b64": base64.b64encode(b"\0" * 12).decode(), "k": 3}, 400, ["12 bytes", "1536"]),
        ({"vector_b64": "", "k": 3}, 400, ["0 bytes"]),
        ({"vector_b64": b64(np.ones((2, 384))), "k": 3}, 400, ["vectors_b64"]),
        ({"vector_b64": b64(np.full(384, np.nan)), "k": 3}, 400, ["nan"]),
        (
            {"vectors_b64": b64(np.ones((1025, 384)), "<f2"), "dtype": "float16", "k": 3},
            400,
            ["1025", "1024"],
        ),
        ({"vectors_b64": b64(np.ones((200, 384))), "k": 1000}, 400, ["200 queries", "hits"]),
        ({"vector_b64": b64(np.ones(384)), "vector": [0.1] * 384, "k": 3}, 400, ["exactly one"]),
        ({"vector_b64": b64(np.ones(384)), "id": 1, "k": 3}, 400, ["exactly one"]),
        ({"vector_b64": b64(np.ones(384)), "dtype": "int8", "k": 3}, 422, ["float16"]),
        ({"vector_b64": 12, "k": 3}, 422, ["string"]),
    ],
)
def test_bad_binary_queries_get_a_clear_4xx(admin, col, body, status, words):
    r = admin.post(f"/collections/{NAME}/search", json=body)
    assert r.status_code == status, (r.status_code, r.text)
    out = r.json()
    assert set(out) == {"status", "error", "detail"} and out["status"] == status
    text = json.dumps(out["detail"]).lower()
    for w in words:
        assert w.lower() in text, (w, out)


def test_the_search_lane_keeps_keys_errors_and_metrics(server, admin, col, wordnet):
    url = f"/collections/{NAME}/search"
    body = {"vector_b64": b64(wordnet.queries[0]), "k": 3}
    with server.client(None) as nobody:
        r = nobody.post(url, json=body)
        assert r.status_code == 401 and r.json()["error"] == "AuthenticationError"
        assert r.headers["www-authenticate"] == "Bearer"
        # the key is checked before the body is parsed, also for a collection that does not exist
        assert nobody.post("/collections/nope/search", content=b"{not json").status_code == 401
    with server.client("read") as reader:
        assert reader.post(url, json=body).status_code == 200
        assert reader.post("/collections/nope/search", json=body).status_code == 404
        r = reader.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"] == "RequestValidationError"
        assert r.json()["detail"][0]["loc"][0] == "body"
        assert reader.get(url).status_code == 405  # other methods still reach the router
        # a path that is not a collection name is the app's 422, as before
        assert reader.post("/collections/.hidden/search", json=body).status_code == 422

    def searches_counted() -> float:
        text = admin.get("/metrics").text
        line = 'vqdb_requests_total{method="POST",route="/collections/{name}/search",status="200"}'
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line))

    before = searches_counted()
    for _ in range(3):
        _search(admin, body)
    assert searches_counted() == before + 3


def test_the_search_lane_keeps_the_body_limit(server, col, wordnet):
    """(the session server's limit is 2 MiB) A declared size over it is refused before the key check, a
    chunked body when it passes the limit, each with a 413 that closes the connection."""
    url = f"/collections/{NAME}/search"
    huge = b'{"vector": [' + b"0.5," * (700 << 10) + b'0.5], "k": 3}'
    with server.client(None) as nobody:
        r = nobody.post(url, content=huge, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "RequestTooLargeError"
    with server.client("read") as reader:
        r = reader.post(url, content=huge, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "over this endpoint's limit of 2097152 bytes" in r.json()["detail"]
        assert r.headers["connection"] == "close"

        def chunks():
            for i in range(0, len(huge), 1 << 16):
                yield huge[i : i + (1 << 16)]

        r = reader.post(url, content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "RequestTooLargeError"
        small = json.dumps({"vector_b64": b64(wordnet.queries[0]), "k": 3}).encode()
        r = reader.post(
            url, content=iter([small[:40], small[40:]]), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 200 and len(r.json()["results"]) == 3  # a chunked body within the limit


def test_a_search_sees_the_write_just_acknowledged(admin, col, wordnet):
    """Read-your-writes: every upsert / delete is visible to the very next search."""
    x = wordnet.base[N : N + 20].astype(np.float32)
    for j in range(20):
        point = N + 1000 + j
        r = admin.post(f"/collections/{NAME}/points/b64", json={"ids": [point], "vectors": b64(x[j])})
        assert r.status_code == 200
        top = _search(admin, {"vector_b64": b64(x[j]), "k": 1, "with_payload": False})["results"]
        assert top[0]["id"] == point and top[0]["score"] > 0.99
        r = admin.post(f"/collections/{NAME}/points/delete", json={"ids": [point]})
        assert r.json()["deleted"] == 1
        again = _search(admin, {"vector_b64": b64(x[j]), "k": 5, "with_payload": False})["results"]
        assert point not in [h["id"] for h in again]


def test_parallel_searches_give_the_sequential_answers(server, col, wordnet):
    q = wordnet.queries[:64].astype(np.float32)
    with server.client("read") as reader:
        want = [_search(reader, {"vector_b64": b64(v), "k": 10, "with_payload": False}) for v in q]

    def one(i: int):
        with server.client("read") as c:
            return _search(c, {"vector": q[i].tolist(), "k": 10, "with_payload": False})

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(len(q))))
    assert [_pairs(g["results"]) for g in got] == [_pairs(w["results"]) for w in want]


def test_columns_layout_is_the_hits_in_parallel_lists(admin, col, wordnet):
    q = wordnet.queries[:4].astype(np.float32)
    for body in ({"vectors_b64": b64(q)}, {"vectors": q.tolist()}):
        for k, extra in ((10, {"with_payload": False}), (3, {"with_payload": True, "with_vector": True})):
            hits = _search(admin, {**body, "k": k, **extra})["results"]
            cols = _search(admin, {**body, "k": k, **extra, "layout": "columns"})["results"]
            assert cols["ids"] == [[h["id"] for h in row] for row in hits]
            got = np.asarray(cols["scores"], dtype=np.float32)
            want = np.asarray([[h["score"] for h in row] for row in hits], dtype=np.float32)
            np.testing.assert_array_equal(got, want)  # the same float32 values, however printed
            if extra["with_payload"]:
                assert cols["payloads"] == [[h["payload"] for h in row] for row in hits]
                assert cols["vectors"] == [[h.get("vector") for h in row] for row in hits]
            else:
                assert "payloads" not in cols and "vectors" not in cols
    one = _search(admin, {"vector_b64": b64(q[0]), "k": 5, "layout": "columns", "with_payload": False})
    assert len(one["results"]["ids"]) == 5 and isinstance(one["results"]["ids"][0], int)
    # fewer points than k: the lists are shorter, nothing padded
    few = _search(admin, {"vector_b64": b64(q[0]), "k": N + 500, "layout": "columns", "with_payload": False})
    assert len(few["results"]["ids"]) == len(few["results"]["scores"]) == N
    assert len(set(few["results"]["ids"])) == N
    r = admin.post(f"/collections/{NAME}/search", json={"vector_b64": b64(q[0]), "layout": "table"})
    assert r.status_code == 422


class _Recording:
    """An httpx transport in front of the real one that keeps each request's path and JSON body."""

    def __init__(self):
        import httpx

        self.inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, dict | None]] = []

    def handle_request(self, request):
        body = json.loads(request.content) if request.content else None
        self.seen.append((request.url.path, body))
        return self.inner.handle_request(request)

    def close(self):
        self.inner.close()


def test_the_client_sends_binary_queries_and_reads_columns(server, col, wordnet):
    import httpx
    from vqdb_server_harness import KEYS

    import vqdb

    rec = _Recording()
    transport = type("T", (httpx.BaseTransport,), {"handle_request": lambda s, r: rec.handle_request(r)})()
    q = wordnet.queries[:6].astype(np.float32)
    with server.client("read") as reader:
        want = [_search(reader, {"vector_b64": b64(v), "k": 7, "with_payload": True}) for v in q]
    with vqdb.Client(server.url, api_key=KEYS["read"], transport=transport) as client:
        remote = client.collection(NAME)
        res = remote.search(q, 7, include_metadata=True)
        hits = client.query(NAME, q[:2], 7)
    searches = [body for path, body in rec.seen if path.endswith("/search")]
    assert len(searches) == 2 and all("vectors_b64" in b and "vectors" not in b for b in searches)
    assert searches[0]["layout"] == "columns" and "layout" not in searches[1]
    assert base64.b64decode(searches[0]["vectors_b64"]) == q.astype("<f4").tobytes()
    assert res.ids.tolist() == [[h["id"] for h in w["results"]] for w in want]
    np.testing.assert_array_equal(
        res.scores, np.asarray([[h["score"] for h in w["results"]] for w in want], dtype=np.float32)
    )
    assert res.metadata == [[h["payload"] for h in w["results"]] for w in want]
    assert hits == [w["results"] for w in want[:2]]


def _arrow(x: np.ndarray, *, value_type=None, fixed: bool = True, extra: dict | None = None) -> bytes:
    import io

    import pyarrow as pa

    value_type = value_type or pa.float32()
    flat = pa.array(np.ascontiguousarray(x).ravel(), type=value_type)
    if fixed:
        column = pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
    else:
        column = pa.ListArray.from_arrays(
            pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32)), flat
        )
    table = pa.table({"vector": column, **(extra or {})})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}


def test_arrow_query_batch_gives_what_json_gives(admin, col, wordnet):
    import pyarrow as pa

    q = wordnet.queries[:6].astype(np.float32)
    url = f"/collections/{NAME}/search/arrow"
    want = _search(admin, {"vectors": q.tolist(), "k": 10, "with_payload": False})["results"]
    r = admin.post(url, params={"k": 10, "with_payload": "false"}, content=_arrow(q), headers=ARROW)
    assert r.status_code == 200, r.text
    assert [_pairs(row) for row in r.json()["results"]] == [_pairs(row) for row in want]
    q16 = q.astype(np.float16)
    want16 = _search(admin, {"vectors": q16.astype(np.float32).tolist(), "k": 5, "layout": "columns"})
    body = _arrow(q16, value_type=pa.float16(), fixed=False)
    r = admin.post(url, params={"k": 5, "layout": "columns"}, content=body, headers=ARROW)
    assert r.status_code == 200 and r.json()["results"] == want16["results"]
    flt = {"n": {"$lt": 100}}
    r = admin.post(url, params={"k": 3, "filter": json.dumps(flt)}, content=_arrow(q[:2]), headers=ARROW)
    assert r.status_code == 200 and all(h["payload"]["n"] < 100 for row in r.json()["results"] for h in row)


@pytest.mark.parametrize(
    "params, body, status, words",
    [
        ({}, b"not arrow", 400, ["arrow"]),
        ({}, "extra", 400, ["exactly one column"]),
        ({}, "dim", 400, ["dimensions", "384"]),
        ({"filter": "{nope"}, "ok", 400, ["filter", "json"]),
        ({"k": 0}, "ok", 422, ["k"]),
        ({"rerank": "abc"}, "ok", 422, ["rerank"]),
        ({"layout": "table"}, "ok", 422, ["layout"]),
        ({"k": 100}, "many", 400, ["1024 queries", "hits"]),
    ],
)
def test_bad_arrow_queries_get_a_clear_4xx(server, admin, col, params, body, status, words):
    import pyarrow as pa

    ones = np.ones((2, 384), np.float32)
    content = {
        "extra": _arrow(ones, extra={"id": pa.array([1, 2])}),
        "dim": _arrow(np.ones((2, 8), np.float32)),
        "ok": _arrow(ones),
        "many": _arrow(np.ones((1024, 384), np.float16), value_type=pa.float16()),
    }.get(body, body)
    r = admin.post(f"/collections/{NAME}/search/arrow", params=params, content=content, headers=ARROW)
    assert r.status_code == status, (r.status_code, r.text)
    text = json.dumps(r.json()["detail"]).lower()
    for w in words:
        assert w.lower() in text, (w, r.json())
    with server.client(None) as nobody:
        assert (
            nobody.post(f"/collections/{NAME}/search/arrow", content=content, headers=ARROW).status_code
            == 401
        )


def test_searched_query_vectors_are_counted_on_both_paths(admin, col, wordnet):
    """A one-query search of a small collection runs on the event loop, a batch in a worker thread:
    both count their query vectors."""

    def queries_counted() -> float:
        lines = admin.get("/metrics").text.splitlines()
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith("vqdb_queries_total "))

    q = wordnet.queries[:5].astype(np.float32)
    before = queries_counted()
    _search(admin, {"vector_b64": b64(q[0]), "k": 3})
    assert queries_counted() == before + 1
    _search(admin, {"vectors_b64": b64(q), "k": 3})
    assert queries_counted() == before + 6


def test_small_enough_reads_the_open_index_only(tmp_path, wordnet):
    """``Collection.small_enough``: the live rows of an open single-shard index against the bound;
    a closed index is never small enough (opening it does not belong on the event loop)."""
    from vqdb.server.collections import CollectionStore

    store = CollectionStore(tmp_path / "collections")
    store.load()
    c = store.create("rows", dim=384, metric="cos")
    c.upsert(wordnet.base[:40].astype(np.float32), np.arange(40), None)
    c.search(wordnet.queries[:1].astype(np.float32), 3)  # the index is open after a search
    assert c.small_enough(40) and not c.small_enough(39)
    c.delete_ids(np.arange(5))
    assert c.small_enough(35) and not c.small_enough(34)
    store.close()
    assert not c.small_enough(1 << 30)
