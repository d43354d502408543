"""Persistence of an :class:`~vqdb.index.Index`: opening a directory, flushing the WAL into segments,
saving, exporting and compacting. A mixin: every method runs under the index's write lock (or at open).

Crash safety comes from the order of operations: new files (segment, deletes, state, an empty WAL) are
written and fsynced first, then the manifest is replaced atomically (temp file, fsync, rename, fsync of
the directory), and only then are the files of the previous manifest removed. A crash at any point
leaves either the old or the new manifest, each naming complete files; leftovers are removed at open.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from .. import __version__
from ..errors import CorruptIndexError, InvalidInputError, WalDamagedError
from . import _ids, _ivf, _wal
from . import _metadata as md
from . import _storage as st
from ._codec import quantizer_meta
from ._segment import Segment, build_table, check_layout, concat, from_table

log = logging.getLogger("vqdb.index")


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Immutable view of the searchable state; swapped whole under the write lock."""

    segments: tuple[Segment, ...]
    coarse: _ivf.Coarse | None
    schema: pa.Schema
    aliases: dict = field(default_factory=dict)  # string id -> key, where not its hash (never mutated)


class _Persistence:
    """Directory I/O of the index (see the module docstring)."""

    def _load(self, root: str, manifest: dict, arrays: dict) -> None:
        self._path = root
        self._manifest = manifest
        self._sums = dict(manifest.get("checksums") or {})
        self._gen = int(manifest["generation"])
        self._next_id = int(manifest["next_id"])
        coarse = _ivf.Coarse(arrays["index/centroids"]) if "index/centroids" in arrays else None
        schema = st.schema_from_json(manifest["metadata_schema"])
        segments = [
            self._open_segment(root, manifest, entry, coarse, schema) for entry in manifest["segments"]
        ]
        if manifest.get("deletes_file"):
            segments = self._open_deletes(root, manifest, segments)
        aliases = manifest.get("id_aliases") or {}
        if not isinstance(aliases, dict):
            raise CorruptIndexError(f"the manifest of {root!r} has id_aliases {aliases!r}", file=st.MANIFEST)
        self._snap = _Snapshot(
            tuple(segments), coarse, schema, aliases={s: int(k) for s, k in aliases.items()}
        )
        if self._graph is not None:
            self._load_graph(root, manifest)
        wal_name = manifest["wal_file"]
        wal_path = st.resolve(root, wal_name, what="write-ahead log")
        closed = manifest.get("wal_closed") or {}
        contents = _wal.read(
            wal_path,
            repair=not self._read_only,
            closed_bytes=closed.get("bytes") if closed.get("file") == wal_name else None,
        )
        if contents.damage:
            self._on_wal_damage(wal_name, contents)
        for op, body in contents.records:
            if op == _wal.OP_DELETE:
                self._apply_delete(np.frombuffer(body, dtype="<i8").astype(np.int64))
            else:
                self._apply_rows(st.table_from_ipc_stream(body), replace_existing=True)
        self._dirty = bool(contents.records)
        if (
            self._id_type == _ids.INT
        ):  # a next_id below a stored id (a crafted manifest) would make auto ids collide
            top = max((int(s.ids.max()) for s in self._snap.segments if s.n), default=-1)
            self._next_id = max(self._next_id, top + 1)
        if not self._read_only:
            removed = st.remove_unreferenced(root, manifest)
            if removed:
                log.info("removed leftover files of an interrupted write: %s", removed)
            if manifest["format_version"] < st.FORMAT_VERSION or contents.damage:
                self._rewrite(contents.damage)
            else:
                self._wal = _wal.WalWriter(wal_path)
            self._maybe_flush()

    def _on_wal_damage(self, wal_name: str, contents) -> None:
        """A damaged log (not a torn tail): refuse to open for writing; read-only says what is lost;
        ``salvage`` keeps the intact prefix and copies the damaged log aside first."""
        what = (
            f"write-ahead log {wal_name!r} of index {self._path!r} is damaged: {contents.damage}. "
            f"{len(contents.records)} intact records ({contents.good} bytes) precede the damage; the "
            f"{contents.size - contents.good} bytes after them cannot be read (acknowledged writes may be "
            "among them)"
        )
        self._wal_damage = what
        if self._read_only:
            log.warning("%s; opened read-only with the intact records", what)
            return
        if not self._salvage:
            raise WalDamagedError(
                what + ". Opening for writing is refused. Index.open(path, read_only=True) shows the intact "
                "data; Index.open(path, salvage=True) (or 'vqdb salvage PATH') keeps it and moves the "
                "damaged log aside.",
                file=wal_name,
            )
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = f"{wal_name}.damaged-{stamp}"
        shutil.copyfile(os.path.join(self._path, wal_name), os.path.join(self._path, aside))
        with open(os.path.join(self._path, aside), "rb") as f:
            os.fsync(f.fileno())
        st.fsync_dir(self._path)
        self._salvaged = {"kept_records": len(contents.records), "lost_bytes": contents.size - contents.good}
        self._salvaged["damaged_log"] = aside
        log.warning("%s; salvage: kept the intact records, damaged log copied to %s", what, aside)

    def _rewrite(self, damage) -> None:
        """Write what was loaded as format 2 with a fresh log (a format-1 index opened for writing, or a
        salvage): checksum the files kept, flush (crash-safe like any flush), remove what is left over."""
        old = self._manifest["format_version"]
        for name in st.named_files(self._manifest):
            if name not in self._sums:
                self._sums[name] = st.file_entry(st.resolve(self._path, name))
        self._flush()
        st.remove_unreferenced(self._path, self._manifest)
        if old < st.FORMAT_VERSION:
            log.info("index at %s migrated from format %d to format %d", self._path, old, st.FORMAT_VERSION)

    def _open_segment(self, root: str, manifest: dict, entry: dict, coarse, schema) -> Segment:
        """Memory-map one segment named by the manifest, checked (checksum, then layout)."""
        name = entry["file"]
        fpath = st.resolve(root, name, what="segment")
        if not os.path.isfile(fpath):
            raise CorruptIndexError(
                f"segment {name!r} named by the manifest of {root!r} is missing", file=name
            )
        table = st.map_table_file(fpath, st.checksum_of(manifest, name))
        problem = check_layout(
            table,
            rows=entry["rows"],
            code_size=self._quantizer.code_size,
            dim=self.dim,
            store_vectors=self._store_vectors,
            nlist=None if coarse is None else coarse.nlist,
            schema=schema,
        )
        if problem:
            raise CorruptIndexError(f"segment {name!r} of index {root!r} is damaged: {problem}", file=name)
        return from_table(table, code_size=self._quantizer.code_size, dim=self.dim, file=name, sort=False)

    def _open_deletes(self, root: str, manifest: dict, segments: list) -> list:
        name = manifest["deletes_file"]
        dels = st.read_table_file(st.resolve(root, name, what="deletes file"), st.checksum_of(manifest, name))
        by_file = {s.file: i for i, s in enumerate(segments)}
        try:
            if dels.schema.names != ["segment", "row"] or dels.column("row").null_count:
                raise ValueError(f"columns {dels.schema}")
            names = np.array(dels.column("segment").to_pylist(), dtype=object)
            rows = dels.column("row").to_numpy().astype(np.int64, copy=False)
            for seg_name in set(names.tolist()):
                i = by_file.get(seg_name)
                r = rows[names == seg_name]
                if i is None or r.size and (r.min() < 0 or r.max() >= segments[i].n):
                    raise ValueError(f"rows of unknown segment {seg_name!r} or out of range")
                segments[i] = segments[i].with_deleted(r)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise CorruptIndexError(
                f"deletes file {name!r} of index {root!r} is damaged: {exc}", file=name
            ) from None
        return segments

    def _maybe_flush(self) -> None:
        if self._path is None:
            return
        memory_rows = sum(s.n for s in self._snap.segments if s.file is None)
        if memory_rows >= self._flush_rows:
            self._flush()

    # ------------------------------------------------------------------ persistence
    def _next_name(self, prefix: str, ext: str) -> str:
        self._gen += 1
        return f"{prefix}-{self._gen:06d}.{ext}"

    def _state_arrays(self) -> dict:
        arrays = {f"quantizer/{k}": np.asarray(v) for k, v in self._quantizer.state_dict()["arrays"].items()}
        if getattr(self._quantizer, "centre_", None) is not None:
            arrays["index/centre"] = np.asarray(self._quantizer.centre_, np.float32)
        if self._snap.coarse is not None:
            arrays["index/centroids"] = self._snap.coarse.centroids
        return arrays

    def _manifest_with(self, **changes) -> dict:
        snap = self._snap
        base = dict(self._manifest or {})
        base.update(
            {
                "format": st.FORMAT,
                "format_version": st.FORMAT_VERSION,
                "vqdb_version": __version__,
                "dim": self.dim,
                "metric": self.metric,
                "code_size": self._quantizer.code_size,
                "quantizer": quantizer_meta(self._quantizer),
                "ivf": None if not self._ivf else {"nlist": self._nlist, "trained": snap.coarse is not None},
                "store_vectors": self._store_vectors,
                "default_params": self._defaults.to_json(),
                "options": {"flush_rows": self._flush_rows, "seed": self._seed},
                "metadata_schema": st.schema_to_json(snap.schema),
                "next_id": int(self._next_id),
                "id_type": self._id_type,
                "id_aliases": dict(snap.aliases),
            }
        )
        base.update(changes)
        base["generation"] = int(self._gen)
        if (base.get("wal_closed") or {}).get("file") != base.get("wal_file"):
            base.pop("wal_closed", None)  # the marker of a log this manifest no longer names
        base.setdefault("features", [])
        if self._graph is not None:
            base.setdefault("graph", {"degree": self._graph.R})
            if "graph" not in base["features"]:
                base["features"] = [*base["features"], "graph"]  # files["graph"]: the graph's nodes
        if self._id_type == "str" and "string_ids" not in base["features"]:
            base["features"] = [*base["features"], "string_ids"]  # __sid columns, id_aliases
        base.setdefault("files", {})
        base["checksums"] = {name: self._sums[name] for name in st.named_files(base)}
        return base

    def _write_manifest(self, manifest: dict) -> None:
        st.write_manifest(self._path, manifest)
        self._manifest = manifest
        self._sums = dict(manifest["checksums"])

    def _persist_state(self) -> None:
        """Write the quantizer/centre/centroid arrays to a new state file and point the manifest at it."""
        old = self._manifest.get("state_file")
        name = self._next_name("state", "arrow")
        self._sums[name] = st.write_arrays(os.path.join(self._path, name), self._state_arrays())
        self._write_manifest(self._manifest_with(state_file=name))
        if old and old != name:
            _remove_quietly(os.path.join(self._path, old))

    def _create_dir(self, root: str) -> None:
        if os.path.exists(os.path.join(root, st.MANIFEST)):
            raise InvalidInputError(f"{root!r} already holds an index; open it with vqdb.open({root!r})")
        os.makedirs(root, exist_ok=True)
        self._path = root
        self._dirlock = st.DirLock(root)
        try:
            self._write_snapshot_files(segments_file=None)
        except BaseException:
            self._dirlock.release()
            self._dirlock = None
            self._path = None
            raise

    def _write_snapshot_files(self, *, segments_file) -> None:
        """Fresh state + WAL + manifest for a new directory (optionally with one segment already written)."""
        state = self._next_name("state", "arrow")
        self._sums[state] = st.write_arrays(os.path.join(self._path, state), self._state_arrays())
        wal = self._next_name("wal", "log")
        _wal.create(os.path.join(self._path, wal))
        segments = [] if segments_file is None else [segments_file]
        self._write_manifest(
            self._manifest_with(state_file=state, wal_file=wal, segments=segments, deletes_file=None)
        )
        self._wal = _wal.WalWriter(os.path.join(self._path, wal))

    # ------------------------------------------------------------------ graph
    def _load_graph(self, root: str, manifest: dict) -> None:
        """Memory-map the graph file of ``manifest`` (checksummed); rebuild the graph from the segments when
        it is absent or does not hold exactly the live rows."""
        from .graph import Graph

        name, meta = (manifest.get("files") or {}).get("graph"), manifest.get("graph")
        graph = None
        if name and meta and "nodes" in meta:
            try:
                fpath = st.resolve(root, name, what="graph file")
                st.map_table_file(fpath, st.checksum_of(manifest, name))  # checksum and Arrow validation
                graph = Graph.from_file(
                    fpath,
                    self._graph.sc,
                    self.dim,
                    "l2sq" if self.metric == "l2sq" else "ip",
                    meta,
                    (
                        (s.ids, s.vectors)
                        if s.deleted is None
                        else (s.ids[~s.deleted], s.vectors[~s.deleted])
                        for s in self._snap.segments
                    ),
                )
            except (OSError, ValueError, KeyError, pa.ArrowException, CorruptIndexError) as exc:
                log.warning(
                    "graph file %r unreadable (%s); rebuilding the graph from the segments", name, exc
                )
        if graph is not None:
            live = [s.ids if s.deleted is None else s.ids[~s.deleted] for s in self._snap.segments]
            live_keys = np.sort(np.concatenate(live)) if live else np.zeros(0, np.int64)
            nodes = np.sort(graph.ids[: graph.n][graph.live[: graph.n]])
            if not np.array_equal(nodes, live_keys):
                log.warning("graph file %r does not match the segments; rebuilding the graph", name)
                graph = None
        if graph is None:
            self._rebuild_graph()
        else:
            self._graph = graph

    def _rebuild_graph(self) -> None:
        """A fresh graph over the live rows of the current segments (compaction, repair)."""
        from .graph import Graph

        old = self._graph
        graph = Graph(old.sc, self.dim, old.R, "l2sq" if self.metric == "l2sq" else "ip")
        keys, vecs, codes = [], [], []
        for seg in self._snap.segments:
            rows = np.flatnonzero(~seg.deleted) if seg.deleted is not None else slice(None)
            keys.append(seg.ids[rows])
            vecs.append(seg.vectors[rows])
            codes.append(seg.codes[rows])
        if keys:
            graph.insert(np.concatenate(keys), np.concatenate(vecs), np.concatenate(codes))
        self._graph = graph

    def _compact_graph(self) -> None:
        """Drop retired nodes: rebuild the graph over the live rows when it holds any."""
        g = self._graph
        if g is not None and int(g.live[: g.n].sum()) != g.n:
            self._rebuild_graph()

    def _write_graph(self) -> dict:
        """Write the graph to a new file; the manifest changes naming it (none without a graph)."""
        g = self._graph
        if g is None:
            return {}
        name = self._next_name("graph", "arrow")
        self._sums[name] = st.write_table_file(os.path.join(self._path, name), g.to_table())
        files = dict((self._manifest or {}).get("files") or {})
        files["graph"] = name
        return {"files": files, "graph": g.meta()}

    def _flush(self) -> None:
        """Write the in-memory rows into a new segment, persist the tombstones, start a fresh WAL."""
        snap = self._snap
        old_manifest = self._manifest
        disk = [s for s in snap.segments if s.file is not None]
        memory = [s for s in snap.segments if s.file is None]
        entries = list(old_manifest["segments"])
        if memory and sum(s.n_live for s in memory):
            table = concat(memory, code_size=self._quantizer.code_size, dim=self.dim).to_table()
            name = self._next_name("seg", "arrow")
            self._sums[name] = st.write_table_file(os.path.join(self._path, name), table)
            disk.append(
                from_table(
                    st.map_table_file(os.path.join(self._path, name), check=False),
                    code_size=self._quantizer.code_size,
                    dim=self.dim,
                    file=name,
                    sort=False,
                )
            )
            entries.append({"file": name, "rows": int(table.num_rows), "bytes": self._sums[name]["bytes"]})
        deletes = self._write_deletes(disk)
        graph_changes = self._write_graph()
        wal = self._next_name("wal", "log")
        _wal.create(os.path.join(self._path, wal))
        self._write_manifest(
            self._manifest_with(segments=entries, deletes_file=deletes, wal_file=wal, **graph_changes)
        )
        self._snap = replace(snap, segments=tuple(disk))
        self._swap_wal(wal)
        for old in (old_manifest.get("deletes_file"), (old_manifest.get("files") or {}).get("graph")):
            if old and old not in st.referenced_files(self._manifest):
                _remove_quietly(os.path.join(self._path, old))
        self._dirty = False

    def _write_deletes(self, disk: list) -> str | None:
        names, rows = [], []
        for s in disk:
            if s.deleted is not None and s.n_deleted:
                r = np.flatnonzero(s.deleted)
                names.extend([s.file] * r.size)
                rows.append(r)
        if not rows:
            return None
        name = self._next_name("del", "arrow")
        self._sums[name] = st.write_table_file(
            os.path.join(self._path, name),
            pa.table(
                {"segment": pa.array(names, pa.string()), "row": pa.array(np.concatenate(rows), pa.int64())}
            ),
        )
        return name

    def _mark_wal_closed(self) -> None:
        """Record the log's size in the manifest (a clean close): on the next open, records up to it
        must all be intact, so a log cut short after its close is damage, never a torn tail."""
        m = self._manifest
        if self._path is None or m is None or self._read_only or self._wal is None:
            return
        mark = {"file": m["wal_file"], "bytes": int(self._wal.size)}
        if m.get("wal_closed") != mark and os.path.basename(self._wal.path) == m["wal_file"]:
            self._write_manifest({**m, "wal_closed": mark})

    def _swap_wal(self, new_wal: str) -> None:
        old = self._wal
        self._wal = _wal.WalWriter(os.path.join(self._path, new_wal))
        if old is not None:
            old.close()
            if old.path != self._wal.path:
                _remove_quietly(old.path)

    def save(self, path=None) -> None:
        """Make the index durable as segments.

        A stored index (``path`` given at creation or ``vqdb.open``) flushes its in-memory rows and tombstones
        into a segment (its writes were already durable through the WAL). An in-memory index needs ``path``:
        it is written there and stays attached to that directory (later writes go to its WAL).
        """
        with self._lock:
            self._check_writable()
            if self._path is None:
                if path is None:
                    raise InvalidInputError("this index lives in memory; call save(path) with a directory")
                root = os.fspath(path)
                if os.path.exists(os.path.join(root, st.MANIFEST)):
                    raise InvalidInputError(
                        f"{root!r} already holds an index; open it with vqdb.open({root!r})"
                    )
                os.makedirs(root, exist_ok=True)
                self._path = root
                self._dirlock = st.DirLock(root)
                self._compact_into_dir(fresh=True)
                return
            if path is not None and os.path.abspath(os.fspath(path)) != os.path.abspath(self._path):
                raise InvalidInputError(
                    f"this index is stored at {self._path!r}; use export(path) to copy it elsewhere"
                )
            if self._dirty or any(s.file is None for s in self._snap.segments):
                self._flush()

    def export(self, path) -> None:
        """Write a compacted, self-contained copy of the index to a new directory ``path`` (a snapshot).
        The index itself is unchanged and keeps its own directory."""
        root = os.fspath(path)
        if os.path.exists(os.path.join(root, st.MANIFEST)):
            raise InvalidInputError(f"{root!r} already holds an index")
        with self._lock:
            snap = self._snap
            copy = type(self).__new__(type(self))
            copy._setup(
                dim=self.dim,
                metric=self.metric,
                quantizer=self._quantizer,
                ivf=self._ivf,
                nlist=self._nlist,
                store_vectors=self._store_vectors,
                defaults=self._defaults,
                flush_rows=self._flush_rows,
                seed=self._seed,
                id_type=self._id_type,
                graph=None if self._graph is None else self._graph.R,
            )
            copy._snap = snap
            copy._graph = self._graph
            copy._next_id = self._next_id
        os.makedirs(root, exist_ok=True)
        copy._path = root
        copy._dirlock = st.DirLock(root)
        try:
            copy._compact_into_dir(fresh=True)
        finally:
            copy.close()

    def compact(self) -> None:
        """Merge all segments and in-memory rows into one segment without the deleted rows, atomically
        (new segment and manifest written and fsynced, then the manifest renamed; old files removed after).
        Rows added before the IVF partition was trained are filed into their lists when vectors are stored.
        Searches keep running meanwhile. Needs memory for one copy of the live rows."""
        with self._lock:
            self._check_writable()
            if self._path is None:
                merged, schema = self._merged_segment(self._snap)
                self._snap = replace(self._snap, segments=(merged,) if merged.n else (), schema=schema)
                self._compact_graph()
                return
            self._compact_into_dir(fresh=False)

    def _merged_segment(self, snap: _Snapshot) -> tuple[Segment, pa.Schema]:
        """One segment of the live rows (IVF-unassigned rows filed when vectors are stored), and the
        metadata schema without the fields none of them has."""
        merged = (
            concat(list(snap.segments), code_size=self._quantizer.code_size, dim=self.dim)
            if snap.segments
            else from_table(
                build_table(
                    np.zeros(0, np.int64),
                    np.zeros(0, np.int32),
                    np.zeros((0, self._quantizer.code_size), np.uint8),
                    None if self._store_vectors is None else np.zeros((0, self.dim), self._store_vectors),
                    pa.table({}),
                ),
                code_size=self._quantizer.code_size,
                dim=self.dim,
            )
        )
        coarse = snap.coarse
        if coarse is not None and merged.vectors is not None and merged.n and merged.lists[0] < 0:
            unassigned = np.flatnonzero(merged.lists < 0)
            x = merged.vectors[unassigned].astype(np.float32)
            lists, codes = self._encode(x, coarse)
            all_lists, all_codes = merged.lists.copy(), merged.codes.copy()
            all_lists[unassigned], all_codes[unassigned] = lists, codes
            merged = from_table(
                build_table(merged.ids, all_lists, all_codes, merged.vectors, merged.meta, sids=merged.sids),
                code_size=self._quantizer.code_size,
                dim=self.dim,
            )
        meta, schema = md.prune(merged.meta, snap.schema)
        return (merged if meta.num_columns == merged.meta.num_columns else replace(merged, meta=meta)), schema

    def _compact_into_dir(self, *, fresh: bool) -> None:
        snap = self._snap
        old_manifest = None if fresh else self._manifest
        merged, schema = self._merged_segment(snap)
        entries, segments = [], []
        if merged.n:
            name = self._next_name("seg", "arrow")
            fpath = os.path.join(self._path, name)
            self._sums[name] = st.write_table_file(fpath, merged.to_table())
            segments.append(
                from_table(
                    st.map_table_file(fpath, check=False),
                    code_size=self._quantizer.code_size,
                    dim=self.dim,
                    file=name,
                    sort=False,
                )
            )
            entries.append({"file": name, "rows": merged.n, "bytes": self._sums[name]["bytes"]})
        self._snap = replace(snap, segments=tuple(segments), schema=schema)
        self._compact_graph()  # (before the manifest: the graph file must name the compacted rows)
        graph_changes = self._write_graph()
        state = self._manifest.get("state_file") if (old_manifest and self._manifest) else None
        if state is None:
            state = self._next_name("state", "arrow")
            self._sums[state] = st.write_arrays(os.path.join(self._path, state), self._state_arrays())
        wal = self._next_name("wal", "log")
        _wal.create(os.path.join(self._path, wal))
        self._write_manifest(
            self._manifest_with(
                segments=entries, deletes_file=None, wal_file=wal, state_file=state, **graph_changes
            )
        )
        self._swap_wal(wal)
        st.remove_unreferenced(self._path, self._manifest)
        self._dirty = False


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
