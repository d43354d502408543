"""Numba CPU backend: the same ops as :mod:`vqdb.kernels.reference`, compiled.

Imported only when the ``numba`` backend is selected (``get_ops("numba")`` or by default when numba
is installed); ``import vqdb`` never imports this module. Kernels are module-level
``@njit(cache=..., nogil=True)`` functions (``VQDB_NUMBA_CACHE=0`` turns the on-disk cache off),
``prange`` over vectors, unpacking fused with the lookup/accumulate. Python wrappers below allocate
outputs and choose between the fused lookup-table scan (few queries) and decode-a-tile + BLAS matmul
(many queries). No validation: callers pass checked arrays.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .. import envs
from .._core.packing import packed_size
from . import reference

name = "numba"
_CACHE = envs.numba_cache()

# queries at or above this count are scored by decoding tiles of codes and one BLAS matmul per tile
GEMM_MIN_QUERIES = 16
_TILE = 4096
# encode_scalar and decode_values run serially up to this many rows: the quantizers call them per row tile
# from their own worker threads (vqdb.quantizers._common.run_tiles), where a parallel kernel would nest
SERIAL_MAX_ROWS = 2048
BYTE_TABLE_MIN_ROWS = 256  # fewer rows sum each code byte directly (a table costs 256 entries per byte)


# ----------------------------------------------------------------------------------------------
# bit helpers (inlined by LLVM)
# ----------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True)
def _search(boundaries, v):
    """Number of boundaries <= v (boundaries increasing float64); branch-free binary search."""
    n = boundaries.shape[0]
    if n == 0:
        return 0
    base = 0
    while n > 1:
        half = n >> 1
        base += half * np.int64(boundaries[base + half] <= v)
        n -= half
    return base + np.int64(boundaries[base] <= v)


@njit(cache=_CACHE, nogil=True)
def _get(row, offset, j, bits, mask):
    pos = j * bits
    byte = offset + (pos >> 3)
    sh = pos & 7
    v = np.int64(row[byte])
    if sh + bits > 8:
        v |= np.int64(row[byte + 1]) << 8
    return (v >> sh) & mask


@njit(cache=_CACHE, nogil=True)
def _put_row(idx, bits, out_row):
    """Pack int64 indices idx (k,) into a zeroed uint8 row."""
    for j in range(idx.shape[0]):
        v = idx[j]
        pos = j * bits
        byte = pos >> 3
        sh = pos & 7
        out_row[byte] |= np.uint8((v << sh) & 0xFF)
        if sh + bits > 8:
            out_row[byte + 1] |= np.uint8(v >> (8 - sh))


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, parallel=True)
def _pack_kernel(idx, bits, out):
    n, k = idx.shape
    for i in prange(n):
        buf = np.empty(k, dtype=np.int64)
        for j in range(k):
            buf[j] = idx[i, j]
        _put_row(buf, bits, out[i])


@njit(cache=_CACHE, nogil=True, parallel=True)
def _unpack_kernel(packed, bits, out):
    n, k = out.shape
    mask = (1 << bits) - 1
    for i in prange(n):
        row = packed[i]
        for j in range(k):
            out[i, j] = np.uint8(_get(row, 0, j, bits, mask))


@njit(cache=_CACHE, nogil=True, parallel=True)
def _bucketize_kernel(x, boundaries, out):
    n, k = x.shape
    for i in prange(n):
        for j in range(k):
            out[i, j] = np.uint8(_search(boundaries, np.float64(x[i, j])))


@njit(cache=_CACHE, nogil=True, parallel=True)
def _encode_scalar_kernel(x, boundaries, bits, out):
    n, k = x.shape
    for i in prange(n):
        buf = np.empty(k, dtype=np.int64)
        for j in range(k):
            buf[j] = _search(boundaries, np.float64(x[i, j]))
        _put_row(buf, bits, out[i])


@njit(cache=_CACHE, nogil=True)
def _encode_scalar_rows(x, boundaries, bounds32, bits, out):
    """Serial twin of _encode_scalar_kernel (small batches; safe from several Python threads at once).
    Few boundaries (<= 2**_LINEAR_MAX_BITS - 1): vectorised count against the float32 ceilings."""
    n, k = x.shape
    buf = np.empty(k, dtype=np.int64)
    cnt = np.empty(k, dtype=np.int32)
    linear = boundaries.shape[0] < (1 << _LINEAR_MAX_BITS)
    for i in range(n):
        if linear:
            _count_le(x[i], bounds32, cnt)
            if 8 % bits == 0:
                _pack_aligned(cnt, bits, out[i])
                continue
            for j in range(k):
                buf[j] = cnt[j]
        else:
            for j in range(k):
                buf[j] = _search(boundaries, np.float64(x[i, j]))
        _put_row(buf, bits, out[i])


@njit(cache=_CACHE, nogil=True, parallel=True)
def _encode_scaled_kernel(u, boundaries, centroids, scales, bits, out):
    n, k = u.shape
    for i in prange(n):
        best = np.zeros(k, dtype=np.int64)
        cur = np.empty(k, dtype=np.int64)
        row = np.empty(k, dtype=np.float64)
        for j in range(k):
            row[j] = np.float64(u[i, j])
        best_cos = -np.inf
        for s in range(scales.shape[0]):
            t = scales[s]
            dot = 0.0
            nrm2 = 0.0
            for j in range(k):
                uj = row[j]
                c = _search(boundaries, uj * t)
                cur[j] = c
                v = centroids[c]
                dot += uj * v
                nrm2 += v * v
            if nrm2 > 0.0:
                cos = dot / np.sqrt(nrm2)
                if cos > best_cos:
                    best_cos = cos
                    for j in range(k):
                        best[j] = cur[j]
        _put_row(best, bits, out[i])


@njit(cache=_CACHE, nogil=True)
def _search_row(table, row, count, v):
    """Number of entries <= v among table[row, :count] (increasing float64); branch-free."""
    if count == 0:
        return 0
    n = count
    base = 0
    while n > 1:
        half = n >> 1
        base += half * np.int64(table[row, base + half] <= v)
        n -= half
    return base + np.int64(table[row, base] <= v)


@njit(cache=_CACHE, nogil=True, parallel=True)
def _scaled_segments_kernel(u, segment, counts, boundaries, centroids, scales, out):
    n, k = u.shape
    for i in prange(n):
        cur = np.empty(k, dtype=np.int64)
        row = np.empty(k, dtype=np.float64)
        for j in range(k):
            row[j] = np.float64(u[i, j])
        best_cos = -np.inf
        for s in range(scales.shape[0]):
            t = scales[s]
            dot = 0.0
            nrm2 = 0.0
            for j in range(k):
                g = segment[j]
                uj = row[j]
                c = _search_row(boundaries, g, counts[g], uj * t)
                cur[j] = c
                v = centroids[g, c]
                dot += uj * v
                nrm2 += v * v
            if nrm2 > 0.0:
                cos = dot / np.sqrt(nrm2)
                if cos > best_cos:
                    best_cos = cos
                    for j in range(k):
                        out[i, j] = np.uint8(cur[j])


@njit(cache=_CACHE, nogil=True)
def _decode_rows(codes, offset, bits, values, out):
    """Serial twin of _decode_kernel (small batches; safe from several Python threads at once)."""
    n, k = out.shape
    mask = (1 << bits) - 1
    for i in range(n):
        row = codes[i]
        for j in range(k):
            out[i, j] = values[_get(row, offset, j, bits, mask)]


@njit(cache=_CACHE, nogil=True, parallel=True)
def _decode_kernel(codes, offset, bits, values, out):
    n, k = out.shape
    mask = (1 << bits) - 1
    for i in prange(n):
        row = codes[i]
        for j in range(k):
            out[i, j] = values[_get(row, offset, j, bits, mask)]


@njit(cache=_CACHE, nogil=True)
def _byte_tables(q, bits, values, nbytes):
    """(m, nbytes, 256) float32: partial sums of q_j·values[idx_j] over the coordinates of one byte."""
    m, k = q.shape
    per = 8 // bits
    mask = (1 << bits) - 1
    table = np.zeros((m, nbytes, 256), dtype=np.float32)
    for qi in range(m):
        for p in range(nbytes):
            for v in range(256):
                acc = np.float32(0.0)
                for c in range(per):
                    j = p * per + c
                    if j < k:
                        acc += q[qi, j] * values[(v >> (c * bits)) & mask]
                table[qi, p, v] = acc
    return table


@njit(cache=_CACHE, nogil=True)
def _byte_sums_rows(q, codes, offset, bits, values, nbytes, out):
    """:func:`_byte_lut_rows` of a few rows without the tables: each byte's partial sum is formed as
    :func:`_byte_tables` forms its entry (same terms, same order), then the bytes in order -- the same
    float32 scores, at ``n`` rows' cost instead of 256 table entries per byte."""
    m, k = q.shape
    per = 8 // bits
    mask = (1 << bits) - 1
    for i in range(codes.shape[0]):
        row = codes[i]
        for qi in range(m):
            acc = np.float32(0.0)
            for p in range(nbytes):
                v = np.int64(row[offset + p])
                part = np.float32(0.0)
                for c in range(per):
                    j = p * per + c
                    if j < k:
                        part += q[qi, j] * values[(v >> (c * bits)) & mask]
                acc += part
            out[qi, i] = acc


