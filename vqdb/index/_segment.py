"""A segment: an immutable run of rows (ids, IVF list numbers, codes, optional vectors, metadata).

Rows are sorted by list number (``-1`` = not assigned to any IVF list: every row of a flat index,
and rows added before the IVF partition was trained), so each list is one contiguous slice.
A segment is either memory-mapped from a ``seg-*.arrow`` file or held in memory (rows added since
the last flush). Deletions are a separate boolean mask; deleting creates a *new* Segment object
sharing the arrays (copy-on-write), so a search holding the old object sees a consistent view.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from . import _metadata as md
from ._storage import (
    CODE,
    ID,
    LIST,
    SID,
    VECTOR,
    codes_from_arrow,
    codes_to_arrow,
    int_column,
    vectors_from_arrow,
    vectors_to_arrow,
)


@dataclass(frozen=True, eq=False)
class Segment:
    """Rows of one segment. ``file`` is None for rows held in memory (not yet flushed)."""

    file: str | None
    ids: np.ndarray  # (n,) int64
    lists: np.ndarray  # (n,) int32, ascending
    codes: np.ndarray  # (n, code_size) uint8
    vectors: np.ndarray | None  # (n, d) float16/float32, or None
    meta: pa.Table  # metadata fields only (may have zero columns)
    id_order: np.ndarray  # (n,) intp: argsort of ids (for lookups)
    deleted: np.ndarray | None = None  # (n,) bool, None = nothing deleted
    n_deleted: int = 0
    sids: pa.Array | None = None  # (n,) string ids of a string-id index (``ids`` holds their keys)

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_live(self) -> int:
        return self.n - self.n_deleted

    def list_bounds(self, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end rows of each list number in ``lists`` (empty slices for absent lists)."""
        return (
            np.searchsorted(self.lists, lists, side="left"),
            np.searchsorted(self.lists, lists, side="right"),
        )

    def find(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids),) row of each id in this segment among *live* rows, -1 where absent or deleted."""
        if self.n == 0 or ids.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids, sorter=self.id_order)
        pos = np.minimum(pos, self.n - 1)
        rows = self.id_order[pos]
        hit = self.ids[rows] == ids
        if self.deleted is not None:
            hit &= ~self.deleted[rows]
        return np.where(hit, rows, -1).astype(np.int64)

    def live_mask(self) -> np.ndarray | None:
        return None if self.deleted is None else ~self.deleted

    def with_deleted(self, rows: np.ndarray) -> Segment:
        """A new Segment with ``rows`` also marked deleted (this one is left as it is)."""
        mask = np.zeros(self.n, dtype=bool) if self.deleted is None else self.deleted.copy()
        mask[rows] = True
        return replace(self, deleted=mask, n_deleted=int(mask.sum()))

    def to_table(self, *, live_only: bool = True) -> pa.Table:
        """Rows as an Arrow table in the segment/WAL layout (deleted rows dropped when ``live_only``)."""
        keep = None if (not live_only or self.deleted is None) else np.flatnonzero(~self.deleted)
        sel = (lambda a: a) if keep is None else (lambda a: a[keep])
        meta = self.meta if keep is None else md.take(self.meta, keep)
        sids = self.sids if keep is None or self.sids is None else self.sids.take(pa.array(keep))
        return build_table(
            sel(self.ids),
            sel(self.lists),
            sel(self.codes),
            None if self.vectors is None else sel(self.vectors),
            meta,
            sids=sids,
        )

    def sids_equal(self, rows: np.ndarray, sids: np.ndarray) -> np.ndarray:
        """(len(rows),) bool: is the string id stored at each of ``rows`` the matching one of ``sids``
        (compared in Arrow, no Python strings made)."""
        import pyarrow.compute as pc

        stored = self.sids.take(pa.array(rows, pa.int64()))
        return pc.equal(stored, pa.array(sids, pa.string())).to_numpy(zero_copy_only=False)

    def sids_at(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows),) object array of the string ids at ``rows`` (a string-id segment)."""
        return self.sids.take(pa.array(rows, pa.int64())).to_numpy(zero_copy_only=False)

    def heap_bytes(self) -> int:
        """Bytes of process memory this segment holds beyond what is memory-mapped from its file."""
        own = self.id_order.nbytes + (0 if self.deleted is None else self.deleted.nbytes)
        if self.file is None:
            own += self.ids.nbytes + self.lists.nbytes + self.codes.nbytes + self.meta.nbytes
            own += 0 if self.sids is None else self.sids.nbytes
            own += 0 if self.vectors is None else self.vectors.nbytes
        return int(own)


