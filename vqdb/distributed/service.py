"""The hook ``vqdb serve --ray-address ...`` uses to back collections with a :class:`ShardedIndex`.

The server calls :func:`configure` once at start when a Ray address is set; after that a collection
created with ``shards > 1`` is a sharded index, and :func:`open_index` reopens one from its
directory. Without a configured address, asking for ``shards > 1`` is a clear 4xx-style error, and
nothing here imports Ray.
"""

from __future__ import annotations

import os
import threading

from ..errors import InvalidInputError
from ._manifest import is_sharded_dir

_lock = threading.Lock()
_address: str | None = None
_started_here = False


def configure(ray_address: str) -> None:
    """Connect this process to the Ray cluster at ``ray_address`` (``"auto"``, ``"local"``, ``"host:6379"``,
    ``"ray://head:10001"``).

    ``"local"`` starts a private cluster on this machine, every port of it bound to 127.0.0.1 (see
    ``_ray.start_local``), stopped with all its processes by :func:`shutdown`."""
    global _address, _started_here
    from ._ray import ensure_connected, start_local

    with _lock:
        _started_here = start_local() if ray_address == "local" else ensure_connected(ray_address)
        _address = ray_address


def shutdown() -> None:
    """Undo :func:`configure`: if it connected this process to Ray, disconnect (a ``"local"`` cluster it
    started stops with all its processes); a connection made before it is left alone."""
    global _address, _started_here
    with _lock:
        if _address is None:
            return
        if _started_here:
            from ._ray import ray

            r = ray()
            if r.is_initialized():
                r.shutdown()
        _address, _started_here = None, False


def configured() -> bool:
    """True once :func:`configure` has connected this process to Ray."""
    return _address is not None


def is_sharded(path) -> bool:
    """Does directory ``path`` hold a sharded index (rather than a plain ``vqdb.Index``)?"""
    return is_sharded_dir(os.fspath(path))


def new_index(*, dim: int, n_shards: int, metric: str, quantizer: str, path, **index_kwargs):
    """Create a persistent :class:`ShardedIndex` in ``path`` (needs :func:`configure` first)."""
    if not configured():
        raise InvalidInputError(
            "a collection with shards > 1 needs the distributed engine: "
            "start the server with `vqdb serve --ray-address <address|local>`"
        )
    from .sharded import ShardedIndex

    return ShardedIndex(
        dim, n_shards, metric=metric, quantizer=quantizer, path=os.fspath(path), **index_kwargs
    )


def open_index(path):
    """Reopen a sharded index directory (needs :func:`configure` first)."""
    if not configured():
        raise InvalidInputError(
            f"{os.fspath(path)!r} is a sharded index: start the server with "
            "`vqdb serve --ray-address <address|local>` to open it"
        )
    from .sharded import open_sharded

    return open_sharded(os.fspath(path), ray_address=None if _address in (None, "local") else _address)
