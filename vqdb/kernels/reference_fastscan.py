"""Fast-scan layout, lookup-table quantization, and the NumPy oracle of the fast-scan kernels.

Pure NumPy. The layout and LUT builders here are used by both backends (they run once per segment
or once per query batch, never per vector); the ``*_ref`` functions are the slow, obvious twins of
the compiled kernels in :mod:`vqdb.kernels.fastscan`, which must match them bit for bit (integer
accumulators, candidate sets) or to float tolerance (float scores).

Nibble slots
------------
A code part of ``k`` coordinates at ``bits`` bits becomes a row of 4-bit *slots*:

* ``bits`` in {1, 2, 4}: the slots are the nibbles of the packed LSB-first bitstream
  (:mod:`vqdb._core.packing`): slot ``2p`` is the low nibble of byte ``p``, ``2p + 1`` the high
  nibble; one slot holds ``cps = 4 // bits`` consecutive coordinates (index of coordinate
  ``s*cps + t`` = bits ``[t*bits, (t+1)*bits)`` of the slot);
* ``bits == 3``: one coordinate per slot (values 0..7).

Each part's slot count is padded to an even number (padding slots are 0 and their LUT rows are 0).

Block layout (FAISS FastScan style)
-----------------------------------
Vectors are grouped in blocks of 32. A *step* covers two slots ``2t, 2t+1``; per block and step there
are 32 bytes::

    byte i      (i < 16): slot 2t   of vector i  | slot 2t   of vector 16+i << 4
    byte 16 + i         : slot 2t+1 of vector i  | slot 2t+1 of vector 16+i << 4

``blocks`` has shape (n_blocks, n_steps, 32) uint8. The quantized LUT of a query has shape
(n_steps, 32): bytes 0..15 are slot ``2t``'s 16 entries, bytes 16..31 slot ``2t+1``'s, so one
in-register byte shuffle looks up 32 nibbles at once (AVX2 ``vpshufb``, NEON ``tbl``).

LUT quantization
----------------
Per query and part: ``lut_u8[s, c] = round((lut[s, c] - min_c lut[s, :]) * a)`` with one scale
``a = 255 / max_s range_s``. The integer sum ``A = Σ_s lut_u8[s, c_s]`` estimates the float sum by
``A / a + Σ_s min_s`` within a rigorous error bound ``Σ_s max_c |err[s, c]|`` (``err`` the rounding
error in float units) — the exactness margin of the candidate selection.
"""

from __future__ import annotations

import numpy as np

from .._core.packing import packed_size, unpack_bits

BLOCK = 32
WINDOW = 256  # steps accumulated in uint16 before widening (256 * 255 = 65280 < 65536)
FAST_BITS = (1, 2, 3, 4)


# ------------------------------------------------------------------------------------------------
# slots and layout
# ------------------------------------------------------------------------------------------------
def slots_per_part(k: int, bits: int) -> int:
    """Number of 4-bit slots (padded to even) of a part of ``k`` coordinates at ``bits`` bits."""
    n = 2 * packed_size(k, bits) if bits != 3 else int(k)
    return n + (n & 1)


def coords_per_slot(bits: int) -> int:
    """Coordinates held by one slot: 4 // bits for bits in {1, 2, 4}, 1 for 3 bits."""
    return 1 if bits == 3 else 4 // bits


def nibble_slots(codes: np.ndarray, offset: int, bits: int, k: int) -> np.ndarray:
    """(n, code_size) uint8 codes -> (n, slots_per_part(k, bits)) uint8 slot values (0..15)."""
    n = codes.shape[0]
    ns = slots_per_part(k, bits)
    out = np.zeros((n, ns), dtype=np.uint8)
    if bits == 3:
        out[:, :k] = unpack_bits(np.ascontiguousarray(codes[:, offset : offset + packed_size(k, 3)]), 3, k)
        return out
    raw = codes[:, offset : offset + packed_size(k, bits)]
    out[:, 0 : 2 * raw.shape[1] : 2] = raw & 15
    out[:, 1 : 2 * raw.shape[1] : 2] = raw >> 4
    return out


