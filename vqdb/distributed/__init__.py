"""Scale out on Ray: :class:`ShardedIndex`, a ``vqdb.Index`` split over Ray actors with the same API.

Importing this package does not import Ray; creating or opening a sharded index does (``pip install
'vqdb[ray]'``). See :mod:`vqdb.distributed.sharded` for how routing, search, failures and
persistence work, and :meth:`ShardedIndex.reshard` for changing the shard count.
"""

from __future__ import annotations

from ._result import ShardedSearchResult
from ._routing import shard_of
from .sharded import ShardedIndex, open_sharded

open = open_sharded  # ``vqdb.distributed.open(dir)``, mirroring ``vqdb.open(dir)``

__all__ = ["ShardedIndex", "ShardedSearchResult", "open", "open_sharded", "shard_of"]
