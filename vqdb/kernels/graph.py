"""Graph-index kernels (numba): batch insertion (greedy search + RobustPrune) and code-scored traversal.

A graph of ``N`` nodes with out-degree at most ``R``: ``links`` (N, R) int32 holds each node's neighbours
(-1 after the last one), and each node's own code is stored once, in its record of ``recs`` (N, C) uint8
(C a multiple of 64, so a record starts on a cache line)::

    [0, S)                       the code's 4-bit fast-scan slots, two per byte: slot 2t in the low nibble
                                 of byte t, slot 2t + 1 in the high one (S = the quantizer's steps)
    float32 [fo, fo + G)         the factor of each kernel part g
    float32 fo + G               the code constant (||x||^2 for l2sq; minus alpha·β with offsets)

Expanding a node reads its links row, then gathers the records of the neighbours not seen yet (prefetched
together, as HNSW fetches its neighbours' vectors) and scores each with a per-query table of 256 summed
LUT entries per code byte: the same integer sums as a fast-scan block of those codes. ``vbits`` (V, d)
uint16 holds the vectors as IEEE float16 bits (the exact re-rank data; node n's at row ``vrow[n]``, so a
segment's own array can serve without a copy): the kernels widen them to
float32 on the fly, exactly (numba has no float16). Node-to-node distances (construction) are squared L2
on those vectors; query scores are higher-is-better: ``<q, x>`` or ``2<q, x> - |x|^2 - |q|^2``.

Construction (:func:`link_batch`) is the batch insertion of ParlayANN / DiskANN ("prefix doubling"):
every new node of a batch searches the graph as it was before the batch (in parallel), keeps the
RobustPrune of its ``L`` best (Vamana's alpha rule, squared distances), then the reverse edges are
merged per target node (in parallel, one thread per target), pruning a list that overflows ``R``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .. import envs
from .fastscan import _prefetch
from .fastscan.isa import _popcount
from .fastscan.select import heap_offer, take_topk

_CACHE = envs.numba_cache()
_NEG = np.float32(-np.inf)


# ------------------------------------------------------------------------------------------------
# float16 bits -> float32 (no numba float16: integer widening, vectorizes)
# ------------------------------------------------------------------------------------------------
_F16_SCALE = np.float32(2.0**112)  # 2**(127 - 15): the float32 / float16 exponent-bias gap


@njit(cache=_CACHE, nogil=True, inline="always")
def _widen(vbits, n, out_u, out_f):
    """Row ``n`` of ``vbits`` (uint16 float16 bits) into ``out_f`` (d,) float32 (``out_u``: the same memory
    viewed as uint32), exactly
    (subnormals included; no inf/nan: stored vectors are finite). Branch-free, two vectorised passes: the
    float16 exponent and mantissa shifted into float32 position read as a float32 2**112 times too small
    (a float16 subnormal lands on the float32 subnormal of the same digits), then one multiply."""
    d = vbits.shape[1]
    for j in range(d):
        h = np.uint32(vbits[n, j])
        out_u[j] = ((h & np.uint32(0x7FFF)) << np.uint32(13)) | ((h & np.uint32(0x8000)) << np.uint32(16))
    for j in range(d):
        out_f[j] = out_f[j] * _F16_SCALE


@njit(cache=_CACHE, nogil=True, inline="always", fastmath=True)
def _dot(a, b):
    s = np.float32(0.0)
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


# ------------------------------------------------------------------------------------------------
# small heaps over parallel (key, node) arrays
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, inline="always")
def _push_min(ks, ns, cnt, k, n):
    """Push (k, n) into the min-heap ks/ns of ``cnt`` entries (root = smallest key); returns cnt + 1."""
    i = cnt
    while i > 0:
        p = (i - 1) >> 1
        if ks[p] <= k:
            break
        ks[i] = ks[p]
        ns[i] = ns[p]
        i = p
    ks[i] = k
    ns[i] = n
    return cnt + 1


@njit(cache=_CACHE, nogil=True, inline="always")
def _pop_min(ks, ns, cnt):
    """Remove the root of the min-heap (caller read it first); returns cnt - 1."""
    cnt -= 1
    k = ks[cnt]
    n = ns[cnt]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= cnt:
            break
        if c + 1 < cnt and ks[c + 1] < ks[c]:
            c += 1
        if ks[c] >= k:
            break
        ks[i] = ks[c]
        ns[i] = ns[c]
        i = c
    ks[i] = k
    ns[i] = n
    return cnt


@njit(cache=_CACHE, nogil=True, inline="always")
def _replace_min(ks, ns, cnt, k, n):
    """Replace the root of a full min-heap by (k, n) and sift it down."""
    i = 0
    while True:
        c = 2 * i + 1
        if c >= cnt:
            break
        if c + 1 < cnt and ks[c + 1] < ks[c]:
            c += 1
        if ks[c] >= k:
            break
        ks[i] = ks[c]
        ns[i] = ns[c]
        i = c
    ks[i] = k
    ns[i] = n


# ------------------------------------------------------------------------------------------------
# norms
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, parallel=True)
def squared_norms(vbits, vrow, nodes, out):
    """out[n] = ||x_n||^2 of the float16 vectors of ``nodes`` (node n's at row vrow[n] of vbits)."""
    d = vbits.shape[1]
    for i in prange(nodes.shape[0]):
        n = nodes[i]
        bu = np.empty(d, np.uint32)
        bf = bu.view(np.float32)
        _widen(vbits, vrow[n], bu, bf)
        out[n] = _dot(bf, bf)


# ------------------------------------------------------------------------------------------------
# construction
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, fastmath=True)
def _greedy(p, pf, vf, norms, links, R, entry, n_old, L, tags, tag, cand_k, cand_n, res_k, res_n):
    """Beam search of node ``p`` (vector ``pf`` float32) over nodes < n_old from ``entry``, exact squared
    distances; returns the number of results in res_k/res_n (a max-heap on negated keys: res_k holds
    -dist, min-heap root = farthest)."""
    pn = norms[p]
    d0 = pn + norms[entry] - 2.0 * _dot(pf, vf[entry])
    tags[entry] = tag
    nc = _push_min(cand_k, cand_n, 0, d0, entry)
    nr = _push_min(res_k, res_n, 0, -d0, entry)
    while nc > 0:
        dc = cand_k[0]
        c = cand_n[0]
        nc = _pop_min(cand_k, cand_n, nc)
        if nr >= L and dc > -res_k[0]:
            break
        for j in range(R):
            u = links[c, j]
            if u < 0:
                break
            if u >= n_old or tags[u] == tag:
                continue
            tags[u] = tag
            du = pn + norms[u] - 2.0 * _dot(pf, vf[u])
            if nr < L:
                nr = _push_min(res_k, res_n, nr, -du, u)
            elif du < -res_k[0]:
                _replace_min(res_k, res_n, nr, -du, u)
            else:
                continue
            if nc < cand_k.shape[0]:
                nc = _push_min(cand_k, cand_n, nc, du, u)
    return nr


