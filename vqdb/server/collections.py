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
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import AlreadyExistsError, IncompatibleFormatError, InvalidInputError, NotFoundError, VqdbError
from . import engine, unpack
from .limits import inflate_limit
from .names import check_collection_name

log = logging.getLogger("vqdb.server")

INFO_FILE = "collection.json"
INDEX_DIR = "index"
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

    @classmethod
    def read(cls, root: Path) -> CollectionInfo:
        try:
            raw = json.loads((root / INFO_FILE).read_text(encoding="utf-8"))
            known = {k: raw[k] for k in ("name", "dim", "metric", "quantizer", "ivf", "created_at", "format")}
            return cls(
                **known, store_vectors=raw.get("store_vectors", False), shards=int(raw.get("shards", 1))
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IncompatibleFormatError(f"{root.name}: unreadable {INFO_FILE} ({exc})") from None

    def write(self, root: Path) -> None:
        tmp = root / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        tmp.replace(root / INFO_FILE)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Collection:
    """One open collection. Thread-safe: writes take ``write_lock``; reads take no lock."""

    def __init__(self, info: CollectionInfo, root: Path, index):
        self.info = info
        self.root = root
        self.index = index
        self.write_lock = threading.Lock()
        self.closed = False

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dim(self) -> int:
        return self.info.dim

    # ---- reads ----------------------------------------------------------------------------------

    def size(self) -> tuple[int, int]:
        return engine.size(self.index)

    def describe(self) -> dict:
        count, nbytes = self.size()
        return {
            "name": self.name,
            "dim": self.dim,
            "metric": self.info.metric,
            "quantizer": self.info.quantizer,
            "ivf": self.info.ivf,
            "store_vectors": self.info.store_vectors,
            "shards": self.info.shards,
            "count": count,
            "bytes": nbytes,
            "created_at": self.info.created_at,
            "stats": _jsonable(engine.stats(self.index)),
        }

    def search(self, queries: np.ndarray, k: int, *, filter=None, nprobe=None, rerank=None):
        return engine.search(self.index, queries, k, filter=filter, nprobe=nprobe, rerank=rerank)

    def fetch(self, ids: np.ndarray, *, with_vector: bool = False) -> list[dict | None]:
        return engine.fetch(self.index, ids, with_vector=with_vector)

    # ---- writes ---------------------------------------------------------------------------------

    def upsert(self, vectors: np.ndarray, ids: np.ndarray, payloads: list[dict | None] | None) -> int:
        if payloads is not None and all(p is None for p in payloads):
            payloads = None
        with self.write_lock:
            self._check_open()
            engine.upsert(self.index, vectors, ids, payloads)
            return len(self.index)

    def delete_ids(self, ids: np.ndarray) -> int:
        with self.write_lock:
            self._check_open()
            return engine.delete(self.index, ids)

    def delete_matching(self, filter: dict) -> int:
        with self.write_lock:
            self._check_open()
            ids = engine.ids_matching(self.index, filter)
            return engine.delete(self.index, ids) if ids.size else 0

    def compact(self) -> None:
        with self.write_lock:
            self._check_open()
            engine.compact(self.index)

    def save(self) -> None:
        with self.write_lock:
            if not self.closed:
                engine.save(self.index)

    def write_tar(self, dest: Path) -> None:
        """Write a point-in-time tar of the collection to ``dest``: ``collection.json``, a compacted export
        of the index as ``index/``, and any other files extensions keep in the collection directory
        (e.g. ``vqdb.rag``'s ``rag.json``). Writes and searches continue meanwhile: the export copies one
        consistent state of the index."""
        self._check_open()
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
            exported = Path(tmp) / INDEX_DIR
            engine.export(self.index, exported)
            with tarfile.open(dest, "w") as tar:
                tar.add(self.root / INFO_FILE, arcname=INFO_FILE)
                tar.add(exported, arcname=INDEX_DIR, filter=_skip_lock)
                for extra in sorted(self.root.iterdir()):
                    if extra.name not in (INFO_FILE, INDEX_DIR) and not extra.name.startswith("."):
                        tar.add(extra, arcname=extra.name)

    def close(self) -> None:
        with self.write_lock:
            if self.closed:
                return
            try:
                engine.save(self.index)
            finally:
                engine.close(self.index)
                self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise NotFoundError(f"collection {self.name!r} was deleted")


class CollectionStore:
    """All collections under ``<data>/collections``. Thread-safe."""

    def __init__(self, root: Path, *, unpack_limits: UnpackLimits | None = None):
        self.root = Path(root)
        self.unpack = unpack_limits or UnpackLimits()
        self._lock = threading.RLock()
        self._collections: dict[str, Collection] = {}
        self._pending: set[str] = set()
        self._root_lock: int | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def load(self) -> list[str]:
        """Open every collection on disk; a broken one is logged and skipped. Returns the names opened.

        Raises ``LockedError`` when another process holds a collection (two servers on one data dir)."""
        from ..index import LockedError

        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_root()
        self._sweep_temporaries()
        for path in sorted(self.root.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                check_collection_name(path.name)
                info = CollectionInfo.read(path)
                index = engine.open_index(path / INDEX_DIR)
            except LockedError:
                self.close()
                raise LockedError(f"collection {path.name!r} is open in another process") from None
            except Exception as exc:  # one bad directory must not keep the others offline
                log.error("collection %r not opened: %s", path.name, exc)
                continue
            if info.name != path.name:
                info = CollectionInfo(**{**asdict(info), "name": path.name})
            self._collections[path.name] = Collection(info, path, index)
        return sorted(self._collections)

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
        check_collection_name(name)
        with self._lock:
            collection = self._collections.get(name)
        if collection is None:
            raise NotFoundError(f"collection {name!r} does not exist")
        return collection

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
            )
            index = engine.new_index(
                dim=info.dim,
                metric=metric,
                quantizer=quantizer,
                ivf=ivf,
                store_vectors=store_vectors,
                path=tmp / INDEX_DIR,
                shards=info.shards,
            )
            engine.save(index)
            engine.close(index)
            info.write(tmp)
            return self._install(tmp, info)

    def delete(self, name: str) -> None:
        with self._lock:
            collection = self.get(name)
            del self._collections[name]
        with collection.write_lock:
            collection.closed = True
            engine.close(collection.index)
        trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        collection.root.rename(trash)
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
        collection = Collection(info, final, engine.open_index(final / INDEX_DIR))
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
