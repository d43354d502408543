"""The search planner decides once per search; threads= are per index and per call, with no process-wide
side effect (numba's thread count is the calling thread's; BLAS is never pinned)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import vqdb
from vqdb.errors import InvalidInputError
from vqdb.index import _plan

numba = pytest.importorskip("numba")


def _plan_of(**kw):
    base = dict(
        quantizer=vqdb.make_quantizer("turbo-4", 64),
        coarse=None,
        graph_ready=False,
        device_ok=False,
        m=100,
        k=10,
        rerank_factor=0.0,
        nprobe=None,
        filtered=False,
        n_rows=200_000,
        n_allowed=200_000,
        threads=None,
    )
    base.update(kw)
    return _plan.plan_search(**base)


def test_routes_kernels_and_candidates():
    p = _plan_of()
    assert (p.route, p.kernel, p.kk, p.rerank, p.margin) == ("flat", "fastscan", 10, False, None)
    assert p.scanner is not None and p.threads == _plan.default_threads()
    assert _plan_of(n_allowed=0).route == "none"
    assert _plan_of(filtered=True, n_allowed=3000).route == "subset"  # selective filter: gather + float
    assert _plan_of(filtered=True, n_allowed=3000).kernel == "float"
    assert _plan_of(filtered=True, n_allowed=150_000).route == "flat"
    assert _plan_of(graph_ready=True).route == "graph"
    assert _plan_of(graph_ready=True, filtered=True, n_allowed=500).route == "subset"
    r = _plan_of(rerank_factor=4.0, k=7)
    assert (r.kk, r.rerank, r.margin) == (28, True, _plan.RERANK_MARGIN)
    assert _plan_of(threads=3, m=1, n_rows=5000, n_allowed=5000).threads == 1  # too small to fan out
    assert _plan_of(threads=2).threads == 2


def test_ivf_route_and_nprobe(wordnet):
    x = np.ascontiguousarray(wordnet.base[:3000], dtype=np.float32)
    index = vqdb.Index(x.shape[1], quantizer="turbo-4", ivf=16)
    index.add(x)
    coarse = index._snap.coarse
    p = _plan_of(quantizer=index.quantizer, coarse=coarse, nprobe=3, n_rows=3000, n_allowed=3000)
    assert (p.route, p.kernel, p.nprobe, p.need) == ("ivf", "fastscan", 3, 10)
    assert (
        _plan_of(quantizer=index.quantizer, coarse=coarse, nprobe=16, n_rows=3000, n_allowed=3000).route
        == "flat"
    )


def test_threads_per_index_and_per_call_leave_other_threads_alone(wordnet):
    x = np.ascontiguousarray(wordnet.base[:5000], dtype=np.float32)
    q = np.ascontiguousarray(wordnet.queries[:64], dtype=np.float32)
    one = vqdb.Index(x.shape[1], quantizer="turbo-2", threads=1)
    one.add(x)
    want = one.search(q, 10)
    seen = {}

    def other():  # another thread of the caller: its numba count must not follow the searches
        numba.set_num_threads(1)
        seen["before"] = numba.get_num_threads()
        got = one.search(q, 10, threads=numba.config.NUMBA_NUM_THREADS)
        seen["same"] = bool(np.array_equal(got.ids, want.ids) and np.array_equal(got.scores, want.scores))
        seen["after"] = numba.get_num_threads()

    before = numba.get_num_threads()
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == {"before": 1, "same": True, "after": 1}
    assert numba.get_num_threads() == before
    for n in (1, 2):
        got = one.search(q, 100, threads=n)
        np.testing.assert_array_equal(got.ids, one.search(q, 100, threads=1).ids)
    assert numba.get_num_threads() == before
    with pytest.raises(InvalidInputError):
        one.search(q, 10, threads=0)
    with pytest.raises(InvalidInputError):
        vqdb.Index(8, threads=-1)
