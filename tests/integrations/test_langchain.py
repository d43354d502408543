"""vqdb.integrations.langchain.VqdbVectorStore: LangChain's own standard suite (langchain-tests'
VectorStoreIntegrationTests, sync and async) in memory and on a path, plus exact ranking, filters,
MMR and a reopen from a new process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from vqdb.integrations.langchain import VqdbVectorStore  # noqa: E402


class TestInMemory(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self):
        return VqdbVectorStore(embedding=self.get_embeddings())


class TestOnPath(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        store = VqdbVectorStore(embedding=self.get_embeddings(), path=tmp_path / "kb")
        yield store
        store.backend.close()


class TestRemote(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, vqdb_server, collection_name):
        store = VqdbVectorStore(
            embedding=self.get_embeddings(),
            url=vqdb_server.url,
            collection=collection_name,
            api_key=vqdb_server.admin_key,
        )
        yield store
        store.backend.close()


def test_remote_ranks_exactly_and_filters(vqdb_server, collection_name):
    emb = DeterministicFakeEmbedding(size=6)
    texts = _texts(300)
    store = VqdbVectorStore(
        embedding=emb, url=vqdb_server.url, collection=collection_name, api_key=vqdb_server.admin_key
    )
    store.add_texts(texts, metadatas=[{"topic": i % 7, "src": {"page": i}} for i in range(300)])
    x = np.asarray(emb.embed_documents(texts), dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = np.asarray(emb.embed_query("topic 3"), dtype=np.float64)
    sims = x @ (q / np.linalg.norm(q))
    got = store.similarity_search_with_score("topic 3", k=1)
    assert got[0][0].page_content == texts[int(np.argmax(sims))]
    want = np.argsort(-np.where(np.arange(300) % 7 == 3, sims, -np.inf), kind="stable")[:10]
    got = store.similarity_search("topic 3", k=10, filter={"topic": 3, "src.page": {"$lt": 1000}})
    assert [d.page_content for d in got] == [texts[i] for i in want]
    assert got[0].metadata == {"topic": 3, "src": {"page": int(want[0])}}
    assert store.similarity_search("topic 3", k=3, filter={"missing": 1}) == []
    store.backend.client.delete_collection(collection_name)


def _texts(n):
    return [f"passage number {i} about topic {i % 7}" for i in range(n)]


def test_six_dim_embeddings_rank_exactly():
    emb = DeterministicFakeEmbedding(size=6)
    texts = _texts(600)
    store = VqdbVectorStore.from_texts(texts, emb, metadatas=[{"topic": i % 7} for i in range(600)])
    x = np.asarray(emb.embed_documents(texts), dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for query in ("passage number 3", "something else entirely", "topic 5"):
        q = np.asarray(emb.embed_query(query), dtype=np.float64)
        q /= np.linalg.norm(q)
        sims = x @ q
        want = np.argsort(-sims, kind="stable")[:20]
        got = store.similarity_search_with_score(query, k=20)
        assert [d.page_content for d, _ in got] == [texts[i] for i in want]
        np.testing.assert_allclose([s for _, s in got], sims[want], rtol=1e-5, atol=1e-6)
        mask = np.arange(600) % 7 == 2
        want_f = np.argsort(-np.where(mask, sims, -np.inf), kind="stable")[:5]
        got_f = store.similarity_search(query, k=5, filter={"topic": 2})
        assert [d.page_content for d in got_f] == [texts[i] for i in want_f]
        assert all(d.metadata == {"topic": 2} for d in got_f)


def test_filters_mmr_relevance_and_retriever():
    emb = DeterministicFakeEmbedding(size=16)
    docs = [
        Document(
            page_content=f"doc {i}", metadata={"year": 2000 + i, "src": {"kind": "web" if i % 2 else "pdf"}}
        )
        for i in range(30)
    ]
    store = VqdbVectorStore(embedding=emb)
    ids = store.add_documents(docs)
    assert len(set(ids)) == 30 and len(store) == 30
    got = store.similarity_search("doc 3", k=30, filter={"year": {"$gte": 2020}, "src.kind": "web"})
    assert sorted(d.metadata["year"] for d in got) == [2021, 2023, 2025, 2027, 2029]
    assert store.similarity_search("doc 3", k=3, filter={"nope": 1}) == []
    assert len(store.similarity_search("doc 3", k=3, filter={"nope": None})) == 3  # missing == None
    mmr = store.max_marginal_relevance_search("doc 3", k=4, fetch_k=12, lambda_mult=0.3)
    top = store.similarity_search("doc 3", k=12)
    assert len(mmr) == 4 and mmr[0] == top[0] and {d.id for d in mmr} <= {d.id for d in top}
    rel = store.similarity_search_with_relevance_scores("doc 3", k=5)
    assert all(0.0 <= r <= 1.0 for _, r in rel) and rel[0][0].page_content == "doc 3"
    assert store.as_retriever(search_kwargs={"k": 2}).invoke("doc 7")[0].page_content == "doc 7"
    store.delete()
    assert len(store) == 0 and store.similarity_search("doc 3") == []


def test_path_store_reopens_in_a_new_process(tmp_path):
    emb = DeterministicFakeEmbedding(size=8)
    store = VqdbVectorStore(embedding=emb, path=tmp_path / "kb")
    store.add_texts(["alpha", "beta", "gamma"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}], ids=["a", "b", "c"])
    store.delete(["b"])
    store.backend.close()
    code = (
        "from langchain_core.embeddings import DeterministicFakeEmbedding\n"
        "from vqdb.integrations.langchain import VqdbVectorStore\n"
        f"s = VqdbVectorStore(embedding=DeterministicFakeEmbedding(size=8), path={str(tmp_path / 'kb')!r})\n"
        "print(len(s), [(d.id, d.page_content, d.metadata) for d in s.get_by_ids(['a', 'b', 'c'])])\n"
        "print(s.similarity_search('gamma', k=1)[0].id)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["2 [('a', 'alpha', {'n': 1}), ('c', 'gamma', {'n': 3})]", "c"]


def test_bad_input_is_a_clear_error():
    store = VqdbVectorStore(embedding=DeterministicFakeEmbedding(size=4))
    with pytest.raises(ValueError, match="metadatas"):
        store.add_texts(["a", "b"], metadatas=[{}])
    with pytest.raises(ValueError, match="JSON"):
        store.add_texts(["a"], metadatas=[{"tags": {1, 2}}])
    store.add_texts(["a"], metadatas=[{"year": 2020}], ids=["a"])
    with pytest.raises(ValueError, match="year"):  # one key, two types: refused, nothing written
        store.add_texts(["b", "c"], metadatas=[{"year": 2021}, {"year": "last year"}], ids=["b", "c"])
    with pytest.raises(ValueError, match="filter"):
        store.similarity_search("a", filter="year > 3")
    assert [d.id for d in store.get_by_ids(["a", "b", "c"])] == ["a"]
