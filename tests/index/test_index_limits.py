"""Bounded and strict input at the index boundary: metadata field limits, payload types never coerced,
filter depth / size / integer range, result-size limits, overflow-safe cosine normalisation."""

from __future__ import annotations

import numpy as np
import pytest

import vqdb
from vqdb.errors import FilterError, InvalidInputError
from vqdb.index import _filters
from vqdb.index import _metadata as md
from vqdb.index import index as index_module


@pytest.fixture
def small(wordnet, quantizer):
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    index.add(
        wordnet.base[:100],
        metadata=[{"flag": i % 2 == 0, "n": i, "word": f"w{i}", "x": float(i)} for i in range(100)],
    )
    return index


@pytest.mark.parametrize(
    "field, value",
    [
        ("flag", 5),
        ("flag", "true"),
        ("n", True),
        ("n", 2.5),
        ("n", "7"),
        ("word", 5),
        ("word", True),
        ("x", "1"),
    ],
)
def test_payload_values_are_never_coerced(small, wordnet, field, value):
    before = small.get([0]).metadata
    with pytest.raises(InvalidInputError, match=f"metadata field '{field}' has type"):
        small.add(wordnet.base[100:101], metadata=[{field: value}])
    with pytest.raises(InvalidInputError):
        small.upsert(wordnet.base[0:1], ids=[0], metadata=[{field: value}])
    assert len(small) == 100 and small.get([0]).metadata == before


def test_values_that_widen_without_loss_are_accepted(small, wordnet):
    small.add(wordnet.base[100:102], ids=[100, 101], metadata=[{"x": 3}, {"n": None, "flag": None}])
    assert small.get([100]).metadata == [{"x": 3.0}]
    assert isinstance(small.get([100]).metadata[0]["x"], float)
    assert small.get([101]).metadata == [{}]


def test_field_limits_per_point_and_per_index(wordnet, quantizer):
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    wide = {f"k{j}": j for j in range(md.MAX_FIELDS_PER_POINT + 1)}
    with pytest.raises(InvalidInputError, match=f"at most {md.MAX_FIELDS_PER_POINT} per vector"):
        index.add(wordnet.base[:1], metadata=[wide])
    ok = {f"k{j}": j for j in range(md.MAX_FIELDS_PER_POINT)}
    index.add(wordnet.base[:1], metadata=[ok])
    for batch in range(1, md.MAX_FIELDS // md.MAX_FIELDS_PER_POINT):
        index.add(wordnet.base[batch : batch + 1], metadata=[{f"b{batch}-{j}": j for j in range(256)}])
    assert len(index.stats()["metadata_fields"]) == md.MAX_FIELDS
    with pytest.raises(InvalidInputError, match=f"at most {md.MAX_FIELDS}"):
        index.add(wordnet.base[10:11], metadata=[{"one_more": 1}])
    with pytest.raises(InvalidInputError, match="characters"):
        index.add(wordnet.base[10:11], metadata=[{"n" * 300: 1}])
    assert len(index) == 4


def test_compact_drops_fields_no_live_vector_has(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, path=path) as index:
        index.add(wordnet.base[:50], metadata=[{"keep": i} for i in range(50)])
        index.add(wordnet.base[50:51], ids=[50], metadata=[{f"junk{j}": j for j in range(200)}])
        assert len(index.stats()["metadata_fields"]) == 201
        index.delete([50])
        index.compact()
        assert index.stats()["metadata_fields"] == {"keep": "int64"}
        assert index.search(wordnet.queries[:2], 3, filter={"keep": {"$lt": 10}}).ids.max() < 10
    with vqdb.open(path, read_only=True) as again:
        assert again.stats()["metadata_fields"] == {"keep": "int64"}
        assert again.get([7]).metadata == [{"keep": 7}]


def _nested(op: str, depth: int) -> dict:
    flt = {"n": {"$gt": 1}}
    for _ in range(depth):
        flt = {op: flt} if op == "$not" else {op: [flt]}
    return flt


@pytest.mark.parametrize(
    "flt, match",
    [
        (_nested("$not", 600), "nested more than"),
        (_nested("$and", 450), "nested more than"),
        (_nested("$or", 40), "nested more than"),
        ({"$or": [{"n": i} for i in range(5000)]}, "more than 1024 conditions"),
        ({"n": 2**70}, "outside the 64-bit range"),
        ({"n": {"$gt": -(2**64)}}, "outside the 64-bit range"),
        ({"n": {"$in": [1, 2**80]}}, "outside the 64-bit range"),
        ({"n": {"$in": list(range(70000))}}, "at most 65536"),
    ],
)
def test_filter_limits_are_clear_errors(small, wordnet, flt, match):
    with pytest.raises(FilterError, match=match):
        small.search(wordnet.queries[:1], 5, filter=flt)
    with pytest.raises(FilterError):
        small.ids(filter=flt)


def test_filters_at_the_limits_still_work(small, wordnet):
    deep = _nested("$and", _filters.MAX_DEPTH - 2)
    np.testing.assert_array_equal(np.sort(small.ids(filter=deep)), np.arange(2, 100))
    wide = {"$or": [{"n": i} for i in range(0, 1000, 2)]}
    np.testing.assert_array_equal(np.sort(small.ids(filter=wide)), np.arange(0, 100, 2))
    assert small.ids(filter={"n": {"$lt": 2**63 - 1}}).size == 100


def test_result_size_limits(small, wordnet):
    with pytest.raises(InvalidInputError, match="k = 1,000,000,000 is larger"):
        small.search(wordnet.queries[:1], 10**9)
    m = index_module.MAX_RESULTS // index_module.MAX_K + 1
    with pytest.raises(InvalidInputError, match="queries x k"):
        small.search(np.repeat(wordnet.queries[:1], m, axis=0), index_module.MAX_K)
    res = small.search(wordnet.queries[:2], index_module.MAX_K)  # at the limit: padded, not refused
    assert res.ids.shape == (2, index_module.MAX_K) and (res.ids[:, 100:] == -1).all()


@pytest.mark.parametrize("scale", [1e38, 3e37, 1e-30, 1e-40])
def test_cosine_normalisation_neither_overflows_nor_underflows(wordnet, quantizer, scale):
    index = vqdb.Index(wordnet.dim, metric="cos", quantizer=quantizer, store_vectors="float32")
    index.add(wordnet.base[:50])
    x = (wordnet.base[7].astype(np.float64) * scale / np.abs(wordnet.base[7]).max()).astype(np.float32)
    assert np.isfinite(x).all() and np.any(x != 0)
    index.add(x[None, :], ids=[1000])
    stored = index.get([1000]).vectors[0]
    want = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64))
    np.testing.assert_allclose(stored, want, rtol=0, atol=1e-3 if scale < 1e-38 else 1e-6)
    hit = index.search(x[None, :], 2)
    assert set(hit.ids[0].tolist()) == {7, 1000}
    np.testing.assert_allclose(hit.scores[0], 1.0, atol=0.05)
    with pytest.raises(InvalidInputError, match="all zeros"):
        index.add(np.zeros((1, wordnet.dim), np.float32))
