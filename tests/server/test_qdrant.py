"""The Qdrant-compatible subset under /qdrant, driven by the real ``qdrant-client`` against a real
``vqdb serve`` subprocess (the session ``server`` fixture: keys on)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import numpy as np
import pytest

qdrant_client = pytest.importorskip("qdrant_client")
from qdrant_client import AsyncQdrantClient, QdrantClient, models  # noqa: E402
from qdrant_client.http.exceptions import UnexpectedResponse  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")


@pytest.fixture(scope="module")
def qc(server, keys):
    client = QdrantClient(url=server.url, prefix="qdrant", api_key=keys["admin"], timeout=120)
    yield client
    client.close()


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_cos(x, q, mask=None):
    s = _unit(x) @ _unit(q[None, :])[0]
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    return np.argsort(-s, kind="stable"), s


def test_version_endpoint(server):
    with httpx.Client(base_url=server.url) as http:
        for path in ("/qdrant", "/qdrant/"):
            body = http.get(path).json()
            assert body["title"].startswith("vqdb")
            assert body["version"] == "1.20.0"


def test_int_ids_lifecycle_matches_brute_force(qc):
    name = "qd-int"
    assert not qc.collection_exists(name)
    qc.create_collection(name, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    assert qc.collection_exists(name)
    assert name in [c.name for c in qc.get_collections().collections]
    rng = np.random.default_rng(7)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    payloads = [
        {"group": i % 3, "meta": {"src": f"s{i % 2}", "score": i / 10}, "tags": ["a", "b"]}
        for i in range(120)
    ]
    qc.upsert(
        name, points=[models.PointStruct(id=i, vector=x[i].tolist(), payload=payloads[i]) for i in range(60)]
    )
    qc.upsert(
        name,
        points=models.Batch(ids=list(range(60, 120)), vectors=x[60:].tolist(), payloads=payloads[60:]),
    )
    info = qc.get_collection(name)
    assert info.points_count == 120
    assert info.config.params.vectors.size == 8
    assert info.config.params.vectors.distance == models.Distance.COSINE

    # retrieve: missing ids left out, payload exactly as given (nesting, lists, ints)
    got = qc.retrieve(name, [3, 999, 4], with_vectors=True)
    assert [r.id for r in got] == [3, 4]
    assert got[0].payload == payloads[3]
    np.testing.assert_allclose(got[1].vector, _unit(x[4:5])[0], rtol=1e-5, atol=1e-6)

    # query = exact cosine ranking (small collection: every candidate re-scored from float32 vectors)
    q = rng.normal(size=8).astype(np.float32)
    order, s = _brute_cos(x, q)
    res = qc.query_points(name, query=q.tolist(), limit=10).points
    assert [p.id for p in res] == order[:10].tolist()
    np.testing.assert_allclose([p.score for p in res], s[order[:10]], rtol=1e-5)
    assert res[0].payload == payloads[order[0]]
    bare = qc.query_points(name, query=q.tolist(), limit=2, with_payload=False).points
    assert [p.payload for p in bare] == [None, None]

    flt = models.Filter(
        must=[models.FieldCondition(key="group", match=models.MatchValue(value=2))],
        must_not=[models.FieldCondition(key="meta.src", match=models.MatchValue(value="s0"))],
    )
    mask = np.array([(i % 3 == 2) and (i % 2 == 1) for i in range(120)])
    order_f, s_f = _brute_cos(x, q, mask)
    res = qc.query_points(name, query=q.tolist(), query_filter=flt, limit=5, with_payload=True).points
    assert [p.id for p in res] == order_f[:5].tolist()
    assert all(p.payload["group"] == 2 and p.payload["meta"]["src"] == "s1" for p in res)

    # range, should, score_threshold, offset
    rng_flt = models.Filter(
        should=[
            models.FieldCondition(key="meta.score", range=models.Range(gte=11.0)),
            models.FieldCondition(key="group", match=models.MatchAny(any=[0])),
        ]
    )
    mask_r = np.array([(i / 10 >= 11.0) or (i % 3 == 0) for i in range(120)])
    order_r, s_r = _brute_cos(x, q, mask_r)
    res = qc.query_points(name, query=q.tolist(), query_filter=rng_flt, limit=4, offset=2).points
    assert [p.id for p in res] == order_r[2:6].tolist()
    threshold = float(s[order[4]])
    res = qc.query_points(name, query=q.tolist(), limit=50, score_threshold=threshold).points
    assert [p.id for p in res] == order[:5].tolist()

    # a filter on a key no point has matches nothing (as in Qdrant), not an error
    nobody = models.Filter(must=[models.FieldCondition(key="nope", match=models.MatchValue(value=1))])
    assert qc.query_points(name, query=q.tolist(), query_filter=nobody).points == []
    assert qc.count(name, count_filter=nobody).count == 0

    # batch queries
    batch = qc.query_batch_points(
        name,
        requests=[
            models.QueryRequest(query=q.tolist(), limit=3),
            models.QueryRequest(query=x[10].tolist(), limit=1, filter=flt),
        ],
    )
    assert [p.id for p in batch[0].points] == order[:3].tolist()
    assert [p.id for p in batch[1].points] == _brute_cos(x, x[10], mask)[0][:1].tolist()

    # scroll pages through every matching id once, in id order
    seen, offset = [], None
    while True:
        page, offset = qc.scroll(name, scroll_filter=flt, limit=7, offset=offset)
        seen += [p.id for p in page]
        if offset is None:
            break
    assert seen == np.flatnonzero(mask).tolist()
    assert qc.count(name, count_filter=flt).count == int(mask.sum())

    qc.create_payload_index(name, field_name="group", field_schema=models.PayloadSchemaType.INTEGER)

    # delete by ids (missing ones ignored) and by filter
    qc.delete(name, points_selector=models.PointIdsList(points=[0, 1, 5000]))
    assert qc.count(name).count == 118
    qc.delete(name, points_selector=models.FilterSelector(filter=flt))
    left = [i for i in range(2, 120) if not mask[i]]
    assert qc.count(name).count == len(left)
    page, _ = qc.scroll(name, limit=1000)
    assert [p.id for p in page] == left
    assert qc.delete_collection(name) is True
    assert not qc.collection_exists(name)


def test_euclid_and_dot_distances(qc):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    q = rng.normal(size=6).astype(np.float32)
    for distance in (models.Distance.EUCLID, models.Distance.DOT):
        name = f"qd-{distance.value.lower()}"
        qc.create_collection(name, vectors_config=models.VectorParams(size=6, distance=distance))
        qc.upsert(name, points=models.Batch(ids=list(range(50)), vectors=x.tolist()))
        res = qc.query_points(name, query=q.tolist(), limit=5).points
        if distance == models.Distance.EUCLID:
            d = np.linalg.norm(x - q, axis=1)
            want = np.argsort(d)[:5]
            np.testing.assert_allclose([p.score for p in res], d[want], rtol=1e-4)
            res_t = qc.query_points(name, query=q.tolist(), limit=50, score_threshold=float(d[want[2]]))
            assert [p.id for p in res_t.points] == want[:3].tolist()
        else:
            s = x @ q
            want = np.argsort(-s)[:5]
            np.testing.assert_allclose([p.score for p in res], s[want], rtol=1e-4)
        assert [p.id for p in res] == want.tolist()
        qc.delete_collection(name)


def _error(exc_info) -> tuple[int, dict]:
    exc = exc_info.value
    import json

    return exc.status_code, json.loads(exc.content)


def test_errors_have_qdrant_shape(qc, server, keys):
    with pytest.raises(UnexpectedResponse) as e:
        qc.get_collection("qd-missing")
    status, body = _error(e)
    assert status == 404 and "qd-missing" in body["status"]["error"] and "time" in body

    qc.create_collection(
        "qd-err", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
    )
    with pytest.raises(UnexpectedResponse) as e:
        qc.create_collection(
            "qd-err", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
    assert _error(e)[0] == 409
    with pytest.raises(UnexpectedResponse) as e:  # a Qdrant feature this subset lacks
        qc.query_points("qd-err", query=[1, 0, 0, 0], prefetch=[models.Prefetch(query=[1, 0, 0, 0])])
    status, body = _error(e)
    assert status == 400 and "prefetch" in body["status"]["error"]
    with pytest.raises(UnexpectedResponse) as e:
        qc.upsert("qd-err", points=[models.PointStruct(id=1, vector=[1.0, 2.0], payload={})])
    status, body = _error(e)
    assert status == 400 and "dimension" in body["status"]["error"]
    with pytest.raises(UnexpectedResponse) as e:
        qc.query_points(
            "qd-err",
            query=[1, 0, 0, 0],
            query_filter=models.Filter(
                must=[
                    models.FieldCondition(
                        key="loc", geo_radius=models.GeoRadius(center=models.GeoPoint(lon=0, lat=0), radius=1)
                    )
                ]
            ),
        )
    status, body = _error(e)
    assert status == 400 and "geo_radius" in body["status"]["error"]
    with httpx.Client(base_url=server.url, headers={"api-key": keys["admin"]}) as http:
        r = http.put(
            "/qdrant/collections/qd-err/points",
            json={"points": [{"id": 1, "vector": [1, 0, 0, 0], "colour": 3}]},
        )
        assert r.status_code == 400 and "colour" in r.json()["status"]["error"]
        r = http.put(
            "/qdrant/collections/qd-err/points",
            json={"points": [{"id": "not-a-uuid", "vector": [1, 0, 0, 0]}]},
        )
        assert r.status_code == 400 and "UUID" in r.json()["status"]["error"]
    assert qc.count("qd-err").count == 0  # nothing of the bad requests was written

    reader = QdrantClient(url=server.url, prefix="qdrant", api_key=keys["read"])
    assert reader.collection_exists("qd-err")
    with pytest.raises(UnexpectedResponse) as e:
        reader.upsert("qd-err", points=[models.PointStruct(id=1, vector=[1.0, 0, 0, 0])])
    assert _error(e)[0] == 403
    nobody = QdrantClient(url=server.url, prefix="qdrant")
    with pytest.raises(UnexpectedResponse) as e:
        nobody.get_collections()
    assert _error(e)[0] == 401
    qc.delete_collection("qd-err")


def test_key_is_checked_before_the_body_is_parsed(server, keys):
    """A malformed body is 401 with no key and 403 with too small a key (was 400 either way: the body
    was parsed first); only a key allowed through gets the 400 about the body, all in Qdrant's shape."""
    bad = b'{"points": [{"id": 1, "vector": '
    path = "/qdrant/collections/qd-auth-order/points"
    cases = [({}, 401), ({"api-key": keys["read"]}, 403), ({"api-key": keys["admin"]}, 400)]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for headers, expected in cases:
            r = http.put(path, content=bad, headers={**headers, "content-type": "application/json"})
            assert r.status_code == expected, (headers.keys(), r.status_code, r.text)
            assert "error" in r.json()["status"], r.text
        r = http.put(
            "/qdrant/collections/qd-auth-order", content=b"{", headers={"content-type": "application/json"}
        )
        assert r.status_code == 401, r.text