@njit(cache=_CACHE, nogil=True)
def _sort_by_key(ks, ns, cnt):
    """Sort the first ``cnt`` (key, node) pairs by key ascending (insertion sort: cnt is small)."""
    for i in range(1, cnt):
        k = ks[i]
        n = ns[i]
        j = i - 1
        while j >= 0 and ks[j] > k:
            ks[j + 1] = ks[j]
            ns[j + 1] = ns[j]
            j -= 1
        ks[j + 1] = k
        ns[j + 1] = n


@njit(cache=_CACHE, nogil=True, fastmath=True)
def _prune(p, dk, dn, cnt, vf, norms, R, alpha, out):
    """RobustPrune: from candidates (dk squared distance to p ascending, dn node) keep up to R nodes;
    a candidate c is dropped when a kept r has alpha * d(r, c) <= d(p, c). Returns the count in out."""
    nk = 0
    for i in range(cnt):
        c = dn[i]
        if c == p:
            continue
        dup = False
        for r in range(nk):
            if out[r] == c:
                dup = True
                break
        if dup:
            continue
        bf = vf[c]
        dpc = dk[i]
        ok = True
        for r in range(nk):
            drc = norms[out[r]] + norms[c] - 2.0 * _dot(vf[out[r]], bf)
            if alpha * drc <= dpc:
                ok = False
                break
        if ok:
            out[nk] = c
            nk += 1
            if nk >= R:
                break
    return nk


