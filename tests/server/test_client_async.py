"""``vqdb.AsyncClient`` against the live server (the same operations as ``vqdb.Client``), and the
retries of idempotent calls (connection failures injected in front of the real server)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import numpy as np
import pytest
from vqdb_server_harness import KEYS

import vqdb
from vqdb import errors
from vqdb.testing import recall_at_k


def test_async_client_mirrors_the_sync_one(server, wordnet):
    x, q = wordnet.base[:200], wordnet.queries[:4]
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"a{i}")) for i in range(200)]

    async def run():
        async with vqdb.AsyncClient(server.url, api_key=KEYS["admin"]) as client:
            col = await client.create_collection("async-docs", 384, store_vectors="float32", id_type="str")
            got = await col.add(x, ids=ids, metadata=[{"n": i} for i in range(200)])
            assert got.tolist() == ids and await col.count() == 200
            res = await col.search(q, 5, include_metadata=True)
            rec = await col.get(ids[:3])
            page = await col.scroll(limit=150)
            await col.update_metadata(ids[:2], {"tag": "x"})
            deleted = await col.delete(ids[:2] + ["absent"], missing_ok=True)
            with pytest.raises(errors.NotFoundError):
                await col.delete(["absent"])
            remaining = await col.ids()
            await client.delete_collection("async-docs")
            return res, rec, page, deleted, remaining

    res, rec, page, deleted, remaining = asyncio.run(run())
    local = vqdb.Index(384, metric="cos", store_vectors="float32")
    local.add(x, ids=ids, metadata=[{"n": i} for i in range(200)])
    want = local.search(q, 5)
    assert res.ids.tolist() == want.ids.tolist() and res.ids.dtype == object
    np.testing.assert_allclose(res.scores, want.scores, rtol=1e-5, atol=1e-6)
    assert [m["n"] for m in res.metadata[0]] == [local.get([i]).metadata[0]["n"] for i in res.ids[0]]
    assert rec.ids.tolist() == ids[:3] and [m["n"] for m in rec.metadata] == [0, 1, 2]
    assert len(page.records.ids) == 150 and page.next_offset is not None
    assert deleted == 2 and sorted(remaining.tolist()) == sorted(ids[2:])


def test_async_client_creates_a_graph_collection(server, wordnet):
    """AsyncClient.create_collection(graph=) makes a graph collection of that degree; ef in the search."""
    x, q = wordnet.base[:1500], wordnet.queries[:20]

    async def run():
        async with vqdb.AsyncClient(server.url, api_key=KEYS["admin"], timeout=120) as client:
            col = await client.create_collection("async-graph", 384, metric="ip", graph=16)
            await col.add(x)
            info = await client.describe("async-graph")
            res = await col.search(q, 10, ef=64)
            await client.delete_collection("async-graph")
            return info, res

    info, res = asyncio.run(run())
    assert info["graph"] == 16 and info["stats"]["graph"]["degree"] == 16
    truth = np.argsort(-(q @ x.astype(np.float16).astype(np.float32).T), axis=1)[:, :10]
    assert recall_at_k(res.ids, truth, 10) >= 0.9


class FlakyTransport(httpx.BaseTransport):
    """Fails the first ``failures`` requests with a connection error, then talks to the real server."""

    def __init__(self, failures: int):
        self.failures = failures
        self.sent = 0
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request):
        self.sent += 1
        if self.sent <= self.failures:
            raise httpx.ConnectError("injected failure", request=request)
        return self.inner.handle_request(request)

    def close(self):
        self.inner.close()


def test_idempotent_calls_are_retried_and_adds_are_not(server, wordnet):
    x = wordnet.base[:10]
    with vqdb.Client(server.url, api_key=KEYS["admin"]) as admin:
        col = admin.create_collection("retry-docs", 384)
        col.upsert(x, np.arange(10))
    flaky = FlakyTransport(failures=2)
    with vqdb.Client(server.url, api_key=KEYS["admin"], retries=2, transport=flaky) as client:
        col = client.collection("retry-docs")  # describe: failed twice, then answered
        assert flaky.sent == 3 and len(col) == 10
        flaky.failures = flaky.sent + 2
        assert col.search(x[:1], 1).ids.tolist() == [[0]]  # a search is retried
        flaky.failures = flaky.sent + 1
        with pytest.raises(errors.ServiceError):  # an add is sent once: never applied twice
            col.add(x[:1], ids=[77])
        assert 77 not in col
        flaky.failures = flaky.sent + 3
        with pytest.raises(errors.ServiceError):  # retries exhausted (1 + 2 tries)
            len(col)
    with vqdb.Client(server.url, api_key=KEYS["admin"]) as admin:
        admin.delete_collection("retry-docs")


def test_async_client_text_documents_keep_their_uuid_ids(server, wordnet):
    """AsyncClient.add_documents(ids=) returns the UUIDs as stored and query_text answers under them."""
    texts = [wordnet.texts[i] for i in range(60, 64)]
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"t{i}")) for i in range(len(texts))]

    async def run():
        async with vqdb.AsyncClient(server.url, api_key=KEYS["admin"], timeout=120) as client:
            await client.create_text_collection("async-texts", chunk_size=2000)
            got = await client.add_documents("async-texts", texts, ids=ids)
            hits = await client.query_text("async-texts", texts[2], k=2, mode="bm25")
            with pytest.raises(errors.DTypeError):
                await client.add_documents("async-texts", ["x", "y"], ids=[ids[0] + "z", 1])
            return got, hits

    got, hits = asyncio.run(run())
    assert got.dtype == object and got.tolist() == ids
    assert ids[2] in [h["id"] for h in hits]
    for h in hits:
        assert h["doc_id"] == h["id"] and h["text"] == texts[ids.index(h["id"])]