@njit(cache=_CACHE, nogil=True, inline="always")
def _byte_lut_row(table, row, offset, out, i):
    """Scores of code row ``i`` against every query: one table lookup per code byte."""
    m, nbytes, _ = table.shape
    for qi in range(m):
        acc = np.float32(0.0)
        for p in range(nbytes):
            acc += table[qi, p, row[offset + p]]
        out[qi, i] = acc


@njit(cache=_CACHE, nogil=True)
def _byte_lut_rows(table, codes, offset, out):
    """Serial twin of _byte_lut_kernel (small subsets; safe from several Python threads at once)."""
    for i in range(codes.shape[0]):
        _byte_lut_row(table, codes[i], offset, out, i)


@njit(cache=_CACHE, nogil=True, parallel=True)
def _byte_lut_kernel(table, codes, offset, out):
    for i in prange(codes.shape[0]):
        _byte_lut_row(table, codes[i], offset, out, i)


@njit(cache=_CACHE, nogil=True, inline="always")
def _coord_lut_row(q, row, offset, bits, values, out, i, vals):
    """Scores of code row ``i`` against every query, decoding the row's ``k`` values into ``vals``."""
    m, k = q.shape
    mask = (1 << bits) - 1
    for j in range(k):
        vals[j] = values[_get(row, offset, j, bits, mask)]
    for qi in range(m):
        acc = np.float32(0.0)
        for j in range(k):
            acc += q[qi, j] * vals[j]
        out[qi, i] = acc


@njit(cache=_CACHE, nogil=True)
def _coord_lut_rows(q, codes, offset, bits, values, out):
    """Serial twin of _coord_lut_kernel."""
    vals = np.empty(q.shape[1], dtype=np.float32)
    for i in range(codes.shape[0]):
        _coord_lut_row(q, codes[i], offset, bits, values, out, i, vals)


@njit(cache=_CACHE, nogil=True, parallel=True)
def _coord_lut_kernel(q, codes, offset, bits, values, out):
    for i in prange(codes.shape[0]):
        vals = np.empty(q.shape[1], dtype=np.float32)
        _coord_lut_row(q, codes[i], offset, bits, values, out, i, vals)


_LINEAR_MAX_BITS = (
    6  # up to this width, indices are counted against all boundaries (vectorised); above, binary search
)


@njit(cache=_CACHE, nogil=True)
def _pack_aligned(idx, bits, out):
    """Pack int32 indices of a width dividing 8 (1, 2, 4, 8) into out[: ceil(k*bits/8)], whole bytes."""
    k = idx.shape[0]
    per = 8 // bits
    full = k // per
    for p in range(full):
        v = 0
        for c in range(per):
            v |= idx[p * per + c] << (c * bits)
        out[p] = np.uint8(v)
    if full * per < k:
        v = 0
        for c in range(k - full * per):
            v |= idx[full * per + c] << (c * bits)
        out[full] = np.uint8(v)


@njit(cache=_CACHE, nogil=True)
def _count_le(u, b, out):
    """out[j] = #{m : u[j] >= b[m]} (float32, vectorised over j)."""
    k = u.shape[0]
    for j in range(k):
        out[j] = 0
    for m in range(b.shape[0]):
        bm = b[m]
        for j in range(k):
            out[j] += np.int32(u[j] >= bm)


