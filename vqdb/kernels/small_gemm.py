"""Products of query rows with a fixed matrix on numba's threads, never through BLAS.

A query product through BLAS wakes BLAS's own worker threads beside numba's: on a busy machine the two
pools fight for the same cores and a BLAS worker keeps spinning into the scan that follows (Fashion-MNIST
``turbo-pca-2``: the 784 x 784 rotation of one query took 25-35 ms instead of 0.1 ms; a 1,000-query
batch at 2 threads slowed the next one-query scans of the same process). Up to
:data:`vqdb.kernels.scorer.SMALL_BATCH` rows the product runs on the calling thread, larger batches on
numba's threads (the calling thread's count); machines without numba use BLAS. Where the calling thread's
default backend is not numba's (``kernels.numpy_path``, ``use_backend("reference")``) numba is not imported:
:func:`rows_matmul_numpy` gives numba's bits (BLAS only for a large batch outside the NumPy path). Each row's result is the
same for any batch size (one fixed order of float32 operations per row).
"""

from __future__ import annotations

import numpy as np

from . import get_ops, numpy_path_active
from .scorer import SMALL_BATCH

_KERNELS = None


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        from numba import njit, prange

        from .. import envs

        cache = envs.numba_cache()

        @njit(cache=cache, nogil=True)
        def rows_times(a, bt, out, r0, r1):
            """out[r0:r1] (float32) = a[r0:r1] @ bt (d, p), r1 - r0 <= 8: acc[i] += a[i, t] * bt[t] for
            t = 0, 1, ... in order (float32; the loop over p vectorizes without reordering any sum, and bt
            is read once for the 8 rows)."""
            d = a.shape[1]
            p = bt.shape[1]
            acc = np.zeros((r1 - r0, p), dtype=np.float32)
            for t in range(d):
                row = bt[t]
                for i in range(r1 - r0):
                    x = a[r0 + i, t]
                    ai = acc[i]
                    for j in range(p):
                        ai[j] += x * row[j]
            out[r0:r1] = acc

        @njit(cache=cache, nogil=True)
        def rows_times_serial(a, bt, out):
            """:func:`rows_times` of every row, chunks of 8 rows, on the calling thread."""
            m = a.shape[0]
            for c in range((m + 7) // 8):
                rows_times(a, bt, out, 8 * c, min(m, 8 * c + 8))

        @njit(cache=cache, nogil=True, parallel=True)
        def rows_times_parallel(a, bt, out):
            """:func:`rows_times` of every row, chunks of 8 rows on numba's threads (each chunk a serial call:
            a parallel loop body would not vectorize)."""
            m = a.shape[0]
            for c in prange((m + 7) // 8):
                rows_times(a, bt, out, 8 * c, min(m, 8 * c + 8))

        _KERNELS = (rows_times_serial, rows_times_parallel)
    return _KERNELS


def rows_matmul(a: np.ndarray, bt: np.ndarray, *, exact: bool = False) -> np.ndarray:
    """(m, d) float32 ``a`` @ (d, p) float32 ``bt`` -> (m, p) float32 C-contiguous (see the module docstring).

    ``exact=True`` (encoding, whose row tiles already run on several threads): every row on the calling
    thread, and without numba :func:`rows_matmul_numpy` (the same float32 operations in the same order)
    instead of BLAS, so a row's bits never depend on its batch (BLAS takes gemv for one row, gemm blocks for
    many) or on whether numba is installed.
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    if get_ops().name != "numba":  # the NumPy path (kernels.numpy_path) or another backend: no numba import
        if exact or numpy_path_active() or a.shape[0] <= SMALL_BATCH:
            return rows_matmul_numpy(a, bt)  # numba's bits
        return np.ascontiguousarray(a @ bt, dtype=np.float32)
    try:
        serial, parallel = _kernels()
    except ImportError:
        return rows_matmul_numpy(a, bt) if exact else np.ascontiguousarray(a @ bt, dtype=np.float32)
    out = np.empty((a.shape[0], bt.shape[1]), dtype=np.float32)
    bt = np.ascontiguousarray(bt, dtype=np.float32)
    if a.shape[0] <= SMALL_BATCH or exact:
        serial(a, bt, out)
    else:
        parallel(a, bt, out)
    return out


def rows_matmul_numpy(a: np.ndarray, bt: np.ndarray) -> np.ndarray:
    """The numba loop's product in NumPy, bit for bit: ``acc += a[:, t] * bt[t]`` for t = 0, 1, ... (float32
    product, then float32 sum; no fused multiply-add), (m, d) @ (d, p) -> (m, p) float32."""
    a = np.asarray(a, dtype=np.float32)
    bt = np.asarray(bt, dtype=np.float32)
    acc = np.zeros((a.shape[0], bt.shape[1]), dtype=np.float32)
    for t in range(a.shape[1]):
        acc += a[:, t : t + 1] * bt[t][None, :]
    return acc
