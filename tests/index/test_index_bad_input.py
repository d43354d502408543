"""Bad input: each case raises a clear VqdbError subclass and leaves the index (memory and disk) unchanged."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.compute as pc
import pytest

import vqdb
from vqdb.errors import (
    DimensionMismatchError,
    DTypeError,
    DuplicateIdError,
    FilterError,
    InvalidInputError,
    NotFoundError,
    UnknownNameError,
    VqdbError,
)


@pytest.fixture(scope="module")
def stored(tmp_path_factory, wordnet, quantizer, meta):
    """One stored IVF index shared by the cases (each compares the index before and after its own call)."""
    index = vqdb.Index(
        wordnet.dim, metric="cos", quantizer=quantizer, ivf=8, path=tmp_path_factory.mktemp("bad") / "ix"
    )
    index.add(wordnet.base[:600], metadata=meta[:600])
    yield index
    index.close()


def fingerprint(index, wordnet):
    res = index.search(wordnet.queries[:5], 10, filter={"half": 1})
    wal = index.stats().get("wal_bytes")
    files = sorted(os.listdir(index.path)) if index.path else []
    return (
        len(index),
        np.sort(index.ids()).tolist(),
        res.ids.tolist(),
        wal,
        files,
        index.stats()["metadata_fields"],
    )


def nan_rows(x):
    x = x.copy()
    x[3, 7] = np.nan
    return x


def inf_rows(x):
    x = x.copy()
    x[0, 0] = np.inf
    return x


BAD_WRITES = [
    (
        "wrong dimension",
        lambda ix, x: ix.add(x[:4, :100]),
        DimensionMismatchError,
        "100 dimensions per row; expected 384",
    ),
    ("1-D vector", lambda ix, x: ix.add(x[0]), DimensionMismatchError, r"x\[None, :\]"),
    ("NaN", lambda ix, x: ix.add(nan_rows(x[:5])), InvalidInputError, "NaN or inf"),
    ("inf", lambda ix, x: ix.upsert(inf_rows(x[:5]), ids=[1, 2, 3, 4, 5]), InvalidInputError, "NaN or inf"),
    ("strings", lambda ix, x: ix.add([["a"] * 384]), DTypeError, "numeric"),
    ("zero vector under cos", lambda ix, x: ix.add(np.zeros((2, 384))), InvalidInputError, "all zeros"),
    (
        "duplicate ids in a call",
        lambda ix, x: ix.add(x[:3], ids=[7000, 7001, 7000]),
        DuplicateIdError,
        "repeat",
    ),
    ("add an existing id", lambda ix, x: ix.add(x[:2], ids=[7000, 5]), DuplicateIdError, "use upsert"),
    ("negative id", lambda ix, x: ix.add(x[:1], ids=[-1]), InvalidInputError, ">= 0"),
    ("float ids", lambda ix, x: ix.add(x[:2], ids=[1.5, 2.5]), DTypeError, "integers"),
    ("ids length", lambda ix, x: ix.add(x[:2], ids=[7000]), DimensionMismatchError, "expected 2"),
    ("upsert without ids", lambda ix, x: ix.upsert(x[:2], None), InvalidInputError, "needs ids"),
    ("metadata length", lambda ix, x: ix.add(x[:2], metadata=[{"a": 1}]), InvalidInputError, "expected 2"),
    (
        "metadata type conflict",
        lambda ix, x: ix.add(x[:2], metadata=[{"half": "x"}, {"half": "y"}]),
        InvalidInputError,
        "half",
    ),
    ("reserved metadata name", lambda ix, x: ix.add(x[:1], metadata=[{"__id": 1}]), InvalidInputError, "__"),
    ("metadata not dicts", lambda ix, x: ix.add(x[:1], metadata=["a"]), InvalidInputError, "dict"),
    ("delete unknown ids", lambda ix, x: ix.delete([3, 999999]), NotFoundError, "999999"),
    ("delete duplicate ids", lambda ix, x: ix.delete([3, 3]), DuplicateIdError, "repeat"),
    ("train again", lambda ix, x: ix.train(x[:600]), InvalidInputError, "never retrained"),
]


@pytest.mark.parametrize("case, call, error, message", BAD_WRITES, ids=[c[0] for c in BAD_WRITES])
def test_bad_writes_raise_and_change_nothing(stored, wordnet, case, call, error, message):
    before = fingerprint(stored, wordnet)
    with pytest.raises(error, match=message) as info:
        call(stored, wordnet.base)
    assert isinstance(info.value, VqdbError)
    assert fingerprint(stored, wordnet) == before
    new = stored.add(wordnet.base[600:601])  # and the index still works afterwards
    assert len(stored) == before[0] + 1
    stored.delete(new)


BAD_READS = [
    ("k = 0", lambda ix, q: ix.search(q, 0), InvalidInputError),
    ("k < 0", lambda ix, q: ix.search(q, -3), InvalidInputError),
    ("k float", lambda ix, q: ix.search(q, 2.5), InvalidInputError),
    ("query dimension", lambda ix, q: ix.search(q[:, :10], 5), DimensionMismatchError),
    ("1-D query", lambda ix, q: ix.search(q[0], 5), DimensionMismatchError),
    ("NaN query", lambda ix, q: ix.search(nan_rows(q), 5), InvalidInputError),
    ("unknown operator", lambda ix, q: ix.search(q, 5, filter={"half": {"$like": 1}}), FilterError),
    ("unknown field", lambda ix, q: ix.search(q, 5, filter={"halff": 1}), FilterError),
    ("type mismatch", lambda ix, q: ix.search(q, 5, filter={"word": {"$gt": 3}}), FilterError),
    ("bad expression", lambda ix, q: ix.search(q, 5, filter=pc.field("nope") > 1), FilterError),
    ("filter not a dict", lambda ix, q: ix.search(q, 5, filter=[("half", 1)]), FilterError),
    ("nprobe 0", lambda ix, q: ix.search(q, 5, nprobe=0), InvalidInputError),
    ("rerank without vectors", lambda ix, q: ix.search(q, 5, rerank=True), InvalidInputError),
    ("rerank below 1", lambda ix, q: ix.search(q, 5, rerank=0.5), InvalidInputError),
    ("params type", lambda ix, q: ix.search(q, 5, params={"nprobe": 2}), InvalidInputError),
    ("get unknown id", lambda ix, q: ix.get([1, 10**9]), NotFoundError),
]


@pytest.mark.parametrize("case, call, error", BAD_READS, ids=[c[0] for c in BAD_READS])
def test_bad_reads_raise_and_change_nothing(stored, wordnet, case, call, error):
    before = fingerprint(stored, wordnet)
    with pytest.raises(error):
        call(stored, wordnet.queries[:4])
    assert fingerprint(stored, wordnet) == before


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"metric": "l2"}, UnknownNameError),
        ({"metric": "cosine"}, UnknownNameError),
        ({"ivf": -3}, InvalidInputError),
        ({"store_vectors": "int8"}, InvalidInputError),
        ({"quantizer": "turbo-99"}, VqdbError),
        ({"quantizer": 3}, InvalidInputError),
        ({"default_params": {"nprobe": 3}}, InvalidInputError),
        ({"default_params": vqdb.SearchParams(rerank=True)}, InvalidInputError),  # no stored vectors
    ],
)
def test_bad_constructor_arguments(wordnet, kwargs, error):
    with pytest.raises(error):
        vqdb.Index(wordnet.dim, **kwargs)


def test_quantizer_dimension_must_match(quantizer):
    with pytest.raises(DimensionMismatchError):
        vqdb.Index(128, quantizer=quantizer)


def test_float16_overflow_needs_float32_storage(wordnet, quantizer):
    index = vqdb.Index(wordnet.dim, metric="l2sq", quantizer=quantizer, store_vectors=True)
    with pytest.raises(InvalidInputError, match="float32"):
        index.add(wordnet.base[:2] * 1e6)
    assert len(index) == 0
