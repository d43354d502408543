"""The scan: bounds from the integer sums, exact re-score of the vectors that can still enter the top k.

Contract (LUT and popcount scans alike). Work items are (block range, up to 4 queries); each (item, query)
belongs to a *pair* -- (query, block range) for flat scans, the query for IVF scans -- that owns a heap
of the k best (exact score, position). For every scanned vector ``v`` of query ``i`` the kernel forms an
upper bound ``ub = s + e`` of the exact score from the integer estimate ``s`` and its rounding bound ``e``;
when ``ub`` reaches the pair's threshold (the heap's worst score, the k-th best lower bound ``s - e`` the
pair has seen, or the query's ``floor``: the best of those over its pairs), ``v`` is re-scored exactly (:mod:`.rescore`) and offered to the heap.
The heaps' union therefore holds the exact top k, and :func:`.select.merge_pairs` takes it out. No
candidate list, no overflow: memory is ``pairs x k``.

Blocks are skipped whole when the bound from their largest integer sum cannot reach the threshold. For
single-part flat codes a sub-chunk of up to 16 blocks is first checked at once (its largest sum against the
segment's loosest bound: one compare per query, FAISS-style, before any per-block work); the blocks of a
sub-chunk that passes get their bounds in one branch-free (vectorized) loop; in a block that passes, one
vector compare of its 32 integer sums against the smallest sum that can reach the threshold (FAISS'
threshold mask, :func:`_sum_floor`) picks the few vectors that get their own float bound.

A full pending buffer makes room without re-scoring when it can: entries the threshold has risen past
are dropped first (:func:`flush_pair` with ``room``), so the exact re-score mostly runs once, at the end,
against the final threshold.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ._config import CACHE as _CACHE
from ._config import twin
from .accumulate import QMAX, SUB, _item_sums
from .isa import _ge_mask, _low_bit, _popcount, _prefetch
from .rescore import _rescore_bits_one, _rescore_four, _rescore_one
from .select import heap_offer, merge_one

_NEG_INF = np.float32(-np.inf)


class Codes(NamedTuple):
    """A segment's codes in scan layout (positions = padded rows, 32 per block; N = 32 nb)."""

    blocks: np.ndarray  # (nb * S * 32,) uint8 interleaved 4-bit slots
    rows: np.ndarray  # (N, S) uint8 the same slots in row order (re-scoring)
    nsteps: int  # S: 32-byte steps per block
    part_steps: np.ndarray  # (G + 1,) int64 step bounds of the kernel parts
    factors: np.ndarray  # (G, N) float32 per-vector factor of each part (0 on padding)
    fmin: np.ndarray  # (G, nb) float32 smallest factor of each block
    fmax: np.ndarray  # (G, nb) float32 largest factor of each block
    block_list: np.ndarray  # (nb,) int32 IVF list of each block (-1: none)


class Queries(NamedTuple):
    """Prepared queries (m of them) and the affine map of the metric."""

    luts: np.ndarray  # (m * S * 32,) uint8
    inv: np.ndarray  # (m, G) float32 LUT scale
    off: np.ndarray  # (m, G) float32 LUT offset
    err: np.ndarray  # (m, G) float32 rounding bound
    fluts: np.ndarray  # (m, 2S, 16) float32 float LUTs (the exact score)
    alpha: np.float32  # 1 (ip) or 2 (l2sq)
    qconst: np.ndarray  # (m,) float32 per-query additive term
    cterm: np.ndarray  # (m, L + 1) float32 per-(query, list) additive term inside alpha


class Bias(NamedTuple):
    """Per-vector additive term of the score and its block bounds (built by :mod:`vqdb.kernels.scorer`)."""

    beta: np.ndarray  # (N,) float32, -inf = never returned (padding, deleted, filtered out)
    bmag: np.ndarray  # (N,) float32 magnitude of the finite part (float rounding slack)
    bmax: np.ndarray  # (nb,) float32 largest finite beta of each block
    bmagmax: np.ndarray  # (nb,) float32 largest bmag of each block
    whole: np.ndarray  # (4,) float32 over every block of part 0: smallest fmin, largest fmax, bmax, bmagmax


