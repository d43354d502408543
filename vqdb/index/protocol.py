"""``IndexProtocol``: the one contract that ``vqdb.Index``, ``vqdb.distributed.ShardedIndex`` and the
client's ``RemoteCollection`` (a collection of ``vqdb serve``) all implement.

Code written against it (framework stores, the service, benchmarks) works with any of the three. The
conformance suite ``tests/contract/`` runs the same tests against all three: same names, arguments,
return types and errors.

Ids are non-negative integers or strings (UUIDs included), one kind per index (``id_type``). Arrays of
ids are int64 for an integer-id index and object arrays of ``str`` for a string-id index.

Errors (all :mod:`vqdb.errors`, raised the same way by the three):

- ``DuplicateIdError``: ``add`` of an id that exists, or an id twice in one call;
- ``NotFoundError``: ``get`` / ``delete`` / ``update_metadata`` of an absent id (``missing_ok=True``
  skips absent ids in ``get`` and ``delete``); nothing is changed then;
- ``DTypeError``: ids of the other kind than the index's; ``InvalidInputError``: other bad input
  (NaN, empty string ids, ids over ``MAX_ID_BYTES``, bad filters); ``DimensionMismatchError``: a wrong
  vector width.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._params import SearchResult


@runtime_checkable
class IndexProtocol(Protocol):
    """What every vqdb index-like object offers (see the module docstring for ids and errors)."""

    dim: int
    metric: str

    @property
    def id_type(self) -> str | None:
        """``"int"`` or ``"str"``; None until the first write fixes it."""

    def __len__(self) -> int:
        """Number of live vectors."""

    def __contains__(self, id_: Any) -> bool: ...

    def add(self, vectors, ids=None, metadata=None) -> np.ndarray:
        """Add new vectors (n, d); returns their (n,) ids. ``DuplicateIdError`` if an id exists."""

    def upsert(self, vectors, ids, metadata=None) -> np.ndarray:
        """Insert or replace by id; returns the (n,) ids."""

    def delete(self, ids, *, missing_ok: bool = False) -> int:
        """Delete by id; returns how many were deleted."""

    def get(self, ids, *, include_vectors: bool = True, missing_ok: bool = False):
        """``Records`` (ids, vectors (n, d) float32 or None, metadata list of dicts, exact) in the order
        given; with ``missing_ok`` absent ids are left out."""

    def update_metadata(self, ids, metadata, *, merge: bool = True) -> int:
        """Set metadata of existing ids without re-sending vectors; returns how many were updated."""

    def search(
        self, queries, k, filter=None, nprobe=None, rerank=None, *, include_metadata: bool = False
    ) -> SearchResult:
        """Top-k of each query (m, d): ``SearchResult`` ids (m, k) (-1 / None padded), scores (m, k)
        float32 higher-is-better (-inf padded), metric, and metadata when asked."""

    def ids(self, filter=None) -> np.ndarray:
        """(n,) ids of every live vector (or of those matching ``filter``), in no particular order."""

    def scroll(self, *, limit: int = 100, offset=None, filter=None, include_vectors: bool = False):
        """One ``Page`` (records, next_offset) of a walk through the index in a stable order."""

    def stats(self) -> dict:
        """Sizes and settings."""
