"""QJL (arXiv 2406.03482): sign bits of a row-orthogonalised Gaussian sketch + the norm."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core.packing import packed_size
from .._validation import as_codes, as_float32_matrix
from ..errors import InvalidInputError
from ..kernels import get_ops
from . import _common as cm
from . import _state_checks as checks
from ._rotation import orthogonal_sketch
from .base import PreparedQueries, Quantizer

_SIGNS = np.array([-1.0, 1.0], dtype=np.float32)


class QJLQuantizer(Quantizer):
    """QJL: ``m`` sign bits of ``S r`` plus ``||r||``; unbiased inner-product estimator.

    Parameters
    ----------
    dim : int >= 2
        Dimension d.
    sketch_dim : int, optional
        Number of sketch rows m (sign bits per vector); default d.
    seed : int
        Seeds the sketch (persisted as an array by :meth:`state_dict`).

    Notes
    -----
    ``S`` (m, d) is QJL's orthogonalised sketch (:func:`vqdb.quantizers._rotation.orthogonal_sketch`:
    blocks of d orthonormal rows scaled to norm sqrt(d)). With r = x − centre, the estimator is

    ``<q, r> ≈ scale · ||r|| · <S q, sign(S r)>``, ``scale = 1/(m sqrt(d) E|u_1|)`` (``estimator_scale``)

    which is exactly unbiased for this sketch (≈ QJL's sqrt(π/2)/m; +0.2% apart at d = 128) with
    variance ≈ (π/2·||r||²||q||² − <q, r>²)/m (papers.md §2.1).

    Byte layout (``code_size = ceil(m/8) + 8``):

    =====================  ==============================================================
    bytes                  content
    =====================  ==============================================================
    ``ceil(m / 8)``        sign bits, LSB-first: bit j of byte p is row 8p + j; 1 iff (S r) > 0
    4, float32 LE          ||r||
    4, float32 LE          exact ||x||²
    =====================  ==============================================================

    Examples
    --------
    >>> import numpy as np, vqdb
    >>> x = np.random.default_rng(0).standard_normal((10, 32)).astype(np.float32)
    >>> q = vqdb.QJLQuantizer(32)
    >>> q.encode(x).shape
    (10, 12)
    """

    kind = "qjl"

    def __init__(self, dim: int, sketch_dim: int | None = None, seed: int = 0, *, _arrays=None):
        self.dim = cm.check_dim(dim)
        m = self.dim if sketch_dim is None else sketch_dim
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise InvalidInputError(f"sketch_dim must be a positive integer; got {sketch_dim!r}")
        self.sketch_dim = int(m)
        self.seed = cm.check_seed(seed)
        self.centre_ = None
        if _arrays is not None and "sketch" in _arrays:
            s = np.ascontiguousarray(
                checks.finite("sketch", _arrays["sketch"], bound=math.sqrt(self.dim)), dtype=np.float32
            )
            if s.shape != (self.sketch_dim, self.dim):
                raise InvalidInputError(
                    f"state array 'sketch' must be ({self.sketch_dim}, {self.dim}); got {s.shape}"
                )
        else:
            s = orthogonal_sketch(self.sketch_dim, self.dim, np.random.default_rng(self.seed))
        self.sketch_ = s
        if _arrays is not None and "centre" in _arrays:
            self.centre_ = np.ascontiguousarray(
                checks.vector("centre", _arrays["centre"], self.dim), np.float32
            )
        self.estimator_scale = cm.sign_estimator_scale(self.sketch_dim, self.dim)
        self._nbytes = packed_size(self.sketch_dim, 1)
        self.code_size = self._nbytes + 8

    def encode(self, x, /, *, centre=None) -> np.ndarray:
        """(n, d) float32 -> (n, code_size) uint8 (see the class docstring for the layout)."""
        x = as_float32_matrix(x, self.dim)
        c = self._centre(centre)
        c = None if c is not None and not c.any() else c  # x - 0 == x: skip the pass (IVF residual batches)
        codes = np.zeros((x.shape[0], self.code_size), dtype=np.uint8)

        def tile(t0: int) -> None:  # one sgemm + sign bits + norms per row tile (cm.run_tiles)
            xt = x[t0 : t0 + cm.ENCODE_TILE]
            rt = xt if c is None else xt - c[None, :]
            ct = codes[t0 : t0 + cm.ENCODE_TILE]
            ct[:, : self._nbytes] = np.packbits((rt @ self.sketch_.T) > 0, axis=1, bitorder="little")
            x64 = xt.astype(np.float64)
            cm.write_side(
                ct, self._nbytes, np.stack([cm.row_norms(rt), np.einsum("ij,ij->i", x64, x64)], axis=1)
            )

        cm.run_tiles(tile, x.shape[0], get_ops())
        return codes

    def decode(self, codes, /, *, centre=None) -> np.ndarray:
        """Unbiased reconstruction ``scale · ||r|| · Sᵀ sign(S r)`` (+ centre): (n, d) float32."""
        codes = as_codes(codes, self.code_size)
        signs = get_ops().decode_values(codes, 0, 1, self.sketch_dim, _SIGNS)
        norm = cm.read_side(codes, self._nbytes, 1)[:, 0]
        out = (signs @ self.sketch_) * (norm * np.float32(self.estimator_scale))[:, None]
        c = self._centre(centre)
        if c is not None:
            out += c[None, :]
        return np.ascontiguousarray(out, dtype=np.float32)

    def prepare(self, queries, /) -> PreparedQueries:
        """Sketch queries once: data["sketched"] = (m_q, sketch_dim) float32 ``q Sᵀ``."""
        q = as_float32_matrix(queries, self.dim, name="queries")
        return PreparedQueries(q, {"sketched": np.ascontiguousarray(q @ self.sketch_.T, dtype=np.float32)})

    def _score_residual(self, prepared: PreparedQueries, codes: np.ndarray) -> np.ndarray:
        raw = get_ops().sign_scores(prepared.data["sketched"], codes, 0)
        norm = cm.read_side(codes, self._nbytes, 1)[:, 0]
        return raw * (norm * np.float32(self.estimator_scale))[None, :]

    def scan_parts(self) -> dict[str, Any]:
        """Hook for :mod:`vqdb.kernels.scanner` (same contract as ``TurboQuantizer.scan_parts``)."""
        return {
            "parts": [
                {
                    "offset": 0,
                    "bits": 1,
                    "k": self.sketch_dim,
                    "values": _SIGNS,
                    "query": ("sketched", None, 0, self.sketch_dim),
                    "side": 0,
                    "mult": float(np.float32(self.estimator_scale)),
                }
            ],
            "side_offset": self._nbytes,
            "n_side": 2,
        }

    def state_dict(self) -> dict[str, Any]:
        arrays = {"sketch": self.sketch_.copy()}
        if self.centre_ is not None:
            arrays["centre"] = np.asarray(self.centre_, dtype=np.float32).copy()
        return {
            "kind": self.kind,
            "config": {"dim": self.dim, "sketch_dim": self.sketch_dim, "seed": self.seed},
            "arrays": arrays,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> QJLQuantizer:
        config, arrays = cm.check_state(state, cls.kind)
        return cls(config["dim"], config["sketch_dim"], config["seed"], _arrays=arrays)

    @staticmethod
    def code_size_for(dim: int, sketch_dim: int | None = None) -> int:
        return packed_size(dim if sketch_dim is None else sketch_dim, 1) + 8
