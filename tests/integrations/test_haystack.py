"""vqdb.integrations.haystack: Haystack's own DocumentStoreBaseTests (count, write, delete, filters) in
memory and on a path, and the embedding retriever: exact ranking, filters, a pipeline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("haystack")
from haystack import Document, Pipeline  # noqa: E402
from haystack.document_stores.errors import DuplicateDocumentError  # noqa: E402
from haystack.document_stores.types import DuplicatePolicy  # noqa: E402
from haystack.errors import FilterError  # noqa: E402
from haystack.testing.document_store import (  # noqa: E402
    CountDocumentsTest,
    DeleteDocumentsTest,
    DocumentStoreBaseTests,
    WriteDocumentsTest,
)

from vqdb.integrations.haystack import VqdbDocumentStore, VqdbEmbeddingRetriever  # noqa: E402


def _as_float32(doc: Document) -> dict:
    data = doc.to_dict(flatten=False)
    if data["embedding"] is not None:
        data["embedding"] = np.asarray(data["embedding"], dtype=np.float32).tolist()
    return data


class _Equality:
    @staticmethod
    def assert_documents_are_equal(received, expected):
        """Equal in every field; embeddings compared after the float32 cast the store applies."""
        assert [_as_float32(d) for d in received] == [_as_float32(d) for d in expected]

    def test_write_documents(self, document_store):
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):  # the default policy (NONE) fails on duplicates
            document_store.write_documents([doc])
        self.assert_documents_are_equal(document_store.filter_documents(), [doc])


class _Base(_Equality, DocumentStoreBaseTests):
    pass


class _Crud(_Equality, CountDocumentsTest, DeleteDocumentsTest, WriteDocumentsTest):
    """The storage half of the suite: path and remote stores share the filter translation (tested in
    full in memory) and differ only in where records live."""


class TestInMemory(_Base):
    @pytest.fixture
    def document_store(self):
        return VqdbDocumentStore()  # the defaults: 768 dimensions, dot product, turbo-4


class TestOnPath(_Crud):
    @pytest.fixture
    def document_store(self, tmp_path):
        store = VqdbDocumentStore(path=str(tmp_path / "kb"))
        yield store
        store.backend.close()


class TestRemote(_Crud):
    @pytest.fixture
    def document_store(self, vqdb_server, collection_name):
        store = VqdbDocumentStore(
            url=vqdb_server.url, collection=collection_name, api_key=vqdb_server.admin_key
        )
        yield store
        store.backend.client.delete_collection(collection_name)
        store.backend.close()


@pytest.mark.parametrize("similarity", ["dot_product", "cosine", "l2"])
def test_retriever_ranks_exactly(similarity):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    docs = [Document(content=f"doc {i}", embedding=x[i].tolist(), meta={"part": i % 4}) for i in range(300)]
    docs.append(Document(content="no embedding", meta={"part": 1}))
    store = VqdbDocumentStore(embedding_dim=12, similarity=similarity)
    assert store.write_documents(docs) == 301
    q = rng.normal(size=12).astype(np.float32)
    if similarity == "dot_product":
        s = x @ q
    elif similarity == "cosine":
        s = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    else:
        s = -np.linalg.norm(x - q, axis=1)
    retriever = VqdbEmbeddingRetriever(document_store=store, top_k=7)
    got = retriever.run(query_embedding=q.tolist())["documents"]
    want = np.argsort(-s, kind="stable")[:7]
    assert [d.content for d in got] == [f"doc {i}" for i in want]
    np.testing.assert_allclose(
        [d.score for d in got], np.abs(s[want]) if similarity == "l2" else s[want], rtol=1e-4
    )
    assert all(d.embedding is None for d in got)
    flt = {"field": "meta.part", "operator": "==", "value": 1}
    got = retriever.run(query_embedding=q.tolist(), filters=flt, top_k=200, return_embedding=True)[
        "documents"
    ]
    assert len(got) == 75 and all(d.meta["part"] == 1 and d.embedding is not None for d in got)
    scaled = store.embedding_retrieval(q.tolist(), top_k=3, scale_score=True)
    assert all(0.0 <= d.score <= 1.0 for d in scaled)


def test_pipeline_and_serialisation(tmp_path):
    store = VqdbDocumentStore(path=str(tmp_path / "kb"), embedding_dim=4)
    store.write_documents(
        [Document(content=c, embedding=e) for c, e in (("a", [1, 0, 0, 0]), ("b", [0, 1, 0, 0]))]
    )
    pipe = Pipeline()
    pipe.add_component("retriever", VqdbEmbeddingRetriever(document_store=store, top_k=1))
    out = pipe.run({"retriever": {"query_embedding": [0.1, 0.9, 0.0, 0.0]}})
    assert [d.content for d in out["retriever"]["documents"]] == ["b"]
    data = VqdbEmbeddingRetriever(document_store=store).to_dict()
    assert data["init_parameters"]["document_store"]["init_parameters"]["embedding_dim"] == 4
    store.backend.close()
    again = VqdbEmbeddingRetriever.from_dict(data)
    assert again.document_store.count_documents() == 2


def test_remote_store_serialises_its_key_by_name(vqdb_server, collection_name, monkeypatch):
    from haystack.utils import Secret

    monkeypatch.setenv("VQDB_TEST_KEY", vqdb_server.admin_key)
    store = VqdbDocumentStore(
        url=vqdb_server.url,
        collection=collection_name,
        api_key=Secret.from_env_var("VQDB_TEST_KEY"),
        embedding_dim=4,
    )
    store.write_documents([Document(content="x", embedding=[1, 0, 0, 0])])
    data = store.to_dict()
    assert data["init_parameters"]["api_key"] == {
        "type": "env_var",
        "env_vars": ["VQDB_TEST_KEY"],
        "strict": True,
    }
    assert VqdbDocumentStore.from_dict(data).count_documents() == 1
    with pytest.raises(ValueError):  # a plain token is never written out
        VqdbDocumentStore(
            url=vqdb_server.url, collection=collection_name, api_key=vqdb_server.admin_key, embedding_dim=4
        ).to_dict()
    store.backend.client.delete_collection(collection_name)


def test_bad_input():
    store = VqdbDocumentStore(embedding_dim=3)
    with pytest.raises(ValueError, match="3"):
        store.write_documents([Document(content="x", embedding=[1.0, 2.0])])
    with pytest.raises(ValueError, match="dimensions"):
        store.embedding_retrieval([1.0], top_k=1)
    with pytest.raises(FilterError):
        store.filter_documents({"field": "meta.x", "operator": "~", "value": 1})
    assert store.count_documents() == 0
    store.write_documents([Document(id="1", content="x")], policy=DuplicatePolicy.OVERWRITE)
    assert store.count_documents() == 1
