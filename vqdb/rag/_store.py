"""The only module of ``vqdb.rag`` that calls ``vqdb.Index``: passages live in the index.

Each passage is one vector of the index; its text and place in its document are metadata columns
next to the user's metadata (names in :data:`RESERVED`). The index is the source of truth: it
makes writes durable (write-ahead log) and evaluates the dense side's filters; the BM25 index and
its copy of the filterable metadata are derived from it.
"""

from __future__ import annotations

import numpy as np

from ..errors import NotFoundError

TEXT, DOC, CHUNK, START, END = "_text", "_doc", "_chunk", "_start", "_end"
RESERVED = (TEXT, DOC, CHUNK, START, END)


def new_index(dim: int, quantizer, path: str | None, id_type: str | None = None):
    import vqdb

    return vqdb.Index(dim, metric="cos", quantizer=quantizer, path=path, id_type=id_type)


def open_index(path: str):
    import vqdb

    return vqdb.open(path)


def add(index, vectors: np.ndarray, ids: np.ndarray, rows: list[dict]) -> None:
    """Store (n, d) float32 ``vectors`` under ``ids`` (int64 or str) with one metadata dict per row (durable)."""
    index.add(vectors, ids=ids, metadata=rows)


def delete(index, ids: np.ndarray) -> int:
    """Delete ``ids``; :class:`NotFoundError` (and nothing deleted) if one does not exist."""
    return int(index.delete(ids))


def search(index, queries: np.ndarray, k: int, flt, *, rerank=None) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) ids (-1 padded) and scores of a filtered dense search."""
    res = index.search(queries, k, filter=flt, rerank=rerank)
    return np.asarray(res.ids), np.asarray(res.scores, dtype=np.float32)


def live_ids(index) -> np.ndarray:
    """Sorted ids of every stored passage (int64, or object str)."""
    ids = np.asarray(index.ids())
    return np.sort(ids) if ids.dtype != object else np.asarray(sorted(ids.tolist()), dtype=object)


def rows(index, ids: np.ndarray) -> list[dict | None]:
    """Metadata dict of each id (reserved columns included), None for an id that does not exist."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return []
    try:
        return list(index.get(ids, include_vectors=False).metadata)
    except NotFoundError:  # some were deleted meanwhile: fetch the others
        present = index.contains(ids)
        out: list[dict | None] = [None] * ids.size
        if present.any():
            for j, d in zip(np.flatnonzero(present), index.get(ids[present], include_vectors=False).metadata):
                out[j] = d
        return out


def size(index) -> int:
    return len(index)


def save(index) -> None:
    index.save()
