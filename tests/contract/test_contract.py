"""ONE conformance suite for ``vqdb.IndexProtocol``: every test runs against ``vqdb.Index``,
``ShardedIndex`` (local Ray cluster) and the client's ``RemoteCollection`` (real ``vqdb serve``), each
with integer and with string (UUID) ids — same names, arguments, return types, errors and results."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import vqdb
from vqdb.errors import DimensionMismatchError, DTypeError, DuplicateIdError, InvalidInputError, NotFoundError

N = 300


def make_ids(id_type: str, n: int, start: int = 0) -> np.ndarray:
    if id_type == "int":
        return np.arange(start, start + n, dtype=np.int64) * 7 + 3
    out = np.empty(n, dtype=object)
    out[:] = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"row-{i}")) for i in range(start, start + n)]
    return out


def one(value):
    """A Python scalar id from an element of an id array (int64 or object str)."""
    return value.item() if isinstance(value, np.generic) else value


def meta(n: int, start: int = 0) -> list[dict]:
    return [{"n": i, "group": f"g{i % 3}"} for i in range(start, start + n)]


@pytest.fixture
def data(wordnet):
    return wordnet.base[:N], wordnet.queries[:8]


def _fill(index, id_type, x):
    ids = make_ids(id_type, N)
    return index, ids, index.add(x, ids=ids, metadata=meta(N))


@pytest.fixture(scope="module")
def shared(make_shared, id_type, wordnet):
    """One filled index for the tests that must leave it unchanged."""
    return _fill(make_shared(id_type), id_type, wordnet.base[:N])


@pytest.fixture
def filled(make_index, id_type, data):
    """A filled index of this test's own (for the tests that change it)."""
    return _fill(make_index(id_type), id_type, data[0])


@pytest.fixture
def reference(id_type, data):
    """A plain in-memory ``vqdb.Index`` with the same rows: what every implementation must return."""
    x, _ = data
    ref = vqdb.Index(x.shape[1], metric="cos", quantizer="turbo-4", store_vectors="float32")
    ref.add(x, ids=make_ids(id_type, N), metadata=meta(N))
    return ref


def id_dtype(id_type):
    return np.int64 if id_type == "int" else object


def test_implements_the_protocol(make_index, id_type, data):
    """An empty index of the protocol; an add without ids gives new ids of the index's kind."""
    x, _ = data
    index = make_index(None if id_type == "int" else "str")
    assert isinstance(index, vqdb.IndexProtocol)
    assert index.dim == 384 and index.metric == "cos" and len(index) == 0
    assert index.id_type == (None if id_type == "int" else "str")
    got = index.add(x[:5])
    assert got.dtype == id_dtype(id_type) and len(set(got.tolist())) == 5 and index.id_type == id_type
    if id_type == "str":
        assert all(str(uuid.UUID(s)) == s for s in got.tolist())
    assert index.get(got, include_vectors=False).ids.tolist() == got.tolist()


def test_add_returns_the_ids_and_fixes_the_id_kind(shared, id_type):
    index, ids, got = shared
    assert isinstance(got, np.ndarray) and got.dtype == id_dtype(id_type)
    assert got.tolist() == ids.tolist()
    assert len(index) == N and index.id_type == id_type
    assert one(ids[5]) in index and (one(make_ids(id_type, 1, 10_000)[0]) not in index)


def test_add_refuses_existing_or_repeated_ids_and_changes_nothing(shared, id_type, data):
    index, ids, _ = shared
    x, _ = data
    with pytest.raises(DuplicateIdError):
        index.add(x[:2], ids=ids[:2])
    new = make_ids(id_type, 1, 5000)
    with pytest.raises(DuplicateIdError):
        index.add(x[:2], ids=np.concatenate([new, new]))
    assert len(index) == N and one(new[0]) not in index


def test_upsert_returns_the_ids_and_replaces(filled, id_type, data):
    index, ids, _ = filled
    x, _ = data
    new = make_ids(id_type, 2, 9000)
    both = np.concatenate([ids[:1], new[:1]])
    got = index.upsert(x[100:102], both, metadata=[{"n": -1}, {"n": -2}])
    assert isinstance(got, np.ndarray) and got.tolist() == both.tolist()
    assert len(index) == N + 1
    rec = index.get(both)
    np.testing.assert_allclose(
        rec.vectors, x[100:102] / np.linalg.norm(x[100:102], axis=1, keepdims=True), atol=1e-6
    )
    assert [m["n"] for m in rec.metadata] == [-1, -2] and "group" not in rec.metadata[0]


def test_get_in_the_order_given_and_missing_ids(shared, id_type, data):
    index, ids, _ = shared
    x, _ = data
    rec = index.get(ids[[7, 3, 250]])
    assert rec.ids.tolist() == ids[[7, 3, 250]].tolist() and rec.ids.dtype == id_dtype(id_type)
    want = x[[7, 3, 250]] / np.linalg.norm(x[[7, 3, 250]], axis=1, keepdims=True)
    np.testing.assert_allclose(rec.vectors, want, atol=1e-6)
    assert [m["n"] for m in rec.metadata] == [7, 3, 250] and rec.exact
    assert index.get(ids[:2], include_vectors=False).vectors is None
    absent = make_ids(id_type, 1, 7000)
    with pytest.raises(NotFoundError):
        index.get(np.concatenate([ids[:1], absent]))
    assert index.get(np.concatenate([absent, ids[4:5]]), missing_ok=True).ids.tolist() == [one(ids[4])]


