"""Snapshots: a consistent tar of a collection directory, taken after ``save()``.

Layout: ``<data>/snapshots/<collection>/<collection>-<UTC time>.tar``, holding ``collection.json``
and ``index/``. A snapshot is written to a hidden temporary file and renamed when complete, so a
listed snapshot is always whole. Restoring creates a NEW collection from it.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..errors import NotFoundError
from .collections import Collection, CollectionStore
from .names import check_collection_name, check_snapshot_name


class SnapshotStore:
    """Snapshot files of every collection. Thread-safe."""

    def __init__(self, root: Path, collections: CollectionStore):
        self.root = Path(root)
        self.collections = collections
        self._lock = threading.Lock()

    def create(self, collection: Collection) -> dict:
        folder = self.root / collection.name
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = check_snapshot_name(f"{collection.name}-{stamp}.tar")
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        try:
            collection.write_tar(tmp)
            with self._lock:
                final = folder / name
                while final.exists():  # two snapshots in the same microsecond
                    final = folder / f"{collection.name}-{stamp}-{uuid.uuid4().hex[:6]}.tar"
                os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return self._describe(collection.name, final)

    def list(self, collection: str) -> list[dict]:
        check_collection_name(collection)
        folder = self.root / collection
        if not folder.is_dir():
            return []
        return [
            self._describe(collection, p) for p in sorted(folder.glob("*.tar")) if not p.name.startswith(".")
        ]

    def path(self, collection: str, snapshot: str) -> Path:
        check_collection_name(collection)
        check_snapshot_name(snapshot)
        path = self.root / collection / snapshot
        if not path.is_file():
            raise NotFoundError(f"snapshot {snapshot!r} of collection {collection!r} does not exist")
        return path

    def delete(self, collection: str, snapshot: str) -> None:
        path = self.path(collection, snapshot)
        path.unlink(missing_ok=True)

    def restore(self, collection: str, snapshot: str, new_name: str) -> Collection:
        return self.collections.restore(self.path(collection, snapshot), new_name)

    def drop_all(self, collection: str) -> None:
        """Remove every snapshot of ``collection`` (not called on collection delete: snapshots outlive it)."""
        shutil.rmtree(self.root / check_collection_name(collection), ignore_errors=True)

    @staticmethod
    def _describe(collection: str, path: Path) -> dict:
        st = path.stat()
        created = datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="milliseconds")
        return {
            "name": path.name,
            "collection": collection,
            "size_bytes": st.st_size,
            "created_at": created.replace("+00:00", "Z"),
        }
