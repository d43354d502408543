"""Work items of an IVF scan: (block range, up to 4 queries), grouped so that a list's codes are read
once per group of queries (see :class:`vqdb.kernels.scanner.ScanConfig` for the orders)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import CACHE as _CACHE
from .accumulate import QMAX


@njit(cache=_CACHE, nogil=True)
def ivf_items(probe_ptr, probe_lists, q0, q1, list_ids, list_b0, list_b1, n_blocks, chunk, qgroup):
    """Pairs (query, chunk of <= ``chunk`` blocks of a probed list) for queries [q0, q1), query-major,
    grouped into items of <= ``qgroup`` queries over the same chunk (counting sort by block).

    Returns item_b0, item_b1 (I,), item_q, item_pair (I, 4) int64 (global query numbers, -1 padded; pair
    numbers) and q_ptr (q1-q0+1,) int64 CSR of each query's pairs (pairs = ``q_ptr[-1]``).
    """
    nl = list_ids.shape[0]
    npairs = 0
    for t in range(probe_ptr[q0], probe_ptr[q1]):
        w = np.searchsorted(list_ids, probe_lists[t])
        if w < nl and list_ids[w] == probe_lists[t]:
            npairs += (list_b1[w] - list_b0[w] + chunk - 1) // chunk
    pair_q = np.empty(npairs, dtype=np.int64)
    pair_b0 = np.empty(npairs, dtype=np.int64)
    pair_b1 = np.empty(npairs, dtype=np.int64)
    q_ptr = np.zeros(q1 - q0 + 1, dtype=np.int64)
    n = 0
    for q in range(q0, q1):
        for t in range(probe_ptr[q], probe_ptr[q + 1]):
            w = np.searchsorted(list_ids, probe_lists[t])
            if w < nl and list_ids[w] == probe_lists[t]:
                for c in range(list_b0[w], list_b1[w], chunk):
                    pair_q[n] = q
                    pair_b0[n] = c
                    pair_b1[n] = min(c + chunk, list_b1[w])
                    n += 1
        q_ptr[q - q0 + 1] = n
    # stable counting sort of the pairs by first block
    start = np.zeros(n_blocks + 1, dtype=np.int64)
    for x in range(npairs):
        start[pair_b0[x] + 1] += 1
    for b in range(n_blocks):
        start[b + 1] += start[b]
    order = np.empty(npairs, dtype=np.int64)
    fill = start[:n_blocks].copy()
    for x in range(npairs):
        order[fill[pair_b0[x]]] = x
        fill[pair_b0[x]] += 1
    n_items = 0
    for x in range(npairs):
        if (
            x == 0
            or pair_b0[order[x]] != pair_b0[order[x - 1]]
            or (x - start[pair_b0[order[x]]]) % qgroup == 0
        ):
            n_items += 1
    item_b0 = np.empty(n_items, dtype=np.int64)
    item_b1 = np.empty(n_items, dtype=np.int64)
    item_q = np.full((n_items, QMAX), -1, dtype=np.int64)
    item_pair = np.zeros((n_items, QMAX), dtype=np.int64)
    it = -1
    slot = 0
    for x in range(npairs):
        pr = order[x]
        if x == 0 or pair_b0[pr] != pair_b0[order[x - 1]] or (x - start[pair_b0[pr]]) % qgroup == 0:
            it += 1
            slot = 0
            item_b0[it] = pair_b0[pr]
            item_b1[it] = pair_b1[pr]
        item_q[it, slot] = pair_q[pr]
        item_pair[it, slot] = pr
        slot += 1
    return item_b0, item_b1, item_q, item_pair, q_ptr


@njit(cache=_CACHE, nogil=True)
def ivf_items_by_query(probe_ptr, probe_lists, q0, q1, list_pos, list_b0, list_b1, chunk, n_tasks):
    """Query-major IVF items: every query's probed list chunks in probe order, one pair per query (its heap
    shared by its items), tasks split at query boundaries by item count.

    ``list_pos`` (max list + 2,) int64: the position of list ``l`` in ``list_b0``/``list_b1`` at
    ``list_pos[l + 1]``, -1 when the segment has no rows in it (lists past the end are absent too).
    Returns the layout of :func:`ivf_items` plus task_ptr (T+1,).
    """
    npos = list_pos.shape[0]
    n_items = 0
    for t in range(probe_ptr[q0], probe_ptr[q1]):
        x = probe_lists[t] + 1
        w = list_pos[x] if x < npos else -1
        if w >= 0:
            n_items += (list_b1[w] - list_b0[w] + chunk - 1) // chunk
    nq = q1 - q0
    item_b0 = np.empty(n_items, dtype=np.int64)
    item_b1 = np.empty(n_items, dtype=np.int64)
    item_q = np.full((n_items, QMAX), -1, dtype=np.int64)
    item_pair = np.zeros((n_items, QMAX), dtype=np.int64)
    first_item = np.zeros(nq + 1, dtype=np.int64)
    n = 0
    for q in range(q0, q1):
        first_item[q - q0] = n
        for t in range(probe_ptr[q], probe_ptr[q + 1]):
            x = probe_lists[t] + 1
            w = list_pos[x] if x < npos else -1
            if w >= 0:
                for c in range(list_b0[w], list_b1[w], chunk):
                    item_b0[n] = c
                    item_b1[n] = min(c + chunk, list_b1[w])
                    item_q[n, 0] = q
                    item_pair[n, 0] = q - q0
                    n += 1
    first_item[nq] = n
    q_ptr = np.arange(nq + 1).astype(np.int64)
    tasks = max(1, min(n_tasks, nq))
    task_ptr = np.zeros(tasks + 1, dtype=np.int64)
    qi = 0
    for t in range(1, tasks):
        target = t * n_items // tasks
        while qi < nq and first_item[qi] < target:
            qi += 1
        task_ptr[t] = first_item[qi]
    task_ptr[tasks] = n
    for t in range(1, tasks + 1):
        task_ptr[t] = max(task_ptr[t], task_ptr[t - 1])
    return item_b0, item_b1, item_q, item_pair, q_ptr, task_ptr


@njit(cache=_CACHE, nogil=True)
def _block_lists(probe_ptr, probe_lists, a, b, list_pos, stamp, tag, cnt, order):
    """Lists probed by queries [a, b) in order of first appearance, rank by rank, into ``order``; their
    probe counts into ``cnt`` (entries of lists first seen here are reset: ``stamp`` != ``tag``). Returns
    how many."""
    npos = list_pos.shape[0]
    depth = 0
    for q in range(a, b):
        depth = max(depth, probe_ptr[q + 1] - probe_ptr[q])
    nord = 0
    for r in range(depth):
        for q in range(a, b):
            t = probe_ptr[q] + r
            if t >= probe_ptr[q + 1]:
                continue
            x = probe_lists[t] + 1
            w = list_pos[x] if x < npos else -1
            if w < 0:
                continue
            if stamp[w] != tag:
                stamp[w] = tag
                cnt[w] = 0
                order[nord] = w
                nord += 1
            cnt[w] += 1
    return nord


@njit(cache=_CACHE, nogil=True, parallel=True)
def ivf_items_by_block(probe_ptr, probe_lists, q0, q1, list_pos, list_b0, list_b1, chunk, qblock, qgroup):
    """Block-major IVF items: queries [q0, q1) in blocks of ``qblock``; inside a block every list its queries
    probe once (in order of first appearance, rank by rank, so each query's best lists come early), each
    list chunk shared by up to ``qgroup`` of the block's queries per item (one code load serves them, and
    the chunk stays in cache while the block's other queries pass over it). One pair per query (its heap),
    as in :func:`ivf_items_by_query`; one task per block. Blocks are laid out in
    parallel (a counting pass, then the fill).

    Returns the layout of :func:`ivf_items_by_query` (task_ptr included).
    """
    npos = list_pos.shape[0]
    nl = list_b0.shape[0]
    nq = q1 - q0
    n_blocks_q = (nq + qblock - 1) // qblock
    task_ptr = np.zeros(max(1, n_blocks_q) + 1, dtype=np.int64)
    for bq in prange(n_blocks_q):  # items per block
        stamp = np.full(nl, -1, dtype=np.int64)
        cnt = np.zeros(nl, dtype=np.int64)
        order = np.empty(nl, dtype=np.int64)
        a = q0 + bq * qblock
        nord = _block_lists(probe_ptr, probe_lists, a, min(q1, a + qblock), list_pos, stamp, 0, cnt, order)
        n = 0
        for i in range(nord):
            w = order[i]
            n += ((list_b1[w] - list_b0[w] + chunk - 1) // chunk) * ((cnt[w] + qgroup - 1) // qgroup)
        task_ptr[bq + 1] = n
    for bq in range(n_blocks_q):
        task_ptr[bq + 1] += task_ptr[bq]
    n_items = task_ptr[n_blocks_q]
    item_b0 = np.empty(n_items, dtype=np.int64)
    item_b1 = np.empty(n_items, dtype=np.int64)
    item_q = np.empty((n_items, QMAX), dtype=np.int64)
    item_pair = np.empty((n_items, QMAX), dtype=np.int64)
    for bq in prange(n_blocks_q):  # fill
        stamp = np.full(nl, -1, dtype=np.int64)
        cnt = np.zeros(nl, dtype=np.int64)
        start = np.zeros(nl, dtype=np.int64)
        order = np.empty(nl, dtype=np.int64)
        a = q0 + bq * qblock
        b = min(q1, a + qblock)
        nord = _block_lists(probe_ptr, probe_lists, a, b, list_pos, stamp, 0, cnt, order)
        tot = 0
        for i in range(nord):
            w = order[i]
            start[w] = tot
            tot += cnt[w]
            cnt[w] = 0
        members = np.empty(max(1, tot), dtype=np.int64)
        for q in range(a, b):  # members of each list, in query order
            for t in range(probe_ptr[q], probe_ptr[q + 1]):
                x = probe_lists[t] + 1
                w = list_pos[x] if x < npos else -1
                if w >= 0:
                    members[start[w] + cnt[w]] = q
                    cnt[w] += 1
        n = task_ptr[bq]
        for i in range(nord):
            w = order[i]
            for c in range(list_b0[w], list_b1[w], chunk):
                c1 = min(c + chunk, list_b1[w])
                for g in range(0, cnt[w], qgroup):
                    item_b0[n] = c
                    item_b1[n] = c1
                    for j in range(QMAX):
                        item_q[n, j] = -1
                        item_pair[n, j] = 0
                    for j in range(min(qgroup, cnt[w] - g)):
                        q = members[start[w] + g + j]
                        item_q[n, j] = q
                        item_pair[n, j] = q - q0
                    n += 1
    q_ptr = np.arange(nq + 1).astype(np.int64)
    return item_b0, item_b1, item_q, item_pair, q_ptr, task_ptr
