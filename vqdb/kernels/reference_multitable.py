"""Multi-table fast scan of 5–8-bit coordinates: layout, lookup tables and the NumPy oracle.

Pure NumPy; the slow, obvious twins of :mod:`vqdb.kernels.fastscan.multitable`, which must match them
bit for bit (integer sums, uint8 tables, and the float score of every returned vector).

Why a second table shape
------------------------
The nibble fast scan (:mod:`vqdb.kernels.reference_fastscan`) looks up 16-entry tables, so it holds codes
of 1–4 bits per coordinate. A fitted ``turbo-pca-N`` code also has slices of 5–8 bits (the principal
components that carry most of the energy), and their Lloyd–Max levels are not separable into two nibble
tables (``v[16h + l] != A[h] + B[l]``). Each such coordinate gets its own table of ``2**bits`` entries
(FAISS's fast scan keeps 16-entry tables; this is the "one table per code, wider codebook" variant, looked
up with AVX-512 VBMI byte permutes, or 16-entry shuffles per sub-table on AVX2).

Wide layout
-----------
``K`` wide coordinates (all 5–8-bit slices, in order), one byte each. Vectors are grouped in blocks of 32
as in the nibble layout; block ``b`` holds ``K`` steps of 32 bytes, step ``c`` byte ``v`` = the code of
coordinate ``c`` of vector ``32 b + v`` (``wide_blocks`` (nb, K, 32) uint8). Row order copy:
``wide_rows`` (N, K) uint8.

Wide tables
-----------
Coordinate ``c`` of a ``bits``-bit slice has a table of :func:`table_width` bytes (64 up to 6 bits, else
``2**bits``; entries past ``2**bits`` are 0 and never read) at offset ``coff[c]`` of the query's row:
``float[c, e] = float32(q_c · values[e])`` (float64 product).

One threshold for both groups
-----------------------------
The nibble slots (one group, one step ``inv``) and the wide coordinates (in runs of at most
``WIDE_RUN`` coordinates of one bit width) are quantized on steps that are integer multiples of one unit:
run r's step is ``w_r · inv`` (:func:`wide_weights`), so the float sum of a vector is estimated by
``T * inv + off`` from the single integer ``T = A_nibble + Σ_r w_r · A_r`` (A: a group's exact uint8
table sum; the wide kernel adds ``w_r · A_r`` into the nibble sums) within ``err``, the sum of the rows'
worst rounding. Runs follow the principal components' order, so a run's range (and step) falls with it. One factor per vector (all
parts share it) then turns the scan into the nibble scan's single-part case: one bound per block from
its largest T, one per vector from its T (:func:`vqdb.kernels.fastscan.multitable._scan_blocks`).

Exact score
-----------
``est = factor · (Σ_slots float LUT[slot] + Σ_c float[c, code_c])`` (float64, nibble slots in order,
then the wide coordinates in order), then ``alpha · (cterm + est) + beta + qconst`` cast to float32
(:mod:`vqdb.kernels.scorer`).
"""

from __future__ import annotations

import numpy as np

from .._core.packing import packed_size, unpack_bits

WIDE_BITS = (5, 6, 7, 8)
BLOCK = 32
WINDOW = 256  # coordinates accumulated in uint16 before widening (256 * 255 < 65536)
WIDE_RUN = 32  # wide coordinates per run (one weight, one sums pass each)


def table_width(bits: int) -> int:
    """Bytes of one coordinate's table: 64 for 5–6 bits (one 64-byte permute), ``2**bits`` above."""
    return 64 if bits <= 6 else 1 << bits


def table_offsets(part_coords: np.ndarray, part_bits: np.ndarray) -> tuple[np.ndarray, int]:
    """(K,) int64 offset of each wide coordinate's table in a query row, and the row length."""
    widths = np.concatenate(
        [
            np.full(int(part_coords[g + 1] - part_coords[g]), table_width(int(b)))
            for g, b in enumerate(part_bits)
        ]
        or [np.zeros(0)]
    ).astype(np.int64)
    off = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    return np.ascontiguousarray(off[:-1]), int(off[-1])


