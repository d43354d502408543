"""The search entry's shortcuts give what the general code gives: one query normalised as a batch row is, and
a call without per-call knobs searches with the index's persisted defaults."""

from __future__ import annotations

import numpy as np

import vqdb
from vqdb.index.index import _unit_rows


def test_one_row_normalises_bit_for_bit_as_in_a_batch(wordnet):
    q = np.ascontiguousarray(wordnet.queries[:50], dtype=np.float32)
    rows = [q[i : i + 1] for i in range(q.shape[0])]
    rows += [q[:1] * np.float32(1e-25), q[:1] * np.float32(3e35), np.zeros((1, q.shape[1]), np.float32)]
    for row in rows:
        with np.errstate(over="ignore"):  # the norm of the 3e35 row overflows: it is rescaled first
            one, zero = _unit_rows(row)
            pair, zeros = _unit_rows(np.vstack([row, q[1:2]]))
        np.testing.assert_array_equal(one, pair[:1])
        np.testing.assert_array_equal(zero, zeros[:1])
        assert one.dtype == np.float32 and one.flags.c_contiguous
    assert _unit_rows(rows[-1])[1].tolist() == [True]


def test_a_call_without_knobs_uses_the_persisted_defaults(wordnet):
    x = np.ascontiguousarray(wordnet.base[:3000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:5], dtype=np.float32)
    index = vqdb.Index(x.shape[1], quantizer="turbo-2", ivf=16, store_vectors=True)
    index.add(x)
    index.set_default_params(vqdb.SearchParams(nprobe=2, rerank=2))
    plain = index.search(q, 10)
    explicit = index.search(q, 10, nprobe=2, rerank=2)
    np.testing.assert_array_equal(plain.ids, explicit.ids)
    np.testing.assert_array_equal(plain.scores, explicit.scores)
    wider = index.search(q, 10, nprobe=16, rerank=False)  # per-call knobs still override the defaults
    assert not np.array_equal(wider.scores, plain.scores)


def test_one_query_calls_return_their_batch_rows_bit_for_bit(wordnet):
    """The one-query path (memoised plan, serial kernels, the presorted result) scores and orders exactly as
    a batch does, on the fast-scan kernels (4,000 rows: above the scanner's MIN_ROWS), at k = 10 and 100.
    (A batch of up to ``scorer.SMALL_BATCH`` queries: larger ones take their centre terms from BLAS, which may
    round them 1 ulp apart.)"""
    x = np.ascontiguousarray(wordnet.base[:4000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:8], dtype=np.float32)
    for preset, metric in (("turbo-1", "ip"), ("turbo-2", "l2sq"), ("turbo-4", "cos")):
        index = vqdb.Index(x.shape[1], metric=metric, quantizer=preset)
        index.add(x)
        for k in (10, 100):
            batch = index.search(q, k)
            for i in range(q.shape[0]):
                for _ in range(2):  # the first call plans, the second reuses the plan
                    one = index.search(q[i : i + 1], k)
                    np.testing.assert_array_equal(one.ids, batch.ids[i : i + 1])
                    np.testing.assert_array_equal(one.scores, batch.scores[i : i + 1])
            assert (batch.ids >= 0).all() and np.all(np.diff(batch.scores, axis=1) <= 0)


def test_a_memoised_plan_follows_every_write(wordnet):
    """Plans and scan contexts are kept per index state: a search right after an add, a delete, an upsert or
    new default knobs sees the new state."""
    x = np.ascontiguousarray(wordnet.base[:3000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:1], dtype=np.float32)
    index = vqdb.Index(x.shape[1], metric="ip", quantizer="turbo-2", store_vectors=True)
    index.add(x)
    before = index.search(q, 5)
    assert index.search(q, 5).ids.tolist() == before.ids.tolist()
    index.add(q * np.float32(10.0), ids=[10**6])  # far the best inner product
    assert index.search(q, 5).ids[0, 0] == 10**6
    index.delete([10**6])
    again = index.search(q, 5)
    np.testing.assert_array_equal(again.ids, before.ids)
    np.testing.assert_array_equal(again.scores, before.scores)
    top = int(before.ids[0, 0])
    index.upsert(-q, ids=[top])  # the best row now points away from the query
    assert top not in index.search(q, 5).ids[0].tolist()
    index.set_default_params(vqdb.SearchParams(rerank=4))  # exact scores of the stored vectors from now on
    exact = index.search(q, 5)
    np.testing.assert_array_equal(exact.scores, index.search(q, 5, rerank=4).scores)
    assert not np.array_equal(exact.scores, index.search(q, 5, rerank=False).scores)


def test_the_result_order_is_score_then_id_whatever_the_shortcut():
    """``_scan.finish`` orders by score descending then id ascending, pads with -1 / -inf, and maps refs to
    ids: rows already in that order (the kernels' usual output) and rows with ties or padding alike."""
    from vqdb.index import _scan
    from vqdb.index._segment import Segment

    ids = np.array([50, 40, 30, 20, 10], dtype=np.int64)
    seg = Segment(
        None, ids, np.full(5, -1, np.int32), np.zeros((5, 1), np.uint8), None, None, np.argsort(ids)
    )
    scores = np.array(
        [[3.0, 2.0, 1.0], [2.0, 2.0, 1.0], [5.0, -np.inf, -np.inf], [1.0, 4.0, 2.0]], dtype=np.float32
    )
    refs = np.array([[0, 1, 2], [0, 3, 4], [2, -1, -1], [4, 0, 1]], dtype=np.int64)
    for k in (3, 4):
        got_ids, got_scores, got_refs = _scan.finish((seg,), scores, refs, k)
        for i in range(scores.shape[0]):
            hits = sorted((-float(s), int(ids[r]), int(r)) for s, r in zip(scores[i], refs[i]) if r >= 0)
            want = hits + [(np.inf, -1, -1)] * (k - len(hits))
            assert got_ids[i].tolist() == [w[1] for w in want]
            assert got_refs[i].tolist() == [w[2] for w in want]
            assert got_scores[i].tolist() == [-w[0] for w in want]
        assert got_scores.dtype == np.float32 and got_ids.shape == (4, k)


def test_a_write_lets_go_of_the_memo_of_the_old_state(wordnet):
    """The search memo holds the segments of the state it was built for; a write that replaces them (a delete
    makes a new Segment object) drops it at once, so the old one is freed without another search."""
    import gc
    import weakref

    x = np.ascontiguousarray(wordnet.base[:3000], dtype=np.float32)
    index = vqdb.Index(x.shape[1], metric="ip", quantizer="turbo-2")
    index.add(x)
    index.search(x[:1], 5)
    old = weakref.ref(index._snap.segments[0])
    index.delete([0, 1, 2])
    gc.collect()
    assert old() is None
    assert not {0, 1, 2} & set(index.search(x[:3], 5).ids.ravel().tolist())
