"""Named collections on disk: ``<data>/collections/<name>/{collection.json, index/}``.

A :class:`Collection` pairs a ``vqdb.Index`` with its settings and a write lock: writes (upsert,
delete, compact, save, snapshot) are serialised per collection, searches and gets run
concurrently with them (the index allows concurrent readers with one writer). The
:class:`CollectionStore` creates, opens, lists, deletes and restores collections; a creation or a
restore is built in a hidden temporary directory and renamed into place, so a crash never leaves a
half-made collection under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import (
    AlreadyExistsError,
    DamagedCollectionError,
    IncompatibleFormatError,
    InvalidInputError,
    NotFoundError,
    VqdbError,
)
from . import engine, unpack
from .limits import inflate_limit
from .names import check_collection_name

log = logging.getLogger("vqdb.server")

INFO_FILE = "collection.json"
INDEX_DIR = "index"
DESCRIBED_FILE = ".described.json"  # the last description of a closed index, with its files' fingerprint
INDEX_MANIFESTS = ("manifest.json", "sharded.json")  # a vqdb.Index, a vqdb.distributed.ShardedIndex
FORMAT = 1


@dataclass(frozen=True)
class UnpackLimits:
    """Bounds on unpacking a snapshot: at most ``ratio`` x its file size (at least ``floor``, at most
    ``cap`` bytes) and ``max_members`` members."""

    ratio: float = 100.0
    floor: int = 16 << 20
    cap: int = 64 << 30
    max_members: int = 100_000


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection was created with (persisted as ``collection.json``)."""

    name: str
    dim: int
    metric: str
    quantizer: str
    ivf: bool | int
    created_at: str
    store_vectors: bool | str = False
    shards: int = 1
    format: int = FORMAT
    id_type: str | None = None
    graph: bool | int = False

    @classmethod
    def read(cls, root: Path) -> CollectionInfo:
        try:
            raw = json.loads((root / INFO_FILE).read_text(encoding="utf-8"))
            known = {k: raw[k] for k in ("name", "dim", "metric", "quantizer", "ivf", "created_at", "format")}
            return cls(
                **known,
                store_vectors=raw.get("store_vectors", False),
                shards=int(raw.get("shards", 1)),
                id_type=raw.get("id_type"),
                graph=raw.get("graph", False),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IncompatibleFormatError(f"{root.name}: unreadable {INFO_FILE} ({exc})") from None

    def write(self, root: Path) -> None:
        tmp = root / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        tmp.replace(root / INFO_FILE)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OpenIndexes:
    """The indexes that are open: at most ``capacity`` (least recently used ones are saved and closed),
    so file descriptors do not grow with the number of collections. A collection in use (leased) is
    never closed; if every open one is in use the pool runs over its capacity until leases end.
    Thread-safe. Lock order: a collection's ``_open_lock``, then the pool's ``_lock``."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._lock = threading.Lock()
        self._open: OrderedDict[Collection, None] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def acquire(self, collection: Collection):
        with collection._open_lock:
            if collection.closed:
                raise NotFoundError(f"collection {collection.name!r} was deleted")
            with self._lock:
                index = collection._index
                if index is not None:
                    collection._users += 1
                    self._open.move_to_end(collection)
                    return index
            index = collection._opener()
            with self._lock:
                collection._index = index
                collection._users += 1
                self._open[collection] = None
                excess = len(self._open) - self.capacity
                victims = [c for c in self._open if c._users == 0][: max(0, excess)]
        for victim in victims:
            self.close_idle(victim)
        return index

    def release(self, collection: Collection) -> None:
        with self._lock:
            collection._users -= 1

    def close_idle(self, collection: Collection) -> None:
        """Save and close ``collection``'s index unless it is in use (then it stays open)."""
        with collection._open_lock:
            with self._lock:
                if collection._users or collection._index is None:
                    return
                index, collection._index = collection._index, None
                self._open.pop(collection, None)
            described = None
            try:
                engine.save(index)
                described = collection._remember(index)
            except Exception as exc:  # noqa: BLE001 - a failed save must not keep the index open
                log.error("saving collection %r before closing it: %s", collection.name, exc)
            finally:
                engine.close(index)
            if described is not None:
                collection._persist_described(described)

    def forget(self, collection: Collection) -> None:
        with self._lock:
            self._open.pop(collection, None)


class WriteLock:
    """A collection's write lock. Releasing it raises ``generation`` (and stamps ``last_write``): a write
    is durable before its lock is released, so a snapshot opened after the generation was read holds
    every write of that generation (what :mod:`vqdb.server.readers` compares)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.generation = 0
        self.last_write = 0.0  # time.monotonic() of the last release

    def __enter__(self):
        self._lock.acquire()
        return self

    def locked(self) -> bool:
        return self._lock.locked()

    def __exit__(self, *exc) -> None:
        self.generation += 1
        self.last_write = time.monotonic()
        self._lock.release()


class Collection:
    """One collection; its index is opened on first use and may be closed when idle (:class:`OpenIndexes`).

    Thread-safe: writes take ``write_lock``; every use of the index holds a :meth:`lease`, so the index
    is never closed under a reader or a writer. What :meth:`describe` reports is remembered when the
    index closes (nothing can change it while it is closed), so listing does not reopen it.
    """

    def __init__(self, info: CollectionInfo, root: Path, pool: OpenIndexes, *, on_damaged=None):
        self.info = info
        self.root = root
        self.uid = uuid.uuid4().hex  # this collection, not another one later made under its name
        self.write_lock = WriteLock()
        self.closed = False
        self._pool = pool
        self._index = None
        self._users = 0
        self._open_lock = threading.Lock()
        self._described: dict | None = None
        self._on_damaged = on_damaged

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dim(self) -> int:
        return self.info.dim

    @contextlib.contextmanager
    def lease(self):
        """The open index, kept open until the ``with`` block ends."""
        index = self._pool.acquire(self)
        try:
            yield index
        finally:
            self._pool.release(self)

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def _opener(self):
        from ..index import LockedError

        try:
            return engine.open_index(self.root / INDEX_DIR)
        except LockedError:
            raise  # held by another process: not damage
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise  # the process is short of descriptors: a 503, the collection is fine
            reason = f"its index cannot be opened: {exc.strerror or exc}"
        except VqdbError as exc:
            reason = f"its index cannot be opened: {exc}"
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes a reader raise
            reason = f"its index cannot be opened: {type(exc).__name__}: {exc}"
        if self._on_damaged is not None:
            self._on_damaged(self.name, reason)
        raise DamagedCollectionError(damaged_message(self.name, reason))

    # ---- reads ----------------------------------------------------------------------------------

    def size(self) -> tuple[int, int]:
        with self.lease() as index:
            return engine.size(index)

    def known_size(self) -> tuple[int, int] | None:
        """(count, bytes) without opening the index: live when open, else as last seen, else None."""
        if self.is_open:
            try:
                return self.size()
            except VqdbError:
                return None
        d = self._described
        return (d["count"], d["bytes"]) if d is not None else None

    def describe(self) -> dict:
        if not self.is_open and self._described is not None:
            return dict(self._described)
        with self.lease() as index:
            return self._remember(index)

    def _remember(self, index) -> dict:
        count, nbytes = engine.size(index)
        self._described = {
            "name": self.name,
            "dim": self.dim,
            "metric": self.info.metric,
            "quantizer": self.info.quantizer,
            "ivf": self.info.ivf,
            "store_vectors": self.info.store_vectors,
            "graph": self.info.graph,
            "shards": self.info.shards,
            "id_type": getattr(index, "id_type", None) or self.info.id_type,
            "count": count,
            "bytes": nbytes,
            "created_at": self.info.created_at,
            "stats": _jsonable(engine.stats(index)),
        }
        return dict(self._described)

    def _fingerprint(self) -> list:
        """(name, size, mtime) of every file of the index: what a remembered description is valid for."""
        out = []
        for folder, _, files in os.walk(self.root / INDEX_DIR):
            for name in files:
                if name != "LOCK":
                    st = os.stat(os.path.join(folder, name))
                    out.append(
                        [os.path.relpath(os.path.join(folder, name), self.root), st.st_size, st.st_mtime_ns]
                    )
        return sorted(out)

    def _persist_described(self, described: dict) -> None:
        """Keep the description of the closed index on disk, so a restart lists it without opening it."""
        try:
            payload = {"fingerprint": self._fingerprint(), "described": described}
            tmp = self.root / (DESCRIBED_FILE + ".tmp")
            tmp.write_text(json.dumps(payload), encoding="utf-8")
            tmp.replace(self.root / DESCRIBED_FILE)
        except (OSError, TypeError, ValueError) as exc:
            log.warning("collection %r: description not kept (%s)", self.name, exc)

    def load_described(self) -> None:
        """Take the description kept on disk if the index files have not changed since."""
        try:
            payload = json.loads((self.root / DESCRIBED_FILE).read_text(encoding="utf-8"))
            if payload["fingerprint"] == self._fingerprint() and payload["described"]["name"] == self.name:
                self._described = payload["described"]
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def small_enough(self, rows: int) -> bool:
        """True when the index is open, in this process (one shard) and holds at most ``rows`` live rows:
        a one-query search of it is short enough for the event loop's thread."""
        index = self._index
        return index is not None and self.info.shards == 1 and len(index) <= rows

    def search(self, queries: np.ndarray, k: int, *, filter=None, nprobe=None, rerank=None, ef=None):
        with self.lease() as index:
            return engine.search(index, queries, k, filter=filter, nprobe=nprobe, rerank=rerank, ef=ef)

    def fetch(self, ids: np.ndarray, *, with_vector: bool = False) -> list[dict | None]:
        with self.lease() as index:
            return engine.fetch(index, ids, with_vector=with_vector)

    # ---- writes ---------------------------------------------------------------------------------

    def upsert(
        self,
        vectors: np.ndarray,
        ids: np.ndarray,
        payloads: list[dict | None] | None,
        *,
        replace: bool = True,
    ) -> int:
        if payloads is not None and all(p is None for p in payloads):
            payloads = None
        with self.write_lock, self.lease() as index:
            self._check_open()
            engine.upsert(index, vectors, ids, payloads, replace=replace)
            return len(index)

    def add_points(self, vectors: np.ndarray, ids, payloads) -> tuple[np.ndarray, int]:
        """Add only (``ids`` None: the index assigns them); returns (ids, live count afterwards)."""
        if payloads is not None and all(p is None for p in payloads):
            payloads = None
        with self.write_lock, self.lease() as index:
            self._check_open()
            ids = engine.upsert(index, vectors, ids, payloads, replace=False)
            return ids, len(index)

    def scroll(self, **kwargs) -> dict:
        with self.lease() as index:
            return engine.scroll(index, **kwargs)

    def id_type(self) -> str | None:
        with self.lease() as index:
            return getattr(index, "id_type", None) or self.info.id_type

    def update_payload(self, ids: np.ndarray, payloads: list, *, merge: bool) -> int:
        with self.write_lock, self.lease() as index:
            self._check_open()
            return engine.update_metadata(index, ids, payloads, merge=merge)

    def delete_ids(self, ids: np.ndarray, *, missing_ok: bool = True) -> int:
        with self.write_lock, self.lease() as index:
            self._check_open()
            return engine.delete(index, ids, missing_ok=missing_ok)

    def delete_matching(self, filter: dict) -> int:
        with self.write_lock, self.lease() as index:
            self._check_open()
            ids = engine.ids_matching(index, filter)
            return engine.delete(index, ids) if ids.size else 0

    def compact(self) -> None:
        with self.write_lock, self.lease() as index:
            self._check_open()
            engine.compact(index)

    def save(self) -> None:
        with self.write_lock:
            if not self.closed and self.is_open:
                with self.lease() as index:
                    engine.save(index)

    def write_tar(self, dest: Path) -> None:
        """Write a point-in-time tar of the collection to ``dest``: ``collection.json``, a compacted export
        of the index as ``index/``, and any other files extensions keep in the collection directory
        (e.g. ``vqdb.rag``'s ``rag.json``). Writes and searches continue meanwhile: the export copies one
        consistent state of the index."""
        self._check_open()
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
            exported = Path(tmp) / INDEX_DIR
            with self.lease() as index:
                engine.export(index, exported)
            with tarfile.open(dest, "w") as tar:
                tar.add(self.root / INFO_FILE, arcname=INFO_FILE)
                tar.add(exported, arcname=INDEX_DIR, filter=_skip_lock)
                for extra in sorted(self.root.iterdir()):
                    if extra.name not in (INFO_FILE, INDEX_DIR) and not extra.name.startswith("."):
                        tar.add(extra, arcname=extra.name)

    def close(self) -> None:
        """Save and close the index for good (server shutdown or collection delete)."""
        with self.write_lock:
            if self.closed:
                return
            self.closed = True
            with self._open_lock:
                index, self._index = self._index, None
                self._pool.forget(self)
                if index is not None:
                    described = None
                    try:
                        engine.save(index)
                        described = self._remember(index)
                    finally:
                        engine.close(index)
                    if described is not None:
                        self._persist_described(described)

    def _check_open(self) -> None:
        if self.closed:
            raise NotFoundError(f"collection {self.name!r} was deleted")


def damaged_message(name: str, reason: str) -> str:
    return (
        f"collection {name!r} exists on disk but is damaged ({reason}); it is not served: "
        f"DELETE /collections/{name} removes it (its snapshots are kept), or restore a snapshot "
        "under another name"
    )


class CollectionStore:
    """All collections under ``<data>/collections``. Thread-safe."""

    def __init__(self, root: Path, *, unpack_limits: UnpackLimits | None = None, max_open: int = 128):
        self.root = Path(root)
        self.unpack = unpack_limits or UnpackLimits()
        self.pool = OpenIndexes(max_open)
        self._lock = threading.RLock()
        self._collections: dict[str, Collection] = {}
        self._damaged: dict[str, str] = {}  # name -> why its directory cannot be served
        self._pending: set[str] = set()
        self._root_lock: int | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def load(self) -> list[str]:
        """Register every collection on disk (indexes open on first use). Returns the names served.

        A directory whose ``collection.json`` or index manifest is missing or unreadable is *damaged*:
        it is logged, not served, and its name answers 409 (see :meth:`get`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_root()
        self._sweep_temporaries()
        for path in sorted(self.root.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                check_collection_name(path.name)
            except InvalidInputError:
                log.warning("ignoring %r in the collections directory: not a collection name", path.name)
                continue
            try:
                info = CollectionInfo.read(path)
                if not any((path / INDEX_DIR / m).is_file() for m in INDEX_MANIFESTS):
                    raise IncompatibleFormatError(f"{INDEX_DIR}/{INDEX_MANIFESTS[0]} is missing")
            except IncompatibleFormatError as exc:
                self._mark_damaged(path.name, str(exc))
                continue
            if info.name != path.name:
                info = CollectionInfo(**{**asdict(info), "name": path.name})
            collection = self._new(info, path)
            collection.load_described()
            self._collections[path.name] = collection
        return sorted(self._collections)

    def _new(self, info: CollectionInfo, root: Path) -> Collection:
        return Collection(info, root, self.pool, on_damaged=self._mark_damaged)

    def _mark_damaged(self, name: str, reason: str) -> None:
        log.error("collection %r is damaged and not served: %s", name, reason)
        with self._lock:
            self._damaged[name] = reason
            self._collections.pop(name, None)

    def close(self) -> None:
        with self._lock:
            for collection in self._collections.values():
                try:
                    collection.close()
                except Exception as exc:
                    log.error("closing collection %r: %s", collection.name, exc)
            self._collections.clear()
            if self._root_lock is not None:
                os.close(self._root_lock)  # drops the flock
                self._root_lock = None

    def _lock_root(self) -> None:
        """One process per data directory: an exclusive ``flock`` on ``collections/.lock``."""
        import fcntl

        from ..index import LockedError

        if self._root_lock is not None:
            return
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LockedError(
                f"the data directory {str(self.root.parent)!r} is in use by another process "
                "(another `vqdb serve`?)"
            ) from None
        self._root_lock = fd

    # ---- lookup -------------------------------------------------------------------------------

    def all(self) -> list[Collection]:
        with self._lock:
            return [self._collections[n] for n in sorted(self._collections)]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def get(self, name: str) -> Collection:
        """The collection ``name``: :class:`NotFoundError` (404) if there is none, and
        :class:`DamagedCollectionError` (409) if its directory exists but cannot be served."""
        check_collection_name(name)
        with self._lock:
            collection = self._collections.get(name)
            damaged = self._damaged.get(name)
        if damaged is not None:
            raise DamagedCollectionError(damaged_message(name, damaged))
        if collection is None:
            raise NotFoundError(f"collection {name!r} does not exist")
        return collection

    def damaged(self) -> dict[str, str]:
        with self._lock:
            return dict(self._damaged)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._collections

    # ---- create / delete / restore --------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        dim: int,
        metric: str = "cos",
        quantizer: str = "turbo-4",
        ivf: bool | int = False,
        store_vectors: bool | str = False,
        shards: int = 1,
        id_type: str | None = None,
        graph: bool | int = False,
    ) -> Collection:
        check_collection_name(name)
        with self._reserved(name) as tmp:
            info = CollectionInfo(
                name=name,
                dim=int(dim),
                metric=metric,
                quantizer=quantizer,
                ivf=ivf,
                created_at=now(),
                store_vectors=store_vectors,
                shards=int(shards),
                id_type=id_type,
                graph=graph,
            )
            index = engine.new_index(
                dim=info.dim,
                metric=metric,
                quantizer=quantizer,
                ivf=ivf,
                store_vectors=store_vectors,
                path=tmp / INDEX_DIR,
                shards=info.shards,
                id_type=id_type,
                graph=graph,
            )
            engine.save(index)
            engine.close(index)
            info.write(tmp)
            return self._install(tmp, info)

    def delete(self, name: str) -> None:
        """Delete collection ``name`` and its directory (also a damaged one: that frees its name)."""
        check_collection_name(name)
        with self._lock:
            if self._damaged.pop(name, None) is not None:
                collection = None
            else:
                collection = self.get(name)
                del self._collections[name]
        if collection is not None:
            with collection.write_lock, collection._open_lock:
                collection.closed = True
                index, collection._index = collection._index, None
                self.pool.forget(collection)
                if index is not None:
                    engine.close(index)
        trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        (self.root / name).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def restore(self, tar_path: Path, name: str) -> Collection:
        """Create collection ``name`` from a snapshot tar (slow work happens outside the store lock).

        The tar may be compressed (gzip, bz2, xz); it is unpacked within ``self.unpack`` limits
        (:mod:`vqdb.server.unpack`): a bomb, a link, an odd name or a path out of the directory is a
        4xx and leaves nothing behind."""
        check_collection_name(name)
        with self._reserved(name) as tmp:
            limits = self.unpack
            max_bytes = inflate_limit(
                Path(tar_path).stat().st_size, ratio=limits.ratio, floor=limits.floor, cap=limits.cap
            )
            names = unpack.extract(tar_path, tmp, max_bytes=max_bytes, max_members=limits.max_members)
            tops = {n.split("/", 1)[0] for n in names}
            if INFO_FILE not in tops or INDEX_DIR not in tops or any(t.startswith(".") for t in tops):
                raise InvalidInputError(
                    f"not a vqdb snapshot: expected {INFO_FILE} and {INDEX_DIR}/, found {sorted(tops)[:10]}"
                )
            old = CollectionInfo.read(tmp)
            info = CollectionInfo(**{**asdict(old), "name": name})
            info.write(tmp)
            return self._install(tmp, info)

    # ---- helpers ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reserved(self, name: str):
        """Hold ``name`` (no other create/restore may take it) and yield a fresh temporary directory."""
        with self._lock:
            if name in self._damaged:
                raise DamagedCollectionError(damaged_message(name, self._damaged[name]))
            if name in self._collections or name in self._pending or (self.root / name).exists():
                raise AlreadyExistsError(f"collection {name!r} already exists")
            self._pending.add(name)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when installed
            with self._lock:
                self._pending.discard(name)

    def _install(self, tmp: Path, info: CollectionInfo) -> Collection:
        """Open the index in ``tmp`` (proving it is valid), then move it under its name."""
        try:
            engine.close(engine.open_index(tmp / INDEX_DIR))
        except VqdbError:
            raise
        except Exception as exc:
            raise IncompatibleFormatError(f"the index in this snapshot cannot be opened: {exc}") from None
        final = self.root / info.name
        tmp.rename(final)
        collection = self._new(info, final)
        with self._lock:
            self._collections[info.name] = collection
        return collection

    def _sweep_temporaries(self) -> None:
        for path in self.root.glob(".tmp-*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(".trash-*"):
            shutil.rmtree(path, ignore_errors=True)


def _skip_lock(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if member.name.rsplit("/", 1)[-1] == "LOCK" else member


def _jsonable(value):
    """Make index stats JSON-safe (numpy scalars/arrays, paths, non-finite floats)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