@njit(cache=_CACHE, nogil=True, parallel=True, fastmath=True)
def link_batch(new, n_old, entry, vf, norms, links, R, L, alpha, n_tasks, incoming):
    """Link the nodes ``new`` (int64, all >= n_old) into the graph of nodes < n_old.

    Phase 1 (parallel over new nodes): greedy search + RobustPrune -> their out-lists (rows ids).
    ``incoming`` (len(new) * R,) int64 scratch receives the reverse edges as target * 2**32 + source.
    Phase 2 is :func:`merge_reverse` (called by the driver after sorting ``incoming``).
    """
    b = new.shape[0]
    N = links.shape[0]
    per = (b + n_tasks - 1) // n_tasks
    for t in prange(n_tasks):
        i0 = t * per
        i1 = min(b, i0 + per)
        if i0 >= i1:
            continue
        tags = np.zeros(N, np.int32)
        cap = L + R * L + 64
        cand_k = np.empty(cap, np.float32)
        cand_n = np.empty(cap, np.int64)
        res_k = np.empty(L + 1, np.float32)
        res_n = np.empty(L + 1, np.int64)
        out = np.empty(R, np.int64)
        for i in range(i0, i1):
            p = new[i]
            for j in range(R):
                incoming[i * R + j] = -1
            if n_old == 0:
                continue
            nr = _greedy(
                p, vf[p], vf, norms, links, R, entry, n_old, L, tags, i + 1, cand_k, cand_n, res_k, res_n
            )
            for j in range(nr):
                res_k[j] = -res_k[j]
            _sort_by_key(res_k, res_n, nr)
            nk = _prune(p, res_k, res_n, nr, vf, norms, R, alpha, out)
            for j in range(R):
                links[p, j] = out[j] if j < nk else -1
            for j in range(nk):
                incoming[i * R + j] = (out[j] << 32) | p


@njit(cache=_CACHE, nogil=True, parallel=True, fastmath=True)
def refine_batch(nodes, n_nodes, entry, vf, norms, links, R, L, alpha, n_tasks, out_lists):
    """Vamana's second pass over ``nodes`` (int64) of a linked graph of ``n_nodes``: each node searches the
    whole graph again and keeps the RobustPrune of its ``L`` best plus its current out-list. The new lists
    go to ``out_lists`` (len(nodes), R) int64 (-1 padded); the graph is only read (the driver writes the
    lists and merges the reverse edges, as for :func:`link_batch`)."""
    b = nodes.shape[0]
    per = (b + n_tasks - 1) // n_tasks
    for t in prange(n_tasks):
        i0 = t * per
        i1 = min(b, i0 + per)
        if i0 >= i1:
            continue
        tags = np.zeros(n_nodes, np.int32)
        cap = L + R * L + 64
        cand_k = np.empty(cap, np.float32)
        cand_n = np.empty(cap, np.int64)
        res_k = np.empty(L + 1, np.float32)
        res_n = np.empty(L + 1, np.int64)
        dk = np.empty(L + R, np.float32)
        dn = np.empty(L + R, np.int64)
        out = np.empty(R, np.int64)
        for i in range(i0, i1):
            p = nodes[i]
            nr = _greedy(
                p,
                vf[p],
                vf,
                norms,
                links,
                R,
                entry,
                n_nodes,
                L,
                tags,
                i + 1,
                cand_k,
                cand_n,
                res_k,
                res_n,
            )
            cnt = 0
            for j in range(nr):
                dk[cnt] = -res_k[j]
                dn[cnt] = res_n[j]
                cnt += 1
            for j in range(R):  # the current out-list joins the candidates (if the search missed them)
                u = links[p, j]
                if u < 0:
                    break
                if tags[u] != i + 1:
                    dk[cnt] = norms[p] + norms[u] - 2.0 * _dot(vf[p], vf[u])
                    dn[cnt] = u
                    cnt += 1
            _sort_by_key(dk, dn, cnt)
            nk = _prune(p, dk, dn, cnt, vf, norms, R, alpha, out)
            for j in range(R):
                out_lists[i, j] = out[j] if j < nk else -1


