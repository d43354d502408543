"""Graph kernels against their references: the walk's bit-plane queries and its per-node estimates."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from vqdb.kernels import graph as kg
from vqdb.kernels import reference_fastscan as rf


@pytest.mark.parametrize("k, planes", [(384, 4), (100, 6), (64, 1)])
def test_bit_planes_match_the_reference_quantization(k, planes):
    rng = np.random.default_rng(k)
    q = rng.standard_normal((7, k)).astype(np.float32)
    q[3] = 0.25  # a constant query: delta 1, every u 0
    words = np.empty((7, planes, -(-k // 64)), np.uint64)
    lo, delta, qsum = (np.empty(7, np.float32) for _ in range(3))
    kg.bit_planes(q, planes, words, lo, delta, qsum)
    want, wlo, wdelta, _, _ = rf.bitplane_query(q, planes)
    np.testing.assert_array_equal(words, want)
    np.testing.assert_array_equal(lo, wlo.astype(np.float32))
    np.testing.assert_array_equal(delta, wdelta.astype(np.float32))
    np.testing.assert_allclose(qsum, q.astype(np.float64).sum(1), rtol=1e-6, atol=1e-5)


@njit
def _estimates(recs, recf, recw, fo, blut_or_none, part_steps, inv, off, qw, lo, delta, qsum, v0, dv, bits):
    out = np.empty(recs.shape[0], np.float32)
    for u in range(recs.shape[0]):
        if bits:
            out[u] = kg._estimate_bits(recw, recf, fo, u, qw, lo, delta, qsum, v0, dv)
        else:
            out[u] = kg._estimate_luts(recs, recf, fo, u, blut_or_none, part_steps, inv, off)
    return out


@pytest.mark.parametrize("quantizer", ["turbo-1", "turbo-2"])
def test_node_estimates_are_the_fast_scan_sums_of_their_records(wordnet, quantizer):
    """A node's estimate from its code record: turbo-2, the integer LUT sums of its slots (as a fast-scan
    block sums them); turbo-1, the popcount scan's part sum v0 Σq + dv (lo·ones + delta·acc)."""
    import vqdb

    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, graph=8)
    index.add(wordnet.base[:300])
    g = index._graph
    q = np.ascontiguousarray(wordnet.queries[:2])
    prep = g.sc.prepare(q, metric="ip")
    bits, qwords, qlo, qdelta, qsum, v0, dv = g._bitplanes(prep, 2)
    assert bits == (quantizer == "turbo-1")
    S, n = g.nsteps, g.n
    blut = np.empty((S, 256), np.uint16)
    kg._byte_luts(prep.luts, 1, S, blut)
    got = _estimates(
        g.recs[:n], g.recf[:n], g.recs[:n].view(np.uint64), g.fo, blut, g.sc.part_steps,
        prep.inv[1, : g.G].copy(), prep.off[1, : g.G].copy(), qwords[1], qlo[1], qdelta[1], qsum[1], v0, dv, bits,
    )  # fmt: skip
    slots = np.empty((n, 2 * S), np.int64)
    slots[:, 0::2], slots[:, 1::2] = g.recs[:n, :S] & 15, g.recs[:n, :S] >> 4
    f = g.recf[:n, g.fo]
    if bits:
        words = g.recs[:n].view(np.uint64)[:, : qwords.shape[2]]
        acc, ones = rf.popcount_ref(words, qwords[1:2])
        want = f * (v0 * qsum[1] + dv * (qlo[1] * ones + qdelta[1] * acc[0]))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        lut = prep.luts.reshape(2, 2 * S, 16)[1].astype(np.int64)
        sums = lut[np.arange(2 * S), slots].sum(1)  # one part: turbo-2 has one kernel part
        assert g.G == 1
        np.testing.assert_allclose(got, f * (sums * prep.inv[1, 0] + prep.off[1, 0]), rtol=1e-5, atol=1e-6)