@njit(cache=_CACHE, nogil=True)
def _encode_turbo_block_rows(
    y, r, table, boundaries, bounds32, values, scaled, full, codes, factors, chat, cvec, pc, cterms
):
    """Serial fused block encode (see reference.encode_turbo_block); callers parallelise over row tiles.

    ``bounds32[s, m]`` is the smallest float32 >= ``boundaries[s, m]``, so for a float32 u
    ``u >= bounds32`` is exactly ``float64(u) >= boundaries``: the count runs in float32 SIMD. Rows go
    in pairs so that the two rows' left-to-right float64 sums (norm, <u, ĉ>) overlap in the pipeline;
    each row's sums keep their order.
    """
    n, k = y.shape
    d = r.shape[1]
    u = np.empty((2, k), dtype=np.float32)
    idx = np.empty((2, k), dtype=np.int32)
    nrm = np.zeros(2)
    dot = np.zeros(2)
    coded = np.zeros(2)
    want = cterms.shape[0] > 0
    i = 0
    while i < n:
        m = 2 if i + 1 < n else 1
        if m == 2:
            a2 = 0.0
            b2 = 0.0
            if want:  # <c, r> as two more independent float64 chains of the same pass
                ca = 0.0
                cb = 0.0
                for j in range(d):
                    a = np.float64(r[i, j])
                    b = np.float64(r[i + 1, j])
                    cj = np.float64(cvec[j])
                    a2 += a * a
                    b2 += b * b
                    ca += a * cj
                    cb += b * cj
                cterms[i, 0] = ca
                cterms[i + 1, 0] = cb
            else:
                for j in range(d):
                    a = np.float64(r[i, j])
                    b = np.float64(r[i + 1, j])
                    a2 += a * a
                    b2 += b * b
            nrm[0] = np.sqrt(a2)
            nrm[1] = np.sqrt(b2)
        else:
            a2 = 0.0
            ca = 0.0
            for j in range(d):
                a = np.float64(r[i, j])
                a2 += a * a
                if want:
                    ca += a * np.float64(cvec[j])
            nrm[0] = np.sqrt(a2)
            if want:
                cterms[i, 0] = ca
        for t in range(m):
            safe = nrm[t] if nrm[t] > 0.0 else 1.0
            ut = u[t]
            it = idx[t]
            for j in range(k):
                ut[j] = np.float32(np.float64(y[i + t, j]) / safe)
            row = codes[i + t]
            for s in range(table.shape[0]):
                start = table[s, 0]
                stop = table[s, 1]
                bits = table[s, 2]
                pos = table[s, 3]
                cnt = (1 << bits) - 1
                if bits <= _LINEAR_MAX_BITS:
                    _count_le(ut[start:stop], bounds32[s, :cnt], it[start:stop])
                else:
                    for j in range(start, stop):
                        it[j] = _search_row(boundaries, s, cnt, np.float64(ut[j]))
                if chat.shape[0]:
                    for j in range(start, stop):
                        chat[i + t, j] = values[s, it[j]]
                if 8 % bits == 0:
                    _pack_aligned(it[start:stop], bits, row[pos:])
                else:
                    acc = np.int64(0)
                    nacc = 0
                    for j in range(start, stop):
                        acc |= np.int64(it[j]) << nacc
                        nacc += bits
                        if nacc >= 8:
                            row[pos] = np.uint8(acc & 0xFF)
                            pos += 1
                            acc >>= 8
                            nacc -= 8
                    if nacc > 0:
                        row[pos] = np.uint8(acc & 0xFF)
        if scaled:
            d0 = 0.0
            d1 = 0.0
            c0 = 0.0
            c1 = 0.0
            for s in range(table.shape[0]):
                start = table[s, 0]
                stop = table[s, 1]
                if m == 2:
                    for j in range(start, stop):
                        p = np.float64(u[0, j])
                        q = np.float64(u[1, j])
                        d0 += p * np.float64(values[s, idx[0, j]])
                        d1 += q * np.float64(values[s, idx[1, j]])
                    if not full:
                        for j in range(start, stop):
                            p = np.float64(u[0, j])
                            q = np.float64(u[1, j])
                            c0 += p * p
                            c1 += q * q
                else:
                    for j in range(start, stop):
                        p = np.float64(u[0, j])
                        d0 += p * np.float64(values[s, idx[0, j]])
                    if not full:
                        for j in range(start, stop):
                            p = np.float64(u[0, j])
                            c0 += p * p
            dot[0] = d0
            dot[1] = d1
            coded[0] = c0
            coded[1] = c1
        for t in range(m):
            if scaled:
                cf = 1.0 if full else coded[t]
                ok = dot[t] > 0.0 and nrm[t] > 0.0
                factors[i + t] = np.float32(nrm[t] * cf / dot[t]) if ok else np.float32(0.0)
            else:
                factors[i + t] = np.float32(nrm[t])
        if want:  # <Πc, ĉ> of both rows, two interleaved chains
            p0 = 0.0
            p1 = 0.0
            for s in range(table.shape[0]):
                if m == 2:
                    for j in range(table[s, 0], table[s, 1]):
                        pj = np.float64(pc[j])
                        p0 += pj * np.float64(values[s, idx[0, j]])
                        p1 += pj * np.float64(values[s, idx[1, j]])
                else:
                    for j in range(table[s, 0], table[s, 1]):
                        p0 += np.float64(pc[j]) * np.float64(values[s, idx[0, j]])
            cterms[i, 1] = p0
            if m == 2:
                cterms[i + 1, 1] = p1
        i += m


@njit(cache=_CACHE, nogil=True)
def _hadamard_rows(x, signs, norm, out):
    """Serial randomized Hadamard rotation (see reference.hadamard_rotate), rows of x into out (n, p)."""
    n, d = x.shape
    rounds, p = signs.shape
    for i in range(n):
        buf = out[i]
        for j in range(d):
            buf[j] = x[i, j]
        for j in range(d, p):
            buf[j] = np.float32(0.0)
        for rr in range(rounds):
            for j in range(p):
                buf[j] = buf[j] * signs[rr, j]
            h = 1
            while h < p:
                if h < 8:
                    for i0 in range(0, p, 2 * h):
                        for t in range(i0, i0 + h):
                            a = buf[t]
                            b = buf[t + h]
                            buf[t] = a + b
                            buf[t + h] = a - b
                else:  # two disjoint views: the loop vectorises
                    for i0 in range(0, p, 2 * h):
                        lo = buf[i0 : i0 + h]
                        hi = buf[i0 + h : i0 + 2 * h]
                        for t in range(h):
                            a = lo[t]
                            b = hi[t]
                            lo[t] = a + b
                            hi[t] = a - b
                h *= 2
            for j in range(p):
                buf[j] = buf[j] * norm


_INV_SQRT2 = np.float32(1.0 / np.sqrt(2.0))
_FHT_FEW = 8  # fewer rows are rotated one at a time (a 64-row group would be mostly padding)
_FHT_GROUP = 64  # rows rotated together, held transposed: each butterfly is a 64-float loop that vectorises


