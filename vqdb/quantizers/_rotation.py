"""Random orthogonal maps, drawn once in NumPy from a seed and kept as arrays.

Row-vector convention everywhere: a batch ``x`` of shape (n, d) is rotated as ``y = x @ R.T`` (so a
single column vector transforms as ``R x``) and rotated back as ``x = y @ R``.

* :func:`haar_rotation` — dense Haar-distributed rotation (QR of a Gaussian with the sign fix).
* :class:`HadamardRotation` — randomized Hadamard ``(H D_r) ... (H D_1)`` on the input zero-padded to
  the next power of two: O(d log d) per vector, output dimension ``p = 2**ceil(log2 d)``.
* :class:`FhtKacRotation` — structured rotation of R^d for any d (no padding): per round random signs,
  a normalised Hadamard on the first ``p`` coordinates (p = largest power of two <= d), a Kac butterfly
  between the two halves, a Hadamard on the last ``p``. O(d log d) per vector, output dimension d.
* :func:`orthogonal_sketch` — QJL's row-orthogonalised Gaussian sketch (official code's
  ``init_rot_dir``): ``m`` rows in blocks of ``d`` orthonormal rows, each scaled to norm sqrt(d).
"""

from __future__ import annotations

import math

import numpy as np

from .._core.hadamard import fht_kac, fwht, next_pow2, prev_pow2
from ..errors import InvalidInputError


def _check_dim(d, name: str = "d") -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise InvalidInputError(f"{name} must be a positive integer; got {d!r}")
    return int(d)


def _single_threaded_blas():
    """OpenBLAS's threaded QR can be 10x slower than one thread on a busy machine; limit it when
    threadpoolctl is installed (optional; :func:`vqdb.quantizers._common.blas_one_thread`)."""
    from ._common import blas_one_thread

    return blas_one_thread()


def haar_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """(d, d) float64 Haar-distributed orthogonal matrix: Q of a Gaussian's QR with sign(diag R) fixed."""
    d = _check_dim(d)
    g = rng.standard_normal((d, d))
    with (
        _single_threaded_blas()
    ):  # any d: a threaded QR collapses on a busy machine (8 slices of a "pca" fit: 0.3 -> 1.4 s)
        q, r = np.linalg.qr(g)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs[None, :]


def haar_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    """Dense random rotation.

    Parameters
    ----------
    d : int
        Dimension.
    rng : numpy.random.Generator

    Returns
    -------
    R : ndarray of shape (d, d), float32
        Haar-distributed orthogonal matrix (QR of an i.i.d. Gaussian, columns' signs fixed so that
        diag(R_qr) > 0; without the fix the law is not exactly Haar). Rotate rows with ``x @ R.T``.
    """
    return np.ascontiguousarray(haar_orthogonal(d, rng), dtype=np.float32)


