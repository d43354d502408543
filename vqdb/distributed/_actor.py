"""One shard: a ``vqdb.Index`` living inside a Ray actor process.

The actor class is a plain Python class; :func:`remote_class` wraps it with ``ray.remote`` on first
use, so importing this module does not import Ray. Every method takes and returns plain arrays,
dicts or ``vqdb`` result objects (all picklable). Errors raised by the index (bad input, unknown ids)
travel back to the caller unchanged; only the death of the process is handled by the coordinator.

An actor runs one method at a time (Ray's default ``max_concurrency=1``), which gives the index the
single writer it requires; parallelism comes from the shards.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


class ShardActor:
    """Hold shard ``spec["shard"]``: create a new index or open an existing directory.

    Parameters
    ----------
    spec : dict
        ``shard`` (int), ``mode`` ("create" | "open"), ``path`` (shard directory or None),
        ``dim``, ``metric``, ``quantizer_state`` (a ``state_dict()``), ``index_kwargs`` (dict).
    """

    def __init__(self, spec: dict[str, Any]):
        import vqdb

        self.shard = int(spec["shard"])
        self.path = spec.get("path")
        if spec["mode"] == "open":
            self.index = vqdb.open(self.path)
        else:
            quantizer = vqdb.load_quantizer(spec["quantizer_state"])
            self.index = vqdb.Index(spec["dim"], metric=spec["metric"], quantizer=quantizer, path=self.path,
                                    **spec.get("index_kwargs", {}))

    # ---- liveness ---------------------------------------------------------------------------
    def ping(self) -> dict[str, Any]:
        return {"shard": self.shard, "pid": os.getpid(), "n": len(self.index)}

    def debug_sleep(self, seconds: float) -> None:
        """Occupy the actor (tests use it to hold a search in flight while they kill the actor)."""
        time.sleep(float(seconds))

    # ---- writes -----------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids: np.ndarray, metadata=None) -> np.ndarray:
        return self.index.add(vectors, ids=ids, metadata=metadata)

    def upsert(self, vectors: np.ndarray, ids: np.ndarray, metadata=None):
        return self.index.upsert(vectors, ids, metadata=metadata)

    def delete(self, ids: np.ndarray):
        return self.index.delete(ids)

    def save(self) -> None:
        self.index.save()

    def compact(self):
        return self.index.compact()

    def close(self) -> None:
        close = getattr(self.index, "close", None)
        if close is not None:
            close()

    # ---- reads ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, kwargs: dict[str, Any]):
        return self.index.search(queries, k, **kwargs)

    def get(self, ids: np.ndarray, kwargs: dict[str, Any]):
        return self.index.get(ids, **kwargs)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self.index.contains(ids)

    def size(self) -> int:
        return len(self.index)

    def stats(self) -> dict[str, Any]:
        return self.index.stats()


_REMOTE = None


def remote_class():
    """``ray.remote(ShardActor)``, built once per process."""
    global _REMOTE
    if _REMOTE is None:
        from ._ray import ray

        _REMOTE = ray().remote(ShardActor)
    return _REMOTE
