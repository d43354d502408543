"""The embedded vector index: ``Index``, ``open_index`` (``vqdb.open``), search params and results."""

from ._ids import MAX_ID_BYTES
from ._params import SearchParams, SearchResult
from ._storage import FORMAT_VERSION, LockedError, ReadOnlyError
from ._verify import verify
from .index import Index, Page, Records, open_index, open_or_create
from .protocol import IndexProtocol

__all__ = [
    "Index",
    "SearchParams",
    "SearchResult",
    "Records",
    "Page",
    "IndexProtocol",
    "open_index",
    "open_or_create",
    "LockedError",
    "ReadOnlyError",
    "FORMAT_VERSION",
    "MAX_ID_BYTES",
    "verify",
]
