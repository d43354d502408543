"""``vqdb.Client`` against the live server: the embedded API's names and result types, over HTTP."""

from __future__ import annotations

import numpy as np
import pytest
from vqdb_server_harness import KEYS

import vqdb
from vqdb import errors
from vqdb.testing import recall_at_k


@pytest.fixture(scope="module")
def client(server):
    with vqdb.Client(server.url, api_key=KEYS["admin"]) as c:
        yield c


def test_client_mirrors_the_embedded_index(client, wordnet, tmp_path):
    x, q = wordnet.base[:800], wordnet.queries[:16]
    col = client.create_collection("client-docs", dim=384, metric="cos", store_vectors=True)
    assert col.dim == 384 and len(col) == 0
    meta = [{"n": i, "even": i % 2 == 0} for i in range(800)]
    assert col.upsert(x, np.arange(800), metadata=meta).tolist() == list(range(800))  # ids, as Index.upsert
    assert client.upsert("client-docs", x[:10], np.arange(10), batch_bytes=4 * 384 * 3) == 800  # many batches

    res = col.search(q, 10)
    assert isinstance(res, vqdb.SearchResult)
    assert res.ids.shape == (16, 10) and res.ids.dtype == np.int64 and res.scores.dtype == np.float32
    assert res.metric == "cos"
    # the same index built in-process gives the same neighbours
    local = vqdb.Index(384, metric="cos", quantizer="turbo-4", store_vectors=True)
    local.upsert(x, np.arange(800), metadata=meta)
    expected = local.search(q, 10)
    np.testing.assert_array_equal(res.ids, expected.ids)
    np.testing.assert_allclose(res.scores, expected.scores, rtol=1e-5, atol=1e-6)

    flt = col.search(q[:4], 5, filter={"even": True}, rerank=True)
    assert (flt.ids % 2 == 0).all()
    padded = col.search(q[:2], 900)
    assert padded.ids.shape == (2, 900) and (padded.ids[:, 800:] == -1).all()
    assert np.isneginf(padded.scores[:, 800:]).all()

    hits = col.query(q[:1], 3)
    assert len(hits) == 1 and {"id", "score", "payload"} <= set(hits[0][0])
    got = client.get("client-docs", [13, 99999], with_vector=True)
    assert [p["id"] for p in got] == [13] and got[0]["payload"] == {"n": 13, "even": False}
    assert len(got[0]["vector"]) == 384
    rec = col.get([14, 13])  # Index.get's Records, same order
    want = local.get([14, 13])
    np.testing.assert_array_equal(rec.ids, [14, 13])
    np.testing.assert_allclose(rec.vectors, want.vectors, atol=1e-6)
    assert rec.metadata == want.metadata and rec.exact
    with pytest.raises(errors.NotFoundError):
        col.get([13, 99999])
    with pytest.raises(errors.NotFoundError):  # as Index.delete: nothing deleted
        col.delete([1, 2, 99999])
    assert len(col) == 800
    assert col.delete([1, 2, 99999], missing_ok=True) == 2
    assert col.delete(filter={"n": {"$gte": 790}}) == 10 and len(col) == 788

    snap = col.snapshot()
    assert snap["name"] in [s["name"] for s in client.snapshots("client-docs")]
    path = client.download_snapshot("client-docs", snap["name"], tmp_path / "s.tar")
    copy = client.upload_snapshot(path, "client-docs-copy")
    assert len(copy) == 788
    np.testing.assert_array_equal(copy.search(q, 5).ids, col.search(q, 5).ids)
    for name in ("client-docs", "client-docs-copy"):
        client.delete_collection(name)


def test_client_raises_the_library_errors(client, server):
    with pytest.raises(errors.NotFoundError):
        client.describe("missing-collection")
    client.create_collection("client-errors", dim=4)
    with pytest.raises(errors.AlreadyExistsError):
        client.create_collection("client-errors", dim=4)
    assert client.create_collection("client-errors", dim=4, exist_ok=True).dim == 4
    with pytest.raises(errors.DimensionMismatchError):
        client.collection("client-errors").upsert(np.ones((2, 5)), [1, 2])
    with pytest.raises(errors.InvalidInputError):  # server side: filter on an unknown field
        client.search("client-errors", np.ones((1, 4)), 3, filter={"nope": 1})
    with vqdb.Client(server.url, api_key=KEYS["read"]) as reader:
        with pytest.raises(errors.PermissionDeniedError):
            reader.delete_collection("client-errors")
    with vqdb.Client(server.url, api_key="wrong") as stranger:
        with pytest.raises(errors.AuthenticationError):
            stranger.collections()
    with vqdb.Client("http://127.0.0.1:9", timeout=2) as nowhere:
        with pytest.raises(errors.ServiceError):
            nowhere.collections()
        assert nowhere.health() is False
    client.delete_collection("client-errors")