def test_delete_counts_and_missing_ids(filled, id_type):
    index, ids, _ = filled
    absent = make_ids(id_type, 1, 7000)
    with pytest.raises(NotFoundError):
        index.delete(np.concatenate([ids[:2], absent]))
    assert len(index) == N  # nothing deleted
    assert index.delete(ids[:2]) == 2
    assert index.delete(np.concatenate([ids[:3], absent]), missing_ok=True) == 1
    assert len(index) == N - 3 and one(ids[0]) not in index
    with pytest.raises(DuplicateIdError):
        index.delete(np.concatenate([ids[5:6], ids[5:6]]))


def test_search_matches_a_single_embedded_index(shared, reference, id_type, data):
    index, _, _ = shared
    _, q = data
    res = index.search(q, 10)
    want = reference.search(q, 10)
    assert isinstance(res, vqdb.SearchResult) and res.metric == "cos"
    assert res.ids.shape == (8, 10) and res.ids.dtype == id_dtype(id_type) and res.scores.dtype == np.float32
    assert res.ids.tolist() == want.ids.tolist()
    np.testing.assert_allclose(res.scores, want.scores, rtol=1e-5, atol=1e-6)
    flt = index.search(q, 5, filter={"group": "g1"}, include_metadata=True)
    assert flt.ids.tolist() == reference.search(q, 5, filter={"group": "g1"}).ids.tolist()
    assert all(m["group"] == "g1" for row in flt.metadata for m in row)
    assert [m["n"] for m in flt.metadata[0]] == [
        reference.get([i]).metadata[0]["n"] for i in flt.ids[0].tolist()
    ]


def test_search_pads_when_fewer_than_k_match(shared, id_type, data):
    index, _, _ = shared
    _, q = data
    res = index.search(q[:2], 5, filter={"n": {"$lt": 3}}, include_metadata=True)
    pad = -1 if id_type == "int" else None
    assert res.ids[:, 3:].tolist() == [[pad, pad]] * 2 and np.isneginf(res.scores[:, 3:]).all()
    assert res.metadata[0][3:] == [None, None]


def test_update_metadata_keeps_the_vectors_and_scores(filled, id_type, data):
    index, ids, _ = filled
    _, q = data
    before = index.search(q, 10)
    vectors = index.get(ids[:4]).vectors
    assert index.update_metadata(ids[:4], {"group": "new", "flag": True}) == 4
    rec = index.get(ids[:4])
    np.testing.assert_array_equal(rec.vectors, vectors)
    assert [m for m in rec.metadata] == [{"n": i, "group": "new", "flag": True} for i in range(4)]
    assert index.update_metadata(ids[:1], [{"only": 1}], merge=False) == 1
    assert index.get(ids[:1]).metadata == [{"only": 1}]
    after = index.search(q, 10)  # same codes: same ids and scores, bit for bit
    assert after.ids.tolist() == before.ids.tolist()
    np.testing.assert_array_equal(after.scores, before.scores)
    assert sorted(index.ids(filter={"group": "new"}).tolist()) == sorted(ids[1:4].tolist())
    with pytest.raises(NotFoundError):
        index.update_metadata(np.concatenate([ids[5:6], make_ids(id_type, 1, 7000)]), {"group": "x"})
    assert index.get(ids[5:6]).metadata[0]["group"] == "g2"


def test_scroll_visits_every_record_once(shared, id_type):
    index, ids, _ = shared
    seen, offset, pages = [], None, 0
    while True:
        page = index.scroll(limit=64, offset=offset, filter={"group": {"$in": ["g0", "g2"]}})
        assert len(page.records.ids) <= 64 and page.records.ids.dtype == id_dtype(id_type)
        assert all(m["group"] in ("g0", "g2") for m in page.records.metadata)
        seen += page.records.ids.tolist()
        pages += 1
        offset = page.next_offset
        if offset is None:
            break
    want = [i for i, m in zip(ids.tolist(), meta(N)) if m["group"] != "g1"]
    assert sorted(seen) == sorted(want) and len(seen) == len(want) and pages == -(-len(want) // 64)
    one = index.scroll(limit=3, include_vectors=True)
    assert one.records.vectors.shape == (3, 384) and one.next_offset is not None


def test_ids_with_and_without_filter(shared, id_type):
    index, ids, _ = shared
    assert sorted(index.ids().tolist()) == sorted(ids.tolist())
    got = index.ids(filter={"n": {"$lt": 5}})
    assert got.dtype == id_dtype(id_type) and sorted(got.tolist()) == sorted(ids[:5].tolist())


def test_bad_ids_are_refused_and_change_nothing(shared, id_type, data):
    index, ids, _ = shared
    x, _ = data
    other = np.arange(2) if id_type == "str" else np.array(["a", "b"], dtype=object)
    with pytest.raises(DTypeError):
        index.add(x[:2], ids=other)
    with pytest.raises(DTypeError):
        index.upsert(x[:2], ids=[one(ids[0]), "mixed" if id_type == "int" else 1])
    with pytest.raises(DTypeError):
        index.get(other)
    with pytest.raises(InvalidInputError):
        index.add(x[:1], ids=["x" * 600] if id_type == "str" else [-1])
    with pytest.raises(DimensionMismatchError):
        index.add(x[:2, :100], ids=make_ids(id_type, 2, 8000))
    assert len(index) == N
