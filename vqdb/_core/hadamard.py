"""Fast Walsh–Hadamard transform (unnormalised, along the last axis), pure NumPy.

The structured rotations of :mod:`vqdb.quantizers._rotation` (``HadamardRotation``, ``FhtKacRotation``) and
the reference kernels ``hadamard_rotate`` / ``fht_kac_rotate`` (:mod:`vqdb.kernels.reference`) are built on it.
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


def prev_pow2(d: int) -> int:
    """The largest power of two <= ``d`` (d >= 1)."""
    return 1 << (int(d).bit_length() - 1)


def fht_kac(x: np.ndarray, signs: np.ndarray, *, inverse: bool = False) -> np.ndarray:
    """FHT-Kac rotation of rows of R^d (any d >= 2, no padding) or its inverse (= transpose).

    x : (n, d) float32; signs : (rounds, d) float32 ±1; returns a new (n, d) float32 array. Per round r:
    ``y *= signs[r]``; ``y[:p] = fwht(y[:p]) * float32(1/sqrt(p))`` (p = :func:`prev_pow2` of d); if p < d,
    a Kac butterfly ``(a, b) -> ((a + b)·s, (a - b)·s)``, s = float32(1/sqrt(2)), on the pairs (j, j + d//2)
    (an odd d's last coordinate untouched), then the same Hadamard on ``y[d-p:]``. Each step is orthogonal
    and symmetric, so the inverse applies the steps in reverse order.
    """
    y = np.array(x, dtype=np.float32, copy=True)
    d = y.shape[1]
    p = prev_pow2(d)
    norm = np.float32(1.0 / np.sqrt(p))
    s2 = np.float32(1.0 / np.sqrt(2.0))
    h = d // 2

    def had(lo: int) -> None:
        y[:, lo : lo + p] = fwht(y[:, lo : lo + p]) * norm

    def kac() -> None:
        a = y[:, :h].copy()
        b = y[:, h : 2 * h].copy()
        y[:, :h] = (a + b) * s2
        y[:, h : 2 * h] = (a - b) * s2

    rounds = range(signs.shape[0])
    for r in reversed(rounds) if inverse else rounds:
        if not inverse:
            y *= signs[r]
        steps = [lambda: had(0)] + ([kac, lambda: had(d - p)] if p < d else [])
        for step in reversed(steps) if inverse else steps:
            step()
        if inverse:
            y *= signs[r]
    return y