class Work(NamedTuple):
    """Work items and their split into parallel tasks (items of one pair share a task)."""

    item_b0: np.ndarray  # (I,) int64 first block
    item_b1: np.ndarray  # (I,) int64 end block
    item_q: np.ndarray  # (I, 4) int64 queries, -1 padded (valid ones first)
    item_pair: np.ndarray  # (I, 4) int64 pair of each query
    task_ptr: np.ndarray  # (T + 1,) int64 items of each task


class Top(NamedTuple):
    """Outputs and per-pair state: the heap of the k best, pending candidates, the per-query floor."""

    scores: np.ndarray  # (pairs, k) float32, start -inf
    pos: np.ndarray  # (pairs, k) int64, start -1
    pend_pos: np.ndarray  # (pairs, C) int64 pending candidates (C >= 64: see pending_slots)
    pend_ub: np.ndarray  # (pairs, C) float32 their upper bounds
    npend: np.ndarray  # (pairs,) int64 pending count, start 0
    floor: np.ndarray  # (m,) float32, start -inf (a stale read is safe: every value written is valid)
    rescored: np.ndarray  # (pairs,) int64 vectors re-scored
    lows: np.ndarray  # (pairs, k) float32 min-heap of the k best lower bounds seen, start -inf


def pending_slots(k: int) -> int:
    """Pending candidates per pair: a flush re-scores them best bound first, so a larger buffer re-scores
    fewer (it stops where the bounds fall below the k-th exact score) at 12 bytes a slot."""
    return 8 * k + 96


@njit(cache=_CACHE, nogil=True)
def _low_offer(h, x):
    """:func:`_low_offer_row` of a 1-D heap ``h`` (k,) float32."""
    _low_offer_row(h.reshape((1, h.shape[0])), 0, x)


@njit(cache=_CACHE, nogil=True)
def _low_offer_row(lows, r, x):
    """Keep ``x`` in the min-heap ``lows[r]`` ((pairs, k) float32; root = the k-th) of the k largest values
    seen: a lower bound of the k-th best exact score, so it is a valid threshold as soon as it rises (no
    re-score needed). Indexes the row in place (a row view per call would cost a reference count)."""
    if not x > lows[r, 0]:
        return
    n = lows.shape[1]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and lows[r, c + 1] < lows[r, c]:
            c += 1
        if lows[r, c] >= x:
            break
        lows[r, i] = lows[r, c]
        i = c
    lows[r, i] = x


# ------------------------------------------------------------------------------------------------
# bounds
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True)
def _block_top(sv, iv, of, er, f0, f1, base, bmx, bmagmx, alpha):
    """Upper bound of every score in a block whose single-part integer sums are <= ``sv`` (factors in
    [f0, f1], f0 >= 0, block beta <= bmx): nondecreasing in ``sv``."""
    val = np.float32(sv) * iv + of
    bound = max(f1 * val, f0 * val) + max(abs(f1), abs(f0)) * er
    top = alpha * bound + base + bmx
    return top + np.float32(1e-6) * (abs(alpha * bound) + abs(base) + bmagmx)


_NO_FLOOR = -(1 << 40)  # :func:`_sum_floor` when every sum may pass


