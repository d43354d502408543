"""Compile settings shared by the fast-scan kernels, and :func:`twin`: one body, a serial and a parallel build."""

from __future__ import annotations

import types

from numba import njit

from ... import envs

CACHE = envs.numba_cache()


def twin(fn):
    """``(serial, parallel)`` compiled from the one Python body ``fn`` (``prange`` runs as ``range`` in the
    serial build). The serial copy gets its own name, so numba's on-disk cache keeps the two apart."""
    copy = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
    )
    copy.__qualname__ = fn.__qualname__ + "_serial"
    copy.__doc__ = fn.__doc__
    serial = njit(cache=CACHE, nogil=True)(copy)
    parallel = njit(cache=CACHE, nogil=True, parallel=True)(fn)
    return serial, parallel
