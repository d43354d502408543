"""On-disk layout of an index directory, and the few primitives that touch files.

::

    dir/
      manifest.json        the root: format version, dim, metric, quantizer kind + config, file names,
                           metadata schema, next id, default search params. Replaced atomically
                           (write ``manifest.json.tmp``, fsync, rename, fsync the directory).
      state-<gen>.arrow    arrays: quantizer state (``quantizer/<name>``), fitted centre, IVF centroids
      seg-<gen>.arrow      an immutable segment: Arrow IPC file, one record batch, columns
                           ``__id`` int64, ``__list`` int32 (rows sorted by it), ``__code``
                           fixed_size_binary(code_size), optional ``__vector`` fixed_size_list<float16|float32>[dim],
                           then the metadata fields. Memory-mapped on open.
      del-<gen>.arrow      deleted rows of the segments: ``segment`` string, ``row`` int64
      wal-<gen>.log        the write-ahead log of everything since the last flush (see ``_wal.py``)
      LOCK                 ``flock``-ed by the one process that writes

Every file but the manifest and the WAL is written once under a fresh generation number and never
modified; files the manifest does not name are leftovers of an interrupted write and are removed
when the index is next opened for writing.
"""

from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pyarrow as pa

from ..errors import IncompatibleFormatError, VqdbError

FORMAT = "vqdb-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = "LOCK"
_OWNED = re.compile(r"^(seg|del|state|wal)-\d+\.(arrow|log)$|^manifest\.json\.tmp$|^.*\.tmp$")

ID, LIST, CODE, VECTOR = "__id", "__list", "__code", "__vector"
SID = "__sid"  # string ids (format 2): the id each ``__id`` key stands for


class LockedError(VqdbError, RuntimeError):
    """The index directory is open for writing by another process (or another Index object)."""


