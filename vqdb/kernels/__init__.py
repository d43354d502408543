"""Kernel dispatch: one small registry of backends, chosen lazily by name.

``get_ops()`` returns the best usable backend (``VQDB_BACKEND`` forces one); ``get_ops("numba")`` a
named one: a :class:`~vqdb.kernels.registry.KernelSet` (the typed Protocol of what a backend provides). A
backend module is imported only when selected, so ``import vqdb`` (and importing the quantizer modules)
never imports numba or torch. Each backend is registered explicitly below with the ``Kernels`` value its
module declares; a backend that implements only some ops builds that value from the reference's, so the
ops it borrows are listed in its own module.

Ops (signatures in :mod:`vqdb.kernels.reference`, the oracle): ``pack_bits``, ``unpack_bits``,
``bucketize``, ``encode_scalar``, ``scaled_indices``, ``scaled_indices_segments``, ``encode_scaled``, ``decode_values``,
``lut_scores``, ``sign_scores``, ``topk``, ``encode_turbo_block``, ``hadamard_rotate``. ``num_threads()``: the
worker threads a backend lets the quantizers use (1 for NumPy).

The NumPy path: inside :func:`numpy_path` the calling thread's default backend is the reference and the fast
scans are off. ``vqdb.Index`` enters it for a small add or search while numba's backend is not loaded yet (the
first small index of a process: no numba import, no compiling); the reference encodes bit for bit the codes
numba encodes, so an index built on either path is the same, and larger work loads numba as before.

Registered backends. The default for host (NumPy) arrays is the highest-priority usable one among
``numba`` and ``reference``; ``torch`` serves torch tensors (kvcache) and the CUDA backends serve
device-resident data (``Index(device="cuda")``, CUDA KV tensors), both by name or ``VQDB_BACKEND``:

==============  ===================================  ========  ==========================================
name            module (declares ``KERNELS``)        priority  usable when
==============  ===================================  ========  ==========================================
``cuda-numba``  ``vqdb.kernels.cuda.numba_cuda``     40        numba.cuda sees a device
``cuda-torch``  ``vqdb.kernels.cuda.torch_cuda``     30        torch.cuda.is_available()
``numba``       ``vqdb.kernels.numba_cpu``           20        numba is installed
``torch``       ``vqdb.kernels.torch_ops``           10        torch is installed and the module exists
``reference``   ``vqdb.kernels.reference``           0         always (NumPy)
==============  ===================================  ========  ==========================================
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import threading
from collections.abc import Iterator

from .. import envs
from ..errors import BackendUnavailableError, UnknownNameError
from .registry import OPS, KernelBackend, Kernels, KernelSet

__all__ = [
    "OPS",
    "KernelBackend",
    "KernelSet",
    "Kernels",
    "available_backends",
    "device_scanner",
    "get_ops",
    "numpy_path",
    "numpy_path_active",
    "register_backend",
    "require_device",
    "use_backend",
]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _probe_numba() -> str | None:
    return None if _has("numba") else "numba is not installed (pip install numba)"


def _probe_torch() -> str | None:
    if not _has("torch"):
        return "torch is not installed (pip install torch)"
    if not _has("vqdb.kernels.torch_ops"):
        return "vqdb.kernels.torch_ops is not present in this build"
    return None


_REGISTRY: dict[str, KernelBackend] = {}


def register_backend(backend: KernelBackend) -> None:
    """Add or replace a backend (tests register the CUDA ones with a probe that lets the simulator run)."""
    global _DEFAULT
    if not isinstance(backend, KernelBackend):
        raise TypeError(f"register_backend takes a KernelBackend; got {type(backend).__name__}")
    _REGISTRY[backend.name] = backend
    _LOADED.pop(backend.name, None)
    _DEFAULT = None


_LOADED: dict[str, KernelSet] = {}
_LOCK = threading.Lock()
_FORCED: str | None = None
_DEFAULT: KernelSet | None = None  # cached automatic choice (probing costs ~10 µs per call)
_HOST_EXCLUDED = frozenset({"torch", "cuda-numba", "cuda-torch"})

# Every backend, registered explicitly: name, the KernelSet its module declares, probe, priority.
register_backend(KernelBackend("reference", "vqdb.kernels.reference:KERNELS", lambda: None, 0))
register_backend(KernelBackend("numba", "vqdb.kernels.numba_cpu:KERNELS", _probe_numba, 20))
register_backend(KernelBackend("torch", "vqdb.kernels.torch_ops:KERNELS", _probe_torch, 10))

# GPU backends (vqdb.kernels.cuda imports nothing heavy; its probes are cached and say "no CUDA device" on CPU
# machines)
from .cuda import probe_cuda_numba as _probe_cuda_numba  # noqa: E402
from .cuda import probe_cuda_torch as _probe_cuda_torch  # noqa: E402
from .cuda import require_cuda  # noqa: E402

register_backend(KernelBackend("cuda-numba", "vqdb.kernels.cuda.numba_cuda:KERNELS", _probe_cuda_numba, 40))
register_backend(KernelBackend("cuda-torch", "vqdb.kernels.cuda.torch_cuda:KERNELS", _probe_cuda_torch, 30))


def require_device(device: str, *, what: str) -> None:
    """Raise :class:`BackendUnavailableError` naming ``what`` unless ``device`` (``"cpu"``/``"cuda"``) is usable."""
    if device == "cuda":
        require_cuda(what)


def device_scanner(quantizer, *, device: str = "cuda"):
    """The device-resident scan of ``quantizer``'s codes (``Index(device="cuda")``): an object with
    ``supports`` (False when the quantizer has no device path) and ``scan(ctx, queries, top)``.

    Imports torch on first call; call :func:`require_device` first.
    """
    if device != "cuda":
        raise UnknownNameError(f"unknown device {device!r}; expected 'cuda'")
    from .cuda.index_scan import DeviceScan

    return DeviceScan(quantizer)


def available_backends() -> dict[str, str | None]:
    """name -> None if usable here, else the reason it is not (nothing is imported)."""
    return {name: b.probe() for name, b in sorted(_REGISTRY.items(), key=lambda kv: -kv[1].priority)}


def _load(name: str) -> KernelSet:
    with _LOCK:
        ops = _LOADED.get(name)
        if ops is not None:
            return ops
        backend = _REGISTRY[name]
        reason = backend.probe()
        if reason is not None:
            raise BackendUnavailableError(f"kernel backend {name!r} is unavailable: {reason}")
        module, _, attr = backend.target.partition(":")
        try:
            ops = getattr(importlib.import_module(module), attr)
        except Exception as exc:  # noqa: BLE001 - report any import failure as unavailability
            raise BackendUnavailableError(f"kernel backend {name!r} failed to import: {exc!r}") from exc
        if not isinstance(ops, KernelSet):
            missing = [op for op in (*OPS, "num_threads", "warmup", "name") if not hasattr(ops, op)]
            raise BackendUnavailableError(
                f"kernel backend {name!r}: {backend.target} is not a KernelSet (missing {missing})"
            )
        _LOADED[name] = ops
        return ops


# A process's small first work runs on the NumPy reference until numba's backend is loaded. The reference takes
# ~10-50x numba's time per element, so one call is bounded (an add of ~5,000 vectors of 384, a search of one
# query over ~5,000 rows or of ~140 queries over 1,000: tens of ms), and so is the process's total (~40
# one-query searches of 1,000 rows: 0.4-1.5 s by bench.cold_start's "next search" at load ~10), about what
# loading numba costs from its cache (~1-2 s; compiling on an empty cache ~7 CPU s). Then numba loads.
# Work of one call, in elements: rows x dims of an add; rows x dims x (1 + queries / 32) of a search.
NUMPY_PATH_MAX_WORK = 1 << 21
NUMPY_PATH_BUDGET = 1 << 24  # elements of every automatic NumPy-path call of the process together
_NUMPY_SPENT = [0]
_TLS = threading.local()  # .numpy: this thread is inside numpy_path()


def numpy_path_active() -> bool:
    """Whether the calling thread is inside :func:`numpy_path` (default kernels: the NumPy reference)."""
    return getattr(_TLS, "numpy", False)


_OFF = contextlib.nullcontext(False)


def numpy_path(work: float | None = None) -> contextlib.AbstractContextManager[bool]:
    """Run this thread's default kernels on the NumPy reference inside the block; yields whether it does.

    ``work=None``: always. Otherwise only while numba's backend is not loaded in this process, no backend
    is forced (:func:`use_backend`, ``VQDB_BACKEND``), ``work`` (elements) is at most ``NUMPY_PATH_MAX_WORK``
    and the process's NumPy-path calls stay within ``NUMPY_PATH_BUDGET``; else the block runs as usual.
    Named backends (``get_ops("numba")``) are not affected.
    """
    if "numba" in _LOADED and work is not None and not numpy_path_active():
        return _OFF  # the usual case once numba runs: nothing to decide (a search's cost stays as it was)
    return _numpy_block(work)


@contextlib.contextmanager
def _numpy_block(work: float | None) -> Iterator[bool]:
    on = work is None or (
        work <= NUMPY_PATH_MAX_WORK
        and _NUMPY_SPENT[0] + work <= NUMPY_PATH_BUDGET
        and "numba" not in _LOADED
        and _FORCED is None
        and envs.backend() is None
    )
    if on and work is not None:
        _NUMPY_SPENT[0] += work
    if not on or numpy_path_active():
        yield on or numpy_path_active()
        return
    _TLS.numpy = True
    try:
        yield True
    finally:
        _TLS.numpy = False


def get_ops(name: str | None = None) -> KernelSet:
    """Return the kernel ops of backend ``name`` (default: ``VQDB_BACKEND`` or the best usable one).

    Raises
    ------
    UnknownNameError
        ``name`` is not registered (the message lists the registered names).
    BackendUnavailableError
        The requested (or forced) backend cannot run here; the message lists every backend and why.
    """
    if name is None and getattr(_TLS, "numpy", False):
        return _load("reference")
    requested = name or _FORCED or envs.backend()
    if requested is not None:
        if requested not in _REGISTRY:
            raise UnknownNameError(
                f"unknown kernel backend {requested!r}; expected one of {sorted(_REGISTRY)}"
            )
        try:
            return _load(requested)
        except BackendUnavailableError as exc:
            reasons = "; ".join(f"{n}: {r or 'usable'}" for n, r in available_backends().items())
            raise BackendUnavailableError(f"{exc} (backends: {reasons})") from exc
    global _DEFAULT
    if _DEFAULT is not None:
        return _DEFAULT
    errors = []
    for bname in sorted(_REGISTRY, key=lambda name: -_REGISTRY[name].priority):
        # The default serves host NumPy arrays: torch ops serve torch tensors (kvcache), and the CUDA
        # backends would copy every call's arrays to the device and back; device-resident data
        # (Index(device="cuda"), CUDA KV tensors) uses them explicitly, or VQDB_BACKEND forces one.
        if bname in _HOST_EXCLUDED:
            continue
        try:
            _DEFAULT = _load(bname)
            return _DEFAULT
        except BackendUnavailableError as exc:
            errors.append(str(exc))
    raise BackendUnavailableError("no kernel backend is usable: " + "; ".join(errors))


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[KernelSet]:
    """Temporarily make ``name`` the default of :func:`get_ops` (tests, benchmarks); not thread-local."""
    global _FORCED
    ops = get_ops(name)
    prev = _FORCED
    _FORCED = name
    try:
        yield ops
    finally:
        _FORCED = prev
