"""Graph-index kernels (numba): batch insertion (greedy search + RobustPrune) and code-scored traversal.

A graph of ``N`` nodes with out-degree at most ``R``. Each node ``n`` owns one row of ``rows`` (uint8,
``row_bytes`` a multiple of 64), so expanding a node is one sequential read::

    [0, code_bytes)                 its neighbours' codes, 4-bit slots in blocks of 32 lanes
                                    (the fast-scan layout: block b, step t at (b * nsteps + t) * 32)
    ids   at int32   [io, io + R)   neighbour node numbers, -1 = empty slot
    facs  at float32 [fo, fo + G*R) per kernel part g and slot j: the neighbour's factor
    sqs   at float32 [so, so + R)   the neighbour's code constant (||x||^2 for l2sq; minus alpha·β with offsets)

``vbits`` (N, d) uint16 holds every node's vector as IEEE float16 bits (the exact re-rank data): the
kernels widen it to float32 on the fly, exactly (numba has no float16). Node-to-node distances (construction)
are squared L2 on those vectors; query scores are higher-is-better: ``<q, x>`` or ``2<q, x> - |x|^2 - |q|^2``.

Construction (:func:`link_batch`) is the batch insertion of ParlayANN / DiskANN ("prefix doubling"):
every new node of a batch searches the graph as it was before the batch (in parallel), keeps the
RobustPrune of its ``L`` best (Vamana's alpha rule, squared distances), then the reverse edges are
merged per target node (in parallel, one thread per target), pruning a list that overflows ``R``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import envs
from .fastscan import _prefetch, _win1
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
# rows
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True)
def _pack_row(n, rows, rowsi, rowsf, slots, facs, sqc, R, nsteps, io, fo, so):
    """Rewrite node ``n``'s neighbour codes, factors and squared norms from its ids (rows[n] ids area)."""
    G = facs.shape[1]
    code_bytes = ((R + 31) // 32) * nsteps * 32
    for b in range(code_bytes):
        rows[n, b] = 0
    for j in range(R):
        u = rowsi[n, io + j]
        if u < 0:
            for g in range(G):
                rowsf[n, fo + g * R + j] = 0.0
            rowsf[n, so + j] = 0.0
            continue
        base = (j >> 5) * nsteps * 32
        v = j & 31
        lane = v & 15
        shift = 4 * (v >> 4)
        for t in range(nsteps):
            rows[n, base + t * 32 + lane] |= np.uint8(slots[u, 2 * t] << shift)
            rows[n, base + t * 32 + 16 + lane] |= np.uint8(slots[u, 2 * t + 1] << shift)
        for g in range(G):
            rowsf[n, fo + g * R + j] = facs[u, g]
        rowsf[n, so + j] = sqc[u]


@njit(cache=_CACHE, nogil=True, parallel=True)
def pack_rows(nodes, rows, rowsi, rowsf, slots, facs, sqc, R, nsteps, io, fo, so):
    """:func:`_pack_row` of every node in ``nodes`` (int64), in parallel."""
    for i in prange(nodes.shape[0]):
        _pack_row(nodes[i], rows, rowsi, rowsf, slots, facs, sqc, R, nsteps, io, fo, so)


@njit(cache=_CACHE, nogil=True, parallel=True)
def squared_norms(vbits, nodes, out):
    """out[n] = ||x_n||^2 of the float16 vectors of ``nodes``."""
    d = vbits.shape[1]
    for i in prange(nodes.shape[0]):
        n = nodes[i]
        bu = np.empty(d, np.uint32)
        bf = bu.view(np.float32)
        _widen(vbits, n, bu, bf)
        out[n] = _dot(bf, bf)


# ------------------------------------------------------------------------------------------------
# construction
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, fastmath=True)
def _greedy(p, pf, vf, norms, rowsi, io, R, entry, n_old, L, tags, tag, cand_k, cand_n, res_k, res_n):
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
            u = rowsi[c, io + j]
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
def link_batch(new, n_old, entry, vf, norms, rowsi, io, R, L, alpha, n_tasks, incoming):
    """Link the nodes ``new`` (int64, all >= n_old) into the graph of nodes < n_old.

    Phase 1 (parallel over new nodes): greedy search + RobustPrune -> their out-lists (rows ids).
    ``incoming`` (len(new) * R,) int64 scratch receives the reverse edges as target * 2**32 + source.
    Phase 2 is :func:`merge_reverse` (called by the driver after sorting ``incoming``).
    """
    b = new.shape[0]
    N = rowsi.shape[0]
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
                p, vf[p], vf, norms, rowsi, io, R, entry, n_old, L, tags, i + 1, cand_k, cand_n, res_k, res_n
            )
            for j in range(nr):
                res_k[j] = -res_k[j]
            _sort_by_key(res_k, res_n, nr)
            nk = _prune(p, res_k, res_n, nr, vf, norms, R, alpha, out)
            for j in range(R):
                rowsi[p, io + j] = out[j] if j < nk else -1
            for j in range(nk):
                incoming[i * R + j] = (out[j] << 32) | p


