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
