"""Small helpers shared by the quantizers: side-data floats, seeds, residuals, JSON-able configs, and the
row-tile runner of the encoders (BLAS pinned to one thread, tiles over the kernel backend's threads)."""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._validation import as_float32_matrix
from ..errors import InvalidInputError
from ..kernels import _blas


def check_dim(dim, minimum: int = 2) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < minimum:
        raise InvalidInputError(f"dim must be an integer >= {minimum}; got {dim!r}")
    return int(dim)


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def residual(q, x, centre) -> tuple[np.ndarray, np.ndarray]:
    """Validated (n, d) float32 input, its residual ``x - centre`` (float32) and exact ||x||² (float32)."""
    x = as_float32_matrix(x, q.dim)
    c = q._centre(centre)
    r = x if c is None else np.ascontiguousarray(x - c[None, :], dtype=np.float32)
    sq = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64)).astype(np.float32)
    return r, sq


def write_side(codes: np.ndarray, offset: int, floats: np.ndarray) -> None:
    """Store (n, f) float32 as little-endian bytes at ``codes[:, offset : offset + 4f]``."""
    f = np.ascontiguousarray(floats, dtype="<f4")
    codes[:, offset : offset + 4 * f.shape[1]] = f.view(np.uint8).reshape(f.shape[0], 4 * f.shape[1])


def read_side(codes: np.ndarray, offset: int, count: int) -> np.ndarray:
    """(n, count) float32 side floats read from ``codes[:, offset : offset + 4*count]``."""
    raw = np.ascontiguousarray(codes[:, offset : offset + 4 * count])
    return raw.view("<f4").reshape(codes.shape[0], count).astype(np.float32)


def row_norms(x: np.ndarray) -> np.ndarray:
    """(n,) float64 Euclidean norms of the rows of ``x`` (computed in float64)."""
    x64 = x.astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", x64, x64))


def sign_estimator_scale(m: int, d: int) -> float:
    """Exact unbiased constant of the sign estimator for an orthogonal sketch with rows of norm sqrt(d).

    ``<q, x> = ||x|| · scale · <Sq, sign(Sx)>`` in expectation, ``scale = 1 / (m sqrt(d) E|u_1|)`` with
    ``E|u_1| = Γ(d/2) / (√π Γ((d+1)/2))`` for u uniform on the sphere S^(d-1). For large d this is
    QJL's ``sqrt(π/2)/m`` (which overestimates by +0.20% at d = 128, papers.md §2.7).
    """
    e_abs = math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)
    return 1.0 / (m * math.sqrt(d) * e_abs)


def as_array_dict(arrays) -> dict[str, np.ndarray]:
    return {str(k): np.asarray(v) for k, v in dict(arrays).items()}


def check_state(state, kind: str) -> tuple[dict, dict]:
    from ..errors import IncompatibleFormatError

    if not isinstance(state, dict) or "config" not in state:
        raise InvalidInputError("state must be a dict with 'kind', 'config' and 'arrays'")
    if state.get("kind") != kind:
        raise IncompatibleFormatError(f"state is for a {state.get('kind')!r} quantizer, not {kind!r}")
    return dict(state["config"]), as_array_dict(state.get("arrays", {}))


def can_pin_blas() -> bool:
    """True when :func:`blas_one_thread` really pins BLAS to one thread (threadpoolctl is installed)."""
    return _blas.can_pin()


def blas_one_thread():
    """Context: BLAS single-threaded inside the block, process-wide, one count shared with the search
    paths (:mod:`vqdb.kernels._blas`). OpenBLAS's sgemm rounds differently with the thread count and the
    row count, so encoders that must give the same bytes whatever the threads run fixed-size row tiles
    under this."""
    return _blas.one_thread()


ENCODE_TILE = 512  # rows per encode tile: one sgemm + one fused pass; 0.75 MB of float32 at d = 384 (512-4096: within 10%)
_POOL: dict = {"pool": None, "workers": 0, "pid": None}
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared encode pool, grown on demand and re-created in a forked child (its threads do not survive a fork)."""
    with _POOL_LOCK:
        if _POOL["pool"] is None or _POOL["workers"] < workers or _POOL["pid"] != os.getpid():
            _POOL.update(
                pool=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vqdb-encode"),
                workers=workers,
                pid=os.getpid(),
            )
        return _POOL["pool"]


def reduce_tiles(fn, n: int, ops, tile: int = 4096):
    """Yield ``fn(t0)`` for ``t0 = 0, tile, ...`` below ``n``, in that order, computed like :func:`run_tiles`
    (BLAS pinned to one thread, over ``ops.num_threads()`` threads, a few tiles at a time so that only
    those results are held at once): a caller that sums them in this order gets the same float result
    whatever the thread count."""
    starts = list(range(0, n, tile))
    workers = min(int(ops.num_threads()), len(starts)) if can_pin_blas() else 1
    with blas_one_thread():
        if workers <= 1:
            for t0 in starts:
                yield fn(t0)
        else:
            pool = _pool(workers)
            for g in range(0, len(starts), workers):
                yield from pool.map(fn, starts[g : g + workers])


def run_tiles(fn, n: int, ops, tile: int | None = None) -> None:
    """Call ``fn(t0)`` for every tile start ``t0 = 0, tile, ...`` below ``n`` (``tile`` default
    ``ENCODE_TILE``), BLAS pinned to one thread (so a tile's bytes never depend on the thread count), tiles
    spread over ``ops.num_threads()`` threads when BLAS can be pinned. ``fn`` must write only its own rows."""
    starts = range(0, n, ENCODE_TILE if tile is None else tile)
    workers = min(int(ops.num_threads()), len(starts)) if can_pin_blas() else 1
    with blas_one_thread():
        if workers <= 1:
            for t0 in starts:
                fn(t0)
        else:
            for _ in _pool(workers).map(fn, starts):
                pass