def test_async_client(server, keys):
    async def main():
        client = AsyncQdrantClient(url=server.url, prefix="qdrant", api_key=keys["admin"])
        name = "qd-async"
        await client.create_collection(
            name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
        )
        await client.upsert(
            name,
            points=[
                models.PointStruct(id=i, vector=[float(i), 1.0, 0.0, 0.0], payload={"i": i})
                for i in range(10)
            ],
        )
        res = await client.query_points(name, query=[1.0, 0.0, 0.0, 0.0], limit=3, with_payload=True)
        got = await client.retrieve(name, [9])
        await client.delete_collection(name)
        await client.close()
        return res, got

    res, got = asyncio.run(main())
    assert [p.id for p in res.points] == [9, 8, 7]
    assert [p.payload["i"] for p in res.points] == [9, 8, 7]
    assert got[0].payload == {"i": 9}


def test_uuid_ids_are_canonical():
    from vqdb.server.qdrant_schemas import point_id

    u = uuid.uuid4()
    assert point_id(u.hex) == str(u)
    assert point_id(str(u).upper()) == str(u)
    assert point_id(7) == 7
    for bad in (-1, 2**63, True, 1.5, "x"):
        with pytest.raises(ValueError):
            point_id(bad)


def test_unnamed_vector_by_empty_name(server, keys):
    """langchain-qdrant creates ``{"": {size, distance}}`` with ``sparse_vectors: {}``: the default vector."""
    with httpx.Client(base_url=server.url, headers={"api-key": keys["admin"]}, timeout=60) as http:
        body = {"vectors": {"": {"size": 3, "distance": "Dot"}}, "sparse_vectors": {}}
        assert http.put("/qdrant/collections/qd-empty-name", json=body).json()["result"] is True
        info = http.get("/qdrant/collections/qd-empty-name").json()["result"]
        assert info["config"]["params"]["vectors"] == {"size": 3, "distance": "Dot"}
        up = {"points": [{"id": 1, "vector": {"": [1.0, 2.0, 3.0]}}]}
        assert http.put("/qdrant/collections/qd-empty-name/points", json=up).status_code == 200
        hits = http.post(
            "/qdrant/collections/qd-empty-name/points/query", json={"query": [1, 0, 0], "using": ""}
        )
        assert [p["id"] for p in hits.json()["result"]["points"]] == [1]
        bad = {"vectors": {"size": 3, "distance": "Dot"}, "sparse_vectors": {"text": {}}}
        r = http.put("/qdrant/collections/qd-sparse", json=bad)
        assert r.status_code == 400 and "sparse_vectors" in r.json()["status"]["error"]
        bad = {"vectors": {"a": {"size": 3, "distance": "Dot"}, "b": {"size": 3, "distance": "Dot"}}}
        r = http.put("/qdrant/collections/qd-named", json=bad)
        assert r.status_code == 400 and "named vectors" in r.json()["status"]["error"]
        assert http.delete("/qdrant/collections/qd-empty-name").json()["result"] is True


