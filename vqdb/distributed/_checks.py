"""Validation at the door of a sharded index: what ``vqdb.Index`` would reject is rejected here, before
anything is sent to a shard, so that a bad call leaves every shard unchanged."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DuplicateIdError, InvalidInputError
from . import _manifest


def resolve_quantizer(dim: int, metric: str, quantizer, index_kwargs: dict):
    """The quantizer object ``vqdb.Index`` would build from these arguments (validating them all)."""
    from ..index import Index

    probe = Index(dim, metric=metric, quantizer=quantizer, **index_kwargs)  # in memory, empty
    try:
        return probe.quantizer
    finally:
        probe.close()


def precheck_first_write(x: np.ndarray, metadata, metric: str, store_vectors) -> None:
    """Reject what ``vqdb.Index`` would reject before it fits a centre (zero rows for ``cos``, values
    beyond float16 for float16 vector storage, malformed metadata)."""
    if metric == "cos" and x.shape[0]:
        zero = np.flatnonzero(np.linalg.norm(x, axis=1) == 0)
        if zero.size:
            raise InvalidInputError(
                f"vectors row {int(zero[0])} is all zeros; metric 'cos' cannot normalise it"
            )
    if store_vectors in (True, "float16") and x.size:
        scale = np.linalg.norm(x, axis=1, keepdims=True) if metric == "cos" else 1.0
        if np.abs(x / scale).max() > 65504.0:
            raise InvalidInputError(
                "vectors has values beyond the float16 range (±65504); "
                "create the index with store_vectors='float32'"
            )
    if metadata is not None:
        from ..index import _metadata

        _metadata.as_metadata_table(metadata, x.shape[0])


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm exactly as ``vqdb.Index`` does for ``cos`` (zero rows left for it to reject)."""
    norms = np.linalg.norm(x, axis=1)
    return np.ascontiguousarray(x / np.where(norms == 0, 1.0, norms)[:, None], dtype=np.float32)


def check_ids(ids: np.ndarray) -> None:
    if ids.size and np.any(ids < 0):
        raise InvalidInputError(f"ids must be >= 0 (-1 pads search results); got {int(ids[ids < 0][0])}")
    if ids.size > 1:
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise DuplicateIdError(f"ids repeat within one call: {uniq[counts > 1][:10].tolist()}")


def check_metadata(metadata, n: int) -> None:
    if metadata is None:
        return
    rows = getattr(metadata, "num_rows", None)
    if rows is None:
        if isinstance(metadata, dict):  # dict of columns
            lengths = {len(v) for v in metadata.values()}
            rows = lengths.pop() if len(lengths) == 1 else None
            if rows is None:
                raise InvalidInputError("metadata columns have different lengths")
        elif isinstance(metadata, (list, tuple)):
            rows = len(metadata)
        else:
            raise InvalidInputError(
                "metadata must be a list of dicts, a pyarrow Table, a dict of columns or None; "
                f"got {type(metadata).__name__}"
            )
    if rows != n:
        raise InvalidInputError(f"metadata has {rows} rows; expected {n} (one per vector)")


def take_metadata(metadata, rows: np.ndarray):
    if metadata is None:
        return None
    if hasattr(metadata, "take") and hasattr(metadata, "num_rows"):
        return metadata.take(rows)
    if isinstance(metadata, dict):
        return {name: [col[int(i)] for i in rows] for name, col in metadata.items()}
    return [metadata[int(i)] for i in rows]


def prepare_new_dir(path: str) -> None:
    check_new_dir(path)
    os.makedirs(path, exist_ok=True)


def check_new_dir(path: str) -> None:
    if _manifest.is_sharded_dir(path):
        from ..errors import AlreadyExistsError

        raise AlreadyExistsError(
            f"{path!r} already holds a sharded index; open it with vqdb.distributed.open(path)"
        )
    if os.path.isdir(path) and os.listdir(path):
        raise InvalidInputError(
            f"{path!r} exists and is not empty; a new sharded index needs a new or empty directory"
        )


def check_json(obj) -> None:
    import json

    try:
        json.dumps(obj)
    except TypeError as exc:
        raise InvalidInputError(
            f"index options of a sharded index are stored in its manifest and must be JSON values: {exc}"
        ) from None
