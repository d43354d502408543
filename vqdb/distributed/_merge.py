"""Global top-k from per-shard top-k lists.

Every shard returns its own best ``k`` (ids, scores), higher score better, ``-1`` padded. The global
top-k of the union is the top-k of the concatenation, because a vector in the global top-k is in
its own shard's top-k. Ties are broken by lower id, which is what a single index scanning in id
order returns for the same scores.
"""

from __future__ import annotations

import numpy as np


def merge_topk(
    ids_parts: list[np.ndarray], scores_parts: list[np.ndarray], k: int, pad_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard results into one (m, k) top-k.

    Parameters
    ----------
    ids_parts : list of ndarray of shape (m, k_s), int64, -1 where a shard had fewer results
    scores_parts : list of ndarray of shape (m, k_s), float32, same layout
    k : int, results per query
    pad_score : float, score written where fewer than k results exist

    Returns
    -------
    ids : ndarray of shape (m, k), int64, best first, -1 padded
    scores : ndarray of shape (m, k), float32, non-increasing per row
    """
    if not ids_parts:
        raise ValueError("merge_topk needs at least one part")
    ids = np.concatenate([np.asarray(p, dtype=np.int64) for p in ids_parts], axis=1)
    scores = np.concatenate([np.asarray(p, dtype=np.float32) for p in scores_parts], axis=1)
    m, width = ids.shape
    valid = ids >= 0
    # sort key: valid first, then score descending, then id ascending
    key_score = np.where(valid, scores, np.float32(-np.inf))
    order = np.lexsort(
        (np.where(valid, ids, np.iinfo(np.int64).max), -key_score.astype(np.float64), ~valid), axis=1
    )[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1)
    out_valid = np.take_along_axis(valid, order, axis=1)
    out_ids = np.where(out_valid, out_ids, -1)
    out_scores = np.where(out_valid, out_scores, np.float32(pad_score)).astype(np.float32)
    if out_ids.shape[1] < k:  # fewer candidates than k in total
        extra = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, extra)), constant_values=-1)
        out_scores = np.pad(out_scores, ((0, 0), (0, extra)), constant_values=np.float32(pad_score))
    return np.ascontiguousarray(out_ids), np.ascontiguousarray(out_scores)