@njit(cache=_CACHE, nogil=True, parallel=True, fastmath=True)
def merge_reverse(pairs, starts, vf, norms, links, R, alpha, touched):
    """Add reverse edges: ``pairs`` sorted (target << 32 | source), groups [starts[g], starts[g+1]) share
    a target. A target whose list would overflow R is re-pruned over its old list plus the new sources.
    touched[g] = the target node."""
    n_groups = starts.shape[0] - 1
    for g in prange(n_groups):
        a = starts[g]
        e = starts[g + 1]
        u = pairs[a] >> 32
        touched[g] = u
        deg = 0
        while deg < R and links[u, deg] >= 0:
            deg += 1
        m = e - a
        if deg + m <= R:
            for x in range(m):
                src = pairs[a + x] & 0xFFFFFFFF
                dup = False
                for y in range(deg):
                    if links[u, y] == src:
                        dup = True
                        break
                if not dup:
                    links[u, deg] = src
                    deg += 1
            continue
        cnt = deg + m
        dk = np.empty(cnt, np.float32)
        dn = np.empty(cnt, np.int64)
        uf = vf[u]
        for x in range(cnt):
            c = links[u, x] if x < deg else pairs[a + x - deg] & 0xFFFFFFFF
            dk[x] = norms[u] + norms[c] - 2.0 * _dot(uf, vf[c])
            dn[x] = c
        _sort_by_key(dk, dn, cnt)
        out = np.empty(R, np.int64)
        nk = _prune(u, dk, dn, cnt, vf, norms, R, alpha, out)
        for j in range(R):
            links[u, j] = out[j] if j < nk else -1


# ------------------------------------------------------------------------------------------------
# search: traversal scored on the neighbours' codes (gathered by node), exact scores of expanded nodes
# ------------------------------------------------------------------------------------------------
class Nodes(NamedTuple):
    """The graph searched (``N`` nodes of out-degree ``R``)."""

    links: np.ndarray  # (N, R) int32 neighbour nodes, -1 after the last one
    recs: np.ndarray  # (N, C) uint8 code records: S code bytes (see module doc), factors, code constant
    recf: np.ndarray  # (N, C // 4) float32 view of recs: factor g at [fo + g], the code constant at [fo + G]
    recw: np.ndarray  # (N, C // 8) uint64 view of recs: a 1-bit code's sign words at [0, W)
    fo: int  # float32 index of the first factor in a record
    vbits: np.ndarray  # (V, d) uint16 float16 bits of the vectors (read-only; may be a segment's own array)
    vrow: np.ndarray  # (N,) int64 node -> its row of vbits
    norms: np.ndarray  # (N,) float32 ||x||^2 of the float16 vectors
    ok: np.ndarray  # (n,) bool nodes that may be returned (live, allowed by the filter)
    n_nodes: int  # nodes [0, n_nodes) are searched
    entry: int  # where every walk starts


class Probe(NamedTuple):
    """``m`` prepared queries: the fast-scan LUTs of the index's quantizer and the estimate's affine map."""

    q: np.ndarray  # (m, d) float32
    luts: np.ndarray  # (m * S * 32,) uint8: step t's 32 bytes = slot 2t's 16 entries, then slot 2t + 1's
    inv: np.ndarray  # (m, G) float32 LUT scale per kernel part
    off: np.ndarray  # (m, G) float32 LUT offset per kernel part
    base: np.ndarray  # (m,) float32 centre term and query constant
    part_steps: np.ndarray  # (G + 1,) int64 step bounds of the kernel parts
    alpha: np.float32  # 1 (ip) or 2 (l2sq)
    l2: bool  # exact score 2<q, x> - |x|^2 - |q|^2 (else <q, x>)
    sub: bool  # the code constant is subtracted from estimates
    bits: bool  # one 1-bit part: estimate by AND + popcount on bit planes (else byte LUT sums)
    qwords: np.ndarray  # (m, B, W) uint64 bit planes of the quantized query: q ≈ qlo + qdelta * u
    qlo: np.ndarray  # (m,) float32
    qdelta: np.ndarray  # (m,) float32
    qsum: np.ndarray  # (m,) float32 Σ_j q_j
    v0: np.float32  # the 1-bit code's values: v0 and v0 + dv
    dv: np.float32