def _mmr_oracle(x, q, diversity, k, candidates):
    """Qdrant's MMR over the ``candidates`` nearest by cosine, written out plainly."""
    u = _unit(x.astype(np.float64))
    qq = _unit(q[None, :].astype(np.float64))[0]
    rel = u @ qq
    pool = list(np.argsort(-rel, kind="stable")[:candidates])
    chosen = [pool.pop(0)]
    while len(chosen) < k:
        gains = [(1 - diversity) * rel[i] - diversity * max(u[i] @ u[j] for j in chosen) for i in pool]
        chosen.append(pool.pop(int(np.argmax(gains))))
    return chosen, rel


def test_mmr_query(qc):
    name = "qd-mmr"
    rng = np.random.default_rng(5)
    base = rng.normal(size=(10, 8))
    x = np.vstack([base + 0.05 * rng.normal(size=(10, 8)) for _ in range(4)]).astype(
        np.float32
    )  # near-duplicates
    qc.create_collection(name, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    qc.upsert(name, points=models.Batch(ids=list(range(40)), vectors=x.tolist()))
    q = base[3].astype(np.float32)
    for diversity in (0.0, 0.5, 0.9):
        res = qc.query_points(
            name,
            query=models.NearestQuery(
                nearest=q.tolist(), mmr=models.Mmr(diversity=diversity, candidates_limit=20)
            ),
            limit=5,
        ).points
        want, rel = _mmr_oracle(x, q, diversity, 5, 20)
        assert [p.id for p in res] == [int(i) for i in want]
        np.testing.assert_allclose([p.score for p in res], rel[want], rtol=1e-5)
    plain = qc.query_points(name, query=q.tolist(), limit=5).points
    assert [p.id for p in plain] == _mmr_oracle(x, q, 0.0, 5, 5)[0]
    qc.delete_collection(name)


def test_issue_script_10000_uuid_points(qc):
    """The script of issue 15, unchanged qdrant-client calls: create, upsert 10,000 points with UUID
    ids and payloads, filtered query, scroll, retrieve, delete by filter, delete collection."""
    name = "qd-uuid"
    rng = np.random.default_rng(15)
    n, d = 10_000, 16
    x = rng.normal(size=(n, d)).astype(np.float32)
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i)) for i in range(n)]
    payloads = [
        {"city": ["paris", "rome", "oslo", "lima"][i % 4], "rank": i, "tags": {"even": i % 2 == 0}}
        for i in range(n)
    ]
    qc.create_collection(name, vectors_config=models.VectorParams(size=d, distance=models.Distance.COSINE))
    qc.upsert(
        name,
        points=[models.PointStruct(id=ids[i], vector=x[i].tolist(), payload=payloads[i]) for i in range(n)],
    )
    assert qc.count(name).count == n

    flt = models.Filter(
        must=[models.FieldCondition(key="city", match=models.MatchAny(any=["rome", "lima"]))],
        must_not=[models.FieldCondition(key="tags.even", match=models.MatchValue(value=True))],
    )
    mask = np.array([(i % 4 in (1, 3)) and i % 2 == 1 for i in range(n)])
    q = rng.normal(size=d).astype(np.float32)
    order, s = _brute_cos(x, q, mask)
    res = qc.query_points(name, query=q.tolist(), query_filter=flt, limit=10, with_payload=True).points
    assert [p.id for p in res] == [ids[i] for i in order[:10]]  # 1,000 candidates re-scored exactly
    np.testing.assert_allclose([p.score for p in res], s[order[:10]], rtol=1e-5)
    assert res[0].payload == payloads[order[0]]

    seen, offset = [], None
    while True:
        page, offset = qc.scroll(name, scroll_filter=flt, limit=1000, offset=offset, with_payload=False)
        seen += [p.id for p in page]
        if offset is None:
            break
    assert len(seen) == len(set(seen)) == int(mask.sum()) and set(seen) == {
        ids[i] for i in np.flatnonzero(mask)
    }

    got = qc.retrieve(name, [ids[7], str(uuid.uuid4()), ids[42]], with_vectors=True)
    assert [r.id for r in got] == [ids[7], ids[42]] and got[1].payload == payloads[42]
    np.testing.assert_allclose(got[0].vector, _unit(x[7:8])[0], rtol=1e-5, atol=1e-6)

    qc.delete(name, points_selector=models.FilterSelector(filter=flt))
    assert qc.count(name).count == n - int(mask.sum())
    assert qc.query_points(name, query=q.tolist(), query_filter=flt, limit=5).points == []
    assert qc.delete_collection(name) is True
    assert not qc.collection_exists(name)


