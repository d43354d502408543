"""Stable routing of ids to shards.

Python's ``hash`` is salted per process (and ``hash(int)`` is the identity), so neither can route
writes: a router must send an id to the same shard from every process, on every machine, forever.
We use the SplitMix64 finaliser (Steele, Lea & Flood 2014; the mixer of ``java.util.SplittableRandom``)
on the id's 64 bits, then ``mod n_shards``. It is a bijection of uint64 with full avalanche, so
consecutive ids spread evenly over shards.

String ids route by their 63-bit BLAKE2b key (``vqdb.index._ids.str_keys``, the key a string-id
``vqdb.Index`` files them under), then the same mixer.

The scheme's name, :data:`ROUTING`, is written into every sharded manifest; a future scheme gets a
new name and old indexes keep the one they were built with.
"""

from __future__ import annotations

import numpy as np

ROUTING = "splitmix64-mod"

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(ids: np.ndarray) -> np.ndarray:
    """SplitMix64 hash of int64 ids.

    Parameters
    ----------
    ids : ndarray of shape (n,), int64

    Returns
    -------
    h : ndarray of shape (n,), uint64
    """
    z = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def shard_of(ids, n_shards: int) -> np.ndarray:
    """Shard number of each id: ``splitmix64(id) mod n_shards``.

    Parameters
    ----------
    ids : array-like of int64, any shape
    n_shards : int, >= 1

    Returns
    -------
    shard : ndarray of int64, the shape of ``ids``, values in [0, n_shards)
    """
    ids = np.asarray(ids, dtype=np.int64)
    return (splitmix64(ids.reshape(-1)) % np.uint64(n_shards)).astype(np.int64).reshape(ids.shape)


def route_keys(ids: np.ndarray) -> np.ndarray:
    """(n,) int64 routing keys: integer ids themselves, string ids (object array) their BLAKE2b key."""
    if ids.dtype != object:
        return ids
    from ..index._ids import str_keys

    return str_keys(ids)


def split_by_shard(ids: np.ndarray, n_shards: int) -> list[np.ndarray]:
    """Row positions of ``ids`` (n,) int64 or str owned by each shard, in input order: a list of n_shards
    int64 arrays."""
    owner = shard_of(route_keys(ids), n_shards)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n_shards + 1))
    return [order[bounds[s] : bounds[s + 1]] for s in range(n_shards)]
