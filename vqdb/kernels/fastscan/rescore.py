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
def slots_sum(rows, fluts, i, r, t0, t1, acc):
    """``acc`` + the float LUT entries of position r's slots in steps [t0, t1) for query i, added in order
    (step t: slot 2t then 2t + 1), float64. ``rows`` (N, S) uint8: the slots of each position in row order
    (step t: slot 2t in the low nibble, slot 2t + 1 in the high one), so a re-score reads S contiguous
    bytes instead of one line per 2 steps."""
    for t in range(t0, t1):
        b = rows[r, t]
        acc += fluts[i, 2 * t, b & 15]
        acc += fluts[i, 2 * t + 1, b >> 4]
    return acc


@njit(cache=_CACHE, nogil=True)
def slots_sum_four(rows, fluts, i, r0, r1, r2, r3, t0, t1, a0, a1, a2, a3):
    """:func:`slots_sum` of four positions: four independent float64 chains, each with the same operations
    in the same order (so the same results), interleaved so that the additions' latency overlaps."""
    for t in range(t0, t1):
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
    return a0, a1, a2, a3


@njit(cache=_CACHE, nogil=True)
def score_of(est, alpha, qconst, cterm, block_list, beta, i, r):
    """The affine map of :mod:`vqdb.kernels.scorer` for position r, query i (``est`` float64)."""
    return np.float32(alpha * (cterm[i, block_list[r >> 5] + 1] + est) + beta[r] + qconst[i])


@njit(cache=_CACHE, nogil=True)
def _rescore_one(rows, part_steps, fluts, factors, beta, alpha, qconst, cterm, block_list, i, r):
    """Float LUT score of position r for query i (float64 sums, the scan's affine map)."""
    n_parts = part_steps.shape[0] - 1
    est = 0.0
    for p in range(n_parts):
        est += factors[p, r] * slots_sum(rows, fluts, i, r, part_steps[p], part_steps[p + 1], 0.0)
    return score_of(est, alpha, qconst, cterm, block_list, beta, i, r)


@njit(cache=_CACHE, nogil=True)
def _rescore_four(rows, part_steps, fluts, factors, beta, alpha, qconst, cterm, block_list, i, pos, c, out):
    """:func:`_rescore_one` of positions pos[c : c + 4] into out[c : c + 4] (four chains, the same results)."""
    n_parts = part_steps.shape[0] - 1
    r0, r1, r2, r3 = pos[c], pos[c + 1], pos[c + 2], pos[c + 3]
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    for p in range(n_parts):
        a0, a1, a2, a3 = slots_sum_four(
            rows, fluts, i, r0, r1, r2, r3, part_steps[p], part_steps[p + 1], 0.0, 0.0, 0.0, 0.0
        )
        e0 += factors[p, r0] * a0
        e1 += factors[p, r1] * a1
        e2 += factors[p, r2] * a2
        e3 += factors[p, r3] * a3
    out[c] = score_of(e0, alpha, qconst, cterm, block_list, beta, i, r0)
    out[c + 1] = score_of(e1, alpha, qconst, cterm, block_list, beta, i, r1)
    out[c + 2] = score_of(e2, alpha, qconst, cterm, block_list, beta, i, r2)
    out[c + 3] = score_of(e3, alpha, qconst, cterm, block_list, beta, i, r3)


@njit(cache=_CACHE, nogil=True)
def _rescore_bits_one(words, qf, qs, v0, dv, factors, beta, alpha, qconst, cterm, block_list, i, r):
    """Float score of 1-bit position r for query i: Σ_j q_j·values[bit_j] (float64)."""
    dot = 0.0
    for j in range(qf.shape[1]):
        if (words[r, j >> 6] >> np.uint64(j & 63)) & np.uint64(1):
            dot += qf[i, j]
    return score_of(factors[0, r] * (v0 * qs + dv * dot), alpha, qconst, cterm, block_list, beta, i, r)