def test_langchain_qdrant_unchanged(server, keys):
    lq = pytest.importorskip("langchain_qdrant")
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding

    emb = DeterministicFakeEmbedding(size=8)
    texts = [f"note {i} about {['cats', 'dogs', 'birds'][i % 3]}" for i in range(30)]
    store = lq.QdrantVectorStore.from_texts(
        texts,
        emb,
        metadatas=[{"animal": ["cats", "dogs", "birds"][i % 3], "i": i} for i in range(30)],
        url=server.url,
        prefix="qdrant",
        api_key=keys["admin"],
        collection_name="qd-langchain",
    )
    (doc,) = store.similarity_search(texts[4], k=1)
    assert doc.page_content == texts[4] and doc.metadata["i"] == 4
    flt = models.Filter(
        must=[models.FieldCondition(key="metadata.animal", match=models.MatchValue(value="birds"))]
    )
    hits = store.similarity_search_with_score(texts[4], k=5, filter=flt)
    assert len(hits) == 5 and all(d.metadata["animal"] == "birds" for d, _ in hits)
    mmr = store.max_marginal_relevance_search(texts[4], k=3, fetch_k=10)
    assert len(mmr) == 3 and mmr[0].page_content == texts[4]
    ids = store.add_documents([Document(page_content="a new note", metadata={"animal": "cats", "i": 99})])
    assert [d.page_content for d in store.get_by_ids(ids)] == ["a new note"]
    store.delete(ids)
    assert store.get_by_ids(ids) == []
    store.client.delete_collection("qd-langchain")