@njit(cache=_CACHE, nogil=True)
def _sum_floor(thr, iv, of, er, f0, f1, base, bmx, bmagmx, alpha):
    """An integer ``S`` such that every single-part sum ``s < S`` of the block has ``_block_top(s, ...) <
    thr`` (so only sums >= S need a vector's own bound): :func:`_block_top` inverted in float64, then
    checked (and lowered) with :func:`_block_top` itself, so the float32 rounding cannot drop a vector."""
    if not thr > _NEG_INF:
        return _NO_FLOOR
    r = np.float64(thr) - base - bmx - 1e-6 * (abs(np.float64(base)) + bmagmx)
    b = r / (alpha * (1.0 + 1e-6)) if r >= 0 else r / (alpha * (1.0 - 1e-6))
    vp = b - max(abs(f1), abs(f0)) * np.float64(er)
    if vp >= 0:
        if not f1 > 0:
            return _NO_FLOOR
        val = vp / f1
    else:
        if not f0 > 0:
            return _NO_FLOOR
        val = vp / f0
    x = (val - of) / iv - 1.0
    if not abs(x) < 1e12:
        return _NO_FLOOR
    sv = np.int64(np.floor(x))
    for _ in range(4):
        if _block_top(sv - 1, iv, of, er, f0, f1, base, bmx, bmagmx, alpha) < thr:
            return sv
        sv -= 2
    return _NO_FLOOR


@njit(cache=_CACHE, nogil=True)
def _multi_top(mx, j, bb, n_parts, q, blk, inv, off, err, fmin, fmax, base, bmx, bmagmx, alpha):
    """Block bound for multi-part codes from each part's largest sum ``mx[(j*P + p)*SUB + bb]``."""
    bound = np.float32(0.0)
    for p in range(n_parts):
        val = np.float32(mx[(j * n_parts + p) * SUB + bb]) * inv[q, p] + off[q, p]
        f0 = fmin[p, blk]
        f1 = fmax[p, blk]
        bound += max(f1 * val, f0 * val) + max(abs(f1), abs(f0)) * err[q, p]
    top = alpha * bound + base + bmx
    return top + np.float32(1e-6) * (abs(alpha * bound) + abs(base) + bmagmx)


# ------------------------------------------------------------------------------------------------
# pending candidates -> exact scores -> heap
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True)
def _rescore_pass(pp, ub, n, cut, q, hs, hp, low, top, codes, qy, beta, psc, first):
    """Re-score (four chains at a time) and offer the pending entries whose bound reaches the threshold:
    ``first``: only those with ub >= cut (marking them done with ub = -inf); else every remaining one."""
    quad = np.empty(4, dtype=np.int64)
    thr = max(hs[0], low[0], top.floor[q])
    done = 0
    c = 0
    while c < n:
        g = 0
        while c < n and g < 4:
            u = ub[c]
            if u >= thr and u > _NEG_INF and (not first or u >= cut):
                quad[g] = pp[c]
                g += 1
                if first:
                    ub[c] = _NEG_INF
            c += 1
        if g == 4:
            _rescore_four(
                codes.rows,
                codes.part_steps,
                qy.fluts,
                codes.factors,
                beta,
                qy.alpha,
                qy.qconst,
                qy.cterm,
                codes.block_list,
                q,
                quad,
                0,
                psc,
            )
        else:
            for t in range(g):
                psc[t] = _rescore_one(
                    codes.rows,
                    codes.part_steps,
                    qy.fluts,
                    codes.factors,
                    beta,
                    qy.alpha,
                    qy.qconst,
                    qy.cterm,
                    codes.block_list,
                    q,
                    quad[t],
                )
        for t in range(g):
            heap_offer(hs, hp, psc[t], quad[t])
        done += g
        thr = max(hs[0], low[0], top.floor[q])
    return done


@njit(cache=_CACHE, nogil=True)
def _keep_reaching(pp, ub, n, thr):
    """Compact the first ``n`` pending entries to those whose bound reaches ``thr``; returns how many."""
    w = 0
    for c in range(n):
        if ub[c] >= thr:
            pp[w] = pp[c]
            ub[w] = ub[c]
            w += 1
    return w