def build_table(ids, lists, codes, vectors, meta: pa.Table, *, sids=None) -> pa.Table:
    """The on-disk / WAL row layout: reserved columns first, then the metadata fields. ``ids`` are the
    int64 keys; ``sids`` (string-id indexes only) the string ids they stand for."""
    cols = {ID: pa.array(ids, pa.int64())}
    if sids is not None:
        cols[SID] = sids if isinstance(sids, (pa.Array, pa.ChunkedArray)) else pa.array(sids, pa.string())
    cols.update({LIST: pa.array(lists, pa.int32()), CODE: codes_to_arrow(codes)})
    if vectors is not None:
        cols[VECTOR] = vectors_to_arrow(vectors)
    for name in meta.column_names:
        cols[name] = meta.column(name)
    return pa.table(cols)


def from_table(
    table: pa.Table, *, code_size: int, dim: int, file: str | None = None, sort: bool = True
) -> Segment:
    """A Segment over ``table`` (zero-copy where the table is a single chunk, e.g. memory-mapped)."""
    if sort and table.num_rows:
        lists = int_column(table, LIST, np.int32)
        if lists.size > 1 and np.any(lists[1:] < lists[:-1]):
            table = table.take(pa.array(np.argsort(lists, kind="stable")))
    table = table.combine_chunks()
    ids = int_column(table, ID, np.int64)
    lists = int_column(table, LIST, np.int32)
    codes = codes_from_arrow(table.column(CODE), code_size)
    vectors = vectors_from_arrow(table.column(VECTOR), dim) if VECTOR in table.column_names else None
    sids = None
    if SID in table.column_names:
        col = table.column(SID)
        sids = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    meta_names = [c for c in table.column_names if not c.startswith(md.RESERVED_PREFIX)]
    meta = table.select(meta_names) if meta_names else pa.table({})
    return Segment(
        file=file,
        ids=ids,
        lists=lists,
        codes=codes,
        vectors=vectors,
        meta=meta,
        id_order=np.argsort(ids, kind="stable"),
        sids=sids,
    )


def concat(segments: list[Segment], *, code_size: int, dim: int) -> Segment:
    """One in-memory segment holding the live rows of ``segments`` (sorted by list)."""
    tables = [s.to_table() for s in segments]
    tables = [t for t in tables if t.num_rows] or tables[:1]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    return from_table(table, code_size=code_size, dim=dim)


def check_layout(
    table: pa.Table, *, rows: int, code_size: int, dim: int, store_vectors, nlist, schema: pa.Schema
) -> str | None:
    """What is wrong with a segment table read from disk (None when it has the layout the index
    expects): reserved column types, row count, nulls, list numbers sorted and in range, ids >= 0,
    metadata columns of the index's types. Cheap next to the checksum; guards format-1 files and
    checksummed files that are well-formed but not this index's."""
    want = {ID: pa.int64(), LIST: pa.int32(), CODE: pa.binary(code_size)}
    if SID in table.column_names:  # string ids (a string-id index): checked by type and nulls only
        want[SID] = pa.string()
    if store_vectors is not None:
        want[VECTOR] = pa.list_(pa.float16() if store_vectors == "float16" else pa.float32(), dim)
    if table.num_rows != rows:
        return f"{table.num_rows} rows; the manifest says {rows}"
    for name, typ in want.items():
        if name not in table.column_names:
            return f"no {name} column"
        col = table.column(name)
        if col.type != typ:
            return f"column {name} has type {col.type}; expected {typ}"
        if col.null_count:
            return f"column {name} has nulls"
    if VECTOR in table.column_names and VECTOR not in want:
        return f"a {VECTOR} column in an index that stores no vectors"
    for name in table.column_names:
        if name.startswith(md.RESERVED_PREFIX):
            if name not in want:
                return f"unknown reserved column {name!r}"
            continue
        field = schema.field(name) if schema.get_field_index(name) >= 0 else None
        if field is None or table.column(name).type != field.type:
            return f"metadata column {name!r} ({table.column(name).type}) is not in the index's schema"
    if rows:
        ids = int_column(table, ID, np.int64)
        lists = int_column(table, LIST, np.int32)
        if ids.min() < 0:
            return "negative ids"
        if np.any(lists[1:] < lists[:-1]):
            return "rows not sorted by list"
        hi = -1 if nlist is None else nlist - 1
        if lists[0] < -1 or lists[-1] > hi:
            return f"list numbers outside [-1, {hi}]"
    return None
