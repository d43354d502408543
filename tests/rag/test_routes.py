"""The text endpoints of the service, in process (FastAPI TestClient), with keys on."""

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vqdb.server.app import create_app  # noqa: E402
from vqdb.server.settings import Settings  # noqa: E402

KEY = "rag-test-admin-key"


@pytest.fixture(scope="module")
def client(tmp_path_factory, embedder):
    app = create_app(Settings(data=tmp_path_factory.mktemp("srv"), api_key=KEY, demo=False))
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@pytest.fixture(scope="module")
def docs(client, wordnet):
    r = client.post("/text-collections", json={"name": "docs", "chunk_size": 300})
    assert r.status_code == 201, r.text
    assert r.json()["model"] == "all-MiniLM-L6-v2" and r.json()["dim"] == 384
    texts = [" ".join(wordnet.texts[i * 6 : (i + 1) * 6]) for i in range(6)]
    meta = [{"part": i % 2, "name": f"doc{i}"} for i in range(6)]
    r = client.post("/collections/docs/documents", json={"texts": texts, "metadata": meta})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["documents"] == 6 and body["passages"] == len(body["ids"]) > 6
    return texts


def test_query_in_words(client, docs, wordnet):
    word = wordnet.texts[14].split(" (")[0].split(",")[0]
    for mode in ["hybrid", "dense", "bm25"]:
        r = client.post("/collections/docs/query", json={"text": word, "k": 3, "mode": mode})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert hits and any(wordnet.texts[14] in h["text"] for h in hits), (mode, word, hits)
        h = hits[0]
        assert h["text"] == docs[h["doc_id"]][h["start"] : h["end"]]
    r = client.get("/collections/docs/query", params={"text": word, "k": 2})
    assert r.status_code == 200 and len(r.json()["hits"]) == 2
    r = client.post("/collections/docs/query", json={"text": word, "k": 5, "filter": {"part": 1}})
    assert r.status_code == 200 and all(h["metadata"]["part"] == 1 for h in r.json()["hits"])
    r = client.get("/collections/docs/text")
    assert r.status_code == 200 and r.json()["chunk_size"] == 300
    # the text collection is an ordinary collection too
    assert client.get("/collections/docs").status_code == 200


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        ("post", "/collections/docs/query", {"text": "   "}, 400),  # whitespace only
        ("post", "/collections/docs/query", {"text": ""}, 422),
        ("post", "/collections/docs/query", {"text": "x", "mode": "sparse"}, 422),
        ("post", "/collections/docs/query", {"text": "x", "k": 0}, 422),
        ("post", "/collections/docs/query", {"text": "x", "k": 10_000_000}, 400),
        ("post", "/collections/docs/query", {"text": "x", "filter": {"nope": 1}}, 400),
        ("post", "/collections/nowhere/query", {"text": "x"}, 404),
        ("post", "/collections/docs/documents", {"texts": []}, 422),
        ("post", "/collections/docs/documents", {"texts": ["ok", " \n "]}, 400),
        ("post", "/collections/docs/documents", {"texts": ["a"], "metadata": [{}, {}]}, 400),
        ("post", "/collections/docs/documents", {"texts": ["a"], "metadata": [{"_text": "x"}]}, 400),
        ("post", "/text-collections", {"name": "../etc"}, 422),
        ("post", "/text-collections", {"name": "docs"}, 409),
        ("post", "/text-collections", {"name": "t2", "quantizer": "nope"}, 400),
        ("post", "/text-collections", {"name": "t3", "chunk_size": 100, "chunk_overlap": 100}, 400),
    ],
)
def test_bad_requests_get_clear_4xx(client, docs, method, path, body, status):
    r = getattr(client, method)(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_vector_collection_is_not_a_text_collection(client, docs):
    assert client.post("/collections", json={"name": "vec", "dim": 8}).status_code == 201
    r = client.post("/collections/vec/query", json={"text": "hello"})
    assert r.status_code == 400 and "not a text collection" in r.json()["detail"]


def test_read_key_cannot_add(client, docs):
    r = client.post(
        "/collections/docs/documents", json={"texts": ["x"]}, headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401


def test_demo_hook_makes_a_text_collection_of_a_service_collection(client, embedder):
    """What the service's demo bootstrap can do: create the collection, fill it with build_demo_collection."""
    from vqdb.rag.demo import build_demo_collection

    store = client.app.state.store
    collection = store.create("wordnet-demo", dim=384, metric="cos", quantizer="turbo-4")
    with collection.write_lock, collection.lease() as index:
        build_demo_collection(collection.root, index=index)
    r = client.get("/collections/wordnet-demo/query", params={"text": "a large wild cat", "k": 3})
    assert r.status_code == 200, r.text
    assert any("Felis" in h["text"] or "wildcat" in h["text"] for h in r.json()["hits"])
    assert client.get("/collections/wordnet-demo").json()["count"] == 5000


def test_vector_writes_to_a_text_collection_keep_text_search_consistent(client, wordnet):
    """Points written or deleted through the vector endpoints: BM25 notices, vectors without text are skipped."""
    r = client.post("/text-collections", json={"name": "mixed"})
    assert r.status_code == 201
    word = wordnet.texts[3].split(" (")[0].split(",")[0]
    ids = client.post("/collections/mixed/documents", json={"texts": wordnet.texts[:5]}).json()["ids"]
    assert (
        client.get("/collections/mixed/query", params={"text": word, "mode": "bm25"}).json()["hits"][0]["id"]
        == ids[3]
    )
    r = client.post(
        "/collections/mixed/points", json={"points": [{"id": 999, "vector": wordnet.base[3].tolist()}]}
    )
    assert r.status_code in (200, 201), r.text
    r = client.post("/collections/mixed/points/delete", json={"ids": [ids[3]]})
    assert r.status_code == 200, r.text
    for mode in ["bm25", "dense", "hybrid"]:
        hits = client.get("/collections/mixed/query", params={"text": word, "mode": mode}).json()["hits"]
        assert ids[3] not in [h["id"] for h in hits] and 999 not in [h["id"] for h in hits], mode
