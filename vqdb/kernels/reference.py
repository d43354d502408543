"""NumPy reference of every kernel op: the oracle the fast backends must match (codes bit for bit,
scores to float tolerance). Slow is acceptable; obvious is required. No validation: callers
(the quantizers) pass checked, C-contiguous arrays.

Conventions shared by every backend
-----------------------------------
* ``codes`` is the full (n, code_size) uint8 code matrix; ``offset`` is the byte where the packed
  bitstream of the op's part starts (layout: :mod:`vqdb.quantizers._packing`).
* Quantization to indices compares ``float64(x)`` with float64 ``boundaries``: index = number of
  boundaries ``<= x`` (``np.searchsorted(..., side="right")``); a value on a boundary goes up.
* ``values`` are the float32 reconstruction levels of a codebook, indexed by the b-bit code.
* Scores are float32 (m, n); accumulation order may differ between backends.
"""

from __future__ import annotations

import numpy as np

from ..quantizers._packing import pack_bits as _pack, packed_size, unpack_bits as _unpack

name = "reference"


def pack_bits(idx: np.ndarray, bits: int) -> np.ndarray:
    """(n, k) uint8 indices -> (n, ceil(k*bits/8)) uint8 LSB-first bitstream."""
    return _pack(idx, bits)


def unpack_bits(packed: np.ndarray, bits: int, k: int) -> np.ndarray:
    """(n, ceil(k*bits/8)) uint8 -> (n, k) uint8 indices."""
    return _unpack(packed, bits, k)


