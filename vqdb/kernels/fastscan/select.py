"""Selection: fixed-size heaps of the best (score, position) pairs, and the final per-query merge.

Order: higher score first, ties by lower position (so results never depend on the work order). A heap of
size k keeps its worst entry at the root; empty slots hold (-inf, -1).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import CACHE as _CACHE
from ._config import twin


@njit(cache=_CACHE, nogil=True, inline="always")
def _better(s1, p1, s2, p2):
    """(s1, p1) ranks before (s2, p2): higher score, then lower position."""
    return s1 > s2 or (s1 == s2 and p1 < p2)


@njit(cache=_CACHE, nogil=True)
def heap_offer(hs, hp, x, pos):
    """Keep (x, pos) in the heap (hs (k,) float32, hp (k,) int64; root = worst kept) if it ranks before the
    root. Returns True when kept."""
    if not _better(x, pos, hs[0], hp[0]):
        return False
    n = hs.shape[0]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _better(hs[c], hp[c], hs[c + 1], hp[c + 1]):
            c += 1  # the worse child
        if not _better(x, pos, hs[c], hp[c]):
            break
        hs[i] = hs[c]
        hp[i] = hp[c]
        i = c
    hs[i] = x
    hp[i] = pos
    return True


@njit(cache=_CACHE, nogil=True)
def _heap_push_pair(hs, hp, x, pos):
    """Keep (x, pos) if x beats the root score hs[0] (NaN never does); ties keep the earlier entry."""
    if not x > hs[0]:
        return
    n = hs.shape[0]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and hs[c + 1] < hs[c]:
            c += 1
        if hs[c] >= x:
            break
        hs[i] = hs[c]
        hp[i] = hp[c]
        i = c
    hs[i] = x
    hp[i] = pos


@njit(cache=_CACHE, nogil=True)
def take_topk(scores, pos, n, k, out_s, out_p, i):
    """Best k of scores[:n] (score desc, position asc) into out_s[i], out_p[i] (pre-filled -inf / -1):
    two stable sorts (by position, then by score), O(n log n) whatever k."""
    if n == 0:
        return
    by_pos = np.argsort(pos[:n], kind="mergesort")
    neg = np.empty(n, dtype=np.float64)
    for c in range(n):
        neg[c] = -np.float64(scores[by_pos[c]])
    order = np.argsort(neg, kind="mergesort")
    for j in range(min(k, n)):
        c = by_pos[order[j]]
        out_s[i, j] = scores[c]
        out_p[i, j] = pos[c]


@njit(cache=_CACHE, nogil=True)
def merge_one(heaps_s, heaps_p, h0, h1, k, out_s, out_p, i):
    """The best k entries of heap rows [h0, h1) into out_s[i], out_p[i] (pre-filled -inf / -1)."""
    n = 0
    for h in range(h0, h1):
        for t in range(k):
            n += heaps_p[h, t] >= 0
    sc = np.empty(n, dtype=np.float32)
    ps = np.empty(n, dtype=np.int64)
    n = 0
    for h in range(h0, h1):
        for t in range(k):
            if heaps_p[h, t] >= 0:
                sc[n] = heaps_s[h, t]
                ps[n] = heaps_p[h, t]
                n += 1
    take_topk(sc, ps, n, k, out_s, out_p, i)


def _merge_pairs(heaps_s, heaps_p, q_ptr, k, out_s, out_p):
    """Per query i: the best k entries of its pairs' heaps (rows q_ptr[i]..q_ptr[i+1]) into out_s/out_p (m, k)."""
    for i in prange(q_ptr.shape[0] - 1):
        merge_one(heaps_s, heaps_p, q_ptr[i], q_ptr[i + 1], k, out_s, out_p, i)


merge_pairs_serial, merge_pairs = twin(_merge_pairs)