@njit(cache=_CACHE, nogil=True)
def flush_pair(pair, q, top, codes, qy, beta, psc, room, cnt):
    """Re-score the pending candidates of ``pair`` (query q) whose bound still reaches the threshold and
    offer them to the pair's heap: the k best bounds first when there are many (the threshold they set
    spares most of the rest), then the others. ``cnt``: entries pending (the caller keeps the count:
    inside a parallel region a count re-read from ``top.npend`` after this call can be stale). Returns
    (re-scored, left pending) and writes no count.

    ``room`` = 0 empties the buffer. ``room`` > 0 (a full buffer during the scan) stops as soon as at most
    ``room`` entries are left pending: first by dropping those the threshold has risen past (no re-score),
    then after re-scoring the k best bounds; only a buffer still fuller than that is re-scored whole. A
    candidate re-scored early is one the rest of the scan may well beat, so the fewer the better."""
    if cnt == 0:
        return 0, 0
    hs = top.scores[pair]
    hp = top.pos[pair]
    low = top.lows[pair]
    ub = top.pend_ub[pair]
    pp = top.pend_pos[pair]
    n = _keep_reaching(pp, ub, cnt, max(hs[0], low[0], top.floor[q]))
    if n == 0 or (room > 0 and n <= room):
        return 0, n
    k = hs.shape[0]
    done = 0
    if n > 2 * k:
        # the k best bounds first (a partition, not a sort): their exact k-th score is a tight threshold
        # for the rest, so the second pass re-scores few
        cut = np.partition(-ub[:n], k - 1)[k - 1]
        done += _rescore_pass(pp, ub, n, -cut, q, hs, hp, low, top, codes, qy, beta, psc, True)
        if room > 0:
            n = _keep_reaching(pp, ub, n, max(hs[0], low[0], top.floor[q]))
            if n <= room:
                return done, n
    done += _rescore_pass(pp, ub, n, np.float32(np.inf), q, hs, hp, low, top, codes, qy, beta, psc, False)
    return done, 0


