"""Batched (BLAS) path helpers: decode tiles of codes to float32, merge tiles of scores into heaps."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import CACHE as _CACHE
from .rescore import _slot_of
from .select import _heap_push_pair


@njit(cache=_CACHE, nogil=True, parallel=True)
def decode_tile(blocks, nsteps, part_steps, part_bits, values, factors, b0, b1, out):
    """Decode blocks [b0, b1) to (rows, K) float32 with the per-vector factor baked in.

    Column layout: part p's slots in order, ``cps_p`` coordinates per slot; values (P, 16) float32.
    """
    n_parts = part_steps.shape[0] - 1
    nrows = (b1 - b0) * 32
    for r in prange(nrows):
        pos = b0 * 32 + r
        col = 0
        for p in range(n_parts):
            bits = part_bits[p]
            cps = 1 if bits == 3 else 4 // bits
            mask = (1 << bits) - 1
            f = factors[p, pos]
            for s in range(2 * part_steps[p], 2 * part_steps[p + 1]):
                c = _slot_of(blocks, nsteps, pos, s)
                for t in range(cps):
                    out[r, col] = f * values[p, (c >> (t * bits)) & mask]
                    col += 1


@njit(cache=_CACHE, nogil=True, parallel=True)
def tile_topk(scores, alpha, qconst, cterm, block_list, beta, pos0, heaps_s, heaps_p):
    """Merge a (m, rows) tile of float scores (ip estimates without the centre term) into per-query
    running top-k min-heaps (heaps_s (m, k) float32, heaps_p (m, k) int64; start at -inf / -1)."""
    m, rows = scores.shape
    for i in prange(m):
        hs = heaps_s[i]
        hp = heaps_p[i]
        for r in range(rows):
            pos = pos0 + r
            s = np.float32(
                alpha * (cterm[i, block_list[pos >> 5] + 1] + scores[i, r]) + beta[pos] + qconst[i]
            )
            _heap_push_pair(hs, hp, s, pos)
