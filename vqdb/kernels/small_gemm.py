"""Products of a few query rows with a fixed matrix, on the calling thread (no BLAS worker threads).

A one-query product through BLAS may wake BLAS's worker threads; with numba's OpenMP workers still
spinning after a scan, they fight for the same cores (Fashion-MNIST ``turbo-pca-2``: the 784 x 784
rotation of one query took 25-35 ms instead of 0.1 ms on the busy 2-core machine). Up to
:data:`vqdb.kernels.scorer.SMALL_BATCH` rows the product is a serial numba loop; larger batches (and
machines without numba, or calls whose default backend is not numba's: ``kernels.numpy_path``,
``use_backend("reference")``) go to BLAS.
"""

from __future__ import annotations

import numpy as np

from . import get_ops
from .scorer import SMALL_BATCH

_KERNEL = None


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        from numba import njit

        from .. import envs

        @njit(cache=envs.numba_cache(), nogil=True, error_model="numpy")
        def rows_times(a, bt, out):
            """out (m, p) float32 = a (m, d) @ bt (d, p): acc += a[i, t] * bt[t] for t = 0, 1, ... in order
            (float32; the loop over p vectorizes without reordering any sum)."""
            m, d = a.shape
            p = bt.shape[1]
            acc = np.empty(p, dtype=np.float32)
            for i in range(m):
                acc[:] = 0.0
                for t in range(d):
                    x = a[i, t]
                    row = bt[t]
                    for j in range(p):
                        acc[j] += x * row[j]
                out[i] = acc

        _KERNEL = rows_times
    return _KERNEL


def rows_matmul(a: np.ndarray, bt: np.ndarray) -> np.ndarray:
    """(m, d) float32 ``a`` @ (d, p) float32 C-contiguous ``bt`` -> (m, p) float32 C-contiguous: a serial
    loop for m <= SMALL_BATCH (see the module docstring), else BLAS."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.shape[0] > SMALL_BATCH or get_ops().name != "numba":  # NumPy path / another backend: no numba import
        return np.ascontiguousarray(a @ bt, dtype=np.float32)
    try:
        kernel = _kernel()
    except ImportError:
        return np.ascontiguousarray(a @ bt, dtype=np.float32)
    out = np.empty((a.shape[0], bt.shape[1]), dtype=np.float32)
    kernel(a, np.ascontiguousarray(bt, dtype=np.float32), out)
    return out
