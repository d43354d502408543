"""Global top-k from per-shard top-k lists.

Every shard returns its own best ``k`` (ids, scores), higher score better, ``-1`` padded. The global
top-k of the union is the top-k of the concatenation, because a vector in the global top-k is in
its own shard's top-k. Ties are broken by lower id, which is what a single index scanning in id
order returns for the same scores.
"""

from __future__ import annotations

import numpy as np

from ._routing import route_keys


def _as_object(part) -> np.ndarray:
    """(m, k) object ids: a -1 padded int part (a shard without rows) becomes None padded."""
    arr = np.asarray(part)
    if arr.dtype == object:
        return arr
    out = np.full(arr.shape, None, dtype=object)
    out[arr >= 0] = arr[arr >= 0]
    return out


def merge_topk(
    ids_parts: list[np.ndarray], scores_parts: list[np.ndarray], k: int, pad_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard results into one (m, k) top-k.

    Parameters
    ----------
    ids_parts : list of ndarray of shape (m, k_s), int64 (-1 where a shard had fewer results) or object
        strings (None where fewer)
    scores_parts : list of ndarray of shape (m, k_s), float32, same layout
    k : int, results per query
    pad_score : float, score written where fewer than k results exist

    Returns
    -------
    ids : ndarray of shape (m, k), int64 best first, -1 padded (string ids: object, None padded)
    scores : ndarray of shape (m, k), float32, non-increasing per row
    """
    if not ids_parts:
        raise ValueError("merge_topk needs at least one part")
    strings = any(np.asarray(p).dtype == object for p in ids_parts)
    if strings:  # string ids (None padded; a shard that never got a write answers -1 padded ints)
        ids = np.concatenate([_as_object(p) for p in ids_parts], axis=1)
        valid = ids != None  # noqa: E711 (elementwise)
        tie = np.full(ids.shape, np.iinfo(np.int64).max, dtype=np.int64)
        tie[valid] = route_keys(ids[valid])
        pad_id = None
    else:
        ids = np.concatenate([np.asarray(p, dtype=np.int64) for p in ids_parts], axis=1)
        valid = ids >= 0
        tie = np.where(valid, ids, np.iinfo(np.int64).max)
        pad_id = -1
    scores = np.concatenate([np.asarray(p, dtype=np.float32) for p in scores_parts], axis=1)
    # sort key: valid first, then score descending, then id (string ids: their key) ascending
    key_score = np.where(valid, scores, np.float32(-np.inf))
    order = np.lexsort((tie, -key_score.astype(np.float64), ~valid), axis=1)[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1)
    out_valid = np.take_along_axis(valid, order, axis=1)
    out_ids = np.where(out_valid, out_ids, pad_id)
    out_scores = np.where(out_valid, out_scores, np.float32(pad_score)).astype(np.float32)
    if out_ids.shape[1] < k:  # fewer candidates than k in total
        extra = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, extra)), constant_values=pad_id)
        out_scores = np.pad(out_scores, ((0, 0), (0, extra)), constant_values=np.float32(pad_score))
    return np.ascontiguousarray(out_ids), np.ascontiguousarray(out_scores)
