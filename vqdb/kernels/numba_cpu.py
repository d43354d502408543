"""Numba CPU backend: the same ops as :mod:`vqdb.kernels.reference`, compiled.

Imported only when the ``numba`` backend is selected (``get_ops("numba")`` or by default when numba
is installed); ``import vqdb`` never imports this module. Kernels are module-level
``@njit(cache=..., nogil=True)`` functions (``VQDB_NUMBA_CACHE=0`` turns the on-disk cache off),
``prange`` over vectors, unpacking fused with the lookup/accumulate. Python wrappers below allocate
outputs and choose between the fused lookup-table scan (few queries) and decode-a-tile + BLAS matmul
(many queries). No validation: callers pass checked arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import envs
from ..quantizers._packing import packed_size
from . import reference

name = "numba"
_CACHE = envs.numba_cache()

# queries at or above this count are scored by decoding tiles of codes and one BLAS matmul per tile
GEMM_MIN_QUERIES = 16
_TILE = 4096


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


@njit(cache=_CACHE, nogil=True, parallel=True)
def _byte_lut_kernel(table, codes, offset, out):
    m, nbytes, _ = table.shape
    n = codes.shape[0]
    for i in prange(n):
        row = codes[i]
        for qi in range(m):
            acc = np.float32(0.0)
            for p in range(nbytes):
                acc += table[qi, p, row[offset + p]]
            out[qi, i] = acc


@njit(cache=_CACHE, nogil=True, parallel=True)
def _coord_lut_kernel(q, codes, offset, bits, values, out):
    m, k = q.shape
    n = codes.shape[0]
    mask = (1 << bits) - 1
    for i in prange(n):
        row = codes[i]
        vals = np.empty(k, dtype=np.float32)
        for j in range(k):
            vals[j] = values[_get(row, offset, j, bits, mask)]
        for qi in range(m):
            acc = np.float32(0.0)
            for j in range(k):
                acc += q[qi, j] * vals[j]
            out[qi, i] = acc


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
        _encode_scalar_kernel(x, np.ascontiguousarray(boundaries, dtype=np.float64), int(bits), out)
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
        _decode_kernel(codes, int(offset), int(bits), np.ascontiguousarray(values, dtype=np.float32), out)
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
    if 8 % bits == 0:
        nbytes = packed_size(k, bits)
        table = _byte_tables(q, int(bits), values, nbytes)
        _byte_lut_kernel(table, codes, int(offset), out)
    else:
        _coord_lut_kernel(q, codes, int(offset), int(bits), values, out)
    return out


_SIGN_VALUES = np.array([-1.0, 1.0], dtype=np.float32)


def sign_scores(q: np.ndarray, codes: np.ndarray, offset: int) -> np.ndarray:
    return lut_scores(q, codes, offset, 1, _SIGN_VALUES)


topk = reference.topk


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
        lut_scores(x[:2], packed, 0, bits, vals)
        lut_scores(np.repeat(x, 6, axis=0), packed, 0, bits, vals)
    bucketize(x, b)
    encode_scalar(x, b, 2)
    encode_scaled(x, b, c, np.array([1.0, 1.2]), 2)
    scaled_indices_segments(x, np.arange(10) % 2, np.vstack([b, b * 2]), np.vstack([c, c * 2]), np.array([1.0, 1.2]))
    sign_scores(x[:1], pack_bits((x > 0).astype(np.uint8), 1), 0)
