"""NumPy reference of every kernel op: the oracle the fast backends must match (codes bit for bit,
scores to float tolerance). Slow is acceptable; obvious is required. No validation: callers
(the quantizers) pass checked, C-contiguous arrays.

Conventions shared by every backend
-----------------------------------
* ``codes`` is the full (n, code_size) uint8 code matrix; ``offset`` is the byte where the packed
  bitstream of the op's part starts (layout: :mod:`vqdb._core.packing`).
* Quantization to indices compares ``float64(x)`` with float64 ``boundaries``: index = number of
  boundaries ``<= x`` (``np.searchsorted(..., side="right")``); a value on a boundary goes up.
* ``values`` are the float32 reconstruction levels of a codebook, indexed by the b-bit code.
* Scores are float32 (m, n); accumulation order may differ between backends.
"""

from __future__ import annotations

import numpy as np

from .._core.hadamard import fht_kac as _fht_kac
from .._core.hadamard import fwht as _fwht
from .._core.packing import pack_bits as _pack
from .._core.packing import packed_size
from .._core.packing import unpack_bits as _unpack
from .registry import Kernels

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


def scaled_indices(
    u: np.ndarray, boundaries: np.ndarray, centroids: np.ndarray, scales: np.ndarray
) -> np.ndarray:
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


def scaled_indices_segments(
    u: np.ndarray, segment: np.ndarray, boundaries: np.ndarray, centroids: np.ndarray, scales: np.ndarray
) -> np.ndarray:
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