def wide_codes(codes: np.ndarray, offset: int, bits: int, k: int) -> np.ndarray:
    """(n, code_size) uint8 codes -> (n, k) uint8 indices of a ``bits``-bit slice packed at ``offset``."""
    raw = np.ascontiguousarray(codes[:, offset : offset + packed_size(k, bits)])
    return unpack_bits(raw, bits, k).astype(np.uint8)


def interleave_wide(rows: np.ndarray) -> np.ndarray:
    """(N, K) uint8 row-order codes, N a multiple of 32 -> (N/32, K, 32) blocks (step c = coordinate c)."""
    n, k = rows.shape
    return np.ascontiguousarray(rows.reshape(n // BLOCK, BLOCK, k).transpose(0, 2, 1))


def float_tables(q: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(m, k) float32 rotated queries of one slice -> (m, k, 2**bits) float32 ``float32(q · values)``."""
    return (np.asarray(q, np.float64)[:, :, None] * np.asarray(values, np.float64)[None, None, :]).astype(
        np.float32
    )


MAX_COMBINED = 1 << 24  # largest weighted integer sum: exact in float32


def row_tops(fl: np.ndarray) -> np.ndarray:
    """(m, R, E) float32 tables -> (m, R) float64 range (max - min) of each row (slot or coordinate)."""
    f = fl.astype(np.float64)
    return f.max(axis=2) - f.min(axis=2)


def wide_weights(inv_n, top_w: np.ndarray, rows_n: int, rows_w: np.ndarray):
    """The integer unit and the weight of each wide run, per query.

    inv_n (m,) float32: the nibble group's table step, which becomes the unit (its tables stay as built),
    or None without nibble parts; top_w (m, R) float64: each wide run's largest table range; rows_w (R,):
    its coordinates. Run r's tables are quantized with step ``w_r · inv >= top_r / 255`` (so entries stay
    <= 255), ``w_r = ceil(top_r / 255 / inv) >= 1``, and a vector's float sum is estimated from
    ``T = A_nibble + Σ_r w_r · A_r``. Where T's largest value ``255 (rows_n + Σ_r w_r rows_r)`` would pass
    2**24 (exact in float32), the unit doubles and the nibble tables must be quantized again with it
    (``requant``).

    Returns inv (m,) float32, w (m, R) int64, requant (m,) bool.
    """
    nat = np.asarray(top_w, np.float64) / 255.0
    rows_w = np.asarray(rows_w, np.int64)
    if inv_n is None:
        first = nat.max(axis=1, initial=0.0)
        inv = np.where(first > 0, first, 1.0).astype(np.float32)
    else:
        inv = np.asarray(inv_n, np.float32).copy()
    requant = np.zeros(nat.shape[0], dtype=bool)
    while True:
        w = np.maximum(1, np.ceil(nat / inv.astype(np.float64)[:, None])).astype(np.int64)
        over = 255 * (rows_n + (w * rows_w[None, :]).sum(axis=1)) > MAX_COMBINED
        if not over.any():
            return inv, w, requant
        inv = np.where(over, inv * np.float32(2.0), inv).astype(np.float32)
        requant |= over & (rows_n > 0)


def quantize_rows(fl: np.ndarray, a: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Quantize (m, R, E) float32 tables with the scale ``a`` (m,) float64: ``u8 = rint((fl - min) * a)``.

    Adds to ``acc`` (m, 4) float64, row by row in order: ``[Σ min, Σ max |rounding|, Σ mean rounding²,
    Σ max |fl|]`` (what :func:`finish_bound` turns into the offset and the error bound). Returns u8.
    """
    f = fl.astype(np.float64)
    u8 = np.empty(fl.shape, dtype=np.uint8)
    for r in range(f.shape[1]):
        x = f[:, r]
        mn = x.min(axis=1)
        d = x - mn[:, None]
        u = np.clip(np.rint(d * a[:, None]), 0, 255)
        u8[:, r] = u
        res = d - u / a[:, None]
        acc[:, 0] += mn
        acc[:, 1] += np.abs(res).max(axis=1)
        sq = np.zeros(f.shape[0])
        for e in range(f.shape[2]):
            sq += res[:, e] * res[:, e]
        acc[:, 2] += sq / f.shape[2]
        acc[:, 3] += np.abs(x).max(axis=1)
    return u8


def row_bounds(acc: np.ndarray, sigmas: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """(offset (m,), error bound (m,)) float64 of a group from :func:`quantize_rows`' sums: the bound is
    Σ max |rounding| + 1e-5 Σ max |fl| (rigorous, with float slack), or ``sigmas`` standard deviations of
    the rounding where that is smaller (the statistical margin of re-ranked searches)."""
    bound = acc[:, 1] + 1e-5 * (acc[:, 3] + 1e-30)
    if sigmas > 0:
        bound = np.minimum(bound, sigmas * np.sqrt(acc[:, 2]))
    return acc[:, 0].copy(), bound


def accumulate_ref(wide_blocks: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """Exact integer sums of the wide group: (nb, K, 32) blocks, (m, K, W) uint8 tables (W > every code)
    -> (m, N) uint32 with ``out[i, v] = Σ_c tables[i, c, code[v, c]]``."""
    nb, K, _ = wide_blocks.shape
    rows = wide_blocks.transpose(0, 2, 1).reshape(nb * BLOCK, K).astype(np.int64)
    m = tables.shape[0]
    cols = np.arange(K)
    out = np.zeros((m, rows.shape[0]), dtype=np.uint32)
    for i in range(m):
        out[i] = tables[i].astype(np.int64)[cols[None, :], rows].sum(axis=1)
    return out


def exact_scores_ref(
    *,
    slots: np.ndarray,
    fluts: np.ndarray,
    wide_rows: np.ndarray,
    wide_fluts: np.ndarray,
    factor: np.ndarray,
    beta: np.ndarray,
    alpha: float,
    qconst: np.ndarray,
    cterm: np.ndarray,
    block_list: np.ndarray,
) -> np.ndarray:
    """(m, N) float32 exact scores of every position, in the kernel's float64 order (module docstring).

    slots (N, 2S) nibble slots, fluts (m, 2S, 16) float32; wide_rows (N, K) uint8, wide_fluts (m, K, W)
    float32; factor (N,) float32 (the one per-vector factor of every part); beta (N,), qconst (m,), cterm
    (m, L+1) float32; block_list (N/32,) int32.
    """
    n = wide_rows.shape[0]
    m = wide_fluts.shape[0]
    slots = slots.astype(np.int64)
    wrows = wide_rows.astype(np.int64)
    lists = np.repeat(np.asarray(block_list, np.int64), BLOCK)[:n]
    out = np.empty((m, n), dtype=np.float32)
    for i in range(m):
        acc = np.zeros(n)
        for s in range(slots.shape[1]):
            acc += fluts[i, s].astype(np.float64)[slots[:, s]]
        for c in range(wrows.shape[1]):
            acc += wide_fluts[i, c].astype(np.float64)[wrows[:, c]]
        est = factor.astype(np.float64) * acc
        s = np.float64(np.float32(alpha)) * (cterm[i, lists + 1].astype(np.float64) + est)
        out[i] = (s + beta.astype(np.float64) + np.float64(qconst[i])).astype(np.float32)
    return out


def topk_ref(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, N) float32 -> best ``k`` (scores (m, k) -inf padded, positions (m, k) -1 padded): score
    descending, then position ascending; ``-inf`` never returned."""
    m, n = scores.shape
    out_s = np.full((m, k), -np.inf, dtype=np.float32)
    out_p = np.full((m, k), -1, dtype=np.int64)
    for i in range(m):
        order = np.lexsort((np.arange(n), -scores[i].astype(np.float64)))
        order = order[np.isfinite(scores[i][order])][:k]
        out_s[i, : order.size] = scores[i, order]
        out_p[i, : order.size] = order
    return out_s, out_p
