"""Retrieval quality on real text: the WordNet word -> definition task on the bundled sample
(5,000 passages, 400 word queries, each with the passages that define it).

A query counts as answered when a defining passage is in the top 10 ("recall@10" below). The
passage vectors are the precomputed MiniLM vectors shipped with the sample; the queries are
embedded here by the bundled model, so the whole path (model, quantizer, BM25, fusion) is tested.
"""

import numpy as np
import pytest

from vqdb.rag import TextCollection

MODES = ["dense", "bm25", "hybrid"]
# measured on the sample (see bench/results/rag_wordnet.md for the full corpus); bounds leave a few queries of slack
FLOOR = {
    "turbo-4": {"dense": 0.97, "bm25": 0.99, "hybrid": 0.99},
    "turbo-2": {"dense": 0.95, "bm25": 0.99, "hybrid": 0.99},
}


def answered_at_10(results, relevant) -> float:
    ok = [bool(set(rel) & {h.id for h in hits[:10]}) for hits, rel in zip(results, relevant) if rel]
    return float(np.mean(ok))


def test_model_reproduces_the_shipped_query_vectors(wordnet, word_queries):
    _, vectors, _ = word_queries
    cos = (vectors * wordnet.queries).sum(axis=1)
    assert cos.min() > 0.9999, "the bundled model must be the one that embedded the corpus"


@pytest.fixture(scope="module", params=list(FLOOR))
def sample_collection(request, wordnet):
    col = TextCollection(quantizer=request.param)
    ids = col.add(wordnet.texts, vectors=wordnet.base)
    assert ids.tolist() == list(range(len(wordnet.texts)))  # passage id = sample row
    return request.param, col


def test_word_to_definition_recall_at_10(sample_collection, wordnet, word_queries):
    quantizer, col = sample_collection
    texts, vectors, relevant = word_queries
    # float reference: exact inner products over the unquantized vectors
    exact = np.argsort(-(vectors @ wordnet.base.T), axis=1)[:, :10]
    float_dense = np.mean([bool(set(r) & set(e.tolist())) for e, r in zip(exact, relevant) if r])
    got = {
        m: answered_at_10(col.query_many(texts, k=10, mode=m, query_vectors=vectors), relevant) for m in MODES
    }
    print(f"\n{quantizer}: float dense {float_dense:.4f} " + " ".join(f"{m} {v:.4f}" for m, v in got.items()))
    for mode in MODES:
        assert got[mode] >= FLOOR[quantizer][mode], (quantizer, mode, got)
    assert got["hybrid"] >= got["dense"]
    if quantizer == "turbo-4":
        assert got["dense"] >= float_dense - 0.0125  # 4 bits: within 5 of 400 queries of float