def encode_scaled(
    u: np.ndarray, boundaries: np.ndarray, centroids: np.ndarray, scales: np.ndarray, bits: int
) -> np.ndarray:
    """Fused :func:`scaled_indices` + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    return _pack(scaled_indices(u, boundaries, centroids, scales), bits)


def decode_values(codes: np.ndarray, offset: int, bits: int, k: int, values: np.ndarray) -> np.ndarray:
    """Gather reconstruction levels: (n, code_size) uint8 -> (n, k) float32 ``values[idx]``."""
    nb = packed_size(k, bits)
    idx = _unpack(codes[:, offset : offset + nb], bits, k)
    return values.astype(np.float32)[idx]


# Below this many queries the sums run in numba's order (its one-query scorer), so both backends give the same
# float32 scores bit for bit; from it on both decode a tile and take one matrix product.
FEW_QUERIES = 16
ENCODE_ROWS = 2048  # rows per pass of encode_turbo_fht


def lut_scores(q: np.ndarray, codes: np.ndarray, offset: int, bits: int, values: np.ndarray) -> np.ndarray:
    """Σ_j q[i, j] · values[idx[n, j]]: (m, k) float32 queries x packed codes -> (m, n) float32.

    Fewer than ``FEW_QUERIES`` queries: float32 sums in order, per byte of the code when ``bits`` divides 8
    (a table of each byte's partial sums, then the bytes in order), else per coordinate in order."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    m, k = q.shape
    if m >= FEW_QUERIES or m == 0 or codes.shape[0] == 0:
        return np.ascontiguousarray(q @ decode_values(codes, offset, bits, k, values).T, dtype=np.float32)
    out = np.empty((m, codes.shape[0]), dtype=np.float32)
    if 8 % bits:
        tile = decode_values(codes, offset, bits, k, values)
        for i in range(m):
            out[i] = np.cumsum(tile * q[i], axis=1, dtype=np.float32)[:, -1]
        return out
    per, nb = 8 // bits, packed_size(k, bits)
    qp = np.zeros((m, nb * per), dtype=np.float32)
    qp[:, :k] = q
    levels = np.asarray(values, dtype=np.float32)[
        (np.arange(256)[:, None] >> (np.arange(per) * bits)) & ((1 << bits) - 1)
    ]
    rows = np.arange(nb)[None, :]
    byte = np.ascontiguousarray(codes[:, offset : offset + nb])
    for i in range(m):
        table = np.zeros((nb, 256), dtype=np.float32)  # table[p, v]: Σ_c q[p*per + c] * level_c(v), in order
        for c in range(per):
            table += qp[i, c::per][:, None] * levels[:, c][None, :]
        out[i] = np.cumsum(table[rows, byte], axis=1, dtype=np.float32)[:, -1]
    return out


_SIGN_VALUES = np.array([-1.0, 1.0], dtype=np.float32)


def sign_scores(q: np.ndarray, codes: np.ndarray, offset: int) -> np.ndarray:
    """Σ_j q[i, j] · (2·bit_j − 1) over 1-bit sign codes (QJL): (m, k) float32 -> (m, n) float32."""
    return lut_scores(q, codes, offset, 1, _SIGN_VALUES)


def encode_turbo_block(
    y: np.ndarray,
    r: np.ndarray,
    table: np.ndarray,
    boundaries: np.ndarray,
    values: np.ndarray,
    scaled: bool,
    full: bool,
    codes: np.ndarray,
    chat: np.ndarray | None = None,
    centre: np.ndarray | None = None,
    rotated_centre: np.ndarray | None = None,
    centre_terms: np.ndarray | None = None,
) -> np.ndarray:
    """Fused TurboQuant block encode of rotated rows: norm, unit scaling, bucketize, pack, side factor.

    Parameters
    ----------
    y : ndarray of shape (n, k), float32
        Rotated residuals ``Π r`` (only the first ``k`` rotated coordinates; ``k`` >= every slice stop).
    r : ndarray of shape (n, d), float32
        The residuals themselves (their norm is taken here, before the rotation).
    table : ndarray of shape (S, 4), int64
        One row per slice, in increasing ``start``: ``[start, stop, bits, byte_offset]``.
    boundaries : ndarray of shape (S, W), float64
        Codebook boundaries of each slice (its first ``2**bits - 1`` entries are used).
    values : ndarray of shape (S, V), float32
        Reconstruction levels of each slice (its first ``2**bits`` entries are used).
    scaled : bool
        ``True``: the factor is ``||r|| · coded / <u, ĉ>`` (0 if either is not positive); ``False``:
        ``||r||``.
    full : bool
        The slices cover all rotated coordinates: ``coded = 1`` instead of ``Σ_coded u_j²``.
    codes : ndarray of shape (n, code_size), uint8
        Written in place: each slice's packed indices at its byte offset (nothing else is touched).
    chat : ndarray of shape (n, k), float32, optional
        If given, the reconstruction levels ``values[idx]`` are written to its slice columns (the
        ``prod`` variant rebuilds its residual from them); other columns are left as they are.
    centre, rotated_centre, centre_terms : optional, all or none
        (d,) float32 encode centre c of the block, (k,) float32 its rotation Πc, and (n, 2) float64 written
        with ``[<c, r>, <Πc, ĉ>]`` per row (the centred-query term β = <c, r> - factor · <Πc, ĉ>);
        plain left-to-right float64 sums, ``<Πc, ĉ>`` over the slices in order like ``<u, ĉ>``.

    Returns
    -------
    factor : ndarray of shape (n,), float32
        The block's side float.

    Notes
    -----
    Every sum is a plain left-to-right float64 sum (``cumsum``), so compiled backends can reproduce it
    bit for bit: ``||r|| = sqrt(Σ_j r_j²)``; ``u = float32(y / ||r||)`` (``||r|| = 0`` -> divide by 1);
    ``idx = #{boundaries <= u}`` in float64; ``<u, ĉ> = Σ`` over the slices in order of
    ``u_j · values[idx_j]``; ``coded = Σ u_j²`` over the same coordinates.
    """
    n = y.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.float32)

    def seqsum(a):
        return np.cumsum(a, axis=1)[:, -1] if a.shape[1] else np.zeros(a.shape[0])

    r64 = r.astype(np.float64)
    nrm = np.sqrt(seqsum(r64 * r64))
    safe = np.where(nrm > 0, nrm, 1.0)
    u64 = (y.astype(np.float64) / safe[:, None]).astype(np.float32).astype(np.float64)
    dot_terms, coded_terms, pc_terms = [], [], []
    for (start, stop, bits, offset), bnd, val in zip(table.tolist(), boundaries, values):
        us = u64[:, start:stop]
        idx = np.searchsorted(bnd[: (1 << bits) - 1], us, side="right")
        codes[:, offset : offset + packed_size(stop - start, bits)] = _pack(idx.astype(np.uint8), bits)
        if chat is not None:
            chat[:, start:stop] = val[idx]
        dot_terms.append(us * val[idx].astype(np.float64))
        coded_terms.append(us * us)
        if centre_terms is not None:
            pc_terms.append(
                rotated_centre[start:stop].astype(np.float64)[None, :] * val[idx].astype(np.float64)
            )
    if centre_terms is not None:
        centre_terms[:, 0] = seqsum(r64 * centre.astype(np.float64)[None, :])
        centre_terms[:, 1] = seqsum(np.concatenate(pc_terms, axis=1)) if pc_terms else 0.0
    dot = seqsum(np.concatenate(dot_terms, axis=1)) if dot_terms else np.zeros(n)
    if not scaled:
        return nrm.astype(np.float32)
    coded = (
        np.ones(n) if full else (seqsum(np.concatenate(coded_terms, axis=1)) if coded_terms else np.zeros(n))
    )
    ok = (dot > 0) & (nrm > 0)
    return np.where(ok, nrm * coded / np.where(ok, dot, 1.0), 0.0).astype(np.float32)


