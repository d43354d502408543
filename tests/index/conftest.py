"""Fixtures of the index tests: real WordNet vectors (the bundled 5,000-vector sample) and metadata."""

from __future__ import annotations

import pytest
from index_helpers import make_quantizer

import vqdb


@pytest.fixture(scope="session")
def quantizer(wordnet):
    return make_quantizer(wordnet.dim)


@pytest.fixture(scope="session")
def meta(wordnet):
    """Per-vector metadata with fields of known selectivity: half 50%, b20 5%, b200 0.5%."""
    n = wordnet.base.shape[0]
    return [
        {
            "i": i,
            "half": i % 2,
            "b20": i % 20,
            "b200": i % 200,
            "word": f"w{i % 7}",
            "score": float(i % 100) / 100.0,
        }
        for i in range(n)
    ]


@pytest.fixture(scope="session")
def flat_index(wordnet, quantizer, meta):
    """In-memory flat ``ip`` index over the sample, float16 vectors stored (read-only use in tests)."""
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, store_vectors=True)
    index.add(wordnet.base, metadata=meta)
    return index


@pytest.fixture(scope="session")
def ivf_index(wordnet, quantizer, meta):
    """In-memory IVF (64 lists) ``ip`` index over the sample, float16 vectors stored (read-only use)."""
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, ivf=64, store_vectors=True)
    index.add(wordnet.base, metadata=meta)
    return index