@njit(cache=_CACHE, nogil=True, inline="always")
def _fwht_cols(buf, lo, p, norm):
    """Normalised FWHT of rows lo .. lo + p of buf (d, G): the transform runs down the columns, each
    butterfly on a whole row of G floats; per element the same float32 ops in the same order as the
    reference (h = 1, 2, 4, ..., then the scaling)."""
    h = 1
    while h < p:
        for i0 in range(lo, lo + p, 2 * h):
            for j in range(i0, i0 + h):
                a_row = buf[j]
                b_row = buf[j + h]
                for t in range(_FHT_GROUP):
                    a = a_row[t]
                    b = b_row[t]
                    a_row[t] = a + b
                    b_row[t] = a - b
        h *= 2
    for j in range(lo, lo + p):
        row = buf[j]
        for t in range(_FHT_GROUP):
            row[t] = row[t] * norm


@njit(cache=_CACHE, nogil=True)
def _fwht_vec(y, lo, p, norm):
    """:func:`_fwht_cols` on one vector: rows lo .. lo + p of y (d,), the same float32 ops per element."""
    h = 1
    while h < p:
        for i0 in range(lo, lo + p, 2 * h):
            for j in range(i0, i0 + h):
                a = y[j]
                b = y[j + h]
                y[j] = a + b
                y[j + h] = a - b
        h *= 2
    for j in range(lo, lo + p):
        y[j] = y[j] * norm


@njit(cache=_CACHE, nogil=True)
def _fht_kac_few(x, signs, p, norm, s2, out):
    """:func:`_fht_kac_rows` one row at a time, for a few rows (a query): no 64-row transposed group."""
    n, d = x.shape
    half = d // 2
    y = np.empty(d, dtype=np.float32)
    for i in range(n):
        for j in range(d):
            y[j] = x[i, j]
        for rr in range(signs.shape[0]):
            for j in range(d):
                y[j] = y[j] * signs[rr, j]
            _fwht_vec(y, 0, p, norm)
            if p < d:
                for j in range(half):
                    a = y[j]
                    b = y[j + half]
                    y[j] = (a + b) * s2
                    y[j + half] = (a - b) * s2
                _fwht_vec(y, d - p, p, norm)
        for j in range(d):
            out[i, j] = y[j]


@njit(cache=_CACHE, nogil=True)
def _fht_kac_rows(x, signs, p, norm, s2, out):
    """Serial FHT-Kac rotation (see reference.fht_kac_rotate), rows of x (n, d) into out (n, d), in groups
    of ``_FHT_GROUP`` rows held transposed (the last group zero-padded)."""
    n, d = x.shape
    rounds = signs.shape[0]
    half = d // 2
    G = _FHT_GROUP
    buf = np.zeros((d, G), dtype=np.float32)
    for g0 in range(0, n, G):
        gn = min(G, n - g0)
        for t in range(gn):
            for j in range(d):
                buf[j, t] = x[g0 + t, j]
        for t in range(gn, G):
            for j in range(d):
                buf[j, t] = np.float32(0.0)
        for rr in range(rounds):
            for j in range(d):
                sj = signs[rr, j]
                row = buf[j]
                for t in range(_FHT_GROUP):
                    row[t] = row[t] * sj
            _fwht_cols(buf, 0, p, norm)
            if p < d:
                for j in range(half):
                    a_row = buf[j]
                    b_row = buf[j + half]
                    for t in range(_FHT_GROUP):
                        a = a_row[t]
                        b = b_row[t]
                        a_row[t] = (a + b) * s2
                        b_row[t] = (a - b) * s2
                _fwht_cols(buf, d - p, p, norm)
        for t in range(gn):
            for j in range(d):
                out[g0 + t, j] = buf[j, t]


# Rows encode_turbo_fht works on at once, held transposed in a flat (d * 64,) float32 buffer (row j of the
# rotated vectors = buf[j * 64 : j * 64 + 64], one lane per vector): every per-coordinate step (sign,
# butterfly, bucket count, float64 sums) is a 64-lane loop that LLVM vectorises. Each lane is one vector, so a
# vector's arithmetic (and bytes) never depends on which vectors share its group or how many threads run.
# Indices into the flat buffers are unsigned (no negative-index wraparound), which keeps the loops vectorised.
_EG = 64
_U = np.uint64


@njit(cache=_CACHE, nogil=True)
def _search_scaled(table, row, count, v, scale):
    """Number of entries e among table[row, :count] (increasing float64) with e * scale <= v; branch-free."""
    if count == 0:
        return 0
    n = count
    base = 0
    while n > 1:
        half = n >> 1
        base += half * np.int64(table[row, base + half] * scale <= v)
        n -= half
    return base + np.int64(table[row, base] * scale <= v)


@njit(cache=_CACHE, nogil=True, inline="always")
def _radix8_lanes(buf, lo, p, h, norm, last):
    """Three FWHT stages (h, 2h, 4h) in one pass over rows lo .. lo + p of the flat lane buffer: per lane the
    reference's butterflies in its order; ``* norm`` on the outputs when ``last``."""
    s1 = _U(h * _EG)
    s2, s3, s4 = _U(2) * s1, _U(3) * s1, _U(4) * s1
    s5, s6, s7 = _U(5) * s1, _U(6) * s1, _U(7) * s1
    for i0 in range(lo, lo + p, 8 * h):
        for j in range(i0, i0 + h):
            o = _U(j * _EG)
            for tt in range(_EG):
                t = o + _U(tt)
                x0, x1, x2, x3 = buf[t], buf[t + s1], buf[t + s2], buf[t + s3]
                x4, x5, x6, x7 = buf[t + s4], buf[t + s5], buf[t + s6], buf[t + s7]
                a0, a1, a2, a3 = x0 + x1, x0 - x1, x2 + x3, x2 - x3
                a4, a5, a6, a7 = x4 + x5, x4 - x5, x6 + x7, x6 - x7
                b0, b2, b1, b3 = a0 + a2, a0 - a2, a1 + a3, a1 - a3
                b4, b6, b5, b7 = a4 + a6, a4 - a6, a5 + a7, a5 - a7
                if last:
                    buf[t], buf[t + s4] = (b0 + b4) * norm, (b0 - b4) * norm
                    buf[t + s1], buf[t + s5] = (b1 + b5) * norm, (b1 - b5) * norm
                    buf[t + s2], buf[t + s6] = (b2 + b6) * norm, (b2 - b6) * norm
                    buf[t + s3], buf[t + s7] = (b3 + b7) * norm, (b3 - b7) * norm
                else:
                    buf[t], buf[t + s4] = b0 + b4, b0 - b4
                    buf[t + s1], buf[t + s5] = b1 + b5, b1 - b5
                    buf[t + s2], buf[t + s6] = b2 + b6, b2 - b6
                    buf[t + s3], buf[t + s7] = b3 + b7, b3 - b7


