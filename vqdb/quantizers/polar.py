"""PolarQuant (arXiv 2502.02617): rotation, recursive polar transform, per-level angle codebooks."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core.packing import packed_size
from .._validation import as_codes, as_float32_matrix
from ..errors import InvalidInputError
from ..kernels import get_ops
from . import _common as cm
from . import _state_checks as checks
from ._codebooks import angle_codebook
from ._rotation import DenseRotation, haar_rotation
from .base import PreparedQueries, Quantizer

_TILE = 8192


class PolarQuantizer(Quantizer):
    """PolarQuant: per block of ``2**levels`` rotated coordinates, quantized polar angles + an fp16 radius.

    Parameters
    ----------
    dim : int >= 2
        Dimension d. The residual is zero-padded to ``p = ceil(d / 2**levels) * 2**levels`` and
        rotated by a Haar rotation of R^p (restricted to the first d inputs).
    levels : int in [1, 8]
        Recursion depth L; blocks of B = 2**L coordinates.
    level_bits : tuple of L ints in [1, 8]
        Bits per angle at each level (paper: 4, 2, 2, 2 → 3.875 bits per coordinate with the radius).
    seed : int
        Seeds the rotation (persisted as an array by :meth:`state_dict`).

    Notes
    -----
    Level 1 angles ``atan2(y_{2j+1}, y_{2j})`` live on [0, 2π) (uniform law, uniform codebook); level
    ℓ ≥ 2 angles ``atan2(ρ_{2j+1}, ρ_{2j})`` of pairs of radii live on [0, π/2] with density
    ∝ sin^(2^(ℓ-1)-1)(2ψ); each level has its Lloyd–Max codebook (:func:`angle_codebook`). The block
    radius (the norm of the block) is stored as float16. Scores are ``<Πq, ŷ>`` against the
    reconstruction in the rotated space (``score == q @ decode.T``).

    Byte layout, with nb = p / B blocks and ``a_ℓ = nb · B / 2^ℓ`` angles at level ℓ:

    ===================================  ============================================================
    bytes                                content
    ===================================  ============================================================
    ``ceil(a_ℓ · bits_ℓ / 8)``, ℓ=1..L   level-ℓ angle indices, block-major (angle j of block i is
                                         entry ``i · B/2^ℓ + j``), LSB-first bitstream
    ``2 · nb``                           block radii, float16 LE
    4, float32 LE                        exact ||x||²
    ===================================  ============================================================

    d = 128 with the defaults: 32 + 8 + 4 + 2 + 16 + 4 = 66 bytes (the paper's 62 + the ||x||² float).
    """

    kind = "polar"

    def __init__(
        self,
        dim: int,
        levels: int = 4,
        level_bits: tuple[int, ...] = (4, 2, 2, 2),
        seed: int = 0,
        *,
        _arrays=None,
    ):
        self.dim = cm.check_dim(dim)
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 8:
            raise InvalidInputError(f"levels must be an integer in [1, 8]; got {levels!r}")
        self.levels = int(levels)
        try:
            lb = tuple(int(b) for b in level_bits)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"level_bits must be a tuple of {levels} integers in [1, 8]; got {level_bits!r}"
            ) from None
        if (
            len(lb) != self.levels
            or any(not 1 <= b <= 8 for b in lb)
            or any(not float(b).is_integer() for b in level_bits)
        ):
            raise InvalidInputError(
                f"level_bits must be a tuple of {self.levels} integers in [1, 8]; got {level_bits!r}"
            )
        self.level_bits = lb
        self.seed = cm.check_seed(seed)
        self.block = 2**self.levels
        self.padded_dim = -(-self.dim // self.block) * self.block
        self.n_blocks = self.padded_dim // self.block
        self.centre_ = None
        if _arrays is not None and "rotation" in _arrays:
            mat = np.asarray(checks.finite("rotation", _arrays["rotation"], bound=1.0), dtype=np.float32)
            if mat.shape != (self.padded_dim, self.dim):
                raise InvalidInputError(
                    f"state array 'rotation' must be ({self.padded_dim}, {self.dim}); got {mat.shape}"
                )
        else:
            mat = haar_rotation(self.padded_dim, np.random.default_rng(self.seed))[:, : self.dim]
        self._rotation = DenseRotation(mat)
        if _arrays is not None and "centre" in _arrays:
            self.centre_ = np.ascontiguousarray(
                checks.vector("centre", _arrays["centre"], self.dim), np.float32
            )
        self.codebooks = [angle_codebook(level, bits) for level, bits in enumerate(self.level_bits, start=1)]
        self._cos = [np.cos(c).astype(np.float32) for c, _ in self.codebooks]
        self._sin = [np.sin(c).astype(np.float32) for c, _ in self.codebooks]
        self._counts = [self.padded_dim >> level for level in range(1, self.levels + 1)]
        self._offsets = []
        off = 0
        for count, bits in zip(self._counts, self.level_bits):
            self._offsets.append(off)
            off += packed_size(count, bits)
        self._radius_offset = off
        self._sq_offset = off + 2 * self.n_blocks
        self.code_size = self._sq_offset + 4

    # ---- transform -------------------------------------------------------------------------
    def rotate(self, x) -> np.ndarray:
        """(n, d) -> (n, padded_dim) float32 rotated (zero-padded) rows."""
        return self._rotation.forward(as_float32_matrix(x, self.dim))

    def encode(self, x, /, *, centre=None) -> np.ndarray:
        """(n, d) float32 -> (n, code_size) uint8 (layout in the class docstring)."""
        x = as_float32_matrix(x, self.dim)
        c = self._centre(centre)
        c = None if c is not None and not c.any() else c  # x - 0 == x: skip the pass (IVF residual batches)
        ops = get_ops()
        codes = np.zeros((x.shape[0], self.code_size), dtype=np.uint8)

        def tile(t0: int) -> None:  # the whole recursion on one row tile (cm.run_tiles)
            xt = x[t0 : t0 + cm.ENCODE_TILE]
            r = xt if c is None else xt - c[None, :]
            ct = codes[t0 : t0 + cm.ENCODE_TILE]
            n = r.shape[0]
            rho = self._rotation.forward(r).astype(np.float64)  # (n, p), level-0 "radii" (signed)
            for level in range(1, self.levels + 1):
                a, b = rho[:, 0::2], rho[:, 1::2]
                psi = np.arctan2(b, a)
                if level == 1:
                    psi = np.mod(psi, 2 * np.pi)
                rho = np.hypot(a, b)
                _, bounds = self.codebooks[level - 1]
                bits = self.level_bits[level - 1]
                off = self._offsets[level - 1]
                ct[:, off : off + packed_size(psi.shape[1], bits)] = ops.encode_scalar(
                    np.ascontiguousarray(psi, dtype=np.float32), bounds, bits
                )
            radii = np.ascontiguousarray(rho.astype("<f2"))  # (n, n_blocks)
            ct[:, self._radius_offset : self._sq_offset] = radii.view(np.uint8).reshape(n, 2 * self.n_blocks)
            x64 = xt.astype(np.float64)
            cm.write_side(ct, self._sq_offset, np.einsum("ij,ij->i", x64, x64)[:, None])

        cm.run_tiles(tile, x.shape[0], ops)
        return codes

    def _decode_rotated(self, codes: np.ndarray) -> np.ndarray:
        """(n, code_size) -> (n, padded_dim) float32 reconstruction in the rotated space."""
        ops = get_ops()
        n = codes.shape[0]
        radii = np.ascontiguousarray(codes[:, self._radius_offset : self._sq_offset]).view("<f2")
        rho = radii.astype(np.float32).reshape(n, self.n_blocks)
        for level in range(self.levels, 0, -1):
            bits, off, count = self.level_bits[level - 1], self._offsets[level - 1], self._counts[level - 1]
            cos = ops.decode_values(codes, off, bits, count, self._cos[level - 1])
            sin = ops.decode_values(codes, off, bits, count, self._sin[level - 1])
            nxt = np.empty((n, 2 * count), dtype=np.float32)
            nxt[:, 0::2] = rho * cos
            nxt[:, 1::2] = rho * sin
            rho = nxt
        return rho

    def decode(self, codes, /, *, centre=None) -> np.ndarray:
        """(n, code_size) uint8 -> (n, d) float32 reconstruction (+ centre)."""
        codes = as_codes(codes, self.code_size)
        out = self._rotation.inverse(self._decode_rotated(codes))
        c = self._centre(centre)
        if c is not None:
            out += c[None, :]
        return out

    def prepare(self, queries, /) -> PreparedQueries:
        """Rotate queries once: data["rotated"] = (m, padded_dim) float32."""
        q = as_float32_matrix(queries, self.dim, name="queries")
        return PreparedQueries(q, {"rotated": self._rotation.forward(q)})

    def _score_residual(self, prepared: PreparedQueries, codes: np.ndarray) -> np.ndarray:
        qr = prepared.data["rotated"]
        out = np.empty((qr.shape[0], codes.shape[0]), dtype=np.float32)
        for s in range(0, codes.shape[0], _TILE):
            tile = self._decode_rotated(codes[s : s + _TILE])
            np.matmul(qr, tile.T, out=out[:, s : s + _TILE])
        return out

    # ---- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        arrays = {"rotation": self._rotation.matrix_.copy()}
        for i, (c, _bits) in enumerate(self.codebooks):
            arrays[f"level{i + 1}.centroids"] = np.asarray(c).copy()
        if self.centre_ is not None:
            arrays["centre"] = np.asarray(self.centre_, dtype=np.float32).copy()
        config = {
            "dim": self.dim,
            "levels": self.levels,
            "level_bits": list(self.level_bits),
            "seed": self.seed,
        }
        return {"kind": self.kind, "config": config, "arrays": arrays}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PolarQuantizer:
        config, arrays = cm.check_state(state, cls.kind)
        return cls(
            config["dim"], config["levels"], tuple(config["level_bits"]), config["seed"], _arrays=arrays
        )

    @staticmethod
    def code_size_for(dim: int, levels: int = 4, level_bits: tuple[int, ...] = (4, 2, 2, 2)) -> int:
        block = 2**levels
        p = -(-dim // block) * block
        return sum(packed_size(p >> lv, b) for lv, b in enumerate(level_bits, start=1)) + 2 * (p // block) + 4