def test_client_text_methods_over_the_live_server(client, wordnet):
    """RAG over REST: create a text collection, add documents, ask in words (all three modes), filters."""
    info = client.create_text_collection("client-texts", chunk_size=400)
    assert info["model"] == "all-MiniLM-L6-v2" and info["chunk_size"] == 400 and info["passages"] == 0
    assert client.create_text_collection("client-texts", exist_ok=True)["name"] == "client-texts"
    with pytest.raises(errors.AlreadyExistsError):
        client.create_text_collection("client-texts")
    texts = [" ".join(wordnet.texts[i * 5 : (i + 1) * 5]) for i in range(8)]
    ids = client.add_documents("client-texts", texts, metadata=[{"part": i % 2} for i in range(8)])
    assert ids.dtype == np.int64 and len(ids) >= 8 and len(set(ids.tolist())) == len(ids)
    word = wordnet.texts[12].split(" (")[0].split(",")[0]
    for mode in ("hybrid", "dense", "bm25"):
        hits = client.query_text("client-texts", word, k=3, mode=mode)
        assert 1 <= len(hits) <= 3 and any(h["doc_id"] == 2 and word in h["text"] for h in hits), (
            mode,
            word,
            hits,
        )
        assert hits[0]["text"] == texts[hits[0]["doc_id"]][hits[0]["start"] : hits[0]["end"]]
    odd = client.query_text("client-texts", word, k=5, filter={"part": 1})
    assert odd and all(h["metadata"]["part"] == 1 for h in odd)
    with pytest.raises(errors.InvalidInputError):
        client.add_documents("client-texts", "one string, not a list")
    with pytest.raises(errors.InvalidInputError):
        client.query_text("client-texts", word, mode="sparse")
    with pytest.raises(errors.NotFoundError):
        client.query_text("no-such-collection", word)


def test_graph_collection_over_rest_and_client(client, wordnet):
    """``"graph": true`` at creation, ``ef`` in the search body: recall against exact search, ef is a real
    knob, and the scores are the exact inner products of the float16 vectors."""
    x, q = wordnet.base[:1500], wordnet.queries[:20]
    col = client.create_collection("graph-docs", dim=384, metric="ip", graph=True)
    assert client.describe("graph-docs")["graph"] is True
    assert client.describe("graph-docs")["stats"]["graph"]["degree"] == 32
    col.upsert(x, np.arange(1500))
    x16 = x.astype(np.float16).astype(np.float64)
    exact = np.argsort(-(q.astype(np.float64) @ x16.T), axis=1)[:, :10]
    low, high = col.search(q, 10, ef=8), col.search(q, 10, ef=64)
    assert recall_at_k(high.ids, exact, 10) >= 0.95
    assert recall_at_k(low.ids, exact, 10) < recall_at_k(high.ids, exact, 10)
    want = np.einsum("ij,ikj->ik", q.astype(np.float64), x16[high.ids])
    np.testing.assert_allclose(high.scores, want, rtol=0, atol=2e-5)
    with pytest.raises(errors.InvalidInputError):
        col.search(q[:1], 10, ef=0)
    with pytest.raises(errors.InvalidInputError):
        client.create_collection("graph-ivf", dim=8, graph=True, ivf=True)
    client.delete_collection("graph-docs")


def test_text_collection_with_uuid_ids_over_rest_and_client(client, server, wordnet):
    """Documents added under UUIDs (raw REST and vqdb.Client) come back under the same ids; a document cut
    into several passages gets '<id>#<chunk>'; mixed kinds and too-long ids are a 4xx with nothing written."""
    import uuid

    import httpx

    client.create_text_collection("uuid-texts", chunk_size=200)
    short = [wordnet.texts[i] for i in range(20, 23) if len(wordnet.texts[i]) < 200]
    long_doc = " ".join(wordnet.texts[40:52])
    assert len(long_doc) > 400 and short
    rest_ids = [str(uuid.UUID(int=i + 1)) for i in range(len(short))]
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        r = http.post("/collections/uuid-texts/documents", json={"texts": short, "ids": rest_ids})
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == rest_ids and r.json()["passages"] == len(short)
        before = http.get("/collections/uuid-texts").json()["count"]
        for bad in ([rest_ids[0][:-1] + "f", 7], ["x" * 513]):
            r = http.post(
                "/collections/uuid-texts/documents", json={"texts": ["a", "b"][: len(bad)], "ids": bad}
            )
            assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
        r = http.post("/collections/uuid-texts/documents", json={"texts": ["one", "two"], "ids": [1]})
        assert 400 <= r.status_code < 500, r.text
        assert http.get("/collections/uuid-texts").json()["count"] == before
    long_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "long"))
    ids = client.add_documents("uuid-texts", [long_doc], metadata=[{"kind": "long"}], ids=[long_id])
    assert ids.dtype == object and len(ids) >= 3
    assert ids.tolist() == [f"{long_id}#{c}" for c in range(len(ids))]
    hits = client.query_text("uuid-texts", short[0], k=3, mode="bm25")
    assert rest_ids[0] in [h["id"] for h in hits]
    for h in hits:
        if h["id"] in rest_ids:
            assert h["doc_id"] == h["id"] and h["text"] == short[rest_ids.index(h["id"])]
    hits = client.query_text("uuid-texts", long_doc[:150], k=10, filter={"kind": "long"})
    assert hits and {h["id"] for h in hits} <= set(ids.tolist()) and {h["doc_id"] for h in hits} == {long_id}
    for h in hits:
        assert h["text"] == long_doc[h["start"] : h["end"]] and h["id"] == f"{long_id}#{h['chunk']}"
    with pytest.raises(errors.DTypeError, match="mix integers and strings"):
        client.add_documents("uuid-texts", ["a", "b"], ids=[str(uuid.uuid4()), 3])
    with pytest.raises(errors.DTypeError, match="one kind per collection"):
        client.add_documents("uuid-texts", ["an int id in a string-id collection"], ids=[5])
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        assert http.get("/collections/uuid-texts").json()["count"] == len(short) + len(ids)