@njit(cache=_CACHE, nogil=True)
def _scan_multi_blocks(j, q, pair, c0, nblk, sums, mx, codes, qy, bias, top, psc, est, bnd):
    """Blocks [c0, c0 + nblk) of query slot j of an item, codes of several kernel parts (their sums at
    ``sums``/``mx``, layout of :func:`.accumulate._item_sums`). Returns the number of vectors re-scored."""
    n_parts = codes.part_steps.shape[0] - 1
    stride = 32 * SUB
    alpha = qy.alpha
    beta = bias.beta
    hs = top.scores[pair]
    floor = top.floor
    pend = top.pend_pos[pair]
    pub = top.pend_ub[pair]
    cap = pend.shape[0]
    npend = top.npend[pair]
    rescored = 0
    for bb in range(nblk):
        blk = c0 + bb
        thr = max(hs[0], top.lows[pair, 0], floor[q])
        base = alpha * qy.cterm[q, codes.block_list[blk] + 1] + qy.qconst[q]
        abase = abs(base)
        p0 = 32 * blk
        btop = _multi_top(
            mx,
            j,
            bb,
            n_parts,
            q,
            blk,
            qy.inv,
            qy.off,
            qy.err,
            codes.fmin,
            codes.fmax,
            base,
            bias.bmax[blk],
            bias.bmagmax[blk],
            alpha,
        )
        if btop < thr:
            continue
        for v in range(32):
            est[v] = 0.0
            bnd[v] = 0.0
        for p in range(n_parts):
            iv = qy.inv[q, p]
            of = qy.off[q, p]
            er = qy.err[q, p]
            o = (j * n_parts + p) * stride + 32 * bb
            for v in range(32):
                f = codes.factors[p, p0 + v]
                est[v] += f * (np.float32(sums[o + v]) * iv + of)
                bnd[v] += abs(f) * er
        if npend + 32 > cap:
            done, npend = flush_pair(pair, q, top, codes, qy, beta, psc, cap // 2, npend)
            rescored += done
            thr = max(hs[0], top.lows[pair, 0], floor[q])
        for v in range(32):
            a_est = alpha * est[v]
            s = a_est + base + beta[p0 + v]
            e = alpha * bnd[v] + np.float32(4e-7) * (abs(a_est) + abase + bias.bmag[p0 + v])
            u = s + e
            if u >= thr and u > _NEG_INF:
                pend[npend] = p0 + v
                pub[npend] = u
                npend += 1
                # s - e <= the exact score (the bound of s + e, the other way): the threshold rises now,
                # not at the next flush
                _low_offer_row(top.lows, pair, s - e)
                thr = max(thr, top.lows[pair, 0])
    top.npend[pair] = npend
    return rescored


def _scan_lut(codes, qy, bias, work, top):
    """Fast-scan work items (see the module docstring); one task per contiguous run of items."""
    n_parts = codes.part_steps.shape[0] - 1
    n_tasks = work.task_ptr.shape[0] - 1
    nsteps = codes.nsteps
    blocks = codes.blocks
    alpha = qy.alpha
    whole = n_parts == 1 and qy.cterm.shape[1] == 1  # one additive term for every block (no IVF lists)
    wf0, wf1, wbmax, wbmag = bias.whole[0], bias.whole[1], bias.whole[2], bias.whole[3]
    fac0 = codes.factors[0]
    fmin0 = codes.fmin[0]
    fmax0 = codes.fmax[0]
    block_list = codes.block_list
    beta, bmag, bmax, bmagmax = bias.beta, bias.bmag, bias.bmax, bias.bmagmax
    scores, lows, floor = top.scores, top.lows, top.floor
    pend_pos, pend_ub, npend_of = top.pend_pos, top.pend_ub, top.npend
    cap = pend_pos.shape[1]
    for task in prange(n_tasks):  # buffers allocated once per task
        lbases = np.empty(QMAX, dtype=np.int64)
        sums = np.empty(QMAX * n_parts * 32 * SUB, dtype=np.int32)
        mx = np.empty(QMAX * n_parts * SUB, dtype=np.int32)
        est = np.empty(32, dtype=np.float32)
        bnd = np.empty(32, dtype=np.float32)
        tops = np.empty(SUB, dtype=np.float32)
        psc = np.empty(4, dtype=np.float32)
        qs = np.empty(QMAX, dtype=np.int64)
        i1 = work.task_ptr[task + 1]
        for it in range(work.task_ptr[task], i1):
            b0 = work.item_b0[it]
            b1 = work.item_b1[it]
            if (
                it + 1 < i1
                and work.item_b0[it + 1] != b0
                and work.item_b1[it + 1] - work.item_b0[it + 1] <= SUB
            ):
                # short runs (IVF lists) jump around memory: fetch the next one while this one is scanned
                for x in range(work.item_b0[it + 1] * nsteps * 32, work.item_b1[it + 1] * nsteps * 32, 64):
                    _prefetch(blocks, x)
            nq = 0
            for j in range(QMAX):
                if work.item_q[it, j] >= 0:
                    qs[nq] = work.item_q[it, j]
                    nq += 1
            for c0 in range(b0, b1, SUB):  # sub-chunks: sums stay in L1
                nblk = min(SUB, b1 - c0)
                _item_sums(blocks, nsteps, codes.part_steps, qy.luts, qs, nq, c0, nblk, lbases, sums, mx)
                for j in range(nq):
                    q = qs[j]
                    pair = work.item_pair[it, j]
                    if n_parts > 1:
                        top.rescored[pair] += _scan_multi_blocks(
                            j, q, pair, c0, nblk, sums, mx, codes, qy, bias, top, psc, est, bnd
                        )
                    else:
                        # single part, written here rather than in a callee: passing the named tuples to
                        # a function costs a reference count per array, more than the blocks' own work
                        iv = qy.inv[q, 0]
                        of = qy.off[q, 0]
                        er = qy.err[q, 0]
                        thr = max(scores[pair, 0], lows[pair, 0], floor[q])
                        if whole:
                            # the sub-chunk's largest sum against the segment's loosest bound: once the
                            # threshold has risen most sub-chunks stop here, before any per-block work
                            hi = mx[j * SUB]
                            for bb in range(1, nblk):
                                hi = max(hi, mx[j * SUB + bb])
                            b_all = alpha * qy.cterm[q, 0] + qy.qconst[q]
                            if _block_top(hi, iv, of, er, wf0, wf1, b_all, wbmax, wbmag, alpha) < thr:
                                continue
                        for bb in range(nblk):  # every block's bound at once (branch-free: vectorizes)
                            blk = c0 + bb
                            base = alpha * qy.cterm[q, block_list[blk] + 1] + qy.qconst[q]
                            tops[bb] = _block_top(
                                mx[j * SUB + bb],
                                iv,
                                of,
                                er,
                                fmin0[blk],
                                fmax0[blk],
                                base,
                                bmax[blk],
                                bmagmax[blk],
                                alpha,
                            )
                        npend = npend_of[pair]
                        for bb in range(nblk):
                            thr = max(scores[pair, 0], lows[pair, 0], floor[q])
                            if tops[bb] < thr:
                                continue
                            blk = c0 + bb
                            base = alpha * qy.cterm[q, block_list[blk] + 1] + qy.qconst[q]
                            abase = abs(base)
                            p0 = 32 * blk
                            if npend + 32 > cap:
                                done, npend = flush_pair(pair, q, top, codes, qy, beta, psc, cap // 2, npend)
                                top.rescored[pair] += done
                                thr = max(scores[pair, 0], lows[pair, 0], floor[q])
                            # FAISS' threshold mask: one vector compare of the 32 integer sums against
                            # the smallest sum that can reach the threshold; only those get their bound
                            o = j * 32 * SUB + 32 * bb
                            lo = _sum_floor(
                                thr, iv, of, er, fmin0[blk], fmax0[blk], base, bmax[blk], bmagmax[blk], alpha
                            )
                            mask = _ge_mask(sums, o, lo)
                            while mask != 0:
                                v = _low_bit(mask)
                                mask &= mask - 1
                                f = fac0[p0 + v]
                                a_est = alpha * (f * (np.float32(sums[o + v]) * iv + of))
                                sc = a_est + base + beta[p0 + v]
                                e = alpha * (abs(f) * er) + np.float32(4e-7) * (
                                    abs(a_est) + abase + bmag[p0 + v]
                                )
                                u = sc + e
                                if u >= thr and u > _NEG_INF:
                                    pend_pos[pair, npend] = p0 + v
                                    pend_ub[pair, npend] = u
                                    npend += 1
                                    # s - e <= the exact score: the threshold rises now, not at the next flush
                                    _low_offer_row(lows, pair, sc - e)
                                    thr = max(thr, lows[pair, 0])
                        npend_of[pair] = npend
                    root = max(top.scores[pair, 0], top.lows[pair, 0])
                    if root > top.floor[q]:
                        top.floor[q] = root


scan_lut_serial, scan_lut = twin(_scan_lut)


def _finish_lut(codes, qy, bias, top, q_ptr, q0, k, out_s, out_p):
    """Per query q0 + i (pairs q_ptr[i]..q_ptr[i+1]): flush its pairs' pending candidates, then write the
    best k of its heaps into out_s[i]/out_p[i] (pre-filled -inf / -1)."""
    m = q_ptr.shape[0] - 1
    for i in prange(m):
        psc = np.empty(4, dtype=np.float32)
        for h in range(q_ptr[i], q_ptr[i + 1]):
            done, _ = flush_pair(h, q0 + i, top, codes, qy, bias.beta, psc, 0, top.npend[h])
            top.npend[h] = 0
            top.rescored[h] += done
        merge_one(top.scores, top.pos, q_ptr[i], q_ptr[i + 1], k, out_s, out_p, i)


finish_lut_serial, finish_lut = twin(_finish_lut)


class Bits(NamedTuple):
    """1-bit codes and bit-plane queries for :func:`scan_bits`."""

    words: np.ndarray  # (N, W) uint64 sign words in layout order
    qwords: np.ndarray  # (m, B, W) uint64 query bit planes
    qlo: np.ndarray  # (m,) float64: q ≈ qlo + qdelta * u
    qdelta: np.ndarray  # (m,) float64
    qsum: np.ndarray  # (m,) float64 Σ_j q_j (same order as the re-score)
    elo: np.ndarray  # (m,) float64 bounds of Σ_j e_j x_j
    ehi: np.ndarray  # (m,) float64
    qf: np.ndarray  # (m, k) float64 queries (the exact re-score)
    v0: np.float64  # values = [v0, v0 + dv]
    dv: np.float64


def _scan_bits(bits, codes, qy, bias, work, top):
    """Popcount twin of :func:`scan_lut` for single-part 1-bit codes: the part's float sum is
    ``v0 Σq + dv (qlo·ones + qdelta·acc)``; vectors whose bound reaches the threshold are re-scored from
    their sign words (:func:`.rescore._rescore_bits_one`)."""
    n_tasks = work.task_ptr.shape[0] - 1
    W = bits.words.shape[1]
    B = bits.qwords.shape[1]
    alpha = qy.alpha
    beta = bias.beta
    for task in prange(n_tasks):
        for it in range(work.task_ptr[task], work.task_ptr[task + 1]):
            b0 = work.item_b0[it]
            b1 = work.item_b1[it]
            for j in range(QMAX):
                q = work.item_q[it, j]
                if q < 0:
                    continue
                pair = work.item_pair[it, j]
                hs = top.scores[pair]
                hp = top.pos[pair]
                e_abs = max(abs(bits.dv * bits.elo[q]), abs(bits.dv * bits.ehi[q])) * 1.000001
                n = 0
                for blk in range(b0, b1):
                    base = alpha * qy.cterm[q, codes.block_list[blk] + 1] + qy.qconst[q]
                    abase = abs(base)
                    for v in range(32):
                        r = 32 * blk + v
                        if not beta[r] > _NEG_INF:
                            continue
                        c = 0
                        a = 0
                        for w in range(W):
                            c += _popcount(bits.words[r, w])
                        for b in range(B):
                            t = 0
                            for w in range(W):
                                t += _popcount(bits.words[r, w] & bits.qwords[q, b, w])
                            a += t << b
                        part = bits.v0 * bits.qsum[q] + bits.dv * (bits.qlo[q] * c + bits.qdelta[q] * a)
                        f = codes.factors[0, r]
                        a_est = alpha * np.float32(f * part)
                        bnd = np.float32(abs(f) * e_abs + 1e-6 * abs(f * part))
                        s = a_est + base + beta[r]
                        e = alpha * bnd + np.float32(4e-7) * (abs(a_est) + abase + bias.bmag[r])
                        if s + e >= max(hs[0], top.floor[q]):
                            x = _rescore_bits_one(
                                bits.words,
                                bits.qf,
                                bits.qsum[q],
                                bits.v0,
                                bits.dv,
                                codes.factors,
                                beta,
                                alpha,
                                qy.qconst,
                                qy.cterm,
                                codes.block_list,
                                q,
                                r,
                            )
                            heap_offer(hs, hp, x, r)
                            n += 1
                top.rescored[pair] += n
                if hs[0] > top.floor[q]:
                    top.floor[q] = hs[0]


scan_bits_serial, scan_bits = twin(_scan_bits)


@njit(cache=_CACHE, nogil=True)
def ordered_sums(qf):
    """(m,) Σ_j qf[i, j] summed left to right (the order :func:`.rescore._rescore_bits_one` expects)."""
    out = np.zeros(qf.shape[0], dtype=np.float64)
    for i in range(qf.shape[0]):
        s = 0.0
        for j in range(qf.shape[1]):
            s += qf[i, j]
        out[i] = s
    return out
