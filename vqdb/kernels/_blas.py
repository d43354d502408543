"""One process-wide "BLAS on one thread" pin, shared by the encoders and the search paths.

Two reasons to pin: (1) a multi-threaded OpenBLAS call leaves its worker threads spinning for a while
after it returns, and on a machine with as many cores as numba threads they steal a core from the numba
kernels that follow (WordNet IVF nprobe 64, 2 threads: 2.1k QPS with BLAS at 2 threads, 4.5k at 1);
(2) OpenBLAS's sgemm rounds differently with its thread count, so encoders that must give the same
bytes whatever the threads run their row tiles under the pin. Nested and concurrent blocks share one
count of users: the first entry saves the thread counts, the last exit restores them. Needs
threadpoolctl (a core dependency); without it the pin does nothing.
"""

from __future__ import annotations

import contextlib
import threading

_STATE = {"libs": None, "depth": 0, "saved": []}
_LOCK = threading.Lock()


def blas_libs() -> list:
    """threadpoolctl controllers of the BLAS libraries loaded when first asked ([] without threadpoolctl)."""
    if _STATE["libs"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            _STATE["libs"] = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - no threadpoolctl, or a library it cannot drive
            _STATE["libs"] = []
    return _STATE["libs"]


def can_pin() -> bool:
    """True when :func:`one_thread` really pins BLAS (threadpoolctl found a BLAS library)."""
    with _LOCK:
        return bool(blas_libs())


@contextlib.contextmanager
def one_thread():
    """Run BLAS single-threaded inside the block (process-wide while any such block runs)."""
    libs = blas_libs()
    if not libs:
        yield
        return
    with _LOCK:
        if _STATE["depth"] == 0:
            _STATE["saved"] = [lib.get_num_threads() for lib in libs]
            for lib, n in zip(libs, _STATE["saved"]):
                if n is not None and n > 1:
                    lib.set_num_threads(1)
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0:
                for lib, n in zip(libs, _STATE["saved"]):
                    if n is not None and n > 1:
                        lib.set_num_threads(n)
