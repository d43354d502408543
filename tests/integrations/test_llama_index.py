"""vqdb.integrations.llama_index.VqdbVectorStore, end to end through LlamaIndex's VectorStoreIndex
(a deterministic local embedding), in memory and on a path: add, query with MetadataFilters,
get_nodes, delete, delete_nodes, clear, reopen."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("llama_index.core")
from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from vqdb.integrations.llama_index import VqdbVectorStore  # noqa: E402

DIM = 32


def _embed(text: str) -> list[float]:
    """Bag of hashed words: texts sharing words are close (deterministic, no model download)."""
    v = np.zeros(DIM)
    for word in text.lower().split():
        h = int.from_bytes(hashlib.blake2b(word.strip(".,").encode(), digest_size=8).digest(), "little")
        v[h % DIM] += 1.0 if (h >> 32) & 1 else -1.0
    return (v if v.any() else np.eye(DIM)[0]).tolist()


class HashEmbedding(BaseEmbedding):
    def _get_text_embedding(self, text: str) -> list[float]:
        return _embed(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return _embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return _embed(query)


DOCS = [
    ("The cat sat on the mat and purred.", {"animal": "cat", "year": 2019}),
    ("A dog barked at the mailman all morning.", {"animal": "dog", "year": 2021}),
    ("Parrots can imitate human speech.", {"animal": "bird", "year": 2023}),
    ("The stock market fell sharply on Monday.", {"topic": "finance", "year": 2022}),
    ("Volcanic eruptions change the weather for years.", {"topic": "geology", "year": 2020}),
]


@pytest.fixture(params=["memory", "path", "remote"])
def store(request, tmp_path):
    if request.param == "remote":
        server, name = request.getfixturevalue("vqdb_server"), request.getfixturevalue("collection_name")
        s = VqdbVectorStore(url=server.url, collection=name, api_key=server.admin_key)
    else:
        s = VqdbVectorStore() if request.param == "memory" else VqdbVectorStore(path=str(tmp_path / "kb"))
    yield s
    s.client.close()


def _index(store):
    docs = [Document(text=t, metadata=m, id_=f"doc-{i}") for i, (t, m) in enumerate(DOCS)]
    ctx = StorageContext.from_defaults(vector_store=store)
    return VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=HashEmbedding())


def test_vector_store_index_end_to_end(store):
    index = _index(store)
    retriever = index.as_retriever(similarity_top_k=1)
    for query, want in (("where did the cat sit", "cat"), ("what did the dog bark at", "dog")):
        (hit,) = retriever.retrieve(query)
        assert hit.node.metadata["animal"] == want and hit.node.ref_doc_id.startswith("doc-")
    flt = MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.GTE)])
    hits = index.as_retriever(similarity_top_k=10, filters=flt).retrieve("the cat")
    assert sorted(h.node.metadata["year"] for h in hits) == [2021, 2022, 2023]
    # the exact ranking of the stored vectors (small collection: every candidate re-scored)
    q = np.asarray(_embed("the weather and the market"))
    nodes = store.get_nodes()
    assert len(nodes) == 5
    stored = {r.id: r.vector for r in store.client.get([n.node_id for n in nodes], with_vectors=True)}
    cos = {i: float(v @ q / np.linalg.norm(q)) for i, v in stored.items()}  # stored vectors are unit (cos)
    res = store.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=5))
    assert sorted(res.ids) == sorted(cos)
    np.testing.assert_allclose(res.similarities, sorted(cos.values(), reverse=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.similarities, [cos[i] for i in res.ids], rtol=1e-5, atol=1e-6)
    assert [n.node_id for n in res.nodes] == res.ids


def test_filters_get_delete_clear(store):
    _index(store)
    f_or = MetadataFilters(
        filters=[
            MetadataFilter(key="animal", value=["cat", "bird"], operator=FilterOperator.IN),
            MetadataFilter(key="topic", value="finance"),
        ],
        condition=FilterCondition.OR,
    )
    assert sorted(
        n.metadata.get("animal", n.metadata.get("topic")) for n in store.get_nodes(filters=f_or)
    ) == [
        "bird",
        "cat",
        "finance",
    ]
    f_not = MetadataFilters(
        filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.LT)],
        condition=FilterCondition.NOT,
    )
    assert sorted(n.metadata["year"] for n in store.get_nodes(filters=f_not)) == [2021, 2022, 2023]
    f_empty = MetadataFilters(
        filters=[MetadataFilter(key="animal", value=None, operator=FilterOperator.IS_EMPTY)]
    )
    assert {n.metadata["topic"] for n in store.get_nodes(filters=f_empty)} == {"finance", "geology"}
    nested = MetadataFilters(
        filters=[f_or, MetadataFilter(key="year", value=2020, operator=FilterOperator.GT)]
    )
    assert sorted(n.metadata["year"] for n in store.get_nodes(filters=nested)) == [2022, 2023]
    unknown = MetadataFilters(filters=[MetadataFilter(key="colour", value="red")])
    assert store.get_nodes(filters=unknown) == []
    q = VectorStoreQuery(query_embedding=_embed("cat"), similarity_top_k=5, filters=unknown)
    assert store.query(q).ids == []

    first = next(
        n for n in store.get_nodes() if n.metadata.get("animal") == "cat"
    )  # survives the deletes below
    assert [n.node_id for n in store.get_nodes(node_ids=[first.node_id, "nope"])] == [first.node_id]
    store.delete("doc-1")  # by source document
    assert all(n.ref_doc_id != "doc-1" for n in store.get_nodes()) and len(store.get_nodes()) == 4
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="geology")]))
    assert len(store.get_nodes()) == 3
    store.delete_nodes(node_ids=[first.node_id, "nope"])
    assert len(store.get_nodes()) == 2
    store.clear()
    assert store.get_nodes() == []
    with pytest.raises(ValueError, match="embedding"):
        store.add([TextNode(text="no embedding")])
    with pytest.raises(ValueError, match="not supported"):
        store.get_nodes(
            filters=MetadataFilters(
                filters=[MetadataFilter(key="t", value="x", operator=FilterOperator.TEXT_MATCH)]
            )
        )


def test_reopen_from_the_path(tmp_path):
    """Closed and opened again (a new process reopening a path is tested for LangChain's store)."""
    store = VqdbVectorStore(path=str(tmp_path / "kb"))
    _index(store)
    store.client.close()
    again = VqdbVectorStore(path=str(tmp_path / "kb"))
    res = again.query(VectorStoreQuery(query_embedding=_embed("parrots imitate speech"), similarity_top_k=1))
    assert len(again.get_nodes()) == 5
    assert (res.nodes[0].metadata["animal"], res.nodes[0].ref_doc_id) == ("bird", "doc-2")
    again.client.close()