# ---- fsync helpers ---------------------------------------------------------------------------
def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_durable(path: str, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` and fsync it (not the directory)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ---- manifest --------------------------------------------------------------------------------
def write_manifest(root: str, manifest: dict) -> None:
    """Atomically replace ``root/manifest.json``: temp file, fsync, rename, fsync directory."""
    tmp = os.path.join(root, MANIFEST + ".tmp")
    write_bytes_durable(tmp, json.dumps(manifest, indent=1, sort_keys=True).encode())
    os.replace(tmp, os.path.join(root, MANIFEST))
    fsync_dir(root)


def read_manifest(root: str) -> dict:
    """Read and check the manifest; raise :class:`IncompatibleFormatError` on a version mismatch."""
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        raise IncompatibleFormatError(f"{root!r} is not a vqdb index directory (no {MANIFEST})")
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise IncompatibleFormatError(f"{path!r} is not a readable vqdb manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleFormatError(
            f"{path!r} is not a vqdb index manifest (format field {manifest.get('format')!r})"
            if isinstance(manifest, dict)
            else f"{path!r} is not a vqdb index manifest"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        from .. import __version__

        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise IncompatibleFormatError(
            f"index at {root!r} has format version {version!r} (written by vqdb {manifest.get('vqdb_version', '?')}); "
            f"this vqdb {__version__} reads format version {FORMAT_VERSION} only. "
            + (
                "Upgrade vqdb to open it."
                if newer
                else "Open it with the vqdb version that wrote it and export it."
            )
        )
    return manifest


def schema_to_json(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_json(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


# ---- arrays file (quantizer state, centre, centroids) -----------------------------------------
def write_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    names = sorted(arrays)
    table = pa.table(
        {
            "name": pa.array(names, pa.string()),
            "dtype": pa.array([np.asarray(arrays[k]).dtype.str for k in names], pa.string()),
            "shape": pa.array([list(np.asarray(arrays[k]).shape) for k in names], pa.list_(pa.int64())),
            "data": pa.array([np.ascontiguousarray(arrays[k]).tobytes() for k in names], pa.large_binary()),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    write_bytes_durable(path, sink.getvalue().to_pybytes())


def read_arrays(path: str) -> dict[str, np.ndarray]:
    with pa.OSFile(path, "rb") as f:
        table = pa.ipc.open_file(f).read_all()
    out = {}
    for name, dtype, shape, data in zip(
        *(table.column(c).to_pylist() for c in ("name", "dtype", "shape", "data"))
    ):
        out[name] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
    return out


# ---- segments and record batches ---------------------------------------------------------------
def codes_to_arrow(codes: np.ndarray) -> pa.Array:
    n, cs = codes.shape
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(cs), n, [None, pa.py_buffer(np.ascontiguousarray(codes))]
    )


def codes_from_arrow(arr, code_size: int) -> np.ndarray:
    """(n, code_size) uint8 view of a fixed_size_binary column (zero-copy for a single chunk)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    n = len(arr)
    buf = arr.buffers()[1]
    if n == 0 or buf is None:
        return np.zeros((0, code_size), dtype=np.uint8)
    return np.frombuffer(buf, dtype=np.uint8, count=n * code_size, offset=arr.offset * code_size).reshape(
        n, code_size
    )


def vectors_to_arrow(vectors: np.ndarray) -> pa.Array:
    n, d = vectors.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors).reshape(-1)), d)


def vectors_from_arrow(arr, dim: int) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    n = len(arr)
    values = arr.values
    dtype = np.float16 if pa.types.is_float16(values.type) else np.float32
    if n == 0:
        return np.zeros((0, dim), dtype=dtype)
    buf = values.buffers()[1]
    start = (arr.offset * dim + values.offset) * np.dtype(dtype).itemsize
    return np.frombuffer(buf, dtype=dtype, count=n * dim, offset=start).reshape(n, dim)


def int_column(table: pa.Table, name: str, dtype) -> np.ndarray:
    col = table.column(name)
    col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=True).astype(dtype, copy=False) if len(col) else np.zeros(0, dtype)


def table_to_ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def table_from_ipc_stream(data) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def write_table_file(path: str, table: pa.Table) -> int:
    """Write ``table`` as one-record-batch Arrow IPC file, fsync it; return its size in bytes."""
    table = table.combine_chunks()
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as w:
            if table.num_rows:
                w.write_batch(table.to_batches(max_chunksize=max(table.num_rows, 1))[0])
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return os.path.getsize(path)


def map_table_file(path: str) -> pa.Table:
    """Memory-map an Arrow IPC file; the returned table's buffers point into the map (no copy)."""
    source = pa.memory_map(path, "r")
    return pa.ipc.open_file(source).read_all()


def read_table_file(path: str) -> pa.Table:
    with pa.OSFile(path, "rb") as f:
        return pa.ipc.open_file(f).read_all()


# ---- housekeeping ----------------------------------------------------------------------------
def referenced_files(manifest: dict) -> set[str]:
    names = {s["file"] for s in manifest.get("segments", [])}
    for key in ("state_file", "deletes_file", "wal_file"):
        if manifest.get(key):
            names.add(manifest[key])
    return names


def remove_unreferenced(root: str, manifest: dict) -> list[str]:
    """Delete files we own that ``manifest`` does not name (leftovers of an interrupted write)."""
    keep = referenced_files(manifest)
    removed = []
    for name in os.listdir(root):
        if name not in keep and _OWNED.match(name):
            try:
                os.remove(os.path.join(root, name))
                removed.append(name)
            except OSError:
                pass
    return removed


class DirLock:
    """An exclusive ``flock`` on ``root/LOCK``; released on close or when the process dies."""

    def __init__(self, root: str):
        import fcntl

        self.path = os.path.join(root, LOCK)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise LockedError(
                f"index at {root!r} is already open for writing (by another process or another "
                "Index object); close it first, or open with read_only=True"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class ReadOnlyError(VqdbError, RuntimeError):
    """A write was attempted on an index opened with ``read_only=True`` (or after ``close()``)."""
