"""TurboQuant (arXiv 2504.19874): rotation + per-coordinate Lloyd–Max codes, three variants.

See :class:`TurboQuantizer` for the byte layout and the estimators. Internally a quantizer is a list
of *blocks* (a channel subset, its rotation and one side float) and each block a list of *slices*
(a range of rotated coordinates with one bit width and one codebook):

=============================  ============================================================
configuration                  blocks / slices
=============================  ============================================================
integer bits, random rotation  1 block (all channels, Haar or Hadamard), 1 slice
2.5 / 3.5 bits, random         2 blocks (outlier / regular channels), 1 slice each
prod                           1 block with a (b−1)-bit slice (none at b = 1) + the QJL signs
``rotation="pca"``             1 block (learned orthogonal basis), 1 slice per bit width
=============================  ============================================================
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from .._core.packing import packed_size
from .._validation import as_codes, as_float32_matrix
from ..errors import InvalidInputError, UnknownNameError
from ..kernels import get_ops
from . import _common as cm
from . import _state_checks as checks
from ._codebooks import gaussian_lloyd_max, lloyd_max
from ._rotation import (
    DenseRotation,
    FhtKacRotation,
    HadamardRotation,
    _single_threaded_blas,
    haar_orthogonal,
    haar_rotation,
    orthogonal_sketch,
)
from .base import PreparedQueries, Quantizer

VARIANTS = ("scaled", "mse", "prod")
ROTATIONS = ("dense", "hadamard", "fht", "pca")
INTEGER_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
FRACTIONAL_BITS = {
    2.5: (3, 2, 4),
    3.5: (4, 3, 2),
}  # rate -> (high bits, low bits, 1/fraction of high channels)
# "pca" bit allocation weighs component i by λ_i^ALLOC_QUERY_POWER, a model of the query energy along it:
# 0 = isotropic queries (plain MSE allocation), 1 = queries distributed like the data. 1/2 is the robust
# middle: on WordNet/MiniLM (word queries vs passage base) and Fashion-MNIST it was within noise of the
# better extreme on each set, where either extreme lost 2-10 recall points on one of them.
ALLOC_QUERY_POWER = 0.5
_GEMM_MIN_QUERIES = 16  # from this many queries, multi-slice blocks are scored by decoded tiles + matmul
_TILE = 4096
PCA_UNIT = 8  # "pca" allocates bits to groups of 8 consecutive principal components (byte-aligned slices)

# Per-vector pre-scales t the "scaled" encoder may try (quantize u*t, keep the code whose reconstruction
# has the highest cosine with u; t = 1 first so ties keep the plain Lloyd–Max code). PRESCALE_GRID lowers
# the angular error (tan²θ: -0.3% at 2 bits, -7% at 4 bits on Gaussian data) but measured recall@10 did
# not move (WordNet 2/4 bits, Fashion-MNIST pca 1/4 bits: all within ±0.003) at 2-3x the encode time,
# so the default is no search; pass ``scales=PRESCALE_GRID`` to enable it.
DEFAULT_SCALES = (1.0,)
PRESCALE_GRID = (1.0, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2, 1.3)

# Gaussian Lloyd–Max distortion per unit variance at 0..8 bits (greedy bit allocation of "pca")
_GAUSS_D = (1.0, 0.36338, 0.117482, 0.034548, 0.0095014, 0.0025046, 0.00064304, 0.00016317, 4.1122e-05)


def _zeros_i64(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


def _row_product(a: np.ndarray, bt: np.ndarray) -> np.ndarray:
    """(n, d) @ (d, p) float32 for encoding: each row by the sequential float32 product, so its bits never
    depend on the batch it came in (BLAS takes gemv for one row, gemm blocks for many) or the backend."""
    from ..kernels.small_gemm import rows_matmul

    return rows_matmul(a, bt, exact=True)


def _forward(rotation, x: np.ndarray) -> np.ndarray:
    """``rotation.forward`` for encoding: a dense rotation by :func:`_row_product` (the structured ones are
    row by row already)."""
    return _row_product(x, rotation.matrix_t_) if isinstance(rotation, DenseRotation) else rotation.forward(x)


def _inverse(rotation, y: np.ndarray) -> np.ndarray:
    """``rotation.inverse`` for encoding, as :func:`_forward`."""
    return _row_product(y, rotation.matrix_) if isinstance(rotation, DenseRotation) else rotation.inverse(y)


class _Slice:
    """Rotated coordinates ``[start, stop)`` of a block, coded with ``bits`` bits and one codebook."""

    def __init__(self, start: int, stop: int, bits: int, centroids: np.ndarray, boundaries: np.ndarray):
        self.start, self.stop, self.bits = int(start), int(stop), int(bits)
        self.k = self.stop - self.start
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float64)
        self.boundaries = np.ascontiguousarray(boundaries, dtype=np.float64)
        self.values = self.centroids.astype(np.float32)
        self.nbytes = packed_size(self.k, self.bits)
        self.offset = 0  # byte offset in the code, set by the quantizer


class _Block:
    """A channel subset, its rotation, its slices; one per-vector side float."""

    def __init__(self, channels: np.ndarray, rotation, slices: list[_Slice]):
        self.channels = np.ascontiguousarray(channels, dtype=np.int64)
        self.rotation = rotation
        self.k = rotation.out_dim
        self.slices = slices


def _all_channels(block: _Block, dim: int) -> bool:
    """Whether ``block`` takes every channel in order (its query columns are the query itself: no gather)."""
    ch = block.channels
    hit = getattr(block, "_all", None)
    if hit is None or hit[0] is not ch:
        hit = block._all = (ch, ch.size == dim and bool(np.array_equal(ch, np.arange(dim))))
    return hit[1]


def _pad_table(rows: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), width), fill, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def allocate_bits(
    variances: np.ndarray, budget_bytes: int, unit: int = PCA_UNIT, max_bits: int = 8
) -> np.ndarray:
    """Greedy reverse water-filling: integer bits per group of ``unit`` consecutive coordinates.

    Parameters
    ----------
    variances : ndarray of shape (d,), float64
        Per-coordinate variances, in the order the coordinates are stored (largest first for PCA).
    budget_bytes : int
        Bytes available for the packed indices; each slice of equal widths is packed byte-aligned.

    Returns
    -------
    bits : ndarray of shape (ceil(d / unit),), int64
        Bits of each unit. Each step gives one more bit to the unit whose Gaussian Lloyd–Max
        distortion drops most (``var_sum · (D(b) − D(b+1))``) while the packed size stays within budget.
    """
    d = variances.shape[0]
    n_units = -(-d // unit)
    sizes = np.array([min(unit, d - i * unit) for i in range(n_units)])
    energy = np.array([variances[i * unit : (i + 1) * unit].sum() for i in range(n_units)])
    bits = np.zeros(n_units, dtype=np.int64)

    def packed_bytes(b: np.ndarray) -> int:
        total, i = 0, 0
        while i < n_units:
            j = i
            while j + 1 < n_units and b[j + 1] == b[i]:
                j += 1
            total += packed_size(int(sizes[i : j + 1].sum()), int(b[i])) if b[i] else 0
            i = j + 1
        return total

    heap = [(-energy[i] * (_GAUSS_D[0] - _GAUSS_D[1]), i) for i in range(n_units)]
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        bits[i] += 1
        if packed_bytes(bits) > budget_bytes:
            bits[i] -= 1
            continue  # this unit cannot grow any more within budget
        if bits[i] < max_bits:
            heapq.heappush(heap, (-energy[i] * (_GAUSS_D[bits[i]] - _GAUSS_D[bits[i] + 1]), i))
    return bits


class TurboQuantizer(Quantizer):
    """TurboQuant: rotate, then quantize every coordinate with the Lloyd–Max codebook of its law.

    Parameters
    ----------
    dim : int >= 2
        Dimension d of the vectors.
    bits : {1, 2, 3, 4, 5, 6, 7, 8, 2.5, 3.5}
        Bits per coordinate of the codes (side floats come on top). With a random rotation,
        fractional rates split the channels into an outlier set and a regular set, each with its own
        rotation, codebook and side float: 2.5 = d//4 channels at 3 bits + the rest at 2; 3.5 = d//2
        channels at 4 bits + the rest at 3. The outlier channels are the highest-variance channels of
        the data given to :meth:`fit` (the first d//4 resp. d//2 channels when unfitted).
    variant : {"scaled", "mse", "prod"}
        ``mse`` (Algorithm 1): estimate ``||r|| <Πq, c[idx]>`` — biased by the factor 1 − D_mse.
        ``scaled`` (default; EDEN / RaBitQ-style length renormalisation): stores
        ``||r|| / <u, ĉ>`` instead of ``||r||`` (u = Πr/||r||, ĉ = c[idx]) so that
        ``<q, r> ≈ ||r|| <Πq, ĉ> / <u, ĉ>`` (with ``rotation="pca"``, ``||r||·||u_c||² / <u, ĉ>``:
        unbiased on the coordinates that get bits, u_c); since this estimate ignores the norm of ĉ, the encoder
        tries a few pre-scales t (quantizes u·t) and keeps the code whose reconstruction has the
        highest cosine with u (no extra bytes, no training) when given ``scales``.
        ``prod`` (Algorithm 2): (b−1)-bit ``mse`` + 1-bit QJL of the residual with an orthogonal
        sketch S independent of Π, scale ``1/(d·sqrt(d)·E|u_1|) ≈ sqrt(π/2)/d`` for rows of norm sqrt(d)
        (= sqrt(π/2)/sqrt(d) for unit rows), and the real residual norm stored. Integer bits, random
        rotations only.
    rotation : {"dense", "hadamard", "fht", "pca"}
        ``dense``: Haar rotation (d×d). ``hadamard``: randomized Hadamard (3 rounds of H·D on the input
        zero-padded to the next power of two p; codes then cover p coordinates). ``fht``: structured
        FHT-Kac rotation of R^d without padding (3 rounds of signs, Hadamard on the first and last p
        coordinates, p the largest power of two <= d, and a Kac butterfly between the halves;
        :class:`~vqdb.quantizers._rotation.FhtKacRotation`): O(d log d), codes cover d coordinates. ``pca``: a one-pass,
        non-iterative fit (mean + covariance + eigendecomposition) learns the principal basis; bits are
        allocated to groups of 8 components by greedy reverse water-filling (integer widths 0–8, same
        total bytes as ``bits`` per coordinate) minimising ``Σ λ_i^1.5 D(b_i)`` — the inner-product
        error for queries whose energy along component i grows like sqrt(λ_i) (``ALLOC_QUERY_POWER``), each group of equal width gets its own
        Haar rotation and a Gaussian Lloyd–Max codebook scaled to its variance. Not data-oblivious:
        it trades that for accuracy on anisotropic data (real embeddings). Before ``fit`` it behaves
        like ``dense`` with uniform widths.
    centred_query : bool
        ``scaled`` only (the ``turbo-N`` presets set it): store one more exact float per vector,
        ``β = <c, r> - est<c, r>`` (c the encode centre), so that scores estimate
        ``<q, c> + <c, r> + est<q - c, r>`` (RaBitQ's form, the query centred like the data): the error
        scales with ``||q - c||`` instead of ``||q||``. ``score = q @ decode.T + score_offsets``.
    seed : int
        Seeds every random draw (rotations, sketch); the draws are persisted by :meth:`state_dict`.
    scales : tuple of float
        Pre-scales tried by the ``scaled`` encoder (e.g. ``PRESCALE_GRID``); the default ``(1.0,)`` is
        the plain Lloyd–Max code (the search did not improve measured recall, see ``PRESCALE_GRID``).

    Notes
    -----
    Byte layout of one code (``code_size`` bytes), blocks B and slices S as in the module docstring:

    ==============================================  ==========================================
    bytes                                           content
    ==============================================  ==========================================
    ``ceil(k_s * b_s / 8)`` per slice, in order     b_s-bit Lloyd–Max indices, LSB-first
                                                    bitstream (:mod:`vqdb._core.packing`)
    ``ceil(d / 8)`` (prod only)                     QJL sign bits of S·e, bit=1 iff > 0
    4 per block, float32 LE                         ``mse``: ||r_B||; ``scaled``: ||r_B||/<u_B, ĉ_B>;
                                                    ``prod``: ||r|| (absent when b = 1)
    4 (prod only), float32 LE                       γ = ||e||, e = r − mse reconstruction
    4, float32 LE                                   exact ||x||² of the original vector
    ==============================================  ==========================================

    r = x − centre is the residual from the fitted mean (``fit``) or the ``centre=`` argument.
    ``score(q, codes)`` equals ``q @ decode(codes).T`` up to float rounding. ``code_size`` never
    changes with ``fit``, but the channel split / basis does: encode after fitting.

    Thread safety: encode/decode/prepare/score are read-only and may run concurrently; ``fit`` is not.

    Examples
    --------
    >>> import numpy as np, vqdb
    >>> x = np.random.default_rng(0).standard_normal((100, 64)).astype(np.float32)
    >>> q = vqdb.TurboQuantizer(64, bits=4).fit(x)
    >>> codes = q.encode(x)
    >>> codes.shape
    (100, 40)
    >>> q.score(x[:2], codes).shape
    (2, 100)
    """

    kind = "turbo"

    def __init__(
        self,
        dim: int,
        bits: float = 4,
        *,
        variant: str = "scaled",
        rotation: str = "dense",
        seed: int = 0,
        scales: tuple[float, ...] = DEFAULT_SCALES,
        centred_query: bool = False,
        _arrays: dict[str, np.ndarray] | None = None,
    ):
        self.dim = cm.check_dim(dim)
        self.bits = self._check_bits(bits)
        if variant not in VARIANTS:
            raise UnknownNameError(
                f"unknown TurboQuant variant {variant!r}; expected one of {list(VARIANTS)}"
            )
        if rotation not in ROTATIONS:
            raise UnknownNameError(f"unknown rotation {rotation!r}; expected one of {list(ROTATIONS)}")
        self.variant = variant
        self.rotation_kind = rotation
        self.seed = cm.check_seed(seed)
        if self.variant == "prod" and (not isinstance(self.bits, int) or rotation == "pca"):
            raise InvalidInputError(
                f"variant 'prod' needs integer bits and a random rotation; got bits={self.bits}, "
                f"rotation={rotation!r}"
            )
        try:
            scales = tuple(float(t) for t in scales)
        except (TypeError, ValueError):
            raise InvalidInputError(f"scales must be a sequence of positive floats; got {scales!r}") from None
        if not scales or not all(math.isfinite(t) and t > 0 for t in scales):
            raise InvalidInputError(f"scales must be a non-empty sequence of positive floats; got {scales!r}")
        self.scales = scales if (variant == "scaled" and self._max_bits() > 1) else (1.0,)
        if not isinstance(centred_query, (bool, np.bool_)):
            raise InvalidInputError(f"centred_query must be a bool; got {centred_query!r}")
        if centred_query and variant != "scaled":
            raise InvalidInputError(
                f"centred_query needs variant 'scaled' (mse and prod stay as published); got {variant!r}"
            )
        self.centred_query = bool(centred_query)
        self.centre_ = None
        self.requires_fit = rotation == "pca"
        if _arrays is not None:
            self._load(cm.as_array_dict(_arrays))
        else:
            self._draw()

    # ---- construction ----------------------------------------------------------------------
    @staticmethod
    def _check_bits(bits) -> int | float:
        if isinstance(bits, bool):
            raise InvalidInputError(
                f"bits must be one of {list(INTEGER_BITS) + sorted(FRACTIONAL_BITS)}; got {bits!r}"
            )
        if isinstance(bits, (int, np.integer)) and int(bits) in INTEGER_BITS:
            return int(bits)
        if isinstance(bits, (float, np.floating)):
            if float(bits).is_integer() and int(bits) in INTEGER_BITS:
                return int(bits)
            if float(bits) in FRACTIONAL_BITS:
                return float(bits)
        raise InvalidInputError(
            f"bits must be one of {list(INTEGER_BITS) + sorted(FRACTIONAL_BITS)}; got {bits!r}"
        )

    def _max_bits(self) -> int:
        return FRACTIONAL_BITS[self.bits][0] if isinstance(self.bits, float) else self.bits

    @staticmethod
    def _random_split(dim: int, bits, variant: str) -> list[tuple[int, int]]:
        """[(n_channels, bits)] per block for random rotations (n_channels may be 0 bits for prod b=1)."""
        if isinstance(bits, float):
            hi_bits, lo_bits, frac = FRACTIONAL_BITS[bits]
            n_hi = dim // frac
            if n_hi < 2 or dim - n_hi < 2:
                raise InvalidInputError(f"{bits}-bit TurboQuant needs dim >= {2 * frac}; got {dim}")
            return [(n_hi, hi_bits), (dim - n_hi, lo_bits)]
        mse_bits = bits - 1 if variant == "prod" else bits
        return [(dim, mse_bits)] if mse_bits > 0 else []

    def _pca_budget(self) -> int:
        return -(-int(round(self.bits * 8)) * self.dim // 64)  # ceil(bits * d / 8) bytes

    def _random_rotation(self, n_ch: int, rng):
        if self.rotation_kind == "hadamard":
            return HadamardRotation(n_ch, rng)
        if self.rotation_kind == "fht":
            return FhtKacRotation(n_ch, rng)
        return DenseRotation(haar_rotation(n_ch, rng))

    def _draw(self) -> None:
        """Draw all random state from the seed (no data): the unfitted quantizer."""
        rng = np.random.default_rng(self.seed)
        self.channels_ = np.arange(self.dim, dtype=np.int64)
        if self.rotation_kind == "pca":
            rot = DenseRotation(haar_rotation(self.dim, rng))
            self._blocks = [self._pca_block(rot, np.ones(self.dim))]
        else:
            self._blocks = []
            start = 0
            for n_ch, bits in self._random_split(self.dim, self.bits, self.variant):
                rot = self._random_rotation(n_ch, rng)
                c, b = lloyd_max(bits, rot.out_dim)
                self._blocks.append(
                    _Block(self.channels_[start : start + n_ch], rot, [_Slice(0, rot.out_dim, bits, c, b)])
                )
                start += n_ch
        self._sketch = orthogonal_sketch(self.dim, self.dim, rng) if self.variant == "prod" else None
        self._layout()

    def _pca_block(self, rotation, variances: np.ndarray, weights: np.ndarray | None = None) -> _Block:
        """Slices of a PCA block from per-coordinate variances (order of the rotated coordinates);
        ``weights`` (default 1) multiply the variances in the bit allocation only."""
        unit_bits = allocate_bits(variances * (1.0 if weights is None else weights), self._pca_budget())
        per_coord = np.repeat(unit_bits, PCA_UNIT)[: self.dim]
        total = float(variances.sum()) or 1.0
        slices = []
        start = 0
        while start < self.dim:
            stop = start
            while stop < self.dim and per_coord[stop] == per_coord[start]:
                stop += 1
            bits = int(per_coord[start])
            if bits > 0:
                sigma = math.sqrt(max(float(variances[start:stop].mean()), 1e-30) / total)
                c, b = gaussian_lloyd_max(bits)
                slices.append(_Slice(start, stop, bits, c * sigma, b * sigma))
            start = stop
        return _Block(np.arange(self.dim, dtype=np.int64), rotation, slices)

    def _layout(self) -> None:
        self._plan = None
        self._sketch_t = None if self._sketch is None else np.ascontiguousarray(self._sketch.T)
        off = 0
        for block in self._blocks:
            for s in block.slices:
                s.offset = off
                off += s.nbytes
        if self.rotation_kind == "pca":
            off = self._pca_budget()  # the allocation may leave a few bytes unused; code_size is fixed
        self._sign_offset = off
        if self.variant == "prod":
            off += packed_size(self.dim, 1)
            self.estimator_scale = cm.sign_estimator_scale(self.dim, self.dim)
        self._side_offset = off
        self._n_side = (
            len(self._blocks) + (1 if self.variant == "prod" else 0) + (1 if self.centred_query else 0) + 1
        )
        self._offset_side = (
            self._n_side - 2 if self.centred_query else None
        )  # β: the per-vector additive term
        self.code_size = off + 4 * self._n_side
        expected = self.code_size_for(
            self.dim, self.bits, self.variant, self.rotation_kind, centred_query=self.centred_query
        )
        if self.code_size != expected:  # pragma: no cover - internal consistency
            raise InvalidInputError(f"internal layout error: code_size {self.code_size} != {expected}")

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, x, /) -> TurboQuantizer:
        """One pass over ``x``: store the mean as ``centre_``; pick outlier channels (fractional bits)
        or learn the principal basis and bit allocation (``rotation="pca"``).

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, n >= 1

        Returns
        -------
        self
        """
        super().fit(x)
        self._plan = None
        if isinstance(self.bits, float) and self.rotation_kind != "pca":
            x = as_float32_matrix(x, self.dim)
            var = np.var(x.astype(np.float64), axis=0)
            n_hi = self._blocks[0].channels.size
            hi = np.sort(np.argsort(-var, kind="stable")[:n_hi])
            lo = np.setdiff1d(np.arange(self.dim), hi)
            self.channels_ = np.concatenate([hi, lo]).astype(np.int64)
            self._blocks[0].channels = np.ascontiguousarray(self.channels_[:n_hi])
            self._blocks[1].channels = np.ascontiguousarray(self.channels_[n_hi:])
        elif self.rotation_kind == "pca":
            x = as_float32_matrix(x, self.dim)
            centre = self.centre_

            def part(t0: int) -> np.ndarray:  # float32 sgemm of 4096 rows; BLAS pinned, tiles over threads
                r = x[t0 : t0 + 4096] - centre[None, :]
                return r.T @ r

            cov = np.zeros((self.dim, self.dim))
            for p in cm.reduce_tiles(part, x.shape[0], get_ops()):  # one pass, float64 sums in tile order
                cov += p
            cov /= x.shape[0]
            with _single_threaded_blas():
                lam, vecs = np.linalg.eigh(cov)
            order = np.argsort(-lam, kind="stable")
            lam, vecs = np.clip(lam[order], 0.0, None), vecs[:, order]
            rng = np.random.default_rng(self.seed + 1)
            # allocate bits to minimise Σ λ_i^(1 + ALLOC_QUERY_POWER) D(b_i): the inner-product error
            # E<q, e>² weighs each component's distortion λ_i D(b_i) by the query energy along it, taken
            # as λ_i^ALLOC_QUERY_POWER (0: isotropic queries, 1: queries distributed like the data)
            weights = lam**ALLOC_QUERY_POWER
            probe = self._pca_block(DenseRotation(np.eye(self.dim, dtype=np.float32)), lam, weights)
            # each slice (equal widths) gets a Haar rotation of its principal subspace; coordinates
            # without bits keep the principal axes
            w = vecs.T.copy()
            for s in probe.slices:
                w[s.start : s.stop] = haar_orthogonal(s.k, rng) @ w[s.start : s.stop]
            self._blocks = [self._pca_block(DenseRotation(w.astype(np.float32)), lam, weights)]
            self._layout()
        return self

    # ---- encode / decode -------------------------------------------------------------------
    def _encode_block(self, ops, block: _Block, u: np.ndarray) -> np.ndarray:
        """(n, k) float32 unit rotated residuals -> (n, k) uint8 indices (0 where no slice)."""
        if self.variant == "scaled" and len(self.scales) > 1 and block.slices:
            if len(block.slices) == 1 and block.slices[0].k == block.k:
                s = block.slices[0]
                return ops.unpack_bits(
                    ops.encode_scaled(u, s.boundaries, s.centroids, np.asarray(self.scales), s.bits),
                    s.bits,
                    s.k,
                )
            width = 1 << max(s.bits for s in block.slices)
            segment = np.full(block.k, len(block.slices), dtype=np.int64)
            for i, s in enumerate(block.slices):
                segment[s.start : s.stop] = i
            bounds = _pad_table([s.boundaries for s in block.slices] + [np.zeros(0)], width - 1, np.inf)
            cents = _pad_table([s.centroids for s in block.slices] + [np.zeros(1)], width, 0.0)
            return ops.scaled_indices_segments(u, segment, bounds, cents, np.asarray(self.scales))
        idx = np.zeros(u.shape, dtype=np.uint8)
        for s in block.slices:
            idx[:, s.start : s.stop] = ops.bucketize(
                np.ascontiguousarray(u[:, s.start : s.stop]), s.boundaries
            )
        return idx

    def encode(self, x, /, *, centre=None) -> np.ndarray:
        """Quantize rows of ``x``.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32 (other real dtypes are converted; NaN/inf refused)
        centre : ndarray of shape (d,), optional
            Overrides ``centre_`` (e.g. an IVF list centroid); codes must be scored with the same centre.

        Returns
        -------
        codes : ndarray of shape (n, code_size), uint8

        Notes
        -----
        One FHT-Kac block (the ``turbo-N`` presets, not ``prod``): one backend call does everything
        (``encode_turbo_fht``: centre, rotation, bucketize, pack, side floats; numba spreads the rows over
        its threads), each row on its own lane, so a row's bytes depend only on the row and its centre. Every
        other configuration but ``scales`` with several pre-scales takes the tiled path: rows in tiles of
        ``_common.ENCODE_TILE``, per tile one rotation (one sgemm, or the Hadamard kernel) and one fused
        backend pass (``encode_turbo_block``: norm, bucketize, pack, side factor) per block. Tiles are spread
        over the backend's threads and computed the same way whatever the thread count, so codes do not
        depend on it.
        """
        x = as_float32_matrix(x, self.dim)
        c = self._centre(centre)
        c = None if c is not None and not c.any() else c  # x - 0 == x: skip the pass (IVF residual batches)
        if len(self.scales) == 1:
            return self._encode_tiled(x, c)
        return self._encode_general(x, c)

    def encode_lists(self, x, centroids, lists, /) -> np.ndarray:
        """Codes of every row against its own centre (IVF residuals), in one pass.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32
        centroids : ndarray of shape (L, d), float32
            The centres (e.g. the IVF list centroids).
        lists : ndarray of shape (n,), integer in [0, L)
            Each row's centre.

        Returns
        -------
        codes : ndarray of shape (n, code_size), uint8
            Row i equals ``encode(x[i:i+1], centre=centroids[lists[i]])`` byte for byte. The ``turbo-N``
            configurations (one FHT-Kac block) code all rows in one fused pass whatever the lists; others
            encode list by list.
        """
        x = as_float32_matrix(x, self.dim)
        cents = as_float32_matrix(centroids, self.dim, name="centroids")
        lists = np.asarray(lists)
        if lists.shape != (x.shape[0],) or not (np.issubdtype(lists.dtype, np.integer) or lists.size == 0):
            raise InvalidInputError(
                f"lists must be an integer array of shape ({x.shape[0]},); got {lists.dtype} {lists.shape}"
            )
        lists = lists.astype(np.int64, copy=False)
        if lists.size and (lists.min() < 0 or lists.max() >= cents.shape[0]):
            raise InvalidInputError(
                f"lists must lie in [0, {cents.shape[0]}); got {lists.min()}..{lists.max()}"
            )
        if len(self.scales) == 1 and self._fused_fht():
            return self._encode_fused(x, cents, lists)
        codes = np.empty((x.shape[0], self.code_size), dtype=np.uint8)
        order = np.argsort(lists, kind="stable")
        for rows in np.split(order, np.flatnonzero(np.diff(lists[order])) + 1):
            if rows.size:
                codes[rows] = self.encode(x[rows], centre=cents[lists[rows[0]]])
        return codes

    def _fast_plan(self) -> list[dict[str, Any]]:
        """Per block, the arrays of the fused encode (cached; reset by ``_layout`` and ``fit``)."""
        plan = getattr(self, "_plan", None)
        if plan is not None:
            return plan
        plan = []
        for block in self._blocks:
            hi = max((s.stop for s in block.slices), default=0)
            width = 1 << max((s.bits for s in block.slices), default=1)
            entry = {
                "channels": None if np.array_equal(block.channels, np.arange(self.dim)) else block.channels,
                "table": np.array(
                    [[s.start, s.stop, s.bits, s.offset] for s in block.slices], dtype=np.int64
                ).reshape(-1, 4),
                "boundaries": _pad_table([s.boundaries for s in block.slices], width - 1, np.inf)
                if block.slices
                else np.zeros((0, 1)),
                "values": _pad_table([s.centroids for s in block.slices], width, 0.0).astype(np.float32)
                if block.slices
                else np.zeros((0, 2), np.float32),
                "full": sum(s.k for s in block.slices) == block.k,
                "hi": hi,
            }
            if isinstance(block.rotation, FhtKacRotation):
                entry["fht_signs"] = block.rotation.signs
            elif isinstance(block.rotation, HadamardRotation):
                entry["signs"] = block.rotation.signs
            else:
                # only the rotated coordinates that get bits, C-contiguous for the sequential product
                entry["matrix_t"] = np.ascontiguousarray(block.rotation.matrix_[:hi].T)
            plan.append(entry)
        self._plan = plan
        return plan

    def _rotated_centre(self, c: np.ndarray | None) -> list[np.ndarray] | None:
        """Per block, (Π_B c_B) float32 of the encode centre (None when no β is stored or c is None)."""
        if self._offset_side is None or c is None:
            return None
        return [
            b.rotation.forward(np.ascontiguousarray(c[None, b.channels], dtype=np.float32))[0]
            for b in self._blocks
        ]

    def _fused_fht(self) -> bool:
        """One FHT-Kac block over all channels, not ``prod``: the whole encode is one fused kernel call
        per tile (``encode_turbo_fht``: centre, rotation, bucketize, pack, side floats)."""
        plan = self._fast_plan()
        return (
            self.variant != "prod"
            and len(plan) == 1
            and "fht_signs" in plan[0]
            and plan[0]["channels"] is None
        )

    def _encode_fused(
        self, x: np.ndarray, centres: np.ndarray | None, lists: np.ndarray | None
    ) -> np.ndarray:
        """Codes of ``x[i] - centres[lists[i]]`` (or of ``x`` with no centres) by one ``encode_turbo_fht``
        call (the backend spreads the rows over its threads); a row's bytes depend only on the row and its
        centre."""
        ops = get_ops()
        n = x.shape[0]
        codes = np.zeros((n, self.code_size), dtype=np.uint8)
        p = self._fast_plan()[0]
        want_beta = self._offset_side is not None and centres is not None
        rc = None
        if want_beta:
            rc = ops.fht_kac_rotate(centres, p["fht_signs"])
        side = self._side_offset
        bo = None if self._offset_side is None else side + 4 * self._offset_side
        f, beta, sq = ops.encode_turbo_fht(
            x, centres, rc, lists, p["fht_signs"], p["table"], p["boundaries"], p["values"],
            self.variant == "scaled", p["full"], codes, want_beta,
        )  # fmt: skip
        codes[:, side : side + 4] = f.astype("<f4").view(np.uint8).reshape(-1, 4)
        if bo is not None:
            codes[:, bo : bo + 4] = beta.astype("<f4").view(np.uint8).reshape(-1, 4)
        codes[:, -4:] = sq.astype("<f4").view(np.uint8).reshape(-1, 4)
        return codes

    def _encode_tiled(self, x: np.ndarray, c: np.ndarray | None) -> np.ndarray:
        if self._fused_fht():
            return self._encode_fused(
                x, None if c is None else c[None, :], None if c is None else _zeros_i64(x.shape[0])
            )
        ops = get_ops()
        n = x.shape[0]
        codes = np.zeros((n, self.code_size), dtype=np.uint8)
        plan = self._fast_plan()
        scaled = self.variant == "scaled"
        prod = self.variant == "prod"
        side = self._side_offset
        pc = self._rotated_centre(c)
        cb = None if pc is None else [np.ascontiguousarray(c[b.channels]) for b in self._blocks]

        def tile(t0: int) -> None:
            xt = x[t0 : t0 + cm.ENCODE_TILE]
            ct = codes[t0 : t0 + cm.ENCODE_TILE]
            rt = xt if c is None else xt - c[None, :]
            recon = np.zeros_like(rt) if prod else None
            beta = np.zeros(rt.shape[0]) if pc is not None else None
            for b, p in enumerate(plan):
                rp = rt if p["channels"] is None else rt[:, p["channels"]]
                if "fht_signs" in p:
                    y = ops.fht_kac_rotate(rp, p["fht_signs"])
                elif "signs" in p:
                    y = ops.hadamard_rotate(rp, p["signs"])
                else:
                    y = _row_product(rp, p["matrix_t"])
                chat = np.zeros((rt.shape[0], self._blocks[b].k), dtype=np.float32) if prod else None
                terms = np.empty((rt.shape[0], 2)) if beta is not None else None
                f = ops.encode_turbo_block(
                    y, rp, p["table"], p["boundaries"], p["values"], scaled, p["full"], ct, chat,
                    None if terms is None else cb[b], None if terms is None else pc[b], terms,
                )  # fmt: skip
                ct[:, side + 4 * b : side + 4 * b + 4] = f.astype("<f4").view(np.uint8).reshape(-1, 4)
                if beta is not None:  # β += <c, r> - f <Πc, ĉ> (the exact minus the estimated <c, r>)
                    beta += terms[:, 0] - f.astype(np.float64) * terms[:, 1]
                if prod:  # the mse reconstruction ||r|| Πᵀ ĉ (f = float32 ||r||), as in _encode_general
                    recon[:, self._blocks[b].channels] = _inverse(self._blocks[b].rotation, chat) * f[:, None]
            if prod:  # 1-bit QJL of the residual e = r - recon, and γ = ||e||
                e = rt - recon
                ct[:, self._sign_offset : self._sign_offset + packed_size(self.dim, 1)] = np.packbits(
                    _row_product(e, self._sketch_t) > 0, axis=1, bitorder="little"
                )
                g = len(plan)
                ct[:, side + 4 * g : side + 4 * g + 4] = (
                    cm.row_norms(e).astype("<f4").view(np.uint8).reshape(-1, 4)
                )
            if beta is not None:
                o = side + 4 * self._offset_side
                ct[:, o : o + 4] = beta.astype("<f4").view(np.uint8).reshape(-1, 4)
            x64 = xt.astype(np.float64)
            sq = np.einsum("ij,ij->i", x64, x64).astype("<f4")
            ct[:, -4:] = sq.view(np.uint8).reshape(-1, 4)

        cm.run_tiles(tile, n, ops)
        return codes

    @staticmethod
    def _beta_terms(
        r: np.ndarray, c: np.ndarray, chat: np.ndarray, pc: np.ndarray, f: np.ndarray
    ) -> np.ndarray:
        """(n,) float64 one block's share of β = <c, r> - f <Π c, ĉ> (the exact minus the estimated
        <c, r>), from the block's residuals r (n, d_B), centre c (d_B,), levels ĉ (n, k) (0 where no bits),
        rotated centre Πc (k,) and side factor f (n,). Plain float64 dot products."""
        exact = r.astype(np.float64) @ c.astype(np.float64)
        est = chat.astype(np.float64) @ pc.astype(np.float64)
        return exact - f.astype(np.float64) * est

    def _encode_general(self, x: np.ndarray, c: np.ndarray | None) -> np.ndarray:
        """The untiled path (``prod``, several pre-scales): per block rotate, bucketize, pack, decode."""
        r = x if c is None else np.ascontiguousarray(x - c[None, :], dtype=np.float32)
        x64 = x.astype(np.float64)
        sq = np.einsum("ij,ij->i", x64, x64).astype(np.float32)
        ops = get_ops()
        n = r.shape[0]
        codes = np.zeros((n, self.code_size), dtype=np.uint8)
        side = []
        recon = np.zeros_like(r) if self.variant == "prod" else None
        pc = self._rotated_centre(c)
        beta = np.zeros(n) if pc is not None else None
        for bi, block in enumerate(self._blocks):
            rp = np.ascontiguousarray(r[:, block.channels])
            y = _forward(block.rotation, rp)
            nrm = cm.row_norms(rp)
            safe = np.where(nrm > 0, nrm, 1.0)
            u = np.ascontiguousarray((y / safe[:, None]).astype(np.float32))
            idx = self._encode_block(ops, block, u)
            chat = np.zeros(u.shape, dtype=np.float32)
            for s in block.slices:
                packed = ops.pack_bits(np.ascontiguousarray(idx[:, s.start : s.stop]), s.bits)
                codes[:, s.offset : s.offset + s.nbytes] = packed
                chat[:, s.start : s.stop] = ops.decode_values(packed, 0, s.bits, s.k, s.values)
            if self.variant == "scaled":
                # unbiased for the coded coordinates: <q_c, y_c> ≈ ||y_c||² <q_c, ĉ> / <y_c, ĉ>, with y = ||r|| u
                # and y_c its coordinates that have bits (all of them unless "pca" drops some)
                dot = np.einsum("ij,ij->i", u, chat, dtype=np.float64)
                if sum(s.k for s in block.slices) == block.k:
                    coded = np.ones(n)  # no dropped coordinates: exactly the classic ||r|| / <u, ĉ>
                else:
                    coded = (
                        sum(
                            np.einsum(
                                "ij,ij->i", u[:, s.start : s.stop], u[:, s.start : s.stop], dtype=np.float64
                            )
                            for s in block.slices
                        )
                        if block.slices
                        else np.zeros(n)
                    )
                factor = np.where((dot > 0) & (nrm > 0), nrm * coded / np.where(dot > 0, dot, 1.0), 0.0)
            else:
                factor = nrm
            side.append(factor)
            if beta is not None:
                beta += self._beta_terms(rp, c[block.channels], chat, pc[bi], np.float32(factor))
            if recon is not None:
                recon[:, block.channels] = _inverse(block.rotation, chat) * nrm[:, None].astype(np.float32)
        if self.variant == "prod":
            e = r - recon
            proj = _row_product(e, self._sketch_t)
            codes[:, self._sign_offset : self._sign_offset + packed_size(self.dim, 1)] = ops.pack_bits(
                (proj > 0).astype(np.uint8), 1
            )
            side.append(cm.row_norms(e))
        if self._offset_side is not None:
            side.append(np.zeros(n) if beta is None else beta)
        side.append(sq)
        cm.write_side(codes, self._side_offset, np.stack(side, axis=1) if n else np.zeros((0, self._n_side)))
        return codes

    def decode(self, codes, /, *, centre=None) -> np.ndarray:
        """Reconstruct ``x`` from codes: (n, code_size) uint8 -> (n, d) float32.

        The reconstruction is the one the scores use (``score == q @ decode.T``): for ``scaled`` it is
        the unbiased-length one, ``(||r|| / <u, ĉ>) Π^T ĉ``.
        """
        codes = as_codes(codes, self.code_size)
        ops = get_ops()
        n = codes.shape[0]
        side = cm.read_side(codes, self._side_offset, self._n_side)
        out = np.zeros((n, self.dim), dtype=np.float32)
        for i, block in enumerate(self._blocks):
            chat = np.zeros((n, block.k), dtype=np.float32)
            for s in block.slices:
                chat[:, s.start : s.stop] = ops.decode_values(codes, s.offset, s.bits, s.k, s.values)
            out[:, block.channels] = block.rotation.inverse(chat) * side[:, i : i + 1]
        if self.variant == "prod":
            signs = ops.decode_values(
                codes, self._sign_offset, 1, self.dim, np.array([-1.0, 1.0], np.float32)
            )
            gamma = side[:, len(self._blocks)]
            out += (signs @ self._sketch) * (gamma * np.float32(self.estimator_scale))[:, None]
        c = self._centre(centre)
        if c is not None:
            out += c[None, :]
        return out

    # ---- scoring ---------------------------------------------------------------------------
    def prepare(self, queries, /) -> PreparedQueries:
        """Rotate (and sketch) queries once: (m, d) float32 -> PreparedQueries."""
        q = as_float32_matrix(queries, self.dim, name="queries")
        ops = get_ops()
        rot = [
            # FHT-Kac: the backend's rotation (bit for bit the NumPy one; numba's is ~50x faster on one query)
            ops.fht_kac_rotate(q if _all_channels(b, self.dim) else q[:, b.channels], b.rotation.signs)
            if isinstance(b.rotation, FhtKacRotation)
            else np.ascontiguousarray(
                getattr(b.rotation, "forward_queries", b.rotation.forward)(q[:, b.channels])
            )
            for b in self._blocks
        ]
        data: dict[str, Any] = {"rotated": rot}
        if self.variant == "prod":
            data["sketched"] = np.ascontiguousarray(q @ self._sketch.T, dtype=np.float32)
        return PreparedQueries(q, data)

    def _score_residual(self, prepared: PreparedQueries, codes: np.ndarray) -> np.ndarray:
        ops = get_ops()
        m, n = prepared.queries.shape[0], codes.shape[0]
        side = cm.read_side(codes, self._side_offset, self._n_side)
        out = np.zeros((m, n), dtype=np.float32)
        for i, block in enumerate(self._blocks):
            out += self._block_scores(ops, prepared.data["rotated"][i], codes, block) * side[None, :, i]
        if self.variant == "prod":
            raw = ops.sign_scores(prepared.data["sketched"], codes, self._sign_offset)
            gamma = side[:, len(self._blocks)]
            out += raw * (gamma * np.float32(self.estimator_scale))[None, :]
        if self._offset_side is not None:
            out += side[None, :, self._offset_side]
        return out

    def score_offsets(self, codes, /) -> np.ndarray:
        """(n,) float32 per-vector additive term β of the scores (zeros unless ``centred_query``).

        ``score(q, codes) == q @ decode(codes).T + score_offsets(codes)`` up to float rounding.
        """
        codes = as_codes(codes, self.code_size)
        if self._offset_side is None:
            return np.zeros(codes.shape[0], dtype=np.float32)
        return cm.read_side(codes, self._side_offset, self._n_side)[:, self._offset_side].copy()

    # ---- hook for the fast-scan kernels (vqdb.kernels.scanner; owner: speed) ----------------
    def scan_parts(self) -> dict[str, Any]:
        """What :meth:`_score_residual` sums, as plain data for :mod:`vqdb.kernels.scanner`.

        ``score_residual = Σ_parts side[:, p["side"]] * p["mult"] * Σ_j Q[:, j] * p["values"][idx_j]`` with
        ``Q = prepared.data[key][index][:, start:stop]`` (``p["query"] = (key, index, start, stop)``; index
        None = no list), ``idx`` the ``p["bits"]``-bit indices of ``p["k"]`` coordinates packed at byte
        ``p["offset"]``; ``side`` = the float32 side data at ``side_offset`` (``n_side`` floats); plus
        ``side[:, additive]`` when ``additive`` is not None (the centred-query term β, a per-vector constant).
        """
        parts = [
            {
                "offset": s.offset,
                "bits": s.bits,
                "k": s.k,
                "values": s.values,
                "query": ("rotated", i, s.start, s.stop),
                "side": i,
                "mult": 1.0,
            }
            for i, b in enumerate(self._blocks)
            for s in b.slices
        ]
        if self.variant == "prod":
            parts.append(
                {
                    "offset": self._sign_offset,
                    "bits": 1,
                    "k": self.dim,
                    "values": np.array([-1.0, 1.0], np.float32),
                    "query": ("sketched", None, 0, self.dim),
                    "side": len(self._blocks),
                    "mult": float(np.float32(self.estimator_scale)),
                }
            )
        return {
            "parts": parts,
            "side_offset": self._side_offset,
            "n_side": self._n_side,
            "additive": self._offset_side,
        }

    @staticmethod
    def _block_scores(ops, rq: np.ndarray, codes: np.ndarray, block: _Block) -> np.ndarray:
        """(m, n) float32 Σ_j (Πq)_j ĉ_j over the coded coordinates of one block (no side factor).

        One slice, or few queries: the backend's fused lookup-table scan per slice. Several slices and
        many queries: decode a tile of codes across all slices and do one matmul per tile.
        """
        m, n = rq.shape[0], codes.shape[0]
        if len(block.slices) == 1 or m < _GEMM_MIN_QUERIES:
            raw = np.zeros((m, n), dtype=np.float32)
            for s in block.slices:
                raw += ops.lut_scores(
                    np.ascontiguousarray(rq[:, s.start : s.stop]), codes, s.offset, s.bits, s.values
                )
            return raw
        lo, hi = block.slices[0].start, max(s.stop for s in block.slices)
        rq = np.ascontiguousarray(rq[:, lo:hi])
        out = np.empty((m, n), dtype=np.float32)
        tile = np.zeros((min(n, _TILE), hi - lo), dtype=np.float32)
        for t0 in range(0, n, _TILE):
            rows = codes[t0 : t0 + _TILE]
            buf = tile[: rows.shape[0]]
            for s in block.slices:
                buf[:, s.start - lo : s.stop - lo] = ops.decode_values(rows, s.offset, s.bits, s.k, s.values)
            np.matmul(rq, buf.T, out=out[:, t0 : t0 + rows.shape[0]])
        return out

    # ---- helpers for other modules (kvcache) -----------------------------------------------
    def _single(self) -> _Block:
        if (
            len(self._blocks) != 1
            or len(self._blocks[0].slices) != 1
            or self._blocks[0].slices[0].k != self._blocks[0].k
        ):
            raise InvalidInputError(
                "rotate()/codebook are defined for integer-bit TurboQuantizers with one "
                "codebook (random rotation, not prod at 1 bit)"
            )
        return self._blocks[0]

    def rotate(self, x) -> np.ndarray:
        """Apply the (single-block) rotation Π to rows: (n, d) -> (n, k) float32 (k = d, or p for Hadamard)."""
        block = self._single()
        return block.rotation.forward(as_float32_matrix(x, self.dim))

    @property
    def codebook(self) -> tuple[np.ndarray, np.ndarray]:
        """(centroids, boundaries) float64 of the single codebook, unit-vector coordinate scale."""
        s = self._single().slices[0]
        return s.centroids, s.boundaries

    # ---- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        arrays: dict[str, np.ndarray] = {"channels": self.channels_.copy()}
        for i, b in enumerate(self._blocks):
            if isinstance(b.rotation, DenseRotation):
                arrays[f"part{i}.rotation"] = b.rotation.matrix_.copy()
            else:
                arrays[f"part{i}.signs"] = b.rotation.signs.copy()
            arrays[f"part{i}.slices"] = np.array(
                [[s.start, s.stop, s.bits] for s in b.slices], dtype=np.int64
            ).reshape(-1, 3)
            width = 1 << max([s.bits for s in b.slices], default=0)
            arrays[f"part{i}.centroids"] = _pad_table([s.centroids for s in b.slices], width, 0.0)
            arrays[f"part{i}.boundaries"] = _pad_table([s.boundaries for s in b.slices], width - 1, np.inf)
        if self._sketch is not None:
            arrays["sketch"] = self._sketch.copy()
        if self.centre_ is not None:
            arrays["centre"] = np.asarray(self.centre_, dtype=np.float32).copy()
        config = {
            "dim": self.dim,
            "bits": self.bits,
            "variant": self.variant,
            "rotation": self.rotation_kind,
            "seed": self.seed,
            "scales": list(self.scales),
        }
        if self.centred_query:  # absent from states written before the centred estimator: they load unchanged
            config["centred_query"] = True
        return {"kind": self.kind, "config": config, "arrays": arrays}

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild blocks from persisted arrays (no random draws)."""

        def need(name):
            if name not in arrays:
                raise InvalidInputError(f"TurboQuantizer state is missing array {name!r}")
            return arrays[name]

        perm = np.asarray(need("channels"), dtype=np.int64)
        if perm.shape != (self.dim,) or not np.array_equal(np.sort(perm), np.arange(self.dim)):
            raise InvalidInputError(f"state array 'channels' must be a permutation of range({self.dim})")
        self.channels_ = perm
        n_blocks = (
            1 if self.rotation_kind == "pca" else len(self._random_split(self.dim, self.bits, self.variant))
        )
        self._blocks = []
        start = 0
        for i in range(n_blocks):
            if self.rotation_kind == "pca":
                chans = np.arange(self.dim, dtype=np.int64)
            else:
                n_ch = self._random_split(self.dim, self.bits, self.variant)[i][0]
                chans = perm[start : start + n_ch]
                start += n_ch
            if f"part{i}.signs" in arrays and self.rotation_kind in ("fht", "hadamard"):
                drawn = self._random_rotation(chans.size, np.random.default_rng(0)).signs.shape
                signs = checks.signs(f"part{i}.signs", arrays[f"part{i}.signs"], drawn)
                rotation = FhtKacRotation if self.rotation_kind == "fht" else HadamardRotation
                rot = rotation(chans.size, signs=signs)
            else:
                mat = np.asarray(
                    checks.finite(f"part{i}.rotation", need(f"part{i}.rotation"), bound=1.0), dtype=np.float32
                )
                if mat.shape != (chans.size, chans.size):
                    raise InvalidInputError(
                        f"state array 'part{i}.rotation' must be ({chans.size}, {chans.size}); "
                        f"got {mat.shape}"
                    )
                rot = DenseRotation(mat)
            table = checks.rows(f"part{i}.slices", need(f"part{i}.slices"), np.int64, width=3)
            cents = checks.rows(f"part{i}.centroids", need(f"part{i}.centroids"), np.float64, n=len(table))
            bounds = checks.rows(f"part{i}.boundaries", need(f"part{i}.boundaries"), np.float64, n=len(table))
            checks.codebook(f"part{i}", table, cents, bounds, rot.out_dim)
            slices = [
                _Slice(a, b, bits, cents[j, : 1 << bits], bounds[j, : (1 << bits) - 1])
                for j, (a, b, bits) in enumerate(table.tolist())
            ]
            self._blocks.append(_Block(chans, rot, slices))
        self._sketch = None
        if self.variant == "prod":
            self._sketch = np.ascontiguousarray(
                checks.finite("sketch", need("sketch"), bound=math.sqrt(self.dim)), dtype=np.float32
            )
            if self._sketch.shape != (self.dim, self.dim):
                raise InvalidInputError(
                    f"state array 'sketch' must be ({self.dim}, {self.dim}); got {self._sketch.shape}"
                )
        if "centre" in arrays:
            self.centre_ = np.ascontiguousarray(
                checks.vector("centre", arrays["centre"], self.dim), np.float32
            )
        self._layout()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TurboQuantizer:
        config, arrays = cm.check_state(state, cls.kind)
        return cls(
            config["dim"],
            config["bits"],
            variant=config["variant"],
            rotation=config["rotation"],
            seed=config["seed"],
            scales=tuple(config.get("scales", DEFAULT_SCALES)),
            centred_query=bool(config.get("centred_query", False)),
            _arrays=arrays,
        )

    @staticmethod
    def code_size_for(
        dim: int,
        bits: float = 4,
        variant: str = "scaled",
        rotation: str = "dense",
        *,
        centred_query: bool = False,
    ) -> int:
        """``code_size`` without drawing any random state (cheap; used by :func:`vqdb.presets`)."""
        bits = TurboQuantizer._check_bits(bits)
        dim = cm.check_dim(dim)
        extra = 4 if centred_query else 0
        if rotation == "pca":
            return -(-int(round(bits * 8)) * dim // 64) + 8 + extra
        k = (lambda n: 1 << max(0, int(n - 1).bit_length())) if rotation == "hadamard" else (lambda n: n)
        parts = TurboQuantizer._random_split(dim, bits, variant)
        size = sum(packed_size(k(n), b) for n, b in parts) + 4 * (len(parts) + 1) + extra
        if variant == "prod":
            size += packed_size(dim, 1) + 4
        return size