def bucketize(x: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(n, k) float32, (L-1,) float64 -> (n, k) uint8 cell indices (count of boundaries <= x)."""
    return np.searchsorted(boundaries, x.astype(np.float64), side="right").astype(np.uint8)


def encode_scalar(x: np.ndarray, boundaries: np.ndarray, bits: int) -> np.ndarray:
    """Fused bucketize + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    return _pack(bucketize(x, boundaries), bits)


def scaled_indices(u: np.ndarray, boundaries: np.ndarray, centroids: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Per row, the indices of ``u * t`` for the ``t`` in ``scales`` whose reconstruction has the
    highest cosine with ``u`` (first such ``t`` on ties).

    u : (n, k) float32; boundaries (L-1,) float64; centroids (L,) float64; scales (T,) float64.
    Returns (n, k) uint8. Cosine = <u, c[idx]> / ||c[idx]||, computed in float64; a candidate
    replaces the incumbent only if strictly better.
    """
    u64 = u.astype(np.float64)
    n, k = u.shape
    best = np.zeros((n, k), dtype=np.uint8)
    best_cos = np.full(n, -np.inf)
    for t in scales:
        idx = np.searchsorted(boundaries, u64 * t, side="right")
        vals = centroids[idx]
        dot = np.einsum("ij,ij->i", u64, vals)
        nrm = np.sqrt(np.einsum("ij,ij->i", vals, vals))
        cos = np.where(nrm > 0, dot / np.where(nrm > 0, nrm, 1.0), -np.inf)
        better = cos > best_cos
        best[better] = idx[better]
        best_cos[better] = cos[better]
    return best


def scaled_indices_segments(u: np.ndarray, segment: np.ndarray, boundaries: np.ndarray, centroids: np.ndarray,
                            scales: np.ndarray) -> np.ndarray:
    """:func:`scaled_indices` with a codebook per coordinate segment.

    u : (n, k) float32; segment : (k,) int64 codebook id of each coordinate; boundaries : (S, L-1)
    float64, rows padded with +inf; centroids : (S, L) float64 (padding unused); scales (T,) float64.
    Returns (n, k) uint8: per row, the indices of ``u * t`` (each coordinate with its own codebook) for
    the ``t`` whose reconstruction has the highest cosine with ``u`` (first such ``t`` on ties).
    """
    u64 = u.astype(np.float64)
    n, k = u.shape
    best = np.zeros((n, k), dtype=np.uint8)
    best_cos = np.full(n, -np.inf)
    segs = [np.flatnonzero(segment == s_id) for s_id in range(boundaries.shape[0])]
    for t in scales:
        idx = np.zeros((n, k), dtype=np.int64)
        vals = np.zeros((n, k))
        for s_id, cols in enumerate(segs):
            if cols.size:
                idx[:, cols] = np.searchsorted(boundaries[s_id], u64[:, cols] * t, side="right")
                vals[:, cols] = centroids[s_id][idx[:, cols]]
        dot = np.einsum("ij,ij->i", u64, vals)
        nrm = np.sqrt(np.einsum("ij,ij->i", vals, vals))
        cos = np.where(nrm > 0, dot / np.where(nrm > 0, nrm, 1.0), -np.inf)
        better = cos > best_cos
        best[better] = idx[better]
        best_cos[better] = cos[better]
    return best


def encode_scaled(u: np.ndarray, boundaries: np.ndarray, centroids: np.ndarray, scales: np.ndarray, bits: int) -> np.ndarray:
    """Fused :func:`scaled_indices` + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    return _pack(scaled_indices(u, boundaries, centroids, scales), bits)


def decode_values(codes: np.ndarray, offset: int, bits: int, k: int, values: np.ndarray) -> np.ndarray:
    """Gather reconstruction levels: (n, code_size) uint8 -> (n, k) float32 ``values[idx]``."""
    nb = packed_size(k, bits)
    idx = _unpack(codes[:, offset : offset + nb], bits, k)
    return values.astype(np.float32)[idx]


def lut_scores(q: np.ndarray, codes: np.ndarray, offset: int, bits: int, values: np.ndarray) -> np.ndarray:
    """Σ_j q[i, j] · values[idx[n, j]]: (m, k) float32 queries x packed codes -> (m, n) float32."""
    k = q.shape[1]
    tile = decode_values(codes, offset, bits, k, values)
    return np.ascontiguousarray(q @ tile.T, dtype=np.float32)


_SIGN_VALUES = np.array([-1.0, 1.0], dtype=np.float32)


def sign_scores(q: np.ndarray, codes: np.ndarray, offset: int) -> np.ndarray:
    """Σ_j q[i, j] · (2·bit_j − 1) over 1-bit sign codes (QJL): (m, k) float32 -> (m, n) float32."""
    return lut_scores(q, codes, offset, 1, _SIGN_VALUES)


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` per row of ``scores``, best first, ties broken by lower column index.

    Parameters
    ----------
    scores : ndarray of shape (m, n), float32
        Higher is better; ``-inf`` marks entries that must never win over finite ones.
    k : int >= 1

    Returns
    -------
    ids : ndarray of shape (m, k), int64
        Column indices; ``-1`` where ``k > n``.
    top : ndarray of shape (m, k), float32
        Their scores; ``-inf`` where ``k > n``.
    """
    scores = np.asarray(scores, dtype=np.float32)
    m, n = scores.shape
    kk = min(k, n)
    ids = np.full((m, k), -1, dtype=np.int64)
    top = np.full((m, k), -np.inf, dtype=np.float32)
    if kk == 0 or m == 0:
        return ids, top
    if kk < n:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    sel = np.take_along_axis(part, order, axis=1)
    sv = np.take_along_axis(vals, order, axis=1)
    if kk < n:
        # ties at the k-th value may have been cut arbitrarily by argpartition: redo those rows exactly
        kth = sv[:, -1]
        ties = (scores >= kth[:, None]).sum(axis=1) > kk
        for r in np.flatnonzero(ties):
            cand = np.flatnonzero(scores[r] >= kth[r])
            o = np.lexsort((cand, -scores[r, cand]))[:kk]
            sel[r] = cand[o]
            sv[r] = scores[r, cand[o]]
    ids[:, :kk] = sel
    top[:, :kk] = sv
    return ids, top
