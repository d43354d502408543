"""The only module that calls ``vqdb.Index``: every index operation the service needs, in one place.

Inputs are already validated by the routes (shapes, dtypes, finite values); what the index itself
rejects (dimension, filter syntax, payload types) surfaces as ``VqdbError`` and becomes a 4xx.
The index serialises its own writes and lets searches run concurrently with one write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, NotFoundError, VqdbError


def new_index(
    *,
    dim: int,
    metric: str,
    quantizer: str,
    ivf: bool | int,
    store_vectors: bool | str,
    path: Path,
    shards: int = 1,
    id_type: str | None = None,
    graph: bool | int = False,
):
    """Create an empty persistent index in ``path`` (which must not hold one).

    ``shards > 1`` creates a ``vqdb.distributed.ShardedIndex`` (same methods) on the Ray cluster the
    server was started with (``--ray-address``); without one it is a 4xx error.
    """
    from ..index import Index

    if graph and ivf:
        raise InvalidInputError("graph and ivf are exclusive: choose one index structure")
    # a graph collection keeps float16 vectors unless store_vectors names a type (the graph's re-rank data)
    extra = (
        {"graph": graph, "store_vectors": store_vectors or None}
        if graph
        else {"store_vectors": store_vectors}
    )
    if shards > 1:
        from ..distributed import service

        return service.new_index(
            dim=dim,
            n_shards=shards,
            metric=metric,
            quantizer=quantizer,
            path=path,
            ivf=ivf,
            **extra,
            **({} if id_type is None else {"id_type": id_type}),
        )

    return Index(
        dim,
        metric=metric,
        quantizer=quantizer,
        ivf=ivf,
        path=str(path),
        id_type=id_type,
        **extra,
    )


def open_index(path: Path, *, read_only: bool = False):
    """The index in ``path`` (``read_only``: a snapshot of it that takes no lock; not for sharded ones)."""
    from ..distributed import service  # imports no Ray

    if service.is_sharded(path):
        if read_only:
            raise InvalidInputError("a sharded collection has no read-only snapshot")
        return service.open_index(path)
    from ..index import open_index as _open

    return _open(str(path), read_only=read_only)


def upsert(
    index, vectors: np.ndarray, ids: np.ndarray, payloads: list[dict | None] | None, *, replace: bool = True
) -> None:
    """Insert or replace (n, d) float32 ``vectors`` under ``ids``; durable when it returns.
    ``replace=False`` adds only (``DuplicateIdError`` when an id exists, nothing written)."""
    try:
        if replace:
            return index.upsert(vectors, ids, metadata=payloads)
        return index.add(vectors, ids, metadata=payloads)
    except VqdbError:
        raise
    except (TypeError, OverflowError) as exc:  # payload values the metadata table cannot hold
        raise InvalidInputError(f"payload rejected: {exc}") from None
    except _arrow_errors() as exc:
        raise InvalidInputError(f"payload rejected: {exc}") from None


def present(index, ids: np.ndarray) -> np.ndarray:
    """(n,) bool: which ``ids`` are in the index."""
    if hasattr(index, "contains"):
        return np.asarray(index.contains(ids), dtype=bool)
    if ids.size <= 64:
        return np.fromiter((int(i) in index for i in ids), dtype=bool, count=ids.size)
    return np.isin(ids, index.ids())


def delete(index, ids: np.ndarray, *, missing_ok: bool = True) -> int:
    """Delete ``ids``; returns how many were deleted. Absent ids are ignored (``missing_ok``) or raise
    ``NotFoundError`` with nothing deleted."""
    if not missing_ok:
        return int(index.delete(ids)) if ids.size else 0
    ids = ids[present(index, ids)]
    return int(index.delete(ids)) if ids.size else 0


def scroll(index, *, limit: int, offset, filter, with_vector: bool, with_payload: bool) -> dict:
    """One page: ``{"points": [{"id", "payload", "vector"}], "next_offset"}``."""
    try:
        page = index.scroll(limit=limit, offset=offset, filter=filter, include_vectors=with_vector)
    except _arrow_errors() as exc:
        raise InvalidInputError(f"filter cannot be evaluated on this collection's payloads: {exc}") from None
    rec = page.records
    points = [
        {
            "id": point_id,
            "payload": (payload or {}) if with_payload else None,
            "vector": rec.vectors[j].tolist() if with_vector else None,
        }
        for j, (point_id, payload) in enumerate(zip(rec.ids.tolist(), rec.metadata))
    ]
    return {"points": points, "next_offset": page.next_offset}


def update_metadata(index, ids: np.ndarray, payloads: list, *, merge: bool) -> int:
    try:
        return int(index.update_metadata(ids, [p or {} for p in payloads], merge=merge))
    except VqdbError:
        raise
    except (TypeError, OverflowError) as exc:
        raise InvalidInputError(f"payload rejected: {exc}") from None
    except _arrow_errors() as exc:
        raise InvalidInputError(f"payload rejected: {exc}") from None


def ids_matching(index, filter: dict) -> np.ndarray:
    """Ids (int64, or str) of every live point whose payload matches ``filter``."""
    return np.asarray(index.ids(filter=filter))


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
            "id": point_id,
            "payload": payload or {},
            "vector": vectors[j].tolist() if with_vector and vectors is not None else None,
        }
    return out


def search(index, queries: np.ndarray, k: int, *, filter, nprobe, rerank, ef=None):
    try:
        kwargs = {} if ef is None else {"ef": ef}  # (graph knob; flat / IVF indexes ignore it)
        return index.search(queries, k, filter=filter, nprobe=nprobe, rerank=rerank, **kwargs)
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
