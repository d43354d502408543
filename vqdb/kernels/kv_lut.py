"""Numba CPU kernels of the fused KV-cache attention: scores and value sums straight from packed codes.

A stored vector is ``norm * c[idx]`` in rotated coordinates (TurboQuant codes: ``idx`` packed ``bits``-bit
indices into the codebook ``c``). For each stored token the kernels expand its packed bytes into the
codebook values of that one vector with a *unit table* (every value of a byte — or of 12 bits for 3-bit
codes — maps to the ``codes_per_unit`` codebook values it holds), then

* :func:`code_scores`: ``out[b, h, m, t] += norm[b, h, t] * <q[b, h, m], c[idx[b, h, t]]>`` for the ``m``
  queries of that KV head (grouped-query heads share one expansion);
* :func:`code_weighted_sum`: ``out[b, h, m] += w[b, h, m, t] * norm[b, h, t] * c[idx[b, h, t]]``.

No decoded tile of keys or values is ever written: one vector of ``k`` floats lives in a scratch buffer.
Bit layout: the LSB-first stream of :mod:`vqdb.kernels.torch_ops` (for 3 bits, 8 codes fill 3 bytes).
Parallel over (batch row, KV head) pairs with Numba's threads (``numba.set_num_threads``).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from .. import envs

__all__ = ["unit_table", "code_scores", "code_weighted_sum", "SUPPORTED_BITS"]

_CACHE = envs.numba_cache()
SUPPORTED_BITS = (1, 2, 3, 4)


def _unit(bits: int) -> tuple[int, int]:
    """(bits per unit, codes per unit) of the unit table: one byte (1/2/4 bits) or a pair of codes (3 bits,
    whose codes straddle bytes: 6-bit pairs are cut out of 24-bit words)."""
    return (6, 2) if bits == 3 else (8, 8 // bits)


@functools.lru_cache(maxsize=64)
def _table_cached(centroids: tuple[float, ...], bits: int) -> np.ndarray:
    ubits, per = _unit(bits)
    units = np.arange(1 << ubits, dtype=np.int64)
    codes = (units[:, None] >> (np.arange(per) * bits)) & ((1 << bits) - 1)
    return np.ascontiguousarray(np.asarray(centroids, dtype=np.float32)[codes])


def unit_table(centroids, bits: int) -> np.ndarray:
    """(2**unit_bits, codes_per_unit) float32: the codebook values held by every byte (for 3 bits, by every
    6-bit pair of codes)."""
    return _table_cached(tuple(float(x) for x in np.asarray(centroids, dtype=np.float64).ravel()), int(bits))


@njit(cache=_CACHE, nogil=True, fastmath=True, inline="always")
def _expand(row, table, bits, k, vec):
    """Codebook values of one packed vector ``row`` (uint8) into ``vec[:k]``."""
    if bits == 3:
        g = 0
        for p in range(0, k, 8):
            word = np.int64(row[g]) | (np.int64(row[g + 1]) << 8) | (np.int64(row[g + 2]) << 16)
            for i in range(4):
                u = (word >> (6 * i)) & 63
                vec[p + 2 * i] = table[u, 0]
                vec[p + 2 * i + 1] = table[u, 1]
            g += 3
    elif bits == 2:  # constant widths: the copies unroll (1.4-2x faster than a loop over table.shape[1])
        for p in range(k // 4):
            u = np.int64(row[p])
            vec[4 * p] = table[u, 0]
            vec[4 * p + 1] = table[u, 1]
            vec[4 * p + 2] = table[u, 2]
            vec[4 * p + 3] = table[u, 3]
    elif bits == 4:
        for p in range(k // 2):
            u = np.int64(row[p])
            vec[2 * p] = table[u, 0]
            vec[2 * p + 1] = table[u, 1]
    else:
        for p in range(k // 8):
            u = np.int64(row[p])
            for i in range(8):
                vec[8 * p + i] = table[u, i]


@njit(cache=_CACHE, nogil=True, fastmath=True, parallel=True)
def code_scores(q, idx, norm, table, bits, out):
    """out[b, h, m, t] += norm[b, h, t] * sum_j q[b, h, m, j] * value_j(idx[b, h, t]).

    q (B, H, M, k) float32; idx (B, H, n, bytes) uint8; norm (B, H, n) float32; table from
    :func:`unit_table`; out (B, H, M, n) float32 (accumulated into; may be a strided view, e.g. the code
    columns of a score row). Parallel over (row, head) pairs.
    """
    nb, nh, nm, k = q.shape
    n = idx.shape[2]
    for bh in prange(nb * nh):
        b = bh // nh
        h = bh % nh
        vec = np.empty(k, dtype=np.float32)
        ql = np.empty((nm, k), dtype=np.float32)
        ql[:, :] = q[b, h]
        for t in range(n):
            _expand(idx[b, h, t], table, bits, k, vec)
            s = norm[b, h, t]
            for m in range(nm):
                acc = np.float32(0.0)
                for j in range(k):
                    acc += ql[m, j] * vec[j]
                out[b, h, m, t] += s * acc


@njit(cache=_CACHE, nogil=True, fastmath=True, parallel=True)
def code_weighted_sum(w, start, idx, norm, table, bits, out):
    """out[b, h, m, j] += sum_t w[b, h, m, start + t] * norm[b, h, t] * value_j(idx[b, h, t]).

    w (B, H, M, >= start + n) float32 (the weights of the codes from column ``start``: the softmax of a
    whole row, uncopied); idx (B, H, n, bytes) uint8; norm (B, H, n) float32; out (B, H, M, k) float32.
    Parallel over (row, head) pairs.
    """
    nb, nh, nm, k = out.shape
    n = idx.shape[2]
    for bh in prange(nb * nh):
        b = bh // nh
        h = bh % nh
        vec = np.empty(k, dtype=np.float32)
        acc = np.zeros((nm, k), dtype=np.float32)
        for t in range(n):
            _expand(idx[b, h, t], table, bits, k, vec)
            s = norm[b, h, t]
            for m in range(nm):
                c = w[b, h, m, start + t] * s
                for j in range(k):
                    acc[m, j] += c * vec[j]
        out[b, h] += acc
