"""The quantizer protocol shared by TurboQuant, QJL and PolarQuant.

A quantizer turns float32 vectors into fixed-size uint8 codes and scores full-precision queries
against codes (asymmetric). It knows nothing of ids, files or top-k.

Centring. Real embeddings are not centred, so every quantizer may quantize the *residual* from a
centre ``c``: ``encode(x)`` codes ``x - c`` and ``score(q, codes)`` returns the estimate of
``<q, x> = <q, c> + <q, x - c>`` with the first term exact. ``fit(x)`` is a single pass that stores
the mean as ``centre_``; an IVF index passes its list centroid per call (``centre=``) instead.
Unfitted quantizers use ``c = 0``.

Every code ends with ``side_size`` bytes of little-endian float32 side data; the last float is
always the exact squared norm ``||x||^2`` of the original vector (used for ``l2sq``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._validation import as_codes, as_float32_matrix
from ..errors import DimensionMismatchError


@dataclass(frozen=True)
class PreparedQueries:
    """Queries transformed once for scoring many codes.

    ``queries``: (m, d) float32 originals; ``data``: quantizer-specific arrays (rotated query,
    sketches, lookup tables).
    """

    queries: np.ndarray
    data: dict[str, Any]


class Quantizer(abc.ABC):
    """Fixed-size byte codec with an asymmetric inner-product estimator."""

    kind: ClassVar[str]
    requires_fit: ClassVar[bool] = False

    dim: int
    code_size: int

    # ---- centring -------------------------------------------------------------------------
    centre_: np.ndarray | None = None

    def fit(self, x, /) -> Quantizer:
        """One pass over ``x`` (n, d) float32: store the mean as ``centre_``. No iterative training."""
        x = as_float32_matrix(x, self.dim)
        if x.shape[0] == 0:
            raise DimensionMismatchError("fit needs at least one vector; got 0")
        self.centre_ = x.mean(axis=0, dtype=np.float64).astype(
            np.float32
        )  # float64 sum, no float64 copy of x
        return self

    def _centre(self, centre) -> np.ndarray | None:
        if centre is None:
            return self.centre_
        c = np.ascontiguousarray(centre, dtype=np.float32)
        if c.shape != (self.dim,):
            raise DimensionMismatchError(f"centre must have shape ({self.dim},); got {c.shape}")
        return c

    # ---- protocol -------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, x, /, *, centre=None) -> np.ndarray:
        """(n, d) float32 -> (n, code_size) uint8."""

    @abc.abstractmethod
    def decode(self, codes, /, *, centre=None) -> np.ndarray:
        """(n, code_size) uint8 -> (n, d) float32 approximate reconstruction."""

    @abc.abstractmethod
    def prepare(self, queries, /) -> PreparedQueries:
        """(m, d) float32 -> PreparedQueries (rotation, sketch, lookup tables)."""

    @abc.abstractmethod
    def _score_residual(self, prepared: PreparedQueries, codes: np.ndarray) -> np.ndarray:
        """(m, n) float32 estimates of <q, x - c>; inputs already validated."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """``{"kind": str, "config": {json-able}, "arrays": {name: ndarray}}``; enough to rebuild exactly."""

    @classmethod
    @abc.abstractmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Quantizer:
        """Inverse of :meth:`state_dict`."""

    # ---- shared behaviour -----------------------------------------------------------------
    def score(self, queries, codes, /, *, centre=None) -> np.ndarray:
        """Estimated inner products.

        Parameters
        ----------
        queries : ndarray (m, d) float32, or PreparedQueries
        codes : ndarray (n, code_size) uint8
        centre : optional (d,) float32 overriding ``centre_`` (IVF list centroid)

        Returns
        -------
        scores : ndarray (m, n) float32, estimates of <q, x>; higher is more similar.
        """
        prepared = queries if isinstance(queries, PreparedQueries) else self.prepare(queries)
        codes = as_codes(codes, self.code_size)
        out = self._score_residual(prepared, codes)
        c = self._centre(centre)
        if c is not None:
            out += (prepared.queries @ c)[:, None]
        return out

    def score_offsets(self, codes, /) -> np.ndarray:
        """(n,) float32 per-vector additive term of :meth:`score`: ``score(q, codes) == q @ decode(codes).T
        + score_offsets(codes)`` up to float rounding. Zero unless a quantizer stores one (TurboQuant's
        ``centred_query``)."""
        codes = as_codes(codes, self.code_size)
        return np.zeros(codes.shape[0], dtype=np.float32)

    def squared_norms(self, codes, /) -> np.ndarray:
        """(n,) float32 exact ||x||^2 stored in the last side-data float of each code."""
        codes = as_codes(codes, self.code_size)
        return np.ascontiguousarray(codes[:, -4:]).view("<f4").reshape(-1).astype(np.float32)

    @property
    def bits_per_dim(self) -> float:
        """Bytes per vector (everything included) * 8 / d."""
        return self.code_size * 8.0 / self.dim

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.state_dict()["config"].items())
        return f"{type(self).__name__}({cfg})"