@njit(cache=_CACHE, nogil=True)
def bit_planes(q, planes, words, lo, delta, qsum):
    """The popcount estimate's query side: (m, k) float32 queries quantized to ``planes``-bit unsigned
    integers u, ``q ≈ lo + delta * u`` (the rounding of :func:`vqdb.kernels.reference_fastscan.bitplane_query`,
    float64), bit-plane b of u into words (m, planes, W) uint64 (bit j of word w = coordinate 64w + j; W >=
    ceil(k/64)); lo, delta, qsum = Σ_j q_j into (m,) float32."""
    m, k = q.shape
    levels = (1 << planes) - 1
    for i in range(m):
        a = np.float64(q[i, 0]) if k else 0.0
        b = a
        t = 0.0
        for j in range(k):
            x = np.float64(q[i, j])
            a = min(a, x)
            b = max(b, x)
            t += x
        de = (b - a) / levels if b > a else 1.0
        words[i] = 0
        for j in range(k):
            u = np.int64(min(max(np.rint((np.float64(q[i, j]) - a) / de), 0.0), levels))
            for p in range(planes):
                words[i, p, j >> 6] |= np.uint64((u >> p) & 1) << np.uint64(j & 63)
        lo[i] = a
        delta[i] = de
        qsum[i] = t


@njit(cache=_CACHE, nogil=True)
def _byte_luts(luts, i, nsteps, out):
    """out (S, 256) uint16: the summed LUT entries of both slots of one code byte, for query i."""
    for t in range(nsteps):
        b = (i * nsteps + t) * 32
        for hi in range(16):
            h = np.uint16(luts[b + 16 + hi])
            for lo in range(16):
                out[t, hi * 16 + lo] = np.uint16(luts[b + lo]) + h


@njit(cache=_CACHE, nogil=True, inline="always")
def _estimate_bits(recw, recf, fo, u, qw, lo, delta, qsum, v0, dv):
    """Part sum of node u's 1-bit code times its factor: ``f (v0 Σq + dv (lo·ones + delta·Σ_b 2^b
    popcount(plane_b & x)))`` (qw (B, W) the query's bit planes)."""
    W = qw.shape[1]
    ones = 0
    a = 0
    for w in range(W):
        ones += _popcount(recw[u, w])
    for b in range(qw.shape[0]):
        t = 0
        for w in range(W):
            t += _popcount(recw[u, w] & qw[b, w])
        a += t << b
    return recf[u, fo] * (v0 * qsum + dv * (lo * np.float32(ones) + delta * np.float32(a)))


@njit(cache=_CACHE, nogil=True, inline="always")
def _estimate_luts(recs, recf, fo, u, blut, part_steps, inv, off):
    """``Σ_g f_g (A_g inv_g + off_g)`` of node u's code: A_g its integer LUT sum over the steps of part g
    (blut (S, 256): both slots of a code byte at once; the same sums as a fast-scan block)."""
    acc = np.float32(0.0)
    for g in range(part_steps.shape[0] - 1):
        s = 0
        for t in range(part_steps[g], part_steps[g + 1]):
            s += np.int32(blut[t, recs[u, t]])
        acc += recf[u, fo + g] * (np.float32(s) * inv[g] + off[g])
    return acc


@njit(cache=_CACHE, nogil=True, inline="always")
def _exact(vbits, vrow, norms, qi, qn, l2, c, bu, bf):
    """Exact score of node c's float16 vector for the query qi (qn = |qi|^2)."""
    _widen(vbits, vrow[c], bu, bf)
    ip = _dot(qi, bf)
    return 2.0 * ip - norms[c] - qn if l2 else ip


