"""The machine's limits, measured in the benchmark's own process: memory bandwidth and BLAS rate.

Every throughput figure of ``bench/search_speed.py`` is also given as a fraction of these, so that a
figure measured on this shared, noisy 2-core machine still says something about the code.

- read bandwidth: a parallel sum over a 256 MiB float32 array (what a scan of codes does);
- copy bandwidth: ``numpy.copyto`` of 256 MiB (read + write counted);
- triad (STREAM): ``a = b + s*c`` over three 256 MiB arrays (3 x 256 MiB counted, no write-allocate);
- BLAS: float32 GEMM 2048 x 2048 x 2048 (2 n^3 flops), numpy's OpenBLAS.

Each is the best of a few repetitions, at one thread and at ``threads``.
"""

from __future__ import annotations

import numpy as np

from .common import best_time

N_FLOATS = 1 << 26  # 256 MiB of float32
GEMM_N = 2048


def _kernels():
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def psum(a):
        s = 0.0
        for i in numba.prange(a.shape[0]):
            s += a[i]
        return s

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def triad(a, b, c, s):
        for i in numba.prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    return psum, triad


def measure(threads: int, reps: int = 4) -> dict:
    """GB/s and GFLOP/s at 1 thread and at ``threads`` (``{"1": {...}, str(threads): {...}}``)."""
    import numba
    from threadpoolctl import threadpool_limits

    psum, triad = _kernels()
    a = np.ones(N_FLOATS, dtype=np.float32)
    b = np.ones(N_FLOATS, dtype=np.float32)
    c = np.ones(N_FLOATS, dtype=np.float32)
    nbytes = a.nbytes
    rng = np.random.default_rng(0)
    x = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    y = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    psum(a[:1024])
    triad(a[:1024], b[:1024], c[:1024], np.float32(0.5))
    out = {}
    old = numba.get_num_threads()
    try:
        for t in sorted({1, threads}):
            numba.set_num_threads(t)
            with threadpool_limits(limits=t):
                read = nbytes / best_time(lambda: psum(a), reps) / 1e9
                copy = 2 * nbytes / best_time(lambda: np.copyto(b, a), reps) / 1e9
                tri = 3 * nbytes / best_time(lambda: triad(a, b, c, np.float32(0.5)), reps) / 1e9
                x @ y
                gemm = 2 * GEMM_N**3 / best_time(lambda: x @ y, max(2, reps - 1)) / 1e9
            out[str(t)] = {
                "read_GBps": round(read, 2),
                "copy_GBps": round(copy, 2),
                "triad_GBps": round(tri, 2),
                "sgemm_GFLOPs": round(gemm, 1),
            }
    finally:
        numba.set_num_threads(old)
    return out


if __name__ == "__main__":  # pragma: no cover
    import json

    import numba

    print(json.dumps(measure(numba.config.NUMBA_NUM_THREADS), indent=1))
