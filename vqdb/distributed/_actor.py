"""One shard: a ``vqdb.Index`` living inside a Ray actor process.

The actor class is a plain Python class; :func:`remote_class` wraps it with ``ray.remote`` on first
use, so importing this module does not import Ray. Every method takes and returns plain arrays,
dicts or ``vqdb`` value objects (all picklable). Errors raised by the index (bad input, unknown ids)
travel back to the caller unchanged; only the death of the process is handled by the coordinator.

A shard starts *pending* (no index yet) until the coordinator has fixed the quantizer's centre at
the set's first write (:meth:`ShardActor.init_index`), so that every shard encodes with the centre a
single index would have fitted on that same write. A pending shard answers reads as an empty index.

An actor runs one method at a time (Ray's default ``max_concurrency=1``), which gives the index the
single writer it requires; parallelism comes from the shards.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

INDEX_MANIFEST = "manifest.json"  # the file that marks a vqdb.Index directory
_LOCK_WAIT_S = 10.0  # a restarted shard waits this long for its dead predecessor's flock


class ShardActor:
    """Hold shard ``spec["shard"]``.

    Parameters
    ----------
    spec : dict
        ``shard`` (int); ``path`` (the shard's directory, or None for memory only); ``dim``;
        ``metric``; ``quantizer`` (:func:`._codec.quantizer_state` of the set's quantizer, centre
        included once decided); ``index_kwargs`` (dict of other ``vqdb.Index`` options); ``on_missing``: what to do
        when ``path`` holds no index yet: ``"pending"`` (wait for :meth:`init_index`), ``"create"``
        (create it now) or ``"error"`` (the directory was lost: refuse to start).
    """

    def __init__(self, spec: dict[str, Any]):
        self.shard = int(spec["shard"])
        self.path = spec.get("path")
        self.spec = spec
        self.index = None
        exists = self.path is not None and os.path.isfile(os.path.join(self.path, INDEX_MANIFEST))
        if exists:
            self.index = _open_waiting_for_lock(self.path)
        elif spec["on_missing"] == "create":
            self._create(spec["quantizer"])
        elif spec["on_missing"] == "error":
            from ..errors import NotFoundError

            raise NotFoundError(
                f"shard {self.shard}: {self.path!r} holds no index (was the directory removed?)"
            )

    def _create(self, quantizer: dict[str, Any]) -> None:
        import vqdb

        from ._codec import load_quantizer_state

        spec = self.spec
        self.index = vqdb.Index(
            spec["dim"],
            metric=spec["metric"],
            quantizer=load_quantizer_state(quantizer),
            path=self.path,
            **spec.get("index_kwargs", {}),
        )

    # ---- lifecycle --------------------------------------------------------------------------
    def ping(self) -> dict[str, Any]:
        return {"shard": self.shard, "pid": os.getpid(), "ready": self.index is not None}

    def init_index(self, quantizer: dict[str, Any]) -> None:
        """Create the shard's index with ``quantizer`` (a quantizer state, centre fixed by the coordinator);
        no-op if it exists."""
        if self.index is None:
            self._create(quantizer)

    def debug_sleep(self, seconds: float) -> None:
        """Occupy the actor (tests use it to hold a search in flight while they kill the actor)."""
        time.sleep(float(seconds))

    def close(self) -> None:
        if self.index is not None:
            self.index.close()

    # ---- writes -----------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids: np.ndarray, metadata=None) -> np.ndarray:
        return self._ready().add(vectors, ids=ids, metadata=metadata)

    def upsert(self, vectors: np.ndarray, ids: np.ndarray, metadata=None) -> np.ndarray:
        return self._ready().upsert(vectors, ids, metadata=metadata)

    def delete(self, ids: np.ndarray, missing_ok: bool = False) -> int:
        return self._ready().delete(ids, missing_ok=missing_ok)

    def update_metadata(self, ids: np.ndarray, metadata: list, merge: bool) -> int:
        return self._ready(ids).update_metadata(ids, metadata, merge=merge)

    def scroll(self, limit: int, offset, filter, include_vectors: bool):
        if self.index is None:
            from ..index import Page, Records

            vectors = np.zeros((0, self.spec["dim"]), np.float32) if include_vectors else None
            return Page(Records(np.zeros(0, np.int64), vectors, [], exact=False), None)
        return self.index.scroll(limit=limit, offset=offset, filter=filter, include_vectors=include_vectors)

    def save(self) -> None:
        if self.index is not None:
            self.index.save()

    def compact(self) -> None:
        if self.index is not None:
            self.index.compact()

    def export(self, path: str) -> bool:
        """Write a compacted copy of the shard to ``path``; False (nothing written) for a pending shard."""
        if self.index is None:
            return False
        self.index.export(path)
        return True

    # ---- reads ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, kwargs: dict[str, Any]):
        if self.index is None:
            from ..index import SearchResult

            m = queries.shape[0]
            return SearchResult(
                np.full((m, k), -1, np.int64), np.full((m, k), -np.inf, np.float32), self.spec["metric"]
            )
        return self.index.search(queries, k, **kwargs)

    def timed_search(self, queries: np.ndarray, k: int, kwargs: dict[str, Any]) -> dict[str, float]:
        """Run :meth:`search` and return the wall and CPU seconds (all threads) it took in this process."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.search(queries, k, kwargs)
        return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}

    def get(self, ids: np.ndarray, include_vectors: bool):
        return self._ready(ids).get(ids, include_vectors=include_vectors)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """(n,) bool: which ``ids`` this shard holds."""
        if self.index is None or ids.size == 0:
            return np.zeros(ids.shape[0], dtype=bool)
        fast = getattr(self.index, "contains", None)
        if fast is not None:
            return np.asarray(fast(ids), dtype=bool)
        if ids.size > 64:
            return np.isin(ids, self.index.ids())
        return np.array([int(i) in self.index for i in ids], dtype=bool)

    def ids(self, filter=None) -> np.ndarray:
        if self.index is None:
            return np.zeros(0, np.int64)
        return self.index.ids() if filter is None else self.index.ids(filter=filter)

    def max_id(self) -> int | None:
        """The largest integer id held (None when empty or string ids)."""
        ids = self.ids()
        return int(ids.max()) if ids.size and ids.dtype != object else None

    def size(self) -> int:
        return 0 if self.index is None else len(self.index)

    def stats(self) -> dict[str, Any]:
        if self.index is None:
            return {"n": 0, "rows_stored": 0, "rows_deleted": 0, "pending": True, "path": self.path}
        return self.index.stats()

    def _ready(self, ids=None):
        if self.index is None:
            from ..errors import InvalidInputError, NotFoundError

            if ids is not None:
                raise NotFoundError(f"{ids.size} id(s) not in the index: {ids[:10].tolist()}")
            raise InvalidInputError(f"shard {self.shard} has no index yet")  # the coordinator inits first
        return self.index


def _open_waiting_for_lock(path: str):
    """``vqdb.open(path)``; a dead predecessor's flock can outlive it for a moment, so retry briefly."""
    import vqdb

    from ..index import LockedError

    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            return vqdb.open(path)
        except LockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


_REMOTE = None


def remote_class():
    """``ray.remote(ShardActor)``, built once per process."""
    global _REMOTE
    if _REMOTE is None:
        from ._ray import ray

        _REMOTE = ray().remote(ShardActor)
    return _REMOTE