@njit(cache=_CACHE, nogil=True, parallel=True, fastmath=True)
def refine_batch(nodes, n_nodes, entry, vf, norms, rowsi, io, R, L, alpha, n_tasks, out_lists):
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
                rowsi,
                io,
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
                u = rowsi[p, io + j]
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
def merge_reverse(pairs, starts, vf, norms, rowsi, io, R, alpha, touched):
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
        while deg < R and rowsi[u, io + deg] >= 0:
            deg += 1
        m = e - a
        if deg + m <= R:
            for x in range(m):
                src = pairs[a + x] & 0xFFFFFFFF
                dup = False
                for y in range(deg):
                    if rowsi[u, io + y] == src:
                        dup = True
                        break
                if not dup:
                    rowsi[u, io + deg] = src
                    deg += 1
            continue
        cnt = deg + m
        dk = np.empty(cnt, np.float32)
        dn = np.empty(cnt, np.int64)
        uf = vf[u]
        for x in range(cnt):
            c = rowsi[u, io + x] if x < deg else pairs[a + x - deg] & 0xFFFFFFFF
            dk[x] = norms[u] + norms[c] - 2.0 * _dot(uf, vf[c])
            dn[x] = c
        _sort_by_key(dk, dn, cnt)
        out = np.empty(R, np.int64)
        nk = _prune(u, dk, dn, cnt, vf, norms, R, alpha, out)
        for j in range(R):
            rowsi[u, io + j] = out[j] if j < nk else -1


