"""1-bit codes: bit-plane queries, AND + popcount (the oracle twin :func:`popcount_dot`)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import CACHE as _CACHE
from .isa import _popcount


@njit(cache=_CACHE, nogil=True, parallel=True)
def popcount_dot(words, qwords):
    """(n, W) uint64 codes, (m, B, W) uint64 query planes -> (acc (m, n) int64, ones (n,) int64)
    with ``acc = Σ_b 2^b popcount(plane_b & x)`` and ``ones = popcount(x)``."""
    n, W = words.shape
    m, B, _ = qwords.shape
    acc = np.zeros((m, n), dtype=np.int64)
    ones = np.zeros(n, dtype=np.int64)
    for r in prange(n):
        c = 0
        for w in range(W):
            c += _popcount(words[r, w])
        ones[r] = c
        for i in range(m):
            a = 0
            for b in range(B):
                t = 0
                for w in range(W):
                    t += _popcount(words[r, w] & qwords[i, b, w])
                a += np.int64(t) << b
            acc[i, r] = a
    return acc, ones
