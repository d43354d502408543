"""Reciprocal-rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009) of ranked id lists.

``score(p) = sum_i w_i / (rrf_k + rank_i(p))`` with 1-based ranks; a list that does not contain
``p`` adds nothing. Only ranks are used, so scores on different scales (cosine, BM25) need no
calibration. ``rrf_k = 60`` is the constant of the original paper and the common default
(Elasticsearch, OpenSearch, Qdrant).
"""

from __future__ import annotations

import numpy as np

DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: list[np.ndarray], k: int, *, rrf_k: float = DEFAULT_RRF_K, weights: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ranked lists of ids (best first) into one top-``k``.

    Parameters
    ----------
    rankings : list of ndarray of shape (n_i,), int64 or object str (one kind)
        Each list best first, without repeats.
    k : int
        Results to keep.
    rrf_k : float
        Rank offset (> 0); larger values flatten the contribution of top ranks.
    weights : list of float, optional
        One weight per list (default all 1).

    Returns
    -------
    ids : ndarray of shape (<= k,), int64 (object for string ids)
        Best first; ties go to the better best rank, then to the smaller id.
    scores : ndarray of shape (<= k,), float32
        Fused scores.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    fused: dict = {}
    best_rank: dict = {}
    strings = any(np.asarray(r).dtype == object for r in rankings)
    for ranking, w in zip(rankings, weights):
        ranking = np.asarray(ranking) if strings else np.asarray(ranking, dtype=np.int64)
        for rank, pid in enumerate(ranking.tolist(), start=1):
            fused[pid] = fused.get(pid, 0.0) + w / (rrf_k + rank)
            if rank < best_rank.get(pid, 1 << 62):
                best_rank[pid] = rank
    order = sorted(fused, key=lambda p: (-fused[p], best_rank[p], p))[:k]
    ids = np.empty(len(order), dtype=object) if strings else np.asarray(order, dtype=np.int64)
    if strings:
        ids[:] = order
    return ids, np.asarray([fused[p] for p in order], dtype=np.float32)