@njit(cache=_CACHE, nogil=True, inline="always")
def _fwht_lanes(buf, lo, p, norm):
    """Normalised FWHT of rows lo .. lo + p of the flat lane buffer, per lane the reference's float32 ops in
    order (stages h = 1, 2, 4, ..., then ``* norm``): three stages per pass (radix 8), one or two in a last pass;
    the scaling is folded into the last pass (``(a + b) * norm`` rounds exactly like the sum stored then
    scaled)."""
    h = 1
    while 8 * h <= p:
        if 8 * h == p:
            _radix8_lanes(buf, lo, p, h, norm, True)
        else:
            _radix8_lanes(buf, lo, p, h, norm, False)
        h *= 8
    if 4 * h == p:
        s1 = _U(h * _EG)
        s2, s3 = _U(2) * s1, _U(3) * s1
        for i0 in range(lo, lo + p, 4 * h):
            for j in range(i0, i0 + h):
                o = _U(j * _EG)
                for tt in range(_EG):
                    t = o + _U(tt)
                    x0, x1, x2, x3 = buf[t], buf[t + s1], buf[t + s2], buf[t + s3]
                    a0, a1, a2, a3 = x0 + x1, x0 - x1, x2 + x3, x2 - x3
                    buf[t], buf[t + s2] = (a0 + a2) * norm, (a0 - a2) * norm
                    buf[t + s1], buf[t + s3] = (a1 + a3) * norm, (a1 - a3) * norm
    elif 2 * h == p:
        s1 = _U(h * _EG)
        for i0 in range(lo, lo + p, 2 * h):
            for j in range(i0, i0 + h):
                o = _U(j * _EG)
                for tt in range(_EG):
                    t = o + _U(tt)
                    a, b = buf[t], buf[t + s1]
                    buf[t], buf[t + s1] = (a + b) * norm, (a - b) * norm
    elif p == 1:
        o = _U(lo * _EG)
        for tt in range(_EG):
            buf[o + _U(tt)] = buf[o + _U(tt)] * norm


@njit(cache=_CACHE, nogil=True, inline="always")
def _count_lanes(buf, o, thr, vals, ir, vr, cnt):
    """Bucket of one rotated coordinate in every lane: ``ir[t] = #{m < cnt : buf[o + t] >= thr[m * _EG + t]}``
    and its level ``vr[t] = vals[ir[t]]`` (a select per boundary, no gather). Called with a literal ``cnt``
    (1, 3, 7, 15) the boundary loop unrolls and the lane loop vectorises with the counts in registers."""
    for tt in range(_EG):
        y = buf[o + _U(tt)]
        c = np.int32(0)
        v = vals[0]
        for m in range(cnt):
            tm = thr[_U(m * _EG + tt)]
            vm = vals[m + 1]
            ge = y >= tm
            c += np.int32(ge)
            v = vm if ge else v
        ir[tt] = c
        vr[tt] = v


