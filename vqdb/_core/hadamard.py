"""Fast Walsh–Hadamard transform (unnormalised, along the last axis), pure NumPy.

The structured rotation of :class:`vqdb.quantizers._rotation.HadamardRotation` and the reference kernel
``hadamard_rotate`` (:mod:`vqdb.kernels.reference`) are both built on it.
"""

from __future__ import annotations

import numpy as np


def next_pow2(d: int) -> int:
    """The smallest power of two >= ``d`` (1 for d <= 1)."""
    return 1 << max(0, int(d - 1).bit_length())


def fwht(x: np.ndarray) -> np.ndarray:
    """Unnormalised fast Walsh–Hadamard transform along the last axis (length a power of two).

    (n, p) float32 -> (n, p) float32, a new array; the butterfly order is fixed, so the result is
    deterministic across runs and machines with IEEE arithmetic.
    """
    x = np.array(x, dtype=np.float32, copy=True)
    n, p = x.shape
    h = 1
    while h < p:
        v = x.reshape(n, p // (2 * h), 2, h)
        a = v[:, :, 0, :].copy()
        b = v[:, :, 1, :]
        v[:, :, 0, :] += b
        v[:, :, 1, :] = a - b
        h *= 2
    return x