def hadamard_rotate(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Randomized Hadamard rotation of rows, exactly :meth:`vqdb.quantizers._rotation.HadamardRotation.forward`.

    x : (n, d) float32; signs : (rounds, p) float32 ±1 with p = 2**ceil(log2 d) >= d. Returns (n, p)
    float32: zero-pad to p, then per round ``y *= signs[r]``, unnormalised FWHT (butterflies ``a + b``,
    ``a - b`` with the half-width h = 1, 2, 4, ...), ``y *= float32(1 / sqrt(p))``.
    """
    n, d = x.shape
    rounds, p = signs.shape
    norm = np.float32(1.0 / np.sqrt(p))
    y = np.zeros((n, p), dtype=np.float32)
    y[:, :d] = x
    for i in range(rounds):
        y *= signs[i]
        y = _fwht(y)
        y *= norm
    return y


def fht_kac_rotate(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Structured rotation of rows, exactly :meth:`vqdb.quantizers._rotation.FhtKacRotation.forward`.

    x : (n, d) float32; signs : (rounds, d) float32 ±1. Returns (n, d) float32. Per round: ``y *= signs[r]``;
    Hadamard on ``[:p]`` (p = largest power of two <= d; unnormalised FWHT, then ``*= float32(1/sqrt(p))``);
    if p < d: Kac ``(a, b) -> ((a + b)·s, (a - b)·s)``, s = float32(1/sqrt(2)), on pairs (j, j + d//2), then
    Hadamard on ``[d-p:]``.
    """
    return _fht_kac(x, signs)


def encode_turbo_fht(
    x: np.ndarray,
    centres: np.ndarray | None,
    rotated_centres: np.ndarray | None,
    lists: np.ndarray | None,
    signs: np.ndarray,
    table: np.ndarray,
    boundaries: np.ndarray,
    values: np.ndarray,
    scaled: bool,
    full: bool,
    codes: np.ndarray,
    beta: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-block TurboQuant encode with the FHT-Kac rotation fused in, and no per-coordinate division.

    Parameters
    ----------
    x : (n, d) float32 rows.
    centres, rotated_centres : (L, d) float32 encode centres and ``fht_kac_rotate(centres)``, or None
        (no centre: r = x, and no β).
    lists : (n,) int64 in [0, L): each row's centre (None with ``centres`` None).
    signs, table, boundaries, values, scaled, full, codes : as :func:`fht_kac_rotate` /
        :func:`encode_turbo_block` (each slice's packed indices are written into ``codes``).
    beta : bool
        Compute β (needs ``centres``).

    Returns
    -------
    factor, beta, sq : (n,) float32 each
        The side factor, β (zeros when not asked) and ``||x||²``.

    Notes
    -----
    ``r = x - centres[lists]`` (float32), ``y = fht_kac_rotate(r)``, ``ρ = sqrt(Σ r_j²)`` (left-to-right
    float64 sums, as every sum here), ``s = ρ`` (1 if ρ = 0). The index of ``y_j`` in slice S is
    ``#{m : float64(y_j) >= boundaries[S, m] · s}`` (the float64 product): the bucket of ``u = y / ρ``
    without the division. ``<y, ĉ> = Σ y_j values[idx_j]`` and ``<y, y>`` over the slices in order;
    ``scaled``: ``factor = float32(ρ² / <y, ĉ>)`` (``full``) or ``float32(<y, y> / <y, ĉ>)`` (0 if
    ``<y, ĉ> <= 0`` or ρ = 0) — ``||r|| · coded / <u, ĉ>`` of :func:`encode_turbo_block`; else ``ρ``.
    ``β = float32(<c, r> - float64(factor) · <Πc, ĉ>)``; ``sq = float32(Σ x_j²)``. Rows are independent:
    more than ``ENCODE_ROWS`` are coded ``ENCODE_ROWS`` at a time (bounded float64 temporaries).
    """
    n = x.shape[0]
    if n > ENCODE_ROWS:
        parts = [
            encode_turbo_fht(
                x[a : a + ENCODE_ROWS],
                centres,
                rotated_centres,
                None if lists is None else lists[a : a + ENCODE_ROWS],
                signs,
                table,
                boundaries,
                values,
                scaled,
                full,
                codes[a : a + ENCODE_ROWS],
                beta,
            )  # fmt: skip
            for a in range(0, n, ENCODE_ROWS)
        ]
        return tuple(np.concatenate(col) for col in zip(*parts))
    x = np.ascontiguousarray(x, dtype=np.float32)

    def seqsum(a):
        return np.cumsum(a, axis=1)[:, -1] if a.shape[1] else np.zeros(a.shape[0])

    x64 = x.astype(np.float64)
    sq = seqsum(x64 * x64).astype(np.float32) if n else np.zeros(0, np.float32)
    factor = np.zeros(n, dtype=np.float32)
    out_beta = np.zeros(n, dtype=np.float32)
    if n == 0:
        return factor, out_beta, sq
    c = None if centres is None else np.asarray(centres, dtype=np.float32)[lists]
    r = x if c is None else x - c
    y = fht_kac_rotate(r, signs).astype(np.float64)
    r64 = r.astype(np.float64)
    nrm = np.sqrt(seqsum(r64 * r64))
    safe = np.where(nrm > 0, nrm, 1.0)
    dot_terms, yy_terms, pc_terms = [], [], []
    pc = None if c is None or not beta else np.asarray(rotated_centres, dtype=np.float64)[lists]
    for (start, stop, bits, offset), bnd, val in zip(table.tolist(), boundaries, values):
        ys = y[:, start:stop]
        b = bnd[: (1 << bits) - 1]
        idx = (ys[:, :, None] >= b[None, None, :] * safe[:, None, None]).sum(axis=2)
        codes[:, offset : offset + packed_size(stop - start, bits)] = _pack(idx.astype(np.uint8), bits)
        lv = val[idx].astype(np.float64)
        dot_terms.append(ys * lv)
        yy_terms.append(ys * ys)
        if pc is not None:
            pc_terms.append(pc[:, start:stop] * lv)
    dot = seqsum(np.concatenate(dot_terms, axis=1)) if dot_terms else np.zeros(n)
    if scaled:
        num = nrm * nrm if full else (seqsum(np.concatenate(yy_terms, axis=1)) if yy_terms else np.zeros(n))
        ok = (dot > 0) & (nrm > 0)
        factor = np.where(ok, num / np.where(ok, dot, 1.0), 0.0).astype(np.float32)
    else:
        factor = nrm.astype(np.float32)
    if pc is not None:
        cr = seqsum(r64 * c.astype(np.float64))
        pcs = seqsum(np.concatenate(pc_terms, axis=1)) if pc_terms else np.zeros(n)
        out_beta = (cr - factor.astype(np.float64) * pcs).astype(np.float32)
    return factor, out_beta, sq


TOPK_SORT_MAX = 256  # rows of at most this many columns are sorted whole by topk (no partition, no tie pass)


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
    if n <= TOPK_SORT_MAX:  # a short row: one stable sort of it is the same order, sooner
        order = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        ids[:, :kk] = order
        top[:, :kk] = np.take_along_axis(scores, order, axis=1)
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


def num_threads() -> int:
    """NumPy runs the quantizers' row tiles on the calling thread."""
    return 1


def warmup() -> None:
    """Nothing to compile."""


KERNELS = Kernels(
    name="reference",
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
    topk=topk,
    encode_turbo_block=encode_turbo_block,
    hadamard_rotate=hadamard_rotate,
    fht_kac_rotate=fht_kac_rotate,
    encode_turbo_fht=encode_turbo_fht,
    num_threads=num_threads,
    warmup=warmup,
)
