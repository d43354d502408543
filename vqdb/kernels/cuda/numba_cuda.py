"""numba-cuda kernels over vqdb codes: the ``cuda-numba`` backend of :mod:`vqdb.kernels`.

Every op of :mod:`vqdb.kernels.reference` that matters on a GPU has a kernel here, with the reference's
signature (NumPy in, NumPy out; device arrays are accepted too and stay on the device):

* ``pack_bits`` / ``unpack_bits`` / ``bucketize`` / ``encode_scalar`` / ``encode_scaled`` /
  ``scaled_indices``: one thread per row; indices are compared in float64 with float64 boundaries
  (binary search, count of boundaries ``<= x``) and packed into the LSB-first bitstream of
  :mod:`vqdb._core.packing`, so codes equal the reference's bit for bit.
* ``decode_values`` / ``lut_scores`` / ``sign_scores``: one thread per code; the code's indices are
  unpacked once and accumulated against a chunk of up to ``QCHUNK`` queries held in registers, so each
  code byte is read once per query chunk (the scan is memory-bound). TurboQuant, QJL (1-bit signs) and
  PolarQuant (angle codes: ``lut_scores`` with the cos/sin tables) all go through these.
* ``topk``: blocked — per (query, block of ``TOPK_BLOCK`` columns) a partial sorted top-k in local memory,
  then a per-query merge; ties go to the lower column index, exactly as the reference.
* ``rotate``: ``x @ R.T`` as a tiled shared-memory matmul (the rotation of :func:`encode_rotated`).
* ``decode_attention``: the KV-cache decode step over TurboQuant key/value codes in two kernels (scores;
  then, per split of the tokens, max, softmax and the weighted sum of dequantized values) plus a tiny
  merge of the splits; flash-decoding style outputs (``out``, row max, row sum) so a caller can merge a
  full-precision tail.

``scaled_indices_segments`` (fractional-rate / pca encoders) is not a GPU kernel: it is the CPU numba one,
re-exported here so the dispatch does not fall back to the slow NumPy reference.
Under ``NUMBA_ENABLE_CUDASIM=1`` every kernel runs on the CPU (very slowly: tests use d <= 16, n <= 64).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64, int64

from ..._core.packing import packed_size
from .. import reference

name = "cuda-numba"

TPB = 128  # threads per block of the 1-D kernels
QCHUNK = 16  # queries accumulated per pass of lut_scores (registers per thread)
KMAX = 128  # largest k of the device top-k (larger k: host merge of a stable sort)
TOPK_BLOCK = 1024  # columns per partial top-k
TILE = 16  # matmul tile


def _blocks(n: int, tpb: int = TPB) -> int:
    return max(1, (int(n) + tpb - 1) // tpb)


def _is_dev(a) -> bool:
    return cuda.is_cuda_array(a) if hasattr(cuda, "is_cuda_array") else hasattr(a, "copy_to_host")


def _dev(a, dtype=None):
    """A device array of ``a`` (NumPy arrays are copied; device arrays pass through)."""
    if _is_dev(a):
        return a
    return cuda.to_device(np.ascontiguousarray(a if dtype is None else np.asarray(a, dtype=dtype)))


def _ret(d_out, *inputs):
    """Return device results when the first input was a device array, else copy to the host."""
    return d_out if inputs and _is_dev(inputs[0]) else d_out.copy_to_host()


# ------------------------------------------------------------------------------------------------
# device helpers
# ------------------------------------------------------------------------------------------------
@cuda.jit(device=True, inline=True)
def _count_le(bounds, v):
    """Number of entries of sorted ``bounds`` that are <= v (binary search, float64)."""
    lo = 0
    hi = bounds.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if bounds[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True, inline=True)
def _get(codes, row, offset, j, bits):
    """Index ``j`` of the LSB-first bitstream starting at byte ``offset`` of ``codes[row]``."""
    t = j * bits
    val = 0
    for b in range(bits):
        p = t + b
        val |= ((int64(codes[row, offset + (p >> 3)]) >> (p & 7)) & 1) << b
    return val


@cuda.jit(device=True, inline=True)
def _put(out, row, j, bits, idx):
    t = j * bits
    for b in range(bits):
        if (idx >> b) & 1:
            p = t + b
            out[row, p >> 3] = int64(out[row, p >> 3]) | (1 << (p & 7))


@cuda.jit(device=True, inline=True)
def _zero_row(out, row):
    for p in range(out.shape[1]):
        out[row, p] = 0


# ------------------------------------------------------------------------------------------------
# packing, bucketize, encode
# ------------------------------------------------------------------------------------------------
@cuda.jit
def _pack_k(idx, bits, out):
    i = cuda.grid(1)
    if i < idx.shape[0]:
        _zero_row(out, i)
        for j in range(idx.shape[1]):
            _put(out, i, j, bits, int64(idx[i, j]))


@cuda.jit
def _unpack_k(packed, bits, out):
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = _get(packed, i, 0, j, bits)


@cuda.jit
def _bucketize_k(x, bounds, out):
    i, j = cuda.grid(2)
    if i < x.shape[0] and j < x.shape[1]:
        out[i, j] = _count_le(bounds, float64(x[i, j]))


@cuda.jit
def _encode_scalar_k(x, bounds, bits, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        _zero_row(out, i)
        for j in range(x.shape[1]):
            _put(out, i, j, bits, _count_le(bounds, float64(x[i, j])))


@cuda.jit
def _scaled_indices_k(u, bounds, cents, scales, best):
    """Per row: indices of u*t for the t whose reconstruction has the best cosine with u (first on ties)."""
    i = cuda.grid(1)
    if i >= u.shape[0]:
        return
    k = u.shape[1]
    for j in range(k):
        best[i, j] = 0
    best_cos = -math.inf
    for ti in range(scales.shape[0]):
        t = scales[ti]
        dot = 0.0
        nrm = 0.0
        for j in range(k):
            uj = float64(u[i, j])
            c = cents[_count_le(bounds, uj * t)]
            dot += uj * c
            nrm += c * c
        if nrm > 0:
            cos = dot / math.sqrt(nrm)
        else:
            cos = -math.inf
        if cos > best_cos:
            best_cos = cos
            for j in range(k):
                best[i, j] = _count_le(bounds, float64(u[i, j]) * t)


def pack_bits(idx, bits: int):
    """(n, k) uint8 indices -> (n, ceil(k*bits/8)) uint8 LSB-first bitstream."""
    d_idx = _dev(idx, np.uint8)
    n, k = d_idx.shape
    out = cuda.device_array((n, packed_size(k, bits)), dtype=np.uint8)
    if n:
        _pack_k[_blocks(n), TPB](d_idx, int(bits), out)
    return _ret(out, idx)


def unpack_bits(packed, bits: int, k: int):
    """(n, ceil(k*bits/8)) uint8 -> (n, k) uint8 indices."""
    d_p = _dev(packed, np.uint8)
    n = d_p.shape[0]
    out = cuda.device_array((n, int(k)), dtype=np.uint8)
    if n and k:
        _unpack_k[(_blocks(n, 16), _blocks(k, 16)), (16, 16)](d_p, int(bits), out)
    return _ret(out, packed)


def bucketize(x, boundaries):
    """(n, k) float32, (L-1,) float64 -> (n, k) uint8 cell indices (count of boundaries <= x)."""
    d_x = _dev(x, np.float32)
    n, k = d_x.shape
    out = cuda.device_array((n, k), dtype=np.uint8)
    if n and k:
        _bucketize_k[(_blocks(n, 16), _blocks(k, 16)), (16, 16)](d_x, _dev(boundaries, np.float64), out)
    return _ret(out, x)


def encode_scalar(x, boundaries, bits: int):
    """Fused bucketize + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    d_x = _dev(x, np.float32)
    n, k = d_x.shape
    out = cuda.device_array((n, packed_size(k, bits)), dtype=np.uint8)
    if n:
        _encode_scalar_k[_blocks(n), TPB](d_x, _dev(boundaries, np.float64), int(bits), out)
    return _ret(out, x)


