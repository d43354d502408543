"""The result type of a sharded search: a ``vqdb.SearchResult`` that also says which shards answered."""

from __future__ import annotations

from dataclasses import dataclass

from ..index._params import SearchResult


@dataclass(frozen=True)
class ShardedSearchResult(SearchResult):
    """Top-k results of a batch of queries over a sharded index.

    A ``vqdb.SearchResult`` (``ids`` (m, k) int64, ``-1`` padded; ``scores`` (m, k) float32, higher is
    better, ``-inf`` where ``ids`` is -1; ``metric``), plus:

    Attributes
    ----------
    shards_answered : tuple of int
        Shards whose results were merged.
    shards_missing : tuple of int
        Shards that did not answer. Always empty unless the search was called with
        ``allow_partial=True``; without it a missing shard raises ``ShardUnavailableError``.
    """

    shards_answered: tuple[int, ...] = ()
    shards_missing: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every shard answered (the result is the exact global top-k of the index)."""
        return not self.shards_missing