def interleave(slots: np.ndarray) -> np.ndarray:
    """(n_pad, n_slots) uint8 slots, n_pad a multiple of 32, n_slots even -> (n_pad/32, n_slots/2, 32) blocks."""
    n, ns = slots.shape
    nb = n // BLOCK
    s = slots.reshape(nb, BLOCK, ns // 2, 2)  # (block, vector, step, slot-of-pair)
    lo = s[:, :16]  # vectors 0..15  -> low nibbles
    hi = s[:, 16:]  # vectors 16..31 -> high nibbles
    byte = lo | (hi << 4)  # (block, i, step, pair)
    # -> (block, step, pair, i) -> bytes pair*16 + i
    return np.ascontiguousarray(byte.transpose(0, 2, 3, 1).reshape(nb, ns // 2, BLOCK))


def deinterleave(blocks: np.ndarray) -> np.ndarray:
    """Inverse of :func:`interleave`: (n_blocks, n_steps, 32) -> (n_blocks * 32, 2 * n_steps) slots."""
    nb, ns, _ = blocks.shape
    b = blocks.reshape(nb, ns, 2, 16).transpose(0, 3, 1, 2)  # (block, i, step, pair)
    lo = b & 15
    hi = b >> 4
    return np.ascontiguousarray(np.concatenate([lo, hi], axis=1).reshape(nb * BLOCK, 2 * ns))


# ------------------------------------------------------------------------------------------------
# lookup tables
# ------------------------------------------------------------------------------------------------
def float_luts(q: np.ndarray, bits: int, values: np.ndarray, n_slots: int) -> np.ndarray:
    """(m, k) float32 rotated queries -> (m, n_slots, 16) float32 slot tables.

    ``lut[i, s, c] = Σ_t q[i, s*cps + t] · values[(c >> t*bits) & mask]`` (coordinates past ``k`` count
    as 0; for 3 bits entries c >= 8 never occur and are set to the slot minimum).
    """
    m, k = q.shape
    cps = coords_per_slot(bits)
    mask = (1 << bits) - 1
    qp = np.zeros((m, n_slots * cps), dtype=np.float64)
    qp[:, :k] = q
    qp = qp.reshape(m, n_slots, cps)
    c = np.arange(16)
    vals = np.asarray(values, dtype=np.float64)
    lut = np.zeros((m, n_slots, 16), dtype=np.float64)
    for t in range(cps):
        idx = (c >> (t * bits)) & mask
        if bits == 3:
            idx = np.minimum(idx, 7)
        lut += qp[:, :, t : t + 1] * vals[idx][None, None, :]
    if bits == 3:
        lut[:, :, 8:] = lut[:, :, :8].min(axis=2, keepdims=True)
    return lut.astype(np.float32)


def quantize_luts(lut: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quantize (m, S, 16) float32 tables of one part to uint8 with one scale per query.

    Returns
    -------
    lut_u8 : (m, S, 16) uint8
    inv_scale : (m,) float32, ``1 / a``
    offset : (m,) float32, ``Σ_s min_s`` (so the float sum ≈ ``A * inv_scale + offset``)
    err_max : (m,) float32, rigorous bound ``Σ_s max_c |err[s, c]|`` (+ float slack)
    err_rms : (m,) float32, ``sqrt(Σ_s mean_c err[s, c]^2)`` (one standard deviation for random codes)
    """
    lut64 = lut.astype(np.float64)
    mn = lut64.min(axis=2, keepdims=True)
    span = (lut64 - mn).max(axis=2)  # (m, S)
    top = span.max(axis=1) if span.shape[1] else np.zeros(lut.shape[0])
    a = np.where(top > 0, 255.0 / np.where(top > 0, top, 1.0), 1.0)  # (m,)
    u8 = np.clip(np.rint((lut64 - mn) * a[:, None, None]), 0, 255)
    err = (lut64 - mn) - u8 / a[:, None, None]
    err_max = np.abs(err).max(axis=2).sum(axis=1)
    err_rms = np.sqrt((err**2).mean(axis=2).sum(axis=1))
    # float32 evaluation of A * inv + offset and float32 table values: a small relative slack
    slack = 1e-5 * (np.abs(lut64).max(axis=2).sum(axis=1) + 1e-30)
    return (
        u8.astype(np.uint8),
        (1.0 / a).astype(np.float32),
        mn[:, :, 0].sum(axis=1).astype(np.float32),
        (err_max + slack).astype(np.float32),
        err_rms.astype(np.float32),
    )


def pack_luts(lut_u8: np.ndarray) -> np.ndarray:
    """(m, S, 16) uint8 (S even) -> (m, S/2, 32) uint8: step t = [slot 2t entries, slot 2t+1 entries]."""
    m, s, _ = lut_u8.shape
    return np.ascontiguousarray(lut_u8.reshape(m, s // 2, 32))


# ------------------------------------------------------------------------------------------------
# oracles of the kernels
# ------------------------------------------------------------------------------------------------
def accumulate_ref(blocks: np.ndarray, luts: np.ndarray, part_steps: np.ndarray) -> np.ndarray:
    """Exact integer sums: (n_blocks, S, 32) blocks, (m, S, 32) packed uint8 LUTs, (P+1,) step bounds
    -> (m, P, n_blocks * 32) uint32 with ``out[i, p, v] = Σ_{s in part p} lut_u8[i, s, slot[v, s]]``."""
    slots = deinterleave(blocks).astype(np.int64)  # (N, 2S)
    m = luts.shape[0]
    lut = luts.reshape(m, -1, 16).astype(np.int64)  # (m, 2S, 16)
    P = len(part_steps) - 1
    out = np.zeros((m, P, slots.shape[0]), dtype=np.uint32)
    cols = np.arange(slots.shape[1])
    for i in range(m):
        picked = lut[i][cols[None, :], slots]  # (N, 2S)
        for p in range(P):
            out[i, p] = picked[:, 2 * part_steps[p] : 2 * part_steps[p + 1]].sum(axis=1)
    return out


def float_scores_ref(
    blocks: np.ndarray, fluts: np.ndarray, part_steps: np.ndarray, factors: np.ndarray
) -> np.ndarray:
    """Float LUT path: (m, N) float32 ``Σ_p factors[p, v] · Σ_{s in p} flut[i, s, slot[v, s]]`` (float64 sums)."""
    slots = deinterleave(blocks).astype(np.int64)
    m = fluts.shape[0]
    cols = np.arange(slots.shape[1])
    out = np.zeros((m, slots.shape[0]), dtype=np.float64)
    for i in range(m):
        picked = fluts[i].astype(np.float64)[cols[None, :], slots]
        for p in range(len(part_steps) - 1):
            out[i] += factors[p].astype(np.float64) * picked[
                :, 2 * part_steps[p] : 2 * part_steps[p + 1]
            ].sum(axis=1)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# 1-bit codes: bit-plane queries and popcount
# ------------------------------------------------------------------------------------------------
def sign_words(codes: np.ndarray, offset: int, k: int) -> np.ndarray:
    """(n, code_size) uint8 1-bit codes -> (n, ceil(k/64)) uint64 (bit j of word w = coordinate 64w + j)."""
    nb = packed_size(k, 1)
    n = codes.shape[0]
    w = (nb + 7) // 8
    buf = np.zeros((n, 8 * w), dtype=np.uint8)
    buf[:, :nb] = codes[:, offset : offset + nb]
    return np.ascontiguousarray(buf).view("<u8").reshape(n, w).astype(np.uint64)


def bitplane_query(
    q: np.ndarray, planes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quantize (m, k) float32 queries to ``planes``-bit unsigned integers u: ``q ≈ lo + delta * u``.

    Returns
    -------
    words : (m, planes, ceil(k/64)) uint64, bit-plane b of u (coordinates past k are 0)
    lo, delta : (m,) float64
    err_lo, err_hi : (m,) float64 bounds of ``Σ_j e_j s_j`` over all s in {0,1}^k (``e = q - q̂``)
    """
    q64 = np.asarray(q, dtype=np.float64)
    m, k = q64.shape
    lo = q64.min(axis=1) if k else np.zeros(m)
    hi = q64.max(axis=1) if k else np.zeros(m)
    levels = (1 << planes) - 1
    delta = np.where(hi > lo, (hi - lo) / levels, 1.0)
    u = np.clip(np.rint((q64 - lo[:, None]) / delta[:, None]), 0, levels).astype(np.int64)
    e = q64 - (lo[:, None] + delta[:, None] * u)
    w = (k + 63) // 64
    bits = np.zeros((m, planes, 64 * w), dtype=np.uint8)
    for b in range(planes):
        bits[:, b, :k] = (u >> b) & 1
    words = np.packbits(bits, axis=2, bitorder="little").reshape(m, planes, w, 8)
    words = np.ascontiguousarray(words).view("<u8").reshape(m, planes, w).astype(np.uint64)
    slack = 1e-9 * np.abs(q64).sum(axis=1)
    return words, lo, delta, np.minimum(e, 0).sum(axis=1) - slack, np.maximum(e, 0).sum(axis=1) + slack


def popcount_ref(words: np.ndarray, qwords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, W) code words, (m, B, W) query planes -> (acc (m, n) int64 = Σ_b 2^b popcount(plane_b & x),
    ones (n,) int64 = popcount(x))."""

    def pc(a):
        a = np.ascontiguousarray(a)
        return (
            np.unpackbits(a.view(np.uint8), axis=-1)
            .reshape(a.shape[:-1] + (-1,))
            .sum(axis=-1, dtype=np.int64)
        )

    ones = pc(words)
    m, B, _ = qwords.shape
    acc = np.zeros((m, words.shape[0]), dtype=np.int64)
    for i in range(m):
        for b in range(B):
            acc[i] += pc(words & qwords[i, b][None, :]) << b
    return acc, ones


# ------------------------------------------------------------------------------------------------
# candidate selection (the exactness argument, spelled out)
# ------------------------------------------------------------------------------------------------
def select_ref(ub: np.ndarray, lb: np.ndarray, k: int) -> np.ndarray:
    """Candidates of one query: positions whose upper bound reaches the k-th largest lower bound.

    Every vector outside the set has ``true <= ub < L <= true score of k vectors``, so the exact top-k
    lies inside the set. Rows with ``ub == -inf`` (not allowed, padding) are never candidates.
    """
    finite = np.isfinite(ub)
    lbf = np.sort(lb[finite])[::-1]
    thr = lbf[k - 1] if lbf.size >= k else -np.inf
    return np.flatnonzero(finite & (ub >= thr))
