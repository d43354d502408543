"""The only module that calls ``vqdb.Index``: every index operation the service needs, in one place.

Inputs are already validated by the routes (shapes, dtypes, finite values); what the index itself
rejects (dimension, filter syntax, payload types) surfaces as ``VqdbError`` and becomes a 4xx.
The index serialises its own writes and lets searches run concurrently with one write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, NotFoundError


def new_index(
    *,
    dim: int,
    metric: str,
    quantizer: str,
    ivf: bool | int,
    store_vectors: bool | str,
    path: Path,
    shards: int = 1,
):
    """Create an empty persistent index in ``path`` (which must not hold one).

    ``shards > 1`` creates a ``vqdb.distributed.ShardedIndex`` (same methods) on the Ray cluster the
    server was started with (``--ray-address``); without one it is a 4xx error.
    """
    from ..index import Index

    if shards > 1:
        from ..distributed import service

        return service.new_index(
            dim=dim,
            n_shards=shards,
            metric=metric,
            quantizer=quantizer,
            path=path,
            ivf=ivf,
            store_vectors=store_vectors,
        )

    return Index(
        dim, metric=metric, quantizer=quantizer, ivf=ivf, store_vectors=store_vectors, path=str(path)
    )


def open_index(path: Path):
    from ..distributed import service  # imports no Ray

    if service.is_sharded(path):
        return service.open_index(path)
    from ..index import open_index as _open

    return _open(str(path))


def upsert(index, vectors: np.ndarray, ids: np.ndarray, payloads: list[dict | None] | None) -> None:
    """Insert or replace (n, d) float32 ``vectors`` under int64 ``ids``; durable when it returns."""
    try:
        index.upsert(vectors, ids, metadata=payloads)
    except (TypeError, OverflowError) as exc:  # payload values the metadata table cannot hold
        raise InvalidInputError(f"payload rejected: {exc}") from None
    except _arrow_errors() as exc:
        raise InvalidInputError(f"payload rejected: {exc}") from None


def present(index, ids: np.ndarray) -> np.ndarray:
    """(n,) bool: which ``ids`` are in the index."""
    if ids.size <= 64:
        return np.fromiter((int(i) in index for i in ids), dtype=bool, count=ids.size)
    return np.isin(ids, index.ids())


def delete(index, ids: np.ndarray) -> int:
    """Delete the ``ids`` that exist; returns how many were deleted (absent ids are ignored)."""
    ids = ids[present(index, ids)]
    return int(index.delete(ids)) if ids.size else 0


def ids_matching(index, filter: dict) -> np.ndarray:
    """int64 ids of every live point whose payload matches ``filter``."""
    return np.asarray(index.ids(filter=filter), dtype=np.int64)


def fetch(index, ids: np.ndarray, *, with_vector: bool) -> list[dict[str, Any] | None]:
    """Per id: ``{"id", "payload", "vector"}`` or None when the id does not exist."""
    out: list[dict[str, Any] | None] = [None] * ids.size
    try:
        where = np.arange(ids.size)
        records = index.get(ids, include_vectors=with_vector)
    except NotFoundError:
        where = np.flatnonzero(present(index, ids))
        if where.size == 0:
            return out
        records = index.get(ids[where], include_vectors=with_vector)
    vectors = records.vectors
    for j, (pos, point_id, payload) in enumerate(zip(where.tolist(), records.ids.tolist(), records.metadata)):
        out[pos] = {
            "id": int(point_id),
            "payload": payload or {},
            "vector": vectors[j].tolist() if with_vector and vectors is not None else None,
        }
    return out


def search(index, queries: np.ndarray, k: int, *, filter, nprobe, rerank):
    try:
        return index.search(queries, k, filter=filter, nprobe=nprobe, rerank=rerank)
    except _arrow_errors() as exc:
        raise InvalidInputError(f"filter cannot be evaluated on this collection's payloads: {exc}") from None


def size(index) -> tuple[int, int]:
    """(live vectors, bytes on disk: segments + write-ahead log)."""
    s = index.stats()
    return len(index), int(s.get("disk_bytes", 0)) + int(s.get("wal_bytes", 0))


def stats(index) -> dict[str, Any]:
    s = dict(index.stats())
    s.pop("path", None)  # no server paths in responses
    return s


def save(index) -> None:
    index.save()


def export(index, path: Path) -> None:
    """Write a compacted, self-contained copy of ``index`` to the new directory ``path``."""
    index.export(str(path))


def compact(index) -> None:
    index.compact()


def close(index) -> None:
    index.close()


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
