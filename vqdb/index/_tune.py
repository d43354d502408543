"""Pick an index's default ``nprobe`` and re-rank from measured recall and speed on sample queries.

The FAISS way (``ParameterSpace.explore``) made small: sweep nprobe = 1, 2, 4, ... nlist (one value on a
flat index) for each re-rank factor (off, and 2 / 4 / 8 when vectors are stored) -- on a graph index
ef = 16, 32, ... 1024 instead (its walk scores expanded nodes exactly: no separate re-rank) --, stop a
sweep once it reaches the target (more is only slower), and keep the fastest setting whose recall@k
reaches ``target_recall``, else the most accurate one. The choice is persisted with ``set_default_params``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import InvalidInputError
from ..testing import recall_at_k
from ._params import SearchParams

RERANK_FACTORS = (2.0, 4.0, 8.0)
GRAPH_EFS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


def _trained_lists(index) -> int | None:
    coarse = index._snap.coarse
    return None if coarse is None else coarse.nlist


def _truth(index, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids: every list scanned and, with stored vectors, every candidate re-scored exactly;
    without stored vectors, the full scan of the codes (recall is then relative to it)."""
    nlist = _trained_lists(index)
    rerank = max(1.0, math.ceil(len(index) / k)) if index.store_vectors else False
    if index._graph is not None:
        return _exact(index, q, k)
    return index.search(q, k, nprobe=nlist, rerank=rerank).ids


def _exact(index, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids of a graph index: every live stored vector scored (float64), ties by lower id."""
    rec = index.get(index.ids())
    v = rec.vectors.astype(np.float64)
    s = q.astype(np.float64) @ v.T
    if index.metric == "l2sq":
        s = 2 * s - np.einsum("ij,ij->i", v, v)[None, :]
    order = np.lexsort((np.broadcast_to(rec.ids, s.shape), -s), axis=1)[:, :k]
    return rec.ids[order]


def _timed(index, q: np.ndarray, k: int, nprobe, rerank) -> tuple[np.ndarray, float]:
    """(ids, seconds of the faster of two runs)."""
    best, ids = math.inf, None
    for _ in range(2):
        t = time.perf_counter()
        ids = index.search(q, k, nprobe=nprobe, rerank=rerank).ids
        best = min(best, time.perf_counter() - t)
    return ids, best


def tune(index, queries, *, k: int = 10, target_recall: float = 0.95, truth=None) -> dict:
    """Measure the settings on ``queries`` (m, d) and persist the chosen one. See :meth:`Index.tune`."""
    if (
        not isinstance(target_recall, (int, float))
        or isinstance(target_recall, bool)
        or not 0.0 < float(target_recall) <= 1.0
    ):
        raise InvalidInputError(f"target_recall must be a number in (0, 1]; got {target_recall!r}")
    q = index._queries(queries)
    if q.shape[0] == 0:
        raise InvalidInputError("tune needs at least one query")
    if len(index) < k:
        raise InvalidInputError(f"tune needs at least k={k} vectors in the index; it holds {len(index)}")
    if truth is None:
        truth = _truth(index, q, k)
    else:
        truth = np.asarray(truth)
        if (
            truth.ndim != 2
            or truth.shape[0] != q.shape[0]
            or truth.shape[1] < k
            or truth.dtype.kind not in "iu"
        ):
            raise InvalidInputError(
                f"truth must be integer ids of shape ({q.shape[0]}, >= {k}); got {truth.dtype} {truth.shape}"
            )
    nlist = _trained_lists(index)
    nprobes = [None] if not nlist else sorted({min(nlist, 1 << i) for i in range(int(math.log2(nlist)) + 2)})
    reranks = (False,) + (RERANK_FACTORS if index.store_vectors else ())
    graph = index._graph is not None
    if graph:
        return _tune_graph(index, q, k, target_recall, truth)
    index.search(q[:1], k)  # first-search work (layouts) stays out of the timings
    settings = []
    for rerank in reranks:
        for nprobe in nprobes:
            ids, seconds = _timed(index, q, k, nprobe, rerank)
            row = {
                "nprobe": nprobe,
                "rerank": rerank,
                "recall": round(recall_at_k(ids, truth, k), 4),
                "qps": round(q.shape[0] / max(seconds, 1e-9), 1),
            }
            settings.append(row)
            if row["recall"] >= target_recall:
                break
    return _choose(
        index, settings, target_recall, k, q, lambda c: SearchParams(nprobe=c["nprobe"], rerank=c["rerank"])
    )


def _tune_graph(index, q: np.ndarray, k: int, target_recall: float, truth: np.ndarray) -> dict:
    """The ef sweep of a graph index (see the module docstring)."""
    index.search(q[:1], k)
    settings = []
    for ef in GRAPH_EFS:
        best, ids = math.inf, None
        for _ in range(2):
            t = time.perf_counter()
            ids = index.search(q, k, ef=ef).ids
            best = min(best, time.perf_counter() - t)
        row = {
            "ef": ef,
            "recall": round(recall_at_k(ids, truth, k), 4),
            "qps": round(q.shape[0] / max(best, 1e-9), 1),
        }
        settings.append(row)
        if row["recall"] >= target_recall:
            break
    return _choose(index, settings, target_recall, k, q, lambda c: SearchParams(ef=c["ef"]))


def _choose(index, settings: list[dict], target_recall: float, k: int, q: np.ndarray, params_of) -> dict:
    """Persist the fastest measured setting reaching ``target_recall`` (else the most accurate) as the
    index default; ``params_of(row)`` turns a settings row into its SearchParams. Returns the report."""
    reached = [s for s in settings if s["recall"] >= target_recall]
    chosen = (
        max(reached, key=lambda s: s["qps"])
        if reached
        else max(settings, key=lambda s: (s["recall"], s["qps"]))
    )
    index.set_default_params(params_of(chosen))
    return {
        "chosen": chosen,
        "reached": bool(reached),
        "target_recall": float(target_recall),
        "k": k,
        "queries": int(q.shape[0]),
        "settings": settings,
    }