def _scaled(u, boundaries, centroids, scales):
    d_u = _dev(u, np.float32)
    n, k = d_u.shape
    best = cuda.device_array((n, k), dtype=np.uint8)
    if n:
        _scaled_indices_k[_blocks(n), TPB](
            d_u,
            _dev(boundaries, np.float64),
            _dev(centroids, np.float64),
            _dev(np.asarray(scales, np.float64).ravel()),
            best,
        )
    return best


def scaled_indices(u, boundaries, centroids, scales):
    """See :func:`vqdb.kernels.reference.scaled_indices`: (n, k) float32 -> (n, k) uint8."""
    return _ret(_scaled(u, boundaries, centroids, scales), u)


def encode_scaled(u, boundaries, centroids, scales, bits: int):
    """Fused :func:`scaled_indices` + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    best = _scaled(u, boundaries, centroids, scales)
    n, k = best.shape
    out = cuda.device_array((n, packed_size(k, bits)), dtype=np.uint8)
    if n:
        _pack_k[_blocks(n), TPB](best, int(bits), out)
    return _ret(out, u)


# ------------------------------------------------------------------------------------------------
# rotation (matmul) and the device encode of a single-codebook TurboQuant block
# ------------------------------------------------------------------------------------------------
@cuda.jit
def _matmul_nt_k(a, b, out):
    """out[i, j] = sum_l a[i, l] * b[j, l] (float32, tiled through shared memory)."""
    sa = cuda.shared.array((TILE, TILE), dtype=float32)
    sb = cuda.shared.array((TILE, TILE), dtype=float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    i = cuda.blockIdx.x * TILE + tx
    j = cuda.blockIdx.y * TILE + ty
    acc = float32(0.0)
    inner = a.shape[1]
    for t0 in range(0, inner, TILE):
        if i < a.shape[0] and t0 + ty < inner:
            sa[tx, ty] = a[i, t0 + ty]
        else:
            sa[tx, ty] = 0.0
        jb = cuda.blockIdx.y * TILE + tx
        if jb < b.shape[0] and t0 + ty < inner:
            sb[tx, ty] = b[jb, t0 + ty]
        else:
            sb[tx, ty] = 0.0
        cuda.syncthreads()
        for t in range(TILE):
            acc += sa[tx, t] * sb[ty, t]
        cuda.syncthreads()
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = acc


@cuda.jit
def _normalise_k(y, x, u, norms):
    """u = y / ||x|| per row (float64 norm of the unrotated row; 1 when zero), norms = ||x||."""
    i = cuda.grid(1)
    if i < y.shape[0]:
        s = 0.0
        for j in range(x.shape[1]):
            v = float64(x[i, j])
            s += v * v
        nrm = math.sqrt(s)
        norms[i] = nrm
        safe = nrm if nrm > 0 else 1.0
        for j in range(y.shape[1]):
            u[i, j] = float64(y[i, j]) / safe


def rotate(x, rotation):
    """``x @ rotation.T`` on the device: (n, d) float32, (k, d) float32 -> (n, k) float32."""
    d_x, d_r = _dev(x, np.float32), _dev(rotation, np.float32)
    n, k = d_x.shape[0], d_r.shape[0]
    out = cuda.device_array((n, k), dtype=np.float32)
    if n and k:
        _matmul_nt_k[(_blocks(n, TILE), _blocks(k, TILE)), (TILE, TILE)](d_x, d_r, out)
    return _ret(out, x)


def encode_rotated(x, rotation, boundaries, centroids, scales, bits: int):
    """Rotate, normalise, quantize and pack rows on the device (one TurboQuant block, one codebook).

    Parameters
    ----------
    x : (n, d) float32 residuals; rotation (k, d) float32; boundaries (L-1,), centroids (L,) float64;
    scales : (T,) float64 pre-scales (``(1.0,)``: plain bucketize); bits : int.

    Returns
    -------
    packed : (n, ceil(k*bits/8)) uint8, u : (n, k) float32 unit rotated rows, norms : (n,) float64.
    Codes equal ``reference.encode_scaled(u, ...)`` bit for bit for the returned ``u`` (the rotation's
    float32 rounding may differ from the host BLAS by an ulp, so compare codes given the same ``u``).
    """
    d_x = _dev(x, np.float32)
    y = rotate(d_x, _dev(rotation, np.float32))
    n, k = y.shape
    u = cuda.device_array((n, k), dtype=np.float32)
    norms = cuda.device_array(n, dtype=np.float64)
    if n:
        _normalise_k[_blocks(n), TPB](y, d_x, u, norms)
    scales = np.asarray(scales, np.float64).ravel()
    packed = (
        encode_scaled(u, boundaries, centroids, scales, bits)
        if scales.size > 1
        else encode_scalar(u, boundaries, bits)
    )
    if _is_dev(x):
        return packed, u, norms
    return packed, u.copy_to_host(), norms.copy_to_host()


# ------------------------------------------------------------------------------------------------
# decode and scoring
# ------------------------------------------------------------------------------------------------
@cuda.jit
def _decode_k(codes, offset, bits, values, out):
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = values[_get(codes, i, offset, j, bits)]


@cuda.jit
def _lut_scores_k(q, codes, offset, bits, values, out):
    """out[i, r] = sum_j q[i, j] * values[idx_r[j]]; one thread per code r, QCHUNK queries per pass."""
    r = cuda.grid(1)
    if r >= codes.shape[0]:
        return
    m, k = q.shape
    acc = cuda.local.array(QCHUNK, dtype=float32)
    for q0 in range(0, m, QCHUNK):
        qn = min(QCHUNK, m - q0)
        for a in range(QCHUNK):
            acc[a] = 0.0
        for j in range(k):
            v = values[_get(codes, r, offset, j, bits)]
            for a in range(qn):
                acc[a] += q[q0 + a, j] * v
        for a in range(qn):
            out[q0 + a, r] = acc[a]


def decode_values(codes, offset: int, bits: int, k: int, values):
    """Gather reconstruction levels: (n, code_size) uint8 -> (n, k) float32 ``values[idx]``."""
    d_c = _dev(codes, np.uint8)
    n = d_c.shape[0]
    out = cuda.device_array((n, int(k)), dtype=np.float32)
    if n and k:
        _decode_k[(_blocks(n, 16), _blocks(k, 16)), (16, 16)](
            d_c, int(offset), int(bits), _dev(values, np.float32), out
        )
    return _ret(out, codes)


def lut_scores(q, codes, offset: int, bits: int, values):
    """Σ_j q[i, j] · values[idx[n, j]]: (m, k) float32 queries x packed codes -> (m, n) float32."""
    d_q, d_c = _dev(q, np.float32), _dev(codes, np.uint8)
    m, n = d_q.shape[0], d_c.shape[0]
    out = cuda.device_array((m, n), dtype=np.float32)
    if m and n:
        _lut_scores_k[_blocks(n), TPB](d_q, d_c, int(offset), int(bits), _dev(values, np.float32), out)
    elif m and n == 0:
        pass
    return _ret(out, codes)


_SIGNS = np.array([-1.0, 1.0], dtype=np.float32)


def sign_scores(q, codes, offset: int):
    """Σ_j q[i, j] · (2·bit_j − 1) over 1-bit sign codes (QJL): (m, k) float32 -> (m, n) float32."""
    return lut_scores(q, codes, offset, 1, _SIGNS)


# ------------------------------------------------------------------------------------------------
# blocked top-k
# ------------------------------------------------------------------------------------------------
@cuda.jit(device=True, inline=True)
def _insert(vals, ids, count, k, s, c):
    """Insert (s, c) into the sorted (desc) list; equal scores keep earlier entries first. Returns count."""
    if count == k:
        if not s > vals[k - 1]:
            return count
        p = k - 1
    else:
        p = count
        count += 1
    while p > 0 and vals[p - 1] < s:
        vals[p] = vals[p - 1]
        ids[p] = ids[p - 1]
        p -= 1
    vals[p] = s
    ids[p] = c
    return count


@cuda.jit
def _topk_partial_k(scores, k, block, pvals, pids):
    i, b = cuda.grid(2)
    if i >= scores.shape[0] or b >= pvals.shape[1]:
        return
    vals = cuda.local.array(KMAX, dtype=float32)
    ids = cuda.local.array(KMAX, dtype=int64)
    count = 0
    c0 = b * block
    c1 = min(scores.shape[1], c0 + block)
    for c in range(c0, c1):
        count = _insert(vals, ids, count, k, scores[i, c], c)
    for p in range(k):
        if p < count:
            pvals[i, b, p] = vals[p]
            pids[i, b, p] = ids[p]
        else:
            pvals[i, b, p] = -math.inf
            pids[i, b, p] = -1


@cuda.jit
def _topk_merge_k(pvals, pids, k, top, out_ids):
    i = cuda.grid(1)
    if i >= pvals.shape[0]:
        return
    vals = cuda.local.array(KMAX, dtype=float32)
    ids = cuda.local.array(KMAX, dtype=int64)
    count = 0
    for b in range(pvals.shape[1]):
        for p in range(k):
            c = pids[i, b, p]
            if c >= 0:
                count = _insert(vals, ids, count, k, pvals[i, b, p], c)
    for p in range(out_ids.shape[1]):
        if p < count:
            top[i, p] = vals[p]
            out_ids[i, p] = ids[p]
        else:
            top[i, p] = -math.inf
            out_ids[i, p] = -1


def topk(scores, k: int, *, block: int = TOPK_BLOCK):
    """Best ``k`` per row, best first, ties to the lower column index; ``-1``/``-inf`` padded when k > n.

    Blocked: a partial top-k per (row, ``block`` columns) in one kernel, merged per row in a second one.
    ``k > KMAX`` falls back to the reference on the host. Returns ``(ids (m, k) int64, top (m, k) float32)``.
    """
    k = int(k)
    if k > KMAX:
        host = scores.copy_to_host() if _is_dev(scores) else scores
        return reference.topk(np.asarray(host, np.float32), k)
    d_s = _dev(scores, np.float32)
    m, n = d_s.shape
    kk = min(k, n)
    ids = cuda.device_array((m, k), dtype=np.int64)
    top = cuda.device_array((m, k), dtype=np.float32)
    if m == 0:
        return _ret(ids, scores), _ret(top, scores)
    nb = max(1, (n + block - 1) // block)
    pvals = cuda.device_array((m, nb, max(kk, 1)), dtype=np.float32)
    pids = cuda.device_array((m, nb, max(kk, 1)), dtype=np.int64)
    _topk_partial_k[(_blocks(m, 8), _blocks(nb, 8)), (8, 8)](d_s, kk, int(block), pvals, pids)
    _topk_merge_k[_blocks(m), TPB](pvals, pids, kk, top, ids)
    return _ret(ids, scores), _ret(top, scores)


# ------------------------------------------------------------------------------------------------
# KV-cache decode attention over TurboQuant codes (two kernels)
# ------------------------------------------------------------------------------------------------
@cuda.jit
def _kv_scores_k(qr, kcodes, kfac, kbits, kvalues, scale, s):
    """s[h, g, t] = scale * kfac[h, t] * sum_j qr[h, g, j] * kvalues[idx_k(h, t, j)]."""
    t, h = cuda.grid(2)
    if h >= kcodes.shape[0] or t >= kcodes.shape[1]:
        return
    G, k = qr.shape[1], qr.shape[2]
    acc = cuda.local.array(QCHUNK, dtype=float32)
    f = kfac[h, t] * scale
    for g0 in range(0, G, QCHUNK):
        gn = min(QCHUNK, G - g0)
        for a in range(QCHUNK):
            acc[a] = 0.0
        for j in range(k):
            tbit = j * kbits
            val = 0
            for b in range(kbits):
                p = tbit + b
                val |= ((int64(kcodes[h, t, p >> 3]) >> (p & 7)) & 1) << b
            v = kvalues[val]
            for a in range(gn):
                acc[a] += qr[h, g0 + a, j] * v
        for a in range(gn):
            s[h, g0 + a, t] = acc[a] * f


SPLIT = 256  # tokens per block of the decode-attention value kernel (flash-decoding split)


@cuda.jit
def _kv_split_values_k(s, vcodes, vfac, vbits, vvalues, split, pout, pmax, psum):
    """One block per (h, token split): for every query row g, the split's max, exp(s - max) and sum, and
    pout[h, g, sp, :] = sum_t exp(s_t - max) vfac_t v̂_t (value indices decoded once for all g)."""
    h = cuda.blockIdx.x
    sp = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    G = s.shape[1]
    t0 = sp * split
    t1 = min(s.shape[2], t0 + split)
    red = cuda.shared.array(TPB, dtype=float32)
    for g in range(G):
        mx = -math.inf
        for t in range(t0 + tid, t1, nt):
            mx = max(mx, s[h, g, t])
        red[tid] = mx
        cuda.syncthreads()
        step = nt // 2
        while step > 0:
            if tid < step:
                red[tid] = max(red[tid], red[tid + step])
            cuda.syncthreads()
            step //= 2
        mx = red[0]
        cuda.syncthreads()
        sm = float32(0.0)
        for t in range(t0 + tid, t1, nt):
            e = math.exp(s[h, g, t] - mx) if mx > -math.inf else 0.0
            s[h, g, t] = e
            sm += e
        red[tid] = sm
        cuda.syncthreads()
        step = nt // 2
        while step > 0:
            if tid < step:
                red[tid] += red[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            pmax[h, g, sp] = mx
            psum[h, g, sp] = red[0]
        cuda.syncthreads()
    k = pout.shape[3]
    acc = cuda.local.array(QCHUNK, dtype=float32)
    for j in range(tid, k, nt):
        tbit = j * vbits
        for g0 in range(0, G, QCHUNK):
            gn = min(QCHUNK, G - g0)
            for a in range(QCHUNK):
                acc[a] = 0.0
            for t in range(t0, t1):
                val = 0
                for b in range(vbits):
                    p = tbit + b
                    val |= ((int64(vcodes[h, t, p >> 3]) >> (p & 7)) & 1) << b
                v = vfac[h, t] * vvalues[val]
                for a in range(gn):
                    acc[a] += s[h, g0 + a, t] * v
            for a in range(gn):
                pout[h, g0 + a, sp, j] = acc[a]


@cuda.jit
def _kv_merge_k(pout, pmax, psum, out, rmax, rsum):
    """Merge the splits of one (h, g): global max, rescaled sums, normalised output."""
    h = cuda.blockIdx.x
    g = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    S = pmax.shape[2]
    mx = -math.inf
    for sp in range(S):
        mx = max(mx, pmax[h, g, sp])
    total = float32(0.0)
    for sp in range(S):
        if pmax[h, g, sp] > -math.inf:
            total += psum[h, g, sp] * math.exp(pmax[h, g, sp] - mx)
    for j in range(tid, out.shape[2], cuda.blockDim.x):
        acc = float32(0.0)
        for sp in range(S):
            if pmax[h, g, sp] > -math.inf:
                acc += pout[h, g, sp, j] * math.exp(pmax[h, g, sp] - mx)
        out[h, g, j] = acc / total if total > 0 else 0.0
    if tid == 0:
        rmax[h, g] = mx
        rsum[h, g] = total


def decode_attention(
    qr,
    kcodes,
    kfac,
    kbits: int,
    kvalues,
    vcodes,
    vfac,
    vbits: int,
    vvalues,
    scale: float,
    *,
    split: int = SPLIT,
):
    """Softmax attention of rotated queries over TurboQuant key/value codes (flash-decoding style).

    Kernel 1 scores every (head, token) against the key codes (LUT, query rows in registers); kernel 2,
    one block per (head, split of ``split`` tokens), takes each query row's split max, exp and sum and the
    exp-weighted sum of dequantized values (value indices decoded once for all rows); a small merge kernel
    combines the splits.

    Parameters
    ----------
    qr : (H, G, k) float32
        Queries already in the key codec's rotated coordinates (``q @ Πₖᵀ``); H = batch × kv heads, G =
        query rows per kv head.
    kcodes, vcodes : (H, n, ceil(k*bits/8)) uint8 packed indices; kfac, vfac : (H, n) float32 per-token
        factor (``norm`` code: ||x|| or the ``scaled`` factor); kvalues, vvalues : (2**bits,) float32.
    scale : float softmax scale.

    Returns
    -------
    out : (H, G, k) float32 softmax-weighted values in the value codec's rotated coordinates (multiply by
        Πᵥ to get back); rmax, rsum : (H, G) float32 row max of the scaled scores and sum of exp(s - rmax),
        for merging with other key blocks (e.g. a full-precision tail).
    """
    d_q = _dev(qr, np.float32)
    d_kc, d_vc = _dev(kcodes, np.uint8), _dev(vcodes, np.uint8)
    H, G, k = d_q.shape
    n = d_kc.shape[1]
    s = cuda.device_array((H, G, n), dtype=np.float32)
    out = cuda.device_array((H, G, k), dtype=np.float32)
    rmax = cuda.device_array((H, G), dtype=np.float32)
    rsum = cuda.device_array((H, G), dtype=np.float32)
    if H and G and n:
        S = (n + split - 1) // split
        pout = cuda.device_array((H, G, S, k), dtype=np.float32)
        pmax = cuda.device_array((H, G, S), dtype=np.float32)
        psum = cuda.device_array((H, G, S), dtype=np.float32)
        _kv_scores_k[(_blocks(n, 32), _blocks(H, 4)), (32, 4)](
            d_q, d_kc, _dev(kfac, np.float32), int(kbits), _dev(kvalues, np.float32), np.float32(scale), s
        )
        _kv_split_values_k[(H, S), TPB](
            s,
            d_vc,
            _dev(vfac, np.float32),
            int(vbits),
            _dev(vvalues, np.float32),
            int(split),
            pout,
            pmax,
            psum,
        )
        _kv_merge_k[(H, G), 32](pout, pmax, psum, out, rmax, rsum)
    if _is_dev(qr):
        return out, rmax, rsum
    return out.copy_to_host(), rmax.copy_to_host(), rsum.copy_to_host()


def warmup() -> None:
    """Compile the scoring kernels once (tiny inputs)."""
    codes = np.zeros((2, 3), np.uint8)
    lut_scores(np.zeros((1, 4), np.float32), codes, 0, 4, np.zeros(16, np.float32))
    topk(np.zeros((1, 4), np.float32), 2)


# scaled_indices_segments, encode_turbo_block, hadamard_rotate: the NumPy reference's (host arrays)
KERNELS = reference.KERNELS.replace(
    name="cuda-numba",
    pack_bits=pack_bits,
    unpack_bits=unpack_bits,
    bucketize=bucketize,
    encode_scalar=encode_scalar,
    scaled_indices=scaled_indices,
    encode_scaled=encode_scaled,
    decode_values=decode_values,
    lut_scores=lut_scores,
    sign_scores=sign_scores,
    topk=topk,
    warmup=warmup,
)