def orthogonal_sketch(m: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Row-orthogonalised Gaussian JL sketch (QJL §4.1, official ``QJLSketch.init_rot_dir``).

    Parameters
    ----------
    m : int
        Number of rows (sketch dimension); any m >= 1.
    d : int
        Input dimension.
    rng : numpy.random.Generator

    Returns
    -------
    S : ndarray of shape (m, d), float32
        Rows come in independent blocks of ``d`` orthonormal rows (Haar), each multiplied by
        sqrt(d) so every row has norm sqrt(d) like a Gaussian row; the last block is truncated.
    """
    m = _check_dim(m, "m")
    d = _check_dim(d)
    blocks = []
    for _ in range(math.ceil(m / d)):
        blocks.append(haar_orthogonal(d, rng))
    s = np.concatenate(blocks, axis=0)[:m] * math.sqrt(d)
    return np.ascontiguousarray(s, dtype=np.float32)


class HadamardRotation:
    """Randomized Hadamard rotation ``y = (H D_r) ... (H D_1) [x, 0]`` with ``H`` normalised (1/sqrt(p)).

    Parameters
    ----------
    d : int
        Input dimension.
    rng : numpy.random.Generator, optional
        Draws ``rounds`` random ±1 diagonals of length ``p``. Omit when passing ``signs``.
    rounds : int
        Number of ``H·D`` rounds (3 mixes heavy-tailed inputs well; 1 is the classical SRHT).
    signs : ndarray of shape (rounds, p), float32, optional
        Restore a persisted rotation.

    Notes
    -----
    The input is zero-padded to ``p = 2**ceil(log2 d)`` so the map is an isometry R^d → R^p (an
    orthogonal p×p matrix applied to ``[x, 0]``); its inverse is the transpose followed by dropping the
    padding. Cost O(p log p) per vector instead of O(d²).
    """

    def __init__(self, d: int, rng: np.random.Generator | None = None, *, rounds: int = 3, signs=None):
        self.d = _check_dim(d)
        self.p = next_pow2(self.d)
        if signs is None:
            if rng is None:
                raise InvalidInputError("HadamardRotation needs rng or signs")
            signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(int(rounds), self.p))
        signs = np.ascontiguousarray(signs, dtype=np.float32)
        if signs.ndim != 2 or signs.shape[1] != self.p:
            raise InvalidInputError(f"signs must have shape (rounds, {self.p}); got {signs.shape}")
        self.signs = signs
        self.rounds = signs.shape[0]
        self._norm = np.float32(1.0 / math.sqrt(self.p))

    @property
    def out_dim(self) -> int:
        return self.p

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(n, d) float32 -> (n, p) float32 rotated rows."""
        n = x.shape[0]
        y = np.zeros((n, self.p), dtype=np.float32)
        y[:, : self.d] = x
        for r in range(self.rounds):
            y *= self.signs[r]
            y = fwht(y)
            y *= self._norm
        return y

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """(n, p) float32 -> (n, d) float32: transpose of :meth:`forward`, padding dropped."""
        y = np.array(y, dtype=np.float32, copy=True)
        for r in reversed(range(self.rounds)):
            y = fwht(y)
            y *= self._norm
            y *= self.signs[r]
        return np.ascontiguousarray(y[:, : self.d])

    def matrix(self) -> np.ndarray:
        """(p, d) float32 dense equivalent: ``forward(x) == x @ matrix().T`` up to round-off."""
        return np.ascontiguousarray(self.forward(np.eye(self.d, dtype=np.float32)).T)


class DenseRotation:
    """Dense rotation ``y = x @ R.T`` with the same interface as :class:`HadamardRotation`.

    ``R`` is (p, d) with orthonormal columns (p = d for a square Haar rotation; p > d when the input
    is zero-padded, as PolarQuant does to reach a multiple of its block size).
    """

    def __init__(self, matrix: np.ndarray):
        self.matrix_ = np.ascontiguousarray(matrix, dtype=np.float32)
        if self.matrix_.ndim != 2 or self.matrix_.shape[0] < self.matrix_.shape[1]:
            raise InvalidInputError(f"rotation matrix must be (p, d) with p >= d; got {self.matrix_.shape}")
        self.p, self.d = self.matrix_.shape

    @property
    def out_dim(self) -> int:
        return self.p

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(n, d) float32 -> (n, p) float32."""
        return np.ascontiguousarray(x @ self.matrix_.T, dtype=np.float32)

    def forward_queries(self, x: np.ndarray) -> np.ndarray:
        """:meth:`forward` of a query batch on numba's threads, without waking BLAS's workers
        (:func:`vqdb.kernels.small_gemm.rows_matmul`; each row the same for any batch). Equal to
        :meth:`forward` up to float32 rounding; encoding uses the same row product (``exact=True``: on the
        encoder's own thread)."""
        from ..kernels.small_gemm import rows_matmul

        return rows_matmul(x, self.matrix_t_)

    @property
    def matrix_t_(self) -> np.ndarray:
        """(d, p) float32 C-contiguous ``R.T`` (made once): ``forward(x) == x @ matrix_t_``."""
        if getattr(self, "_matrix_t", None) is None:
            self._matrix_t = np.ascontiguousarray(self.matrix_.T)
        return self._matrix_t

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """(n, p) float32 -> (n, d) float32."""
        return np.ascontiguousarray(y @ self.matrix_, dtype=np.float32)

    def matrix(self) -> np.ndarray:
        return self.matrix_


class FhtKacRotation:
    """Structured random rotation of R^d for any d >= 2, without padding (output dimension d).

    Per round r (``signs[r]`` a random ±1 diagonal): ``y *= signs[r]``; ``y[:p] = H y[:p]``; if p < d, a
    Kac butterfly between the halves and ``y[d-p:] = H y[d-p:]`` (H the Hadamard of order p = the largest
    power of two <= d, normalised by float32(1/sqrt(p)); butterflies in the order of :func:`fwht`). Every
    step is orthogonal, so the map is an exact rotation; 3 rounds mix like a Haar rotation in our
    measurements (bench.quantizers). The structure of rabitqlib's FHT-Kac rotator, our own order.

    Parameters
    ----------
    d : int >= 2
    rng : numpy.random.Generator, optional (omit when passing ``signs``)
    rounds : int
    signs : ndarray of shape (rounds, d), float32, optional — a persisted rotation.
    """

    def __init__(self, d: int, rng: np.random.Generator | None = None, *, rounds: int = 3, signs=None):
        self.d = _check_dim(d)
        if self.d < 2:
            raise InvalidInputError(f"FhtKacRotation needs d >= 2; got {d}")
        self.p = prev_pow2(self.d)
        if signs is None:
            if rng is None:
                raise InvalidInputError("FhtKacRotation needs rng or signs")
            signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(int(rounds), self.d))
        signs = np.ascontiguousarray(signs, dtype=np.float32)
        if signs.ndim != 2 or signs.shape[1] != self.d or signs.shape[0] < 1:
            raise InvalidInputError(f"signs must have shape (rounds, {self.d}); got {signs.shape}")
        self.signs = signs
        self.rounds = signs.shape[0]

    @property
    def out_dim(self) -> int:
        return self.d

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(n, d) float32 -> (n, d) float32 rotated rows."""
        return fht_kac(np.asarray(x, dtype=np.float32).reshape(-1, self.d), self.signs)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """(n, d) float32 -> (n, d) float32: the transpose of :meth:`forward`."""
        return fht_kac(np.asarray(y, dtype=np.float32).reshape(-1, self.d), self.signs, inverse=True)

    def matrix(self) -> np.ndarray:
        """(d, d) float32 dense equivalent: ``forward(x) == x @ matrix().T`` up to round-off."""
        return np.ascontiguousarray(self.forward(np.eye(self.d, dtype=np.float32)).T)