@njit(cache=_CACHE, nogil=True, fastmath=True)
def search_range(nd, pr, ef, k, i0, i1, out_nodes, out_scores, stats):
    """Top-``k`` nodes of queries [i0, i1) of ``pr`` by a best-first traversal, on the calling thread.

    Candidates are ordered by the estimated score of their code, gathered from their records when the node
    expanding them is (prefetched together): ``alpha * Σ_g f_g (A_g * inv_g + off_g) + base - sub *
    const`` from the fast-scan LUTs, or for a single 1-bit part the popcount scan's estimate (bit-plane
    query, AND + popcount). Each node taken from the candidate queue is scored exactly from its float16
    vector when ``ok[n]`` (live and allowed) and offered to the ``ef`` best
    (:func:`.fastscan.select.heap_offer`: higher score, then lower node). The walk stops when the best
    remaining estimate falls below the ef-th exact score; then the ef best-estimated candidates it did not
    expand are scored exactly and offered too (a true neighbour reached but not expanded is still found:
    on Fashion-MNIST, where a walk stops after about ef expansions, recall@10 at ef 10 / 16 goes from
    0.831 / 0.922 to 0.903 / 0.952). Writes out_nodes (m, k) int64 (-1 pad), out_scores (m, k) float32
    (-inf pad); stats[i] = nodes expanded by query i.
    """
    # the arrays are taken out of the tuples once: an array read from a tuple inside the loops costs a
    # reference count update each time
    links, recs, recf, recw, fo = nd.links, nd.recs, nd.recf, nd.recw, nd.fo
    vbits, vrow, norms, ok, n_nodes, entry = nd.vbits, nd.vrow, nd.norms, nd.ok, nd.n_nodes, nd.entry
    q, luts, inv, off, base, part_steps = pr.q, pr.luts, pr.inv, pr.off, pr.base, pr.part_steps
    alpha, l2, sub, bits = pr.alpha, pr.l2, pr.sub, pr.bits
    qwords, qlo, qdelta, qsum, v0, dv = pr.qwords, pr.qlo, pr.qdelta, pr.qsum, pr.v0, pr.dv
    m, d = q.shape
    R = links.shape[1]
    C = recs.shape[1]
    G = part_steps.shape[0] - 1
    nsteps = part_steps[G]
    if i0 >= i1:
        return
    tags = np.zeros(n_nodes, np.int32)
    cap = (ef + 64) * R * 2
    cand_k = np.empty(cap, np.float32)  # min-heap of negated estimates (root = best)
    cand_n = np.empty(cap, np.int64)
    hs = np.empty(ef, np.float32)  # the ef best exact scores (root = worst kept; -inf: empty)
    hp = np.empty(ef, np.int64)
    bu = np.empty(d, np.uint32)
    bf = bu.view(np.float32)
    blut = np.empty((1 if bits else max(nsteps, 1), 256), np.uint16)
    fresh = np.empty(R, np.int64)
    for i in range(i0, i1):
        tag = i - i0 + 1
        qi = q[i]
        qn = _dot(qi, qi)
        qw = qwords[i]
        if not bits:
            _byte_luts(luts, i, nsteps, blut)
        hs[:] = _NEG
        hp[:] = -1
        expanded = 0
        tags[entry] = tag
        nc = _push_min(cand_k, cand_n, 0, _NEG, entry)
        while nc > 0:
            ce = -cand_k[0]
            c = cand_n[0]
            nc = _pop_min(cand_k, cand_n, nc)
            if ce < hs[0]:
                break
            if nc > 0:  # the likely next node: fetch its links and vector while this one is scored
                nx = cand_n[0]
                _prefetch(links, nx * R)
                for o in range(0, d, 32):
                    _prefetch(vbits, vrow[nx] * d + o)
            nf = 0  # c's neighbours not seen yet: fetch their records, then score them
            for j in range(R):
                u = links[c, j]
                if u < 0:
                    break
                if u >= n_nodes or tags[u] == tag:
                    continue
                tags[u] = tag
                for o in range(0, C, 64):
                    _prefetch(recs, u * C + o)
                fresh[nf] = u
                nf += 1
            if ok[c]:  # only a node that may be returned is scored exactly
                heap_offer(hs, hp, _exact(vbits, vrow, norms, qi, qn, l2, c, bu, bf), c)
            expanded += 1
            thr = hs[0]
            for j in range(nf):
                u = fresh[j]
                if bits:
                    acc = _estimate_bits(recw, recf, fo, u, qw, qlo[i], qdelta[i], qsum[i], v0, dv)
                else:
                    acc = _estimate_luts(recs, recf, fo, u, blut, part_steps, inv[i], off[i])
                e = alpha * acc + base[i]
                if sub:
                    e -= recf[u, fo + G]
                if e > thr and nc < cap:
                    nc = _push_min(cand_k, cand_n, nc, -e, u)
        # the ef best-estimated candidates left unexpanded are scored exactly too (not expanded)
        extra = 0
        while nc > 0 and extra < ef:
            c = cand_n[0]
            nc = _pop_min(cand_k, cand_n, nc)
            if ok[c]:
                heap_offer(hs, hp, _exact(vbits, vrow, norms, qi, qn, l2, c, bu, bf), c)
            extra += 1
        stats[i] = expanded
        for j in range(k):  # results, best first (ties: lower node)
            out_nodes[i, j] = -1
            out_scores[i, j] = _NEG
        kept = 0
        for j in range(ef):
            if hp[j] >= 0:
                hs[kept] = hs[j]
                hp[kept] = hp[j]
                kept += 1
        take_topk(hs, hp, kept, k, out_scores, out_nodes, i)
        if tag > 2_000_000_000 - m:
            tags[:] = 0