@njit(cache=_CACHE, nogil=True)
def _encode_fht_rows(
    x, centres, rcentres, lists, signs, p, norm, s2, table, boundaries, bounds32, values,
    scaled, full, want_beta, codes, factor, beta, sq, r0, r1,
):  # fmt: skip
    """Serial fused one-block FHT-Kac encode (see reference.encode_turbo_fht) of rows r0 .. r1, in groups of
    _EG lanes (a lane's arithmetic never depends on the other lanes, so neither do its bytes)."""
    d = x.shape[1]
    rounds = signs.shape[0]
    half = d // 2
    G = _EG
    have_c = centres.shape[0] > 0
    single = centres.shape[0] == 1
    ns = table.shape[0]
    buf = np.zeros(d * G, dtype=np.float32)
    lane = np.zeros(G, dtype=np.int64)
    crow = np.zeros(G, dtype=np.float32)
    ir = np.zeros(G, dtype=np.int32)
    vr = np.zeros(G, dtype=np.float32)
    pk = np.zeros(G, dtype=np.int32)
    x2 = np.zeros(G)
    a2 = np.zeros(G)
    cr = np.zeros(G)
    dot = np.zeros(G)
    cod = np.zeros(G)
    pcv = np.zeros(G)
    safe = np.ones(G)
    thr = np.zeros(((1 << _LINEAR_MAX_BITS) - 1) * G, dtype=np.float32)
    thr_u = thr.view(np.uint32)
    up = np.zeros(G, dtype=np.bool_)
    xf = x.reshape(-1)  # flat views (x and the centres are C-contiguous): unsigned indices, no wraparound
    cf = centres.reshape(-1)
    rcf = rcentres.reshape(-1)
    codef = codes.reshape(-1)  # C-contiguous (n, cs) codes, written through unsigned flat indices
    cs = codes.shape[1]
    for g0 in range(r0, r1, G):
        gn = min(G, r1 - g0)
        for t in range(G):
            lane[t] = lists[g0 + t] if (have_c and t < gn) else 0
        x2[:] = 0.0
        a2[:] = 0.0
        cr[:] = 0.0
        if gn < G:
            buf[:] = 0.0
        # transpose (lane t = row g0 + t), then r = x - c and the float64 left-to-right sums
        for j in range(d):
            o = _U(j * G)
            xo = _U(g0 * d + j)
            for t in range(gn):
                buf[o + _U(t)] = xf[xo + _U(t * d)]
            if have_c and single:  # ||x||², r = x - c (float32), ||r||² and <c, r>, one centre: one pass
                c0 = centres[0, j]
                c064 = np.float64(c0)
                for tt in range(G):
                    xv = buf[o + _U(tt)]
                    w = np.float64(xv)
                    x2[tt] += w * w
                    rv = xv - c0
                    buf[o + _U(tt)] = rv
                    v = np.float64(rv)
                    a2[tt] += v * v
                    cr[tt] += v * c064
                continue
            for tt in range(G):
                v = np.float64(buf[o + _U(tt)])
                x2[tt] += v * v
            if have_c:  # the same, each lane its own centre
                for tt in range(G):
                    crow[tt] = cf[_U(lane[tt] * d + j)]
                for tt in range(G):
                    rv = buf[o + _U(tt)] - crow[tt]
                    buf[o + _U(tt)] = rv
                    v = np.float64(rv)
                    a2[tt] += v * v
                    cr[tt] += v * np.float64(crow[tt])
        if not have_c:
            a2[:] = x2
        for rr in range(rounds):
            for j in range(d):
                sj = signs[rr, j]
                o = _U(j * G)
                for tt in range(G):
                    buf[o + _U(tt)] = buf[o + _U(tt)] * sj
            _fwht_lanes(buf, 0, p, norm)
            if p < d:
                sh = _U(half * G)
                for j in range(half):
                    o = _U(j * G)
                    for tt in range(G):
                        t = o + _U(tt)
                        a, b = buf[t], buf[t + sh]
                        buf[t], buf[t + sh] = (a + b) * s2, (a - b) * s2
                _fwht_lanes(buf, d - p, p, norm)
        for t in range(G):
            nrm = np.sqrt(a2[t])
            safe[t] = nrm if nrm > 0.0 else 1.0
        dot[:] = 0.0
        cod[:] = 0.0
        pcv[:] = 0.0
        for s in range(ns):  # no division: y is bucketed against the boundaries scaled by ||r|| (per lane)
            start = table[s, 0]
            stop = table[s, 1]
            bits = table[s, 2]
            pos = table[s, 3]
            cnt = (1 << bits) - 1
            vals = values[s]
            linear = bits <= _LINEAR_MAX_BITS
            if linear:  # thr = the smallest float32 >= b * ||r||: y >= thr  <=>  float64(y) >= b * ||r||
                for m in range(cnt):
                    bm = boundaries[s, m]
                    for t in range(G):
                        v = bm * safe[t]
                        c32 = np.float32(v)
                        thr[_U(m * G + t)] = c32
                        up[t] = np.float64(c32) < v
                    for t in range(G):  # the next float32 up, on the bit pattern (no libm call per lane)
                        u = thr_u[_U(m * G + t)]
                        neg = (u >> np.uint32(31)) != np.uint32(0)
                        step = (u - np.uint32(1)) if neg else (u + np.uint32(1))
                        thr_u[_U(m * G + t)] = step if up[t] else u
            aligned = 8 % bits == 0
            per = 8 // bits if aligned else 1
            c = 0  # indices gathered in pk since the last byte (aligned widths)
            nacc = 0  # bits pending in pk (other widths)
            b = 0  # bytes written of this slice
            pk[:] = 0
            for j in range(start, stop):
                o = _U(j * G)
                if cnt == 1:
                    _count_lanes(buf, o, thr, vals, ir, vr, 1)
                elif cnt == 3:
                    _count_lanes(buf, o, thr, vals, ir, vr, 3)
                elif cnt == 7:
                    _count_lanes(buf, o, thr, vals, ir, vr, 7)
                elif cnt == 15:
                    _count_lanes(buf, o, thr, vals, ir, vr, 15)
                elif linear:
                    _count_lanes(buf, o, thr, vals, ir, vr, cnt)
                else:
                    for t in range(G):
                        ir[t] = _search_scaled(boundaries, s, cnt, np.float64(buf[o + _U(t)]), safe[t])
                        vr[t] = vals[ir[t]]
                for tt in range(G):
                    dot[tt] += np.float64(buf[o + _U(tt)]) * np.float64(vr[tt])
                if not full:
                    for tt in range(G):
                        u = np.float64(buf[o + _U(tt)])
                        cod[tt] += u * u
                if want_beta:
                    if single:
                        pj = np.float64(rcentres[0, j])
                        for tt in range(G):
                            pcv[tt] += pj * np.float64(vr[tt])
                    else:
                        for tt in range(G):
                            pcv[tt] += np.float64(rcf[_U(lane[tt] * d + j)]) * np.float64(vr[tt])
                if aligned:  # LSB-first: index c of a byte at bit c * bits
                    sh = c * bits
                    for tt in range(G):
                        pk[tt] |= ir[tt] << sh
                    c += 1
                    if c == per or j == stop - 1:
                        for t in range(gn):
                            codef[_U((g0 + t) * cs + pos + b)] = np.uint8(pk[t])
                        pk[:] = 0
                        c = 0
                        b += 1
                else:  # a bit accumulator per lane (holds < 8 + bits bits)
                    for tt in range(G):
                        pk[tt] |= ir[tt] << nacc
                    nacc += bits
                    if nacc >= 8:
                        for t in range(gn):
                            codef[_U((g0 + t) * cs + pos + b)] = np.uint8(pk[t] & 0xFF)
                        for tt in range(G):
                            pk[tt] >>= 8
                        nacc -= 8
                        b += 1
            if not aligned and nacc > 0:
                for t in range(gn):
                    codef[_U((g0 + t) * cs + pos + b)] = np.uint8(pk[t] & 0xFF)
        for t in range(gn):
            i = g0 + t
            nrm = np.sqrt(a2[t])
            if scaled:  # ||r|| <u, u> / <u, ĉ> with u = y / ||r||: ||r||² / <y, ĉ> (full), <y, y> / <y, ĉ>
                num = nrm * nrm if full else cod[t]
                f = np.float32(num / dot[t]) if (dot[t] > 0.0 and nrm > 0.0) else np.float32(0.0)
            else:
                f = np.float32(nrm)
            factor[i] = f
            if want_beta:
                beta[i] = np.float32(cr[t] - np.float64(f) * pcv[t])
            sq[i] = np.float32(x2[t])


# Rows per work item of the parallel fused encode: items are handed to numba's threads one at a time
# (chunk size 1: a thread the shared machine slows takes fewer), each a serial _encode_fht_rows call with its
# own lane buffers (allocated once per item: < 1% of an item's time at 1,024 rows).
_ENCODE_PART_ROWS = 1024


@njit(cache=_CACHE, nogil=True, parallel=True)
def _encode_fht_parts(
    x, centres, rcentres, lists, signs, p, norm, s2, table, boundaries, bounds32, values,
    scaled, full, want_beta, codes, factor, beta, sq, part_rows,
):  # fmt: skip
    """_encode_fht_rows over all rows of x, in items of ``part_rows`` (a multiple of _EG) over numba's threads."""
    n = x.shape[0]
    parts = (n + part_rows - 1) // part_rows
    for k in prange(parts):
        r0 = k * part_rows
        _encode_fht_rows(
            x, centres, rcentres, lists, signs, p, norm, s2, table, boundaries, bounds32, values,
            scaled, full, want_beta, codes, factor, beta, sq, r0, min(n, r0 + part_rows),
        )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# ops (same signatures as reference.py)
# ----------------------------------------------------------------------------------------------
def pack_bits(idx: np.ndarray, bits: int) -> np.ndarray:
    idx = np.ascontiguousarray(idx, dtype=np.uint8)
    out = np.zeros((idx.shape[0], packed_size(idx.shape[1], bits)), dtype=np.uint8)
    if idx.size:
        _pack_kernel(idx, int(bits), out)
    return out


def unpack_bits(packed: np.ndarray, bits: int, k: int) -> np.ndarray:
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    out = np.empty((packed.shape[0], int(k)), dtype=np.uint8)
    if out.size:
        _unpack_kernel(packed, int(bits), out)
    return out


def bucketize(x: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.uint8)
    if x.size:
        _bucketize_kernel(x, np.ascontiguousarray(boundaries, dtype=np.float64), out)
    return out


