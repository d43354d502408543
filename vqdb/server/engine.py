"""The only module that calls ``vqdb.Index``: every index operation the service needs, in one place.

Inputs are already validated by the routes (shapes, dtypes, finite values); what the index itself
rejects (dimension, filter syntax, payload types) surfaces as ``VqdbError`` and becomes a 4xx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError


def new_index(*, dim: int, metric: str, quantizer: str, ivf: bool | int, path: Path):
    """Create an empty persistent index in ``path``."""
    import vqdb

    return vqdb.Index(dim, metric=metric, quantizer=quantizer, ivf=ivf, path=str(path))


def open_index(path: Path):
    import vqdb

    return vqdb.open(str(path))


def upsert(index, vectors: np.ndarray, ids: np.ndarray, payloads: list[dict] | None) -> None:
    """Insert or replace (n, d) float32 ``vectors`` under int64 ``ids`` with optional payloads."""
    try:
        index.upsert(vectors, ids, metadata=payloads)
    except (TypeError, OverflowError) as exc:  # payload values the metadata table cannot hold
        raise InvalidInputError(f"payload rejected: {exc}") from None
    except _arrow_errors() as exc:
        raise InvalidInputError(f"payload rejected: {exc}") from None


def delete(index, ids: np.ndarray) -> int:
    before = len(index)
    index.delete(ids)
    return before - len(index)


def ids_matching(index, filter: dict) -> np.ndarray:
    """int64 ids of every live point whose payload matches ``filter``."""
    return np.asarray(index.ids(filter=filter), dtype=np.int64)


def fetch(index, ids: np.ndarray, *, with_vector: bool) -> list[dict[str, Any] | None]:
    """Per id: ``{"id", "payload", "vector"}`` or None when the id does not exist."""
    records = index.get(ids, with_vector=with_vector)
    return list(records)


def search(index, queries: np.ndarray, k: int, *, filter, nprobe, rerank):
    try:
        return index.search(queries, k, filter=filter, nprobe=nprobe, rerank=rerank)
    except _arrow_errors() as exc:
        raise InvalidInputError(f"filter cannot be evaluated on this collection's payloads: {exc}") from None


def size(index) -> tuple[int, int]:
    """(live vectors, bytes held)."""
    stats = index.stats()
    return len(index), int(stats.get("bytes", 0))


def stats(index) -> dict[str, Any]:
    return dict(index.stats())


def save(index) -> None:
    index.save()


def compact(index) -> None:
    index.compact()


def close(index) -> None:
    close_ = getattr(index, "close", None)
    if close_ is not None:
        close_()


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
