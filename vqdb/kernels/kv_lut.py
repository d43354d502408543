"""Numba CPU kernels of the fused KV-cache attention: scores and value sums straight from packed codes.

A stored vector is ``norm * c[idx]`` in rotated coordinates (TurboQuant codes: ``idx`` packed ``bits``-bit
indices into the codebook ``c``); a *split* vector (fractional rates: outlier channels at more bits) is two
such parts side by side, ``[norm_a * c_a[idx_a], norm_b * c_b[idx_b]]``, each with its own codebook. For
each stored token the kernels expand its packed bytes into the codebook values of that one vector with a
*unit table* (every value of a byte — or of 6 bits for 3-bit codes — maps to the ``codes_per_unit``
codebook values it holds), then

* :func:`code_scores`: ``<q[b, h, m], x[b, h, t]>`` for the ``m`` queries of that KV head (grouped-query
  heads share one expansion), written into a whole score row with the exact scores of the tokens held
  in full precision (attention sinks before the codes, the recent window after them), the centring
  offset and the attention mask;
* :func:`code_weighted_sum`: ``sum_t w[b, h, m, t] * x[b, h, t]`` over the codes (in rotated
  coordinates) and over the full-precision tokens (in the model's), from the softmax of that row.

One decode step of one layer is thus two kernel calls and a softmax (the per-op Python/torch glue of
the earlier path cost about as much as the kernels at 1k context).

No decoded tile of keys or values is ever written: one vector of ``k`` floats lives in a scratch buffer.
Both parts of a split vector are expanded in the same pass over the tokens (one read of the weights and
norms). The kernels are compiled per vector width (a constant trip count lets LLVM vectorise the dot
products and the accumulation without runtime checks; bench/results/kvcache_decode_t1.md), and
cached on disk like the other kernels.
Bit layout: the LSB-first stream of :mod:`vqdb.kernels.torch_ops` (for 3 bits, 8 codes fill 3 bytes).
Parallel over (batch row, KV head) pairs with Numba's threads (``numba.set_num_threads``).
"""

from __future__ import annotations

import functools

