"""``vqdb warmup``: compile every CPU kernel once, into numba's on-disk cache, so that no later process waits.

Kernels compile lazily (an index compiles, or loads from the cache, only what its preset and its searches
call); ``make install`` and ``make serve`` run this once so that even the first of those calls is a cache
load. The cache lives next to the sources (``__pycache__``) when that is writable, else under the user cache
directory (``$XDG_CACHE_HOME/numba``, numba's own fallback for a read-only site-packages), or in
``NUMBA_CACHE_DIR`` when set; ``VQDB_NUMBA_CACHE=0`` turns it off.
"""

from __future__ import annotations

import argparse
import time


def warmup() -> dict[str, float]:
    """Compile (or load) the numba backend's ops, the fast-scan and the graph kernels; seconds per part.

    Returns ``{}`` when the numba backend is not usable here (nothing to compile).
    """
    from . import available_backends, get_ops

    if available_backends().get("numba") is not None:
        return {}
    from . import scanner

    t0 = time.perf_counter()
    get_ops("numba").warmup()
    t1 = time.perf_counter()
    scanner.warmup()
    t2 = time.perf_counter()
    from . import graph

    graph.warmup()
    t3 = time.perf_counter()
    return {"numba_ops_s": t1 - t0, "fastscan_s": t2 - t1, "graph_s": t3 - t2}


def cache_dir() -> str | None:
    """Where numba caches this package's kernels (None when caching is off or numba is missing)."""
    from . import available_backends

    if available_backends().get("numba") is not None:
        return None
    from . import numba_cpu

    # a numba FunctionCache knows its directory; a NullCache (caching off) has none
    return getattr(getattr(numba_cpu._pack_aligned, "_cache", None), "_cache_path", None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print nothing")


def run(args: argparse.Namespace) -> int:
    times = warmup()
    if not args.quiet:
        if not times:
            print("vqdb warmup: the numba backend is not usable here; nothing to compile")
        else:
            parts = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in times.items())
            print(f"vqdb warmup: kernels ready ({parts}); numba cache: {cache_dir() or 'off'}")
    return 0