@njit(cache=_CACHE, nogil=True, parallel=True)
def search(nd, pr, ef, k, n_tasks, out_nodes, out_scores, stats):
    """:func:`search_range` of ``n_tasks`` contiguous ranges of the queries, in parallel."""
    m = pr.q.shape[0]
    per = (m + n_tasks - 1) // n_tasks
    for t in prange(n_tasks):
        search_range(nd, pr, ef, k, t * per, min(m, t * per + per), out_nodes, out_scores, stats)


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: the kernels always get the vectors read-only (one compiled signature, whether
    they are the graph's own array or a segment's memory-mapped one)."""
    v = a.view()
    v.flags.writeable = False
    return v


def warmup() -> None:
    """Compile (or load from the cache) every graph kernel with the argument types the index passes, on a
    tiny synthetic graph (40 nodes, d = 8, degree 4, one kernel part of 2 steps)."""
    rng = np.random.default_rng(0)
    n, d, R, nsteps = 40, 8, 4, 2
    vf = rng.normal(size=(n, d)).astype(np.float32)
    vbits = read_only(vf.astype(np.float16).view(np.uint16))
    norms = np.zeros(n, np.float32)
    nodes = np.arange(n, dtype=np.int64)
    squared_norms(vbits, nodes, nodes, norms)
    links = np.full((n, R), -1, np.int32)
    incoming = np.empty((n - 1) * R, np.int64)
    link_batch(nodes[1:], 1, 0, vf, norms, links, R, 8, np.float32(1.2), 2, incoming)
    pairs = np.sort(incoming[incoming >= 0])
    tgt = pairs >> 32
    starts = np.r_[np.flatnonzero(np.r_[True, tgt[1:] != tgt[:-1]]), pairs.size].astype(np.int64)
    hit = np.empty(starts.size - 1, np.int64)
    merge_reverse(pairs, starts, vf, norms, links, R, np.float32(1.2), hit)
    recs = np.zeros((n, 64), np.uint8)
    recs[:, :nsteps] = rng.integers(0, 256, size=(n, nsteps))
    recf = recs.view(np.float32)
    recf[:, 4] = 1.0
    recf[:, 5] = norms
    m = 3
    words = np.empty((m, 4, 1), np.uint64)
    bit_planes(vf[:m], 4, words, *(np.empty(m, np.float32) for _ in range(3)))
    out_nodes = np.empty((m, 5), np.int64)
    out_scores = np.empty((m, 5), np.float32)
    stats = np.zeros(m, np.int64)
    nd = Nodes(links, recs, recf, recs.view(np.uint64), 4, vbits, nodes, norms, np.ones(n, bool), n, 0)
    for l2, bits in ((False, False), (True, False), (False, True), (True, True)):
        pr = Probe(
            vf[:m].copy(), rng.integers(0, 255, size=m * nsteps * 32).astype(np.uint8),
            np.full((m, 1), 0.01, np.float32), np.zeros((m, 1), np.float32), np.zeros(m, np.float32),
            np.array([0, nsteps], np.int64), np.float32(1.0), l2, l2, bits,
            rng.integers(0, 2**63, size=(m, 4, 1), dtype=np.uint64), np.zeros(m, np.float32),
            np.full(m, 0.1, np.float32), np.zeros(m, np.float32), np.float32(-1.0), np.float32(2.0),
        )  # fmt: skip
        search_range(nd, pr, 8, 5, 0, m, out_nodes, out_scores, stats)
        search(nd, pr, 8, 5, 2, out_nodes, out_scores, stats)