import numba
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
def _expand(row, tf, bits, k, vec, off, scale):
    """``vec[off : off + k] = scale * codebook values`` of one packed vector ``row`` (uint8); ``tf`` is the
    unit table flattened. All loads of a unit come before its stores (LLVM then copies a unit with one
    vector move instead of scalar pairs: 3x faster on 2-bit codes)."""
    if bits == 3:
        g = 0
        for p in range(0, k, 8):
            word = np.int64(row[g]) | (np.int64(row[g + 1]) << 8) | (np.int64(row[g + 2]) << 16)
            o0 = (word & 63) * 2
            o1 = ((word >> 6) & 63) * 2
            o2 = ((word >> 12) & 63) * 2
            o3 = (word >> 18) * 2
            x0, x1, x2, x3 = tf[o0], tf[o0 + 1], tf[o1], tf[o1 + 1]
            x4, x5, x6, x7 = tf[o2], tf[o2 + 1], tf[o3], tf[o3 + 1]
            vec[off + p], vec[off + p + 1], vec[off + p + 2], vec[off + p + 3] = (
                x0 * scale,
                x1 * scale,
                x2 * scale,
                x3 * scale,
            )
            vec[off + p + 4], vec[off + p + 5], vec[off + p + 6], vec[off + p + 7] = (
                x4 * scale,
                x5 * scale,
                x6 * scale,
                x7 * scale,
            )
            g += 3
    elif bits == 2:
        for p in range(k // 4):
            o = np.int64(row[p]) * 4
            x0, x1, x2, x3 = tf[o], tf[o + 1], tf[o + 2], tf[o + 3]
            j = off + 4 * p
            vec[j], vec[j + 1], vec[j + 2], vec[j + 3] = x0 * scale, x1 * scale, x2 * scale, x3 * scale
    elif bits == 4:
        for p in range(0, k // 2, 2):
            o0 = np.int64(row[p]) * 2
            o1 = np.int64(row[p + 1]) * 2
            x0, x1, x2, x3 = tf[o0], tf[o0 + 1], tf[o1], tf[o1 + 1]
            j = off + 2 * p
            vec[j], vec[j + 1], vec[j + 2], vec[j + 3] = x0 * scale, x1 * scale, x2 * scale, x3 * scale
    else:
        for p in range(k // 8):
            o = np.int64(row[p]) * 8
            x0, x1, x2, x3 = tf[o], tf[o + 1], tf[o + 2], tf[o + 3]
            x4, x5, x6, x7 = tf[o + 4], tf[o + 5], tf[o + 6], tf[o + 7]
            j = off + 8 * p
            vec[j], vec[j + 1], vec[j + 2], vec[j + 3] = x0 * scale, x1 * scale, x2 * scale, x3 * scale
            vec[j + 4], vec[j + 5], vec[j + 6], vec[j + 7] = x4 * scale, x5 * scale, x6 * scale, x7 * scale


@njit(cache=_CACHE, nogil=True, fastmath=True, inline="always")
def _dot(a, b, d):
    acc = np.float32(0.0)
    for j in range(d):
        acc += a[j] * b[j]
    return acc


@njit(cache=_CACHE, nogil=True, fastmath=True, inline="always")
def _load(b, h, t, idx_a, norm_a, tf_a, bits_a, idx_b, norm_b, tf_b, bits_b, k, ka, vec):
    """Expand token t of (row b, head h) into ``vec[:k]``; returns the factor still to apply (its norm for
    one part; 1 for a split, whose two parts are scaled by their own norms during the expansion)."""
    if ka < k:
        _expand(idx_a[b, h, t], tf_a, bits_a, ka, vec, 0, norm_a[b, h, t])
        _expand(idx_b[b, h, t], tf_b, bits_b, k - ka, vec, ka, norm_b[b, h, t])
        return np.float32(1.0)
    _expand(idx_a[b, h, t], tf_a, bits_a, k, vec, 0, np.float32(1.0))
    return norm_a[b, h, t]


@functools.cache
def _kernels(width: int, width_a: int):
    """(scores, values) kernels for code vectors of ``width`` rotated coordinates whose first ``width_a``
    come from part a (``width_a == width``: one part). The widths are compile-time constants. Work items
    are (row, head, token chunk): ``chunks`` > 1 spreads one head's tokens over several threads."""
    K, KA = int(width), int(width_a)

    @njit(cache=_CACHE, nogil=True, fastmath=True, parallel=True)
    def scores(
        qr, qx, sink, tail, mu, mask, idx_a, norm_a, tf_a, bits_a, idx_b, norm_b, tf_b, bits_b, chunks, out
    ):
        nb, nh, nm, _ = qr.shape
        d = qx.shape[3]
        ns, n, nt = sink.shape[2], idx_a.shape[2], tail.shape[2]
        nq = mask.shape[1]
        step = (n + chunks - 1) // chunks
        for item in prange(nb * nh * chunks):
            bh, c = item // chunks, item % chunks
            b, h = bh // nh, bh % nh
            t0, t1 = c * step, min(n, (c + 1) * step)
            vec = np.empty(K, dtype=np.float32)
            qf = np.empty(nm * K, dtype=np.float32)
            off = np.zeros(nm, dtype=np.float32)
            o = out[b, h]
            for m in range(nm):
                for j in range(K):
                    qf[m * K + j] = qr[b, h, m, j]
                qm = qx[b, h, m]
                if mu.shape[2]:
                    off[m] = _dot(qm, mu[b, h], d)
                if c == 0:  # the exact columns: sinks before the codes, the tail after them
                    for t in range(ns):
                        o[m, t] = _dot(qm, sink[b, h, t], d)
                    for t in range(nt):
                        o[m, ns + n + t] = _dot(qm, tail[b, h, t], d)
            for t in range(t0, t1):
                s = _load(b, h, t, idx_a, norm_a, tf_a, bits_a, idx_b, norm_b, tf_b, bits_b, K, KA, vec)
                for m in range(nm):
                    acc = np.float32(0.0)
                    for j in range(K):
                        acc += qf[m * K + j] * vec[j]
                    o[m, ns + t] = off[m] + s * acc
            if nq:
                bm = b if mask.shape[0] > 1 else 0
                for m in range(nm):
                    row = mask[bm, m % nq]
                    for t in range(ns + t0, ns + t1):
                        o[m, t] += row[t]
                    if c == 0:
                        for t in range(ns):
                            o[m, t] += row[t]
                        for t in range(ns + n, ns + n + nt):
                            o[m, t] += row[t]

    @njit(cache=_CACHE, nogil=True, fastmath=True, parallel=True)
    def values(
        w, sink, tail, mu, idx_a, norm_a, tf_a, bits_a, idx_b, norm_b, tf_b, bits_b, chunks, out_rot, out_x
    ):
        nb, nh, nm, _ = out_rot.shape
        d = out_x.shape[3]
        ns, n, nt = sink.shape[2], idx_a.shape[2], tail.shape[2]
        step = (n + chunks - 1) // chunks
        part = np.zeros((nb * nh * chunks, nm * K), dtype=np.float32)
        for item in prange(nb * nh * chunks):
            bh, c = item // chunks, item % chunks
            b, h = bh // nh, bh % nh
            vec = np.empty(K, dtype=np.float32)
            acc = part[item]
            for t in range(c * step, min(n, (c + 1) * step)):
                s = _load(b, h, t, idx_a, norm_a, tf_a, bits_a, idx_b, norm_b, tf_b, bits_b, K, KA, vec)
                for m in range(nm):
                    cw = w[b, h, m, ns + t] * s
                    for j in range(K):
                        acc[m * K + j] += cw * vec[j]
            if c:
                continue
            for m in range(nm):  # the exact part: sinks, tail, (sum of the code weights) x mean
                wm = w[b, h, m]
                ox = out_x[b, h, m]
                ox[:] = 0.0
                for t in range(ns):
                    for j in range(d):
                        ox[j] += wm[t] * sink[b, h, t, j]
                for t in range(nt):
                    for j in range(d):
                        ox[j] += wm[ns + n + t] * tail[b, h, t, j]
                if mu.shape[2]:
                    total = np.float32(0.0)
                    for t in range(n):
                        total += wm[ns + t]
                    for j in range(d):
                        ox[j] += total * mu[b, h, j]
        for bh in range(nb * nh):
            b, h = bh // nh, bh % nh
            for m in range(nm):
                for j in range(K):
                    acc = np.float32(0.0)
                    for c in range(chunks):
                        acc += part[bh * chunks + c, m * K + j]
                    out_rot[b, h, m, j] = acc

    return scores, values


def _chunks(pairs: int, n: int) -> int:
    """Token chunks per (row, head) so that every thread gets work (1 on one thread or few tokens)."""
    threads = numba.get_num_threads()
    if threads == 1 or n < 512 or pairs >= 4 * threads:
        return 1
    return min(-(-2 * threads // pairs), n // 256)


_EMPTY4 = np.zeros((1, 1, 0, 0), dtype=np.float32)
_EMPTY3 = np.zeros((1, 1, 0), dtype=np.float32)
_NO_MASK = np.zeros((1, 0, 0), dtype=np.float32)


def _args(codes) -> tuple[int, tuple]:
    """(rotated width of part a, the kernels' part arguments) of ``codes`` = (idx, norm, table, bits) or
    a split's two such tuples."""
    parts = codes if isinstance(codes[0], tuple) else (codes,)
    flat = [(p[0], p[1], np.ascontiguousarray(p[2]).ravel(), int(p[3])) for p in parts]
    width_a = parts[0][0].shape[-1] * 8 // int(parts[0][3])
    return width_a, flat[0] + flat[-1]


def code_scores(qr, codes, out, *, qx=None, sink=None, tail=None, mu=None, mask=None) -> None:
    """One score row per query: ``out[b, h, m] = [<q, sink_s> | <q, mu> + <q, x_t> | <q, tail_u>] + mask``.

    qr (B, H, M, k) float32 queries in the codes' rotated coordinates; codes = (idx (B, H, n, bytes)
    uint8, norm (B, H, n) float32, table from :func:`unit_table`, bits), or two such tuples for a split
    (qr's first coordinates belong to the first); qx (B, H, M, D) the same queries in the model's
    coordinates for the exact parts: sink (B, H, S, D) and tail (B, H, W, D) float32 keys held in full
    precision, mu (B, H, D) the centring mean of the coded keys; mask (B or 1, Q, S + n + W) additive,
    row ``m % Q`` for query m. out (B, H, M, S + n + W) float32 is written (any strides). Parallel over
    (row, head) pairs.
    """
    width_a, parts = _args(codes)
    qx = qr if qx is None else qx
    _kernels(qr.shape[-1], width_a)[0](
        qr,
        qx,
        _EMPTY4 if sink is None else sink,
        _EMPTY4 if tail is None else tail,
        _EMPTY3 if mu is None else mu,
        _NO_MASK if mask is None else mask,
        *parts,
        _chunks(qr.shape[0] * qr.shape[1], parts[0].shape[2]),
        out,
    )


def code_weighted_sum(w, codes, out_rot, out_x=None, *, sink=None, tail=None, mu=None) -> None:
    """Attention outputs from a score row's weights w (B, H, M, S + n + W) float32 (columns as in
    :func:`code_scores`): ``out_rot[b, h, m] = sum_t w[.., S + t] x_t`` (B, H, M, k) in the codes' rotated
    coordinates, and ``out_x[b, h, m] = sum_s w[.., s] sink_s + sum_u w[.., S + n + u] tail_u
    + (sum_t w[.., S + t]) mu`` (B, H, M, D) in the model's. Both are written. Parallel over (row, head)
    pairs.
    """
    width_a, parts = _args(codes)
    if out_x is None:
        out_x = np.empty(out_rot.shape[:3] + (0,), dtype=np.float32)
    _kernels(out_rot.shape[-1], width_a)[1](
        w,
        _EMPTY4 if sink is None else sink,
        _EMPTY4 if tail is None else tail,
        _EMPTY3 if mu is None else mu,
        *parts,
        _chunks(w.shape[0] * w.shape[1], parts[0].shape[2]),
        out_rot,
        out_x,
    )