def encode_scalar(x: np.ndarray, boundaries: np.ndarray, bits: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], packed_size(x.shape[1], bits)), dtype=np.uint8)
    if x.size:
        boundaries = np.ascontiguousarray(boundaries, dtype=np.float64)
        if x.shape[0] > SERIAL_MAX_ROWS:
            _encode_scalar_kernel(x, boundaries, int(bits), out)
        else:
            _encode_scalar_rows(x, boundaries, _ceil_float32(boundaries), int(bits), out)
    return out


def scaled_indices(u, boundaries, centroids, scales) -> np.ndarray:
    packed = encode_scaled(u, boundaries, centroids, scales, 8)
    return packed


def scaled_indices_segments(u, segment, boundaries, centroids, scales) -> np.ndarray:
    u = np.ascontiguousarray(u, dtype=np.float32)
    out = np.zeros(u.shape, dtype=np.uint8)
    if u.size:
        boundaries = np.ascontiguousarray(boundaries, dtype=np.float64)
        counts = np.isfinite(boundaries).sum(axis=1).astype(np.int64)  # rows are padded with +inf
        _scaled_segments_kernel(
            u,
            np.ascontiguousarray(segment, dtype=np.int64),
            counts,
            boundaries,
            np.ascontiguousarray(centroids, dtype=np.float64),
            np.ascontiguousarray(scales, dtype=np.float64),
            out,
        )
    return out


def encode_scaled(u, boundaries, centroids, scales, bits: int) -> np.ndarray:
    u = np.ascontiguousarray(u, dtype=np.float32)
    out = np.zeros((u.shape[0], packed_size(u.shape[1], bits)), dtype=np.uint8)
    if u.size:
        _encode_scaled_kernel(
            u,
            np.ascontiguousarray(boundaries, dtype=np.float64),
            np.ascontiguousarray(centroids, dtype=np.float64),
            np.ascontiguousarray(scales, dtype=np.float64),
            int(bits),
            out,
        )
    return out


def decode_values(codes: np.ndarray, offset: int, bits: int, k: int, values: np.ndarray) -> np.ndarray:
    out = np.empty((codes.shape[0], int(k)), dtype=np.float32)
    if out.size:
        kernel = _decode_kernel if codes.shape[0] > SERIAL_MAX_ROWS else _decode_rows
        kernel(codes, int(offset), int(bits), np.ascontiguousarray(values, dtype=np.float32), out)
    return out


def lut_scores(q: np.ndarray, codes: np.ndarray, offset: int, bits: int, values: np.ndarray) -> np.ndarray:
    q = np.ascontiguousarray(q, dtype=np.float32)
    m, k = q.shape
    n = codes.shape[0]
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    if m == 0 or n == 0:
        return out
    if m >= GEMM_MIN_QUERIES:
        for s in range(0, n, _TILE):
            tile = decode_values(codes[s : s + _TILE], offset, bits, k, values)
            np.matmul(q, tile.T, out=out[:, s : s + _TILE])
        return out
    if 8 % bits == 0 and n < BYTE_TABLE_MIN_ROWS:
        _byte_sums_rows(q, codes, int(offset), int(bits), values, packed_size(k, bits), out)
    elif 8 % bits == 0:
        nbytes = packed_size(k, bits)
        table = _byte_tables(q, int(bits), values, nbytes)
        byte_lut = _byte_lut_kernel if n > SERIAL_MAX_ROWS else _byte_lut_rows
        byte_lut(table, codes, int(offset), out)
    else:
        coord_lut = _coord_lut_kernel if n > SERIAL_MAX_ROWS else _coord_lut_rows
        coord_lut(q, codes, int(offset), int(bits), values, out)
    return out


_SIGN_VALUES = np.array([-1.0, 1.0], dtype=np.float32)


def sign_scores(q: np.ndarray, codes: np.ndarray, offset: int) -> np.ndarray:
    return lut_scores(q, codes, offset, 1, _SIGN_VALUES)


topk = reference.topk


def _ceil_float32(b: np.ndarray) -> np.ndarray:
    """Smallest float32 >= each float64 entry (+inf stays +inf)."""
    b32 = b.astype(np.float32)
    low = b32.astype(np.float64) < b
    b32[low] = np.nextafter(b32[low], np.float32(np.inf))
    return b32


_NO_CHAT = np.zeros((0, 0), dtype=np.float32)
_NO_VEC = np.zeros(0, dtype=np.float32)
_NO_TERMS = np.zeros((0, 2), dtype=np.float64)


def encode_turbo_block(
    y,
    r,
    table,
    boundaries,
    values,
    scaled,
    full,
    codes,
    chat=None,
    centre=None,
    rotated_centre=None,
    centre_terms=None,
) -> np.ndarray:
    factors = np.empty(y.shape[0], dtype=np.float32)
    if y.shape[0]:
        boundaries = np.ascontiguousarray(boundaries, dtype=np.float64)
        _encode_turbo_block_rows(
            np.ascontiguousarray(y, dtype=np.float32),
            np.ascontiguousarray(r, dtype=np.float32),
            np.ascontiguousarray(table, dtype=np.int64),
            boundaries,
            _ceil_float32(boundaries),
            np.ascontiguousarray(values, dtype=np.float32),
            bool(scaled),
            bool(full),
            codes,
            factors,
            _NO_CHAT if chat is None else chat,
            _NO_VEC if centre_terms is None else np.ascontiguousarray(centre, dtype=np.float32),
            _NO_VEC if centre_terms is None else np.ascontiguousarray(rotated_centre, dtype=np.float32),
            _NO_TERMS if centre_terms is None else centre_terms,
        )
    return factors


def hadamard_rotate(x, signs) -> np.ndarray:
    signs = np.ascontiguousarray(signs, dtype=np.float32)
    out = np.empty((x.shape[0], signs.shape[1]), dtype=np.float32)
    if x.shape[0]:
        _hadamard_rows(
            np.ascontiguousarray(x, dtype=np.float32), signs, np.float32(1.0 / np.sqrt(signs.shape[1])), out
        )
    return out


def fht_kac_rotate(x, signs) -> np.ndarray:
    signs = np.ascontiguousarray(signs, dtype=np.float32)
    n, d = x.shape
    out = np.empty((n, d), dtype=np.float32)
    if n:
        p = 1 << (int(d).bit_length() - 1)
        (_fht_kac_few if n < _FHT_FEW else _fht_kac_rows)(
            np.ascontiguousarray(x, dtype=np.float32),
            signs,
            p,
            np.float32(1.0 / math.sqrt(p)),  # correctly rounded, as np.sqrt: the same float32
            _INV_SQRT2,
            out,
        )
    return out


_NO_MAT = np.zeros((0, 1), dtype=np.float32)
_NO_LISTS = np.zeros(0, dtype=np.int64)


