"""GPU backends of the kernel dispatch: numba-cuda kernels (:mod:`vqdb.kernels.cuda.numba_cuda`), torch
kernels on CUDA tensors (:mod:`vqdb.kernels.cuda.torch_cuda`) and the device-resident scan of
``Index(device="cuda")`` (:mod:`vqdb.kernels.cuda.index_scan`, reached through :func:`vqdb.kernels.device_scanner`).

This package module imports nothing heavy (no numba, no torch): it only holds the *probes* the kernel
dispatch (:mod:`vqdb.kernels`) calls to decide whether the ``cuda-numba`` and ``cuda-torch`` backends can
run here, and :func:`require_cuda`, which raises :class:`~vqdb.errors.BackendUnavailableError` with the
reason when they cannot. Probes are cached: the dispatch may call them on every ``get_ops()``.

Backends
--------
``cuda-numba``  (priority 40) numba-cuda kernels; inputs/outputs are NumPy arrays (copied to and from the
                device) or device arrays. Usable when a CUDA driver and device are present.
``cuda-torch``  (priority 30) torch ops on CUDA tensors (plain torch, no Triton). Usable when
                ``torch.cuda.is_available()``.

The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) runs :mod:`vqdb.kernels.cuda.numba_cuda` on the CPU for tests; the
probe still reports "no CUDA device" then, so the simulator is never chosen by default (tests import the
module directly).
"""

from __future__ import annotations

import ctypes.util
import functools
import importlib.util
import os

from ...errors import BackendUnavailableError

__all__ = ["probe_cuda_numba", "probe_cuda_torch", "require_cuda", "cuda_available", "simulator_enabled"]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def simulator_enabled() -> bool:
    """True when ``NUMBA_ENABLE_CUDASIM=1`` (numba.cuda then runs kernels on the CPU, slowly)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.cache
def _driver_reason() -> str | None:
    """Cheap check (nothing imported): is an NVIDIA driver library present?"""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return "no CUDA device (CUDA_VISIBLE_DEVICES hides every device)"
    if ctypes.util.find_library("cuda") is None and not os.path.exists("/proc/driver/nvidia/version"):
        return "no CUDA device (the NVIDIA driver library libcuda was not found)"
    return None


@functools.cache
def probe_cuda_numba() -> str | None:
    """None when the ``cuda-numba`` backend can run here, else why not (cached)."""
    reason = _driver_reason()
    if reason is not None:
        return reason
    if simulator_enabled():
        return "no CUDA device (NUMBA_ENABLE_CUDASIM=1: the simulator is for tests, not a backend)"
    if not _has("numba"):
        return "numba is not installed (pip install 'vqdb[gpu]')"
    try:
        from numba import cuda

        if not cuda.is_available():
            return "no CUDA device (numba.cuda.is_available() is False)"
    except Exception as exc:  # noqa: BLE001 - any failure means unusable
        return f"numba.cuda failed to initialise: {exc!r}"
    return None


@functools.cache
def probe_cuda_torch() -> str | None:
    """None when the ``cuda-torch`` backend can run here, else why not (cached)."""
    reason = _driver_reason()
    if reason is not None:
        return reason
    if not _has("torch"):
        return "torch is not installed (pip install 'vqdb[gpu]')"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
    except Exception as exc:  # noqa: BLE001
        return f"torch.cuda failed to initialise: {exc!r}"
    return None


def cuda_available() -> bool:
    """True when torch sees a CUDA device (what ``Index(device="cuda")`` and the KV hook need)."""
    return probe_cuda_torch() is None


def require_cuda(what: str = "device='cuda'") -> None:
    """Raise :class:`BackendUnavailableError` naming ``what`` unless a CUDA device is usable via torch."""
    reason = probe_cuda_torch()
    if reason is not None:
        raise BackendUnavailableError(
            f"{what} needs a CUDA GPU: {reason}. Use device='cpu' (the default) here."
        )