# ------------------------------------------------------------------------------------------------
# search: traversal scored on the neighbours' codes, exact scores of expanded nodes
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, fastmath=True)
def search_range(
    q,
    luts,
    inv,
    off,
    base,
    alpha,
    l2,
    sub,
    part_steps,
    nsteps,
    rows_flat,
    row_bytes,
    rowsi,
    rowsf,
    io,
    fo,
    so,
    R,
    vbits,
    vflat,
    norms,
    ok,
    n_nodes,
    entry,
    ef,
    k,
    i0,
    i1,
    out_nodes,
    out_scores,
    stats,
):
    """Queries [i0, i1) of :func:`search`, on the calling thread (one query: no parallel region).

    Top-``k`` nodes of each query (m, d) float32 by a best-first traversal.

    Candidates are ordered by the fast-scan estimate of their code (read from the expanding node's
    row: ``alpha * Σ_g f_g (A_g * inv_g + off_g) + base - sub * sq``, ``sq`` the node's code constant:
    ||x||² for l2sq, with the quantizer's additive term folded in when it has one); each node taken from the candidate
    queue is scored exactly from its float16 vector when ``ok[n]`` (live and allowed) and offered to the
    ``ef`` best (:func:`.fastscan.select.heap_offer`: higher score, then lower node). The walk stops
    when the best remaining estimate falls below the ef-th exact score; then the ef best-estimated
    candidates it did not expand are scored exactly and offered too (a true neighbour reached but not
    expanded is still found: on Fashion-MNIST, where a walk stops after ef expansions, recall@10 at
    ef 10 / 16 goes from 0.831 / 0.922 to 0.903 / 0.952).
    ``luts`` (m * nsteps * 32,) uint8, inv/off (m, G) float32, base (m,) float32 (centre term and query
    constant). Writes out_nodes (m, k) int64 (-1 pad), out_scores (m, k) float32 (-inf pad);
    stats[i] = nodes expanded by query i.
    """
    m = q.shape[0]
    d = q.shape[1]
    G = part_steps.shape[0] - 1
    nb32 = (R + 31) // 32
    if i0 < i1:
        tags = np.zeros(n_nodes, np.int32)
        cap = (ef + 64) * R * 2
        cand_k = np.empty(cap, np.float32)  # min-heap of negated estimates (root = best)
        cand_n = np.empty(cap, np.int64)
        hs = np.empty(ef, np.float32)  # the ef best exact scores (root = worst kept; -inf: empty)
        hp = np.empty(ef, np.int64)
        bu = np.empty(d, np.uint32)
        bf = bu.view(np.float32)
        sums = np.empty(G * nb32 * 32, np.int32)
        mx = np.empty(G * nb32 + 1, np.int32)
        lb = np.empty(1, np.int64)
        est = np.empty(R, np.float32)
        for i in range(i0, i1):
            tag = i - i0 + 1
            qi = q[i]
            qn = _dot(qi, qi)
            nc = 0
            hs[:] = _NEG
            hp[:] = -1
            expanded = 0
            tags[entry] = tag
            nc = _push_min(cand_k, cand_n, nc, _NEG, entry)
            while nc > 0:
                ce = -cand_k[0]
                c = cand_n[0]
                nc = _pop_min(cand_k, cand_n, nc)
                if ce < hs[0]:
                    break
                if nc > 0:  # the likely next node: fetch its row and vector while this one is scored
                    nx = cand_n[0]
                    for o in range(0, row_bytes, 64):
                        _prefetch(rows_flat, nx * row_bytes + o)
                    for o in range(0, d, 32):
                        _prefetch(vflat, nx * d + o)
                if ok[c]:  # only a node that may be returned is scored exactly
                    _widen(vbits, c, bu, bf)
                    ip = _dot(qi, bf)
                    heap_offer(hs, hp, 2.0 * ip - norms[c] - qn if l2 else ip, c)
                expanded += 1
                # integer LUT sums of c's neighbours' codes, per kernel part
                for g in range(G):
                    s0 = part_steps[g]
                    s1 = part_steps[g + 1]
                    first = 1
                    while s0 < s1:
                        w = min(256, s1 - s0)
                        lb[0] = (i * nsteps + s0) * 32
                        _win1(
                            rows_flat,
                            c * row_bytes + s0 * 32,
                            nsteps * 32,
                            nb32,
                            luts,
                            lb,
                            w,
                            sums,
                            g * nb32 * 32,
                            0,
                            first,
                            mx,
                            g * nb32,
                            0,
                        )
                        s0 += w
                        first = 0
                for j in range(R):
                    acc = np.float32(0.0)
                    for g in range(G):
                        acc += rowsf[c, fo + g * R + j] * (
                            np.float32(sums[g * nb32 * 32 + j]) * inv[i, g] + off[i, g]
                        )
                    e = alpha * acc + base[i]
                    if sub:
                        e -= rowsf[c, so + j]
                    est[j] = e
                thr = hs[0]
                for j in range(R):
                    u = rowsi[c, io + j]
                    if u < 0:
                        break
                    if u >= n_nodes or tags[u] == tag:
                        continue
                    tags[u] = tag
                    if est[j] > thr and nc < cap:
                        nc = _push_min(cand_k, cand_n, nc, -est[j], u)
            # the ef best-estimated candidates left unexpanded are scored exactly too (not expanded): a
            # neighbour the walk reached but did not expand can still be a result
            extra = 0
            while nc > 0 and extra < ef:
                c = cand_n[0]
                nc = _pop_min(cand_k, cand_n, nc)
                if ok[c]:
                    _widen(vbits, c, bu, bf)
                    ip = _dot(qi, bf)
                    heap_offer(hs, hp, 2.0 * ip - norms[c] - qn if l2 else ip, c)
                extra += 1
            stats[i] = expanded
            # results, best first (ties: lower node)
            for j in range(k):
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
def search(
    q,
    luts,
    inv,
    off,
    base,
    alpha,
    l2,
    sub,
    part_steps,
    nsteps,
    rows_flat,
    row_bytes,
    rowsi,
    rowsf,
    io,
    fo,
    so,
    R,
    vbits,
    vflat,
    norms,
    ok,
    n_nodes,
    entry,
    ef,
    k,
    n_tasks,
    out_nodes,
    out_scores,
    stats,
):
    """Top-``k`` nodes of each query, ``n_tasks`` contiguous ranges of queries in parallel (see
    :func:`search_range`)."""
    m = q.shape[0]
    per = (m + n_tasks - 1) // n_tasks
    for t in prange(n_tasks):
        i0 = t * per
        i1 = min(m, i0 + per)
        search_range(
            q,
            luts,
            inv,
            off,
            base,
            alpha,
            l2,
            sub,
            part_steps,
            nsteps,
            rows_flat,
            row_bytes,
            rowsi,
            rowsf,
            io,
            fo,
            so,
            R,
            vbits,
            vflat,
            norms,
            ok,
            n_nodes,
            entry,
            ef,
            k,
            i0,
            i1,
            out_nodes,
            out_scores,
            stats,
        )