def encode_turbo_fht(
    x, centres, rotated_centres, lists, signs, table, boundaries, values, scaled, full, codes, beta,
    *, part_rows=None,
):  # fmt: skip
    """The reference's op; more than ``part_rows`` rows (default ``_ENCODE_PART_ROWS``) on several threads
    are coded in work items of that many rows over numba's threads."""
    n, d = x.shape
    out_codes = codes
    if not codes.flags.c_contiguous:  # the kernel writes through a flat view
        codes = np.ascontiguousarray(codes)
    factor = np.zeros(n, dtype=np.float32)
    out_beta = np.zeros(n, dtype=np.float32)
    sq = np.zeros(n, dtype=np.float32)
    if n:
        boundaries = np.ascontiguousarray(boundaries, dtype=np.float64)
        has_c = centres is not None
        part_rows = _ENCODE_PART_ROWS if part_rows is None else int(part_rows)
        parallel = n > part_rows and num_threads() > 1
        args = (
            np.ascontiguousarray(x, dtype=np.float32),
            np.ascontiguousarray(centres, dtype=np.float32) if has_c else _NO_MAT,
            np.ascontiguousarray(rotated_centres, dtype=np.float32) if has_c and beta else _NO_MAT,
            np.ascontiguousarray(lists, dtype=np.int64) if has_c else _NO_LISTS,
            np.ascontiguousarray(signs, dtype=np.float32),
            1 << (int(d).bit_length() - 1),
            np.float32(1.0 / np.sqrt(1 << (int(d).bit_length() - 1))),
            np.float32(1.0 / np.sqrt(2.0)),
            np.ascontiguousarray(table, dtype=np.int64),
            boundaries,
            _ceil_float32(boundaries),
            np.ascontiguousarray(values, dtype=np.float32),
            bool(scaled),
            bool(full),
            bool(beta and has_c),
            codes,
            factor,
            out_beta,
            sq,
        )
        if parallel:
            prev = numba.set_parallel_chunksize(1)
            try:
                _encode_fht_parts(*args, part_rows)
            finally:
                numba.set_parallel_chunksize(prev)
        else:
            _encode_fht_rows(*args, 0, n)
    if codes is not out_codes:
        out_codes[...] = codes
    return factor, out_beta, sq


def num_threads() -> int:
    """Worker threads the quantizers may use for row tiles (numba's current thread count)."""
    import numba

    return int(numba.get_num_threads())


def warmup() -> None:
    """Compile (or load from cache) every kernel on tiny inputs; the server calls this at start."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    b = np.array([-0.5, 0.0, 0.5])
    c = np.array([-1.0, -0.25, 0.25, 1.0])
    for bits in (1, 2, 3, 4, 8):
        idx = (np.arange(30).reshape(3, 10) % (1 << bits)).astype(np.uint8)
        packed = pack_bits(idx, bits)
        unpack_bits(packed, bits, 10)
        vals = np.linspace(-1, 1, 1 << bits).astype(np.float32)
        lut_scores(x[:2], packed, 0, bits, vals)  # few rows: byte sums without tables
        lut_scores(x[:2], np.repeat(packed, BYTE_TABLE_MIN_ROWS, axis=0), 0, bits, vals)  # byte tables
        lut_scores(np.repeat(x, 6, axis=0), packed, 0, bits, vals)
        lut_scores(x[:1], np.repeat(packed, SERIAL_MAX_ROWS, axis=0), 0, bits, vals)
    bucketize(x, b)
    encode_scalar(x, b, 2)
    encode_scalar(np.repeat(x, SERIAL_MAX_ROWS, axis=0), b, 2)
    decode_values(np.zeros((SERIAL_MAX_ROWS + 1, 3), np.uint8), 0, 2, 10, c.astype(np.float32))
    encode_scaled(x, b, c, np.array([1.0, 1.2]), 2)
    scaled_indices_segments(
        x, np.arange(10) % 2, np.vstack([b, b * 2]), np.vstack([c, c * 2]), np.array([1.0, 1.2])
    )
    sign_scores(x[:1], pack_bits((x > 0).astype(np.uint8), 1), 0)
    table = np.array([[0, 4, 2, 0], [4, 10, 1, 1]], dtype=np.int64)
    codes = np.zeros((3, 4), dtype=np.uint8)
    for scaled in (True, False):
        encode_turbo_block(
            x,
            x,
            table,
            np.vstack([b, np.full(3, np.inf)]),
            np.vstack([c, c]).astype(np.float32),
            scaled,
            scaled,
            codes,
            np.zeros(x.shape, np.float32) if scaled else None,
        )
    hadamard_rotate(x, np.ones((2, 16), np.float32))
    for rows in (x, np.tile(x, (_FHT_FEW, 1))):  # one at a time, and in lane groups
        fht_kac_rotate(rows, np.ones((2, 10), np.float32))
    for bits, cb in ((1, (0, 1)), (2, (0, 1, 2, 3)), (3, tuple(range(8))), (4, tuple(range(16)))):
        bnd = np.sort(rng.standard_normal((1, (1 << bits) - 1)), axis=1) * 0.3
        for cen in (None, np.zeros((1, 10), np.float32), np.zeros((2, 10), np.float32)):
            encode_turbo_fht(
                x, cen, cen, None if cen is None else np.arange(3) % cen.shape[0],
                np.ones((2, 10), np.float32), np.array([[0, 10, bits, 0]], dtype=np.int64), bnd,
                np.asarray([cb], np.float32), True, True, np.zeros((3, 8), np.uint8), cen is not None,
            )  # fmt: skip
    rows = np.tile(x, (22, 1))  # 66 rows in work items of 64 (the parallel kernel, on several threads)
    encode_turbo_fht(
        rows, None, None, None, np.ones((2, 10), np.float32), np.array([[0, 10, 1, 0]], dtype=np.int64),
        np.zeros((1, 1)), np.asarray([(-1, 1)], np.float32), True, True, np.zeros((66, 2), np.uint8), False,
        part_rows=_EG,
    )  # fmt: skip


KERNELS = reference.KERNELS.replace(
    name="numba",
    pack_bits=pack_bits,
    unpack_bits=unpack_bits,
    bucketize=bucketize,
    encode_scalar=encode_scalar,
    scaled_indices=scaled_indices,
    scaled_indices_segments=scaled_indices_segments,
    encode_scaled=encode_scaled,
    decode_values=decode_values,
    lut_scores=lut_scores,
    sign_scores=sign_scores,
    topk=topk,  # the reference's (NumPy argpartition is not the bottleneck)
    encode_turbo_block=encode_turbo_block,
    hadamard_rotate=hadamard_rotate,
    fht_kac_rotate=fht_kac_rotate,
    encode_turbo_fht=encode_turbo_fht,
    num_threads=num_threads,
    warmup=warmup,
)
