"""TurboQuant (arXiv 2504.19874): random rotation + per-coordinate Lloyd–Max codes, three variants.

See :class:`TurboQuantizer` for the byte layout and the estimators.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_codes, as_float32_matrix
from ..errors import InvalidInputError, UnknownNameError
from ..kernels import get_ops
from . import _common as cm
from ._codebooks import lloyd_max
from ._packing import packed_size
from ._rotation import DenseRotation, HadamardRotation, haar_rotation, orthogonal_sketch
from .base import PreparedQueries, Quantizer

VARIANTS = ("scaled", "mse", "prod")
ROTATIONS = ("dense", "hadamard")
INTEGER_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
FRACTIONAL_BITS = {2.5: (3, 2, 4), 3.5: (4, 3, 2)}  # rate -> (high bits, low bits, 1/fraction of high channels)

# per-vector pre-scales t tried by the "scaled" encoder (quantize u*t, keep the code whose
# reconstruction has the highest cosine with u); t = 1 first so ties keep the plain Lloyd–Max code
DEFAULT_SCALES = (1.0, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2, 1.3)


class _Part:
    """One channel subset quantized on its own: rotation, codebook, bit width."""

    def __init__(self, channels: np.ndarray, bits: int, rotation, centroids: np.ndarray, boundaries: np.ndarray):
        self.channels = np.ascontiguousarray(channels, dtype=np.int64)
        self.bits = int(bits)
        self.rotation = rotation
        self.k = rotation.out_dim
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float64)
        self.boundaries = np.ascontiguousarray(boundaries, dtype=np.float64)
        self.values = self.centroids.astype(np.float32)
        self.nbytes = packed_size(self.k, self.bits)


class TurboQuantizer(Quantizer):
    """TurboQuant: rotate, then quantize every coordinate with the Lloyd–Max codebook of its exact law.

    Parameters
    ----------
    dim : int >= 2
        Dimension d of the vectors.
    bits : {1, 2, 3, 4, 5, 6, 7, 8, 2.5, 3.5}
        Bits per coordinate of the codes (side floats come on top). Fractional rates split the
        channels into an outlier set and a regular set, each with its own rotation and codebook:
        2.5 = d//4 channels at 3 bits + the rest at 2; 3.5 = d//2 channels at 4 bits + the rest at 3.
        The outlier channels are the highest-variance channels of the data given to :meth:`fit`
        (the first d//4 resp. d//2 channels when unfitted). Re-fitting changes the split, so
        encode after fitting.
    variant : {"scaled", "mse", "prod"}
        ``mse`` (Algorithm 1): estimate ``||r|| <Πq, c[idx]>`` — biased by the factor 1 − D_mse.
        ``scaled`` (default; EDEN / RaBitQ-style length renormalisation): stores
        ``||r|| / <u, ĉ>`` instead of ``||r||`` (u = Πr/||r||, ĉ = c[idx]) so that
        ``<q, r> ≈ ||r|| <Πq, ĉ> / <u, ĉ>``; since this estimate ignores the norm of ĉ, the encoder
        tries a few pre-scales t (quantizes u·t) and keeps the code whose reconstruction has the
        highest cosine with u (no extra bytes, no training).
        ``prod`` (Algorithm 2): (b−1)-bit ``mse`` + 1-bit QJL of the residual with an orthogonal
        sketch S independent of Π, scale ``1/(d·sqrt(d)·E|u_1|) ≈ sqrt(π/2)/d`` for rows of norm sqrt(d)
        (= sqrt(π/2)/sqrt(d) for unit rows), and the real residual norm stored. Integer bits only.
    rotation : {"dense", "hadamard"}
        Haar rotation (d×d) or randomized Hadamard (3 rounds of H·D on the input zero-padded to the
        next power of two p; codes then cover p coordinates).
    seed : int
        Seeds every random draw (rotations, sketch); the draws are persisted by :meth:`state_dict`.

    Notes
    -----
    Byte layout of one code (``code_size`` bytes), for parts P = [all channels] (integer bits) or
    [outliers, regular] (fractional bits), k_p coordinates per part after rotation:

    ============================================  ==========================================
    bytes                                         content
    ============================================  ==========================================
    ``ceil(k_p * b_p / 8)`` per part, in order    b_p-bit Lloyd–Max indices, LSB-first
                                                  bitstream (:mod:`vqdb.quantizers._packing`)
    ``ceil(d / 8)`` (prod only)                   QJL sign bits of S·e, bit=1 iff > 0
    4 per part, float32 LE                        ``mse``: ||r_p||; ``scaled``: ||r_p||/<u_p, ĉ_p>;
                                                  ``prod``: ||r|| (absent when b = 1)
    4 (prod only), float32 LE                     γ = ||e||, e = r − mse reconstruction
    4, float32 LE                                 exact ||x||² of the original vector
    ============================================  ==========================================

    r = x − centre is the residual from the fitted mean (``fit``) or the ``centre=`` argument.
    ``score(q, codes)`` equals ``q @ decode(codes).T`` up to float rounding.

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

    def __init__(self, dim: int, bits: float = 4, *, variant: str = "scaled", rotation: str = "dense", seed: int = 0,
                 _arrays: dict[str, np.ndarray] | None = None):
        self.dim = cm.check_dim(dim)
        self.bits = self._check_bits(bits)
        if variant not in VARIANTS:
            raise UnknownNameError(f"unknown TurboQuant variant {variant!r}; expected one of {list(VARIANTS)}")
        if rotation not in ROTATIONS:
            raise UnknownNameError(f"unknown rotation {rotation!r}; expected one of {list(ROTATIONS)}")
        self.variant = variant
        self.rotation_kind = rotation
        self.seed = cm.check_seed(seed)
        if self.variant == "prod" and not isinstance(self.bits, int):
            raise InvalidInputError(f"variant 'prod' needs integer bits; got {self.bits}")
        self.scales = DEFAULT_SCALES if (variant == "scaled" and self._max_bits() > 1) else (1.0,)
        self.centre_ = None
        self._build(_arrays)

    # ---- construction ----------------------------------------------------------------------
    @staticmethod
    def _check_bits(bits) -> int | float:
        if isinstance(bits, bool):
            raise InvalidInputError(f"bits must be one of {list(INTEGER_BITS) + sorted(FRACTIONAL_BITS)}; got {bits!r}")
        if isinstance(bits, (int, np.integer)) and int(bits) in INTEGER_BITS:
            return int(bits)
        if isinstance(bits, (float, np.floating)):
            if float(bits).is_integer() and int(bits) in INTEGER_BITS:
                return int(bits)
            if float(bits) in FRACTIONAL_BITS:
                return float(bits)
        raise InvalidInputError(f"bits must be one of {list(INTEGER_BITS) + sorted(FRACTIONAL_BITS)}; got {bits!r}")

    def _max_bits(self) -> int:
        return FRACTIONAL_BITS[self.bits][0] if isinstance(self.bits, float) else self.bits

    def _split(self) -> list[tuple[int, int]]:
        """[(n_channels, bits)] per part."""
        if isinstance(self.bits, int):
            mse_bits = self.bits - 1 if self.variant == "prod" else self.bits
            return [(self.dim, mse_bits)] if mse_bits > 0 else []
        hi_bits, lo_bits, frac = FRACTIONAL_BITS[self.bits]
        n_hi = self.dim // frac
        if n_hi < 2 or self.dim - n_hi < 2:
            raise InvalidInputError(f"{self.bits}-bit TurboQuant needs dim >= {2 * frac}; got {self.dim}")
        return [(n_hi, hi_bits), (self.dim - n_hi, lo_bits)]

    def _build(self, arrays: dict[str, np.ndarray] | None) -> None:
        rng = np.random.default_rng(self.seed)
        split = self._split()
        if arrays is not None and "channels" in arrays:
            perm = np.asarray(arrays["channels"], dtype=np.int64)
            if perm.shape != (self.dim,) or not np.array_equal(np.sort(perm), np.arange(self.dim)):
                raise InvalidInputError(f"state array 'channels' must be a permutation of range({self.dim})")
        else:
            perm = np.arange(self.dim, dtype=np.int64)
        self.channels_ = perm
        self._parts: list[_Part] = []
        start = 0
        for i, (n_ch, bits) in enumerate(split):
            chans = perm[start : start + n_ch]
            start += n_ch
            if self.rotation_kind == "dense":
                mat = arrays[f"part{i}.rotation"] if arrays is not None else haar_rotation(n_ch, rng)
                mat = np.asarray(mat, dtype=np.float32)
                if mat.shape != (n_ch, n_ch):
                    raise InvalidInputError(f"state array 'part{i}.rotation' must be ({n_ch}, {n_ch}); got {mat.shape}")
                rot = DenseRotation(mat)
            else:
                signs = arrays[f"part{i}.signs"] if arrays is not None else None
                rot = HadamardRotation(n_ch, rng if signs is None else None, signs=signs)
            if arrays is not None and f"part{i}.centroids" in arrays:
                c, b = arrays[f"part{i}.centroids"], arrays[f"part{i}.boundaries"]
            else:
                c, b = lloyd_max(bits, rot.out_dim)
            self._parts.append(_Part(chans, bits, rot, c, b))
        self._sketch = None
        if self.variant == "prod":
            s = arrays["sketch"] if arrays is not None else orthogonal_sketch(self.dim, self.dim, rng)
            self._sketch = np.ascontiguousarray(s, dtype=np.float32)
            if self._sketch.shape != (self.dim, self.dim):
                raise InvalidInputError(f"state array 'sketch' must be ({self.dim}, {self.dim}); got {self._sketch.shape}")
            self.estimator_scale = cm.sign_estimator_scale(self.dim, self.dim)
        if arrays is not None and "centre" in arrays:
            self.centre_ = np.ascontiguousarray(arrays["centre"], dtype=np.float32)
        # byte offsets
        off = 0
        self._offsets = []
        for p in self._parts:
            self._offsets.append(off)
            off += p.nbytes
        self._sign_offset = off
        if self.variant == "prod":
            off += packed_size(self.dim, 1)
        self._side_offset = off
        self._n_side = len(self._parts) + (1 if self.variant == "prod" else 0) + 1
        self.code_size = off + 4 * self._n_side

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, x, /) -> "TurboQuantizer":
        """Store the mean as ``centre_``; for fractional bits also pick the outlier channels.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, n >= 1

        Returns
        -------
        self
        """
        super().fit(x)
        if isinstance(self.bits, float):
            x = as_float32_matrix(x, self.dim)
            var = np.var(x.astype(np.float64), axis=0)
            n_hi = self._split()[0][0]
            hi = np.sort(np.argsort(-var, kind="stable")[:n_hi])
            lo = np.setdiff1d(np.arange(self.dim), hi)
            perm = np.concatenate([hi, lo]).astype(np.int64)
            for part, chans in zip(self._parts, (perm[:n_hi], perm[n_hi:])):
                part.channels = np.ascontiguousarray(chans)
            self.channels_ = perm
        return self

    # ---- encode / decode -------------------------------------------------------------------
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
        """
        r, sq = cm.residual(self, x, centre)
        ops = get_ops()
        n = r.shape[0]
        codes = np.zeros((n, self.code_size), dtype=np.uint8)
        side = []
        recon = np.zeros_like(r) if self.variant == "prod" else None
        for part, off in zip(self._parts, self._offsets):
            rp = np.ascontiguousarray(r[:, part.channels])
            y = part.rotation.forward(rp)
            nrm = cm.row_norms(rp)
            safe = np.where(nrm > 0, nrm, 1.0)
            u = np.ascontiguousarray((y / safe[:, None]).astype(np.float32))
            if self.variant == "scaled" and len(self.scales) > 1:
                packed = ops.encode_scaled(u, part.boundaries, part.centroids, np.asarray(self.scales), part.bits)
            else:
                packed = ops.encode_scalar(u, part.boundaries, part.bits)
            codes[:, off : off + part.nbytes] = packed
            chat = ops.decode_values(packed, 0, part.bits, part.k, part.values)
            if self.variant == "scaled":
                dot = np.einsum("ij,ij->i", u.astype(np.float64), chat.astype(np.float64))
                factor = np.where((dot > 0) & (nrm > 0), nrm / np.where(dot > 0, dot, 1.0), 0.0)
            else:
                factor = nrm
            side.append(factor)
            if recon is not None:
                recon[:, part.channels] = part.rotation.inverse(chat) * nrm[:, None].astype(np.float32)
        if self.variant == "prod":
            e = r - recon
            gamma = cm.row_norms(e)
            proj = e @ self._sketch.T
            codes[:, self._sign_offset : self._sign_offset + packed_size(self.dim, 1)] = ops.pack_bits(
                (proj > 0).astype(np.uint8), 1)
            side.append(gamma)
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
        for i, (part, off) in enumerate(zip(self._parts, self._offsets)):
            chat = ops.decode_values(codes, off, part.bits, part.k, part.values)
            out[:, part.channels] = part.rotation.inverse(chat) * side[:, i : i + 1]
        if self.variant == "prod":
            signs = ops.decode_values(codes, self._sign_offset, 1, self.dim, np.array([-1.0, 1.0], np.float32))
            gamma = side[:, len(self._parts)]
            out += (signs @ self._sketch) * (gamma * np.float32(self.estimator_scale))[:, None]
        c = self._centre(centre)
        if c is not None:
            out += c[None, :]
        return out

    # ---- scoring ---------------------------------------------------------------------------
    def prepare(self, queries, /) -> PreparedQueries:
        """Rotate (and sketch) queries once: (m, d) float32 -> PreparedQueries."""
        q = as_float32_matrix(queries, self.dim, name="queries")
        rot = [np.ascontiguousarray(p.rotation.forward(np.ascontiguousarray(q[:, p.channels]))) for p in self._parts]
        data: dict[str, Any] = {"rotated": rot}
        if self.variant == "prod":
            data["sketched"] = np.ascontiguousarray(q @ self._sketch.T, dtype=np.float32)
        return PreparedQueries(q, data)

    def _score_residual(self, prepared: PreparedQueries, codes: np.ndarray) -> np.ndarray:
        ops = get_ops()
        m, n = prepared.queries.shape[0], codes.shape[0]
        side = cm.read_side(codes, self._side_offset, self._n_side)
        out = np.zeros((m, n), dtype=np.float32)
        for i, (part, off) in enumerate(zip(self._parts, self._offsets)):
            raw = ops.lut_scores(prepared.data["rotated"][i], codes, off, part.bits, part.values)
            out += raw * side[None, :, i]
        if self.variant == "prod":
            raw = ops.sign_scores(prepared.data["sketched"], codes, self._sign_offset)
            gamma = side[:, len(self._parts)]
            out += raw * (gamma * np.float32(self.estimator_scale))[None, :]
        return out

    # ---- hook for the fast-scan kernels (vqdb.kernels.scanner) ------------------------------
    def scan_parts(self) -> dict[str, Any]:
        """What :meth:`_score_residual` sums, as plain data for :mod:`vqdb.kernels.scanner`.

        ``score_residual = Σ_parts side[:, p["side"]] * p["mult"] * Σ_j Q[:, j] * p["values"][idx_j]`` with
        ``Q = prepared.data[key]`` (``[index]`` when index is not None), ``idx`` the ``p["bits"]``-bit
        indices of ``p["k"]`` coordinates packed at byte ``p["offset"]``; ``side`` = the float32 side
        data at ``side_offset`` (``n_side`` floats).
        """
        parts = [{"offset": off, "bits": p.bits, "k": p.k, "values": p.values, "query": ("rotated", i), "side": i,
                  "mult": 1.0} for i, (p, off) in enumerate(zip(self._parts, self._offsets))]
        if self.variant == "prod":
            parts.append({"offset": self._sign_offset, "bits": 1, "k": self.dim, "values": np.array([-1.0, 1.0], np.float32),
                          "query": ("sketched", None), "side": len(self._parts), "mult": float(np.float32(self.estimator_scale))})
        return {"parts": parts, "side_offset": self._side_offset, "n_side": self._n_side}

    # ---- helpers for other modules (kvcache) -----------------------------------------------
    def rotate(self, x) -> np.ndarray:
        """Apply the (single-part) rotation Π to rows: (n, d) -> (n, k) float32 (k = d, or p for Hadamard)."""
        if len(self._parts) != 1 or not np.array_equal(self.channels_, np.arange(self.dim)):
            raise InvalidInputError("rotate() is defined for integer-bit TurboQuantizers with an mse part")
        x = as_float32_matrix(x, self.dim)
        return self._parts[0].rotation.forward(x)

    @property
    def codebook(self) -> tuple[np.ndarray, np.ndarray]:
        """(centroids, boundaries) float64 of the (single) mse part, unit-vector coordinate scale."""
        if len(self._parts) != 1:
            raise InvalidInputError("codebook is defined for integer-bit TurboQuantizers with an mse part")
        return self._parts[0].centroids, self._parts[0].boundaries

    # ---- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        arrays: dict[str, np.ndarray] = {"channels": self.channels_.copy()}
        for i, p in enumerate(self._parts):
            if isinstance(p.rotation, DenseRotation):
                arrays[f"part{i}.rotation"] = p.rotation.matrix_.copy()
            else:
                arrays[f"part{i}.signs"] = p.rotation.signs.copy()
            arrays[f"part{i}.centroids"] = p.centroids.copy()
            arrays[f"part{i}.boundaries"] = p.boundaries.copy()
        if self._sketch is not None:
            arrays["sketch"] = self._sketch.copy()
        if self.centre_ is not None:
            arrays["centre"] = np.asarray(self.centre_, dtype=np.float32).copy()
        config = {"dim": self.dim, "bits": self.bits, "variant": self.variant, "rotation": self.rotation_kind,
                  "seed": self.seed}
        return {"kind": self.kind, "config": config, "arrays": arrays}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "TurboQuantizer":
        config, arrays = cm.check_state(state, cls.kind)
        return cls(config["dim"], config["bits"], variant=config["variant"], rotation=config["rotation"],
                   seed=config["seed"], _arrays=arrays)

    @staticmethod
    def code_size_for(dim: int, bits: float = 4, variant: str = "scaled", rotation: str = "dense") -> int:
        """``code_size`` without drawing any random state (cheap; used by :func:`vqdb.presets`)."""
        bits = TurboQuantizer._check_bits(bits)
        k = (lambda n: 1 << max(0, int(n - 1).bit_length())) if rotation == "hadamard" else (lambda n: n)
        if isinstance(bits, float):
            hi_bits, lo_bits, frac = FRACTIONAL_BITS[bits]
            n_hi = dim // frac
            if n_hi < 2 or dim - n_hi < 2:
                raise InvalidInputError(f"{bits}-bit TurboQuant needs dim >= {2 * frac}; got {dim}")
            parts = [(n_hi, hi_bits), (dim - n_hi, lo_bits)]
        else:
            mse_bits = bits - 1 if variant == "prod" else bits
            parts = [(dim, mse_bits)] if mse_bits > 0 else []
        size = sum(packed_size(k(n), b) for n, b in parts) + 4 * (len(parts) + 1)
        if variant == "prod":
            size += packed_size(dim, 1) + 4
        return size