def warmup() -> None:
    """Compile (or load from the cache) every graph kernel with the argument types the index passes, on a
    tiny synthetic graph (40 nodes, d = 8, degree 4, one kernel part of 2 steps)."""
    rng = np.random.default_rng(0)
    n, d, R, nsteps = 40, 8, 4, 2
    io, fo, so = 16, 20, 24
    row_bytes = 128
    vf = rng.normal(size=(n, d)).astype(np.float32)
    vbits = vf.astype(np.float16).view(np.uint16)
    norms = np.zeros(n, np.float32)
    nodes = np.arange(n, dtype=np.int64)
    squared_norms(vbits, nodes, norms)
    rows = np.zeros((n, row_bytes), np.uint8)
    rowsi, rowsf = rows.view(np.int32), rows.view(np.float32)
    rowsi[:, io : io + R] = -1
    incoming = np.empty((n - 1) * R, np.int64)
    link_batch(nodes[1:], 1, 0, vf, norms, rowsi, io, R, 8, np.float32(1.2), 2, incoming)
    pairs = np.sort(incoming[incoming >= 0])
    tgt = pairs >> 32
    starts = np.r_[np.flatnonzero(np.r_[True, tgt[1:] != tgt[:-1]]), pairs.size].astype(np.int64)
    hit = np.empty(starts.size - 1, np.int64)
    merge_reverse(pairs, starts, vf, norms, rowsi, io, R, np.float32(1.2), hit)
    slots = rng.integers(0, 16, size=(n, 2 * nsteps)).astype(np.uint8)
    facs = np.ones((n, 1), np.float32)
    sqc = norms.copy()
    pack_rows(nodes, rows, rowsi, rowsf, slots, facs, sqc, R, nsteps, io, fo, so)
    m = 3
    luts = rng.integers(0, 255, size=m * nsteps * 32).astype(np.uint8)
    inv = np.full((m, 1), 0.01, np.float32)
    off = np.zeros((m, 1), np.float32)
    base = np.zeros(m, np.float32)
    out_nodes = np.empty((m, 5), np.int64)
    out_scores = np.empty((m, 5), np.float32)
    stats = np.zeros(m, np.int64)
    part_steps = np.array([0, nsteps], np.int64)
    ok = np.ones(n, bool)
    for l2 in (False, True):
        search_range(
            vf[:m].copy(), luts, inv, off, base, np.float32(1.0), l2, l2, part_steps, nsteps,
            rows.reshape(-1), row_bytes, rowsi, rowsf, io, fo, so, R,
            vbits, vbits.reshape(-1), norms, ok, n, 0, 8, 5, 0, m, out_nodes, out_scores, stats,
        )  # fmt: skip
        search(
            vf[:m].copy(), luts, inv, off, base, np.float32(1.0), l2, l2, part_steps, nsteps,
            rows.reshape(-1), row_bytes, rowsi, rowsf, io, fo, so, R,
            vbits, vbits.reshape(-1), norms, ok, n, 0, 8, 5, 2, out_nodes, out_scores, stats,
        )  # fmt: skip
