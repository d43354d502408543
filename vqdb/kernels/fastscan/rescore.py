"""The exact (float LUT) score of one scanned position: the number every fast path ranks by.

``score = alpha * (cterm[i, list + 1] + est) + beta[r] + qconst[i]`` with ``est = Σ_p factor_p[r] ·
Σ_t LUT_i[t, slot_t(r)]`` (float64 sums, fixed order), the affine map of :mod:`vqdb.kernels.scorer`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import CACHE as _CACHE


@njit(cache=_CACHE, nogil=True)
def _slot_of(blocks, nsteps, pos, s):
    blk = pos >> 5
    v = pos & 31
    byte = blocks[(blk * nsteps + (s >> 1)) * 32 + (s & 1) * 16 + (v & 15)]
    return (byte >> ((v >> 4) * 4)) & 15


@njit(cache=_CACHE, nogil=True)
def _rescore_one(rows, part_steps, fluts, factors, beta, alpha, qconst, cterm, block_list, i, r):
    """Float LUT score of position r for query i (float64 sums, the scan's affine map).

    ``rows`` (N, S) uint8: the slots of each position in row order (step t: slot 2t in the low nibble, slot
    2t + 1 in the high one), so a re-score reads S contiguous bytes instead of one line per 2 steps."""
    n_parts = part_steps.shape[0] - 1
    est = 0.0
    for p in range(n_parts):
        acc = 0.0
        for t in range(part_steps[p], part_steps[p + 1]):
            b = rows[r, t]
            acc += fluts[i, 2 * t, b & 15]
            acc += fluts[i, 2 * t + 1, b >> 4]
        est += factors[p, r] * acc
    return np.float32(alpha * (cterm[i, block_list[r >> 5] + 1] + est) + beta[r] + qconst[i])


@njit(cache=_CACHE, nogil=True)
def _rescore_four(rows, part_steps, fluts, factors, beta, alpha, qconst, cterm, block_list, i, pos, c, out):
    """:func:`_rescore_one` of positions pos[c : c + 4] into out[c : c + 4]: four independent float64 chains,
    each with the same operations in the same order as :func:`_rescore_one` (so the same results),
    interleaved so that the additions' latency overlaps (one chain is latency-bound)."""
    n_parts = part_steps.shape[0] - 1
    r0, r1, r2, r3 = pos[c], pos[c + 1], pos[c + 2], pos[c + 3]
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    for p in range(n_parts):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for t in range(part_steps[p], part_steps[p + 1]):
            b0 = rows[r0, t]
            b1 = rows[r1, t]
            b2 = rows[r2, t]
            b3 = rows[r3, t]
            a0 += fluts[i, 2 * t, b0 & 15]
            a1 += fluts[i, 2 * t, b1 & 15]
            a2 += fluts[i, 2 * t, b2 & 15]
            a3 += fluts[i, 2 * t, b3 & 15]
            a0 += fluts[i, 2 * t + 1, b0 >> 4]
            a1 += fluts[i, 2 * t + 1, b1 >> 4]
            a2 += fluts[i, 2 * t + 1, b2 >> 4]
            a3 += fluts[i, 2 * t + 1, b3 >> 4]
        e0 += factors[p, r0] * a0
        e1 += factors[p, r1] * a1
        e2 += factors[p, r2] * a2
        e3 += factors[p, r3] * a3
    out[c] = np.float32(alpha * (cterm[i, block_list[r0 >> 5] + 1] + e0) + beta[r0] + qconst[i])
    out[c + 1] = np.float32(alpha * (cterm[i, block_list[r1 >> 5] + 1] + e1) + beta[r1] + qconst[i])
    out[c + 2] = np.float32(alpha * (cterm[i, block_list[r2 >> 5] + 1] + e2) + beta[r2] + qconst[i])
    out[c + 3] = np.float32(alpha * (cterm[i, block_list[r3 >> 5] + 1] + e3) + beta[r3] + qconst[i])


@njit(cache=_CACHE, nogil=True)
def _rescore_bits_one(words, qf, qs, v0, dv, factors, beta, alpha, qconst, cterm, block_list, i, r):
    """Float score of 1-bit position r for query i: Σ_j q_j·values[bit_j] (float64)."""
    dot = 0.0
    for j in range(qf.shape[1]):
        if (words[r, j >> 6] >> np.uint64(j & 63)) & np.uint64(1):
            dot += qf[i, j]
    est = factors[0, r] * (v0 * qs + dv * dot)
    return np.float32(alpha * (cterm[i, block_list[r >> 5] + 1] + est) + beta[r] + qconst[i])
