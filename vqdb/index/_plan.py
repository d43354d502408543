"""One plan per search: which rows are scanned, by which kernel, for how many candidates, on how many threads.

:func:`plan_search` is the only place that decides; :meth:`vqdb.Index.search` builds the plan once from the
index snapshot, the query batch and ``k``, and the scans (:mod:`vqdb.index._scan`) and kernels
(:mod:`vqdb.kernels.scanner`) follow it without choosing again.

Routes: ``graph`` (a graph index, unfiltered or a broad filter), ``ivf`` (the probed lists), ``subset``
(a selective filter: only the matching rows are gathered and scored), ``device`` (``Index(device="cuda")``),
``flat`` (every row). Kernels: ``fastscan`` (uint8 LUT shuffles), ``popcount`` (1-bit codes), ``blas``
(decoded tiles x all queries), ``float`` (the quantizer's own scores), ``graph`` / ``device``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..kernels import scanner
from . import _ivf

SUBSET_MAX_ROWS = 4096  # a filter matching at most this many rows scores just those rows
# graph index: a filter matching at most this share of the rows (or SUBSET_MAX_ROWS) scans the matching
# rows exactly instead of walking the graph
GRAPH_SUBSET_FRACTION = 0.05
# With an exact re-rank the fast scan only proposes candidates, so its LUT-rounding margin is statistical
# (this many standard deviations of the rounding error) rather than the rigorous worst case.
RERANK_MARGIN = 4.0


@dataclass(frozen=True)
class SearchPlan:
    """What one search does (see the module docstring)."""

    route: str  # "graph" | "ivf" | "subset" | "device" | "flat" | "none" (nothing to scan)
    kernel: str  # "fastscan" | "popcount" | "blas" | "float" | "graph" | "device"
    kk: int  # candidates kept by the scan (k, or k x oversample with a re-rank)
    rerank: bool  # exact re-rank of the kk candidates from the stored vectors
    margin: float | None  # fast-scan candidate margin: None (rigorous) or standard deviations
    nprobe: int | None  # IVF lists per query
    need: int | None  # IVF: keep opening lists until this many allowed rows were scanned
    threads: int  # numba threads of the calling thread during the search (1: serial kernels)
    scanner: object = None  # the quantizer's FastScanner when kernel is a fast-scan kernel


def default_threads() -> int:
    """All cores numba may use (its ``NUMBA_NUM_THREADS``), else the CPU count."""
    try:
        import numba

        return int(numba.config.NUMBA_NUM_THREADS)
    except ImportError:
        return os.cpu_count() or 1


def plan_search(
    *,
    quantizer,
    coarse,
    graph_ready: bool,
    device_ok: bool,
    m: int,
    k: int,
    rerank_factor: float,
    nprobe: int | None,
    filtered: bool,
    n_rows: int,
    n_allowed: int,
    threads: int | None,
) -> SearchPlan:
    """The plan of a search of ``m`` queries for ``k`` results over ``n_rows`` rows of which ``n_allowed``
    are live and match the filter (``filtered``: a filter was given)."""
    kk = k if not rerank_factor else max(k, int(-(-k * rerank_factor // 1)))
    threads = default_threads() if threads is None else int(threads)
    base = dict(kk=kk, rerank=bool(rerank_factor), margin=RERANK_MARGIN if rerank_factor else None)
    if not (m and n_allowed):
        return SearchPlan("none", "float", nprobe=None, need=None, threads=1, **base)
    if graph_ready and (not filtered or n_allowed > max(SUBSET_MAX_ROWS, GRAPH_SUBSET_FRACTION * n_rows)):
        return SearchPlan("graph", "graph", nprobe=None, need=None, threads=threads, **base)
    nprobe_eff = None if coarse is None else (nprobe or _ivf.default_nprobe(coarse.nlist))
    if coarse is not None and nprobe_eff < coarse.nlist:
        probed = n_rows * nprobe_eff / coarse.nlist
        route = "subset" if filtered and n_allowed <= max(2 * probed, SUBSET_MAX_ROWS) else "ivf"
        n_scan = probed
    elif device_ok:
        route, n_scan = "device", n_rows
    elif filtered and n_allowed <= max(n_rows // 4, SUBSET_MAX_ROWS):
        route, n_scan = "subset", n_allowed
    else:
        route, n_scan = "flat", n_rows
    if route in ("subset", "device"):
        return SearchPlan(
            route,
            "float" if route == "subset" else "device",
            nprobe=nprobe_eff,
            need=kk,
            threads=threads,
            **base,
        )
    scanner = _fast_scanner(quantizer)
    kernel = "float" if scanner is None else scanner.choose(m, int(n_scan), ivf=route == "ivf")
    if scanner is not None and scanner.small_work(m, int(n_scan)):
        threads = 1  # waking the other threads costs more than the scan
    return SearchPlan(
        route,
        kernel,
        nprobe=nprobe_eff if route == "ivf" else None,
        need=kk if route == "ivf" else None,
        threads=threads,
        scanner=scanner,
        **base,
    )


def _fast_scanner(quantizer):
    """The quantizer's FastScanner when the fast paths apply (numba backend, supported codes), else None."""
    return scanner.for_quantizer(quantizer) if scanner.enabled() else None
