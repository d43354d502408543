"""On-disk layout of an index directory, and the few primitives that touch files.

::

    dir/
      manifest.json        the root: format version, dim, metric, quantizer kind + config, file names,
                           metadata schema, next id, default search params, the checksum of every
                           immutable file it names, and its own checksum. Replaced atomically
                           (write ``manifest.json.tmp``, fsync, rename, fsync the directory).
      state-<gen>.arrow    arrays: quantizer state (``quantizer/<name>``), fitted centre, IVF centroids
      seg-<gen>.arrow      an immutable segment: Arrow IPC file, one record batch, columns
                           ``__id`` int64, ``__list`` int32 (rows sorted by it), ``__code``
                           fixed_size_binary(code_size), optional ``__vector`` fixed_size_list<float16|float32>[dim],
                           then the metadata fields. Memory-mapped on open.
      del-<gen>.arrow      deleted rows of the segments: ``segment`` string, ``row`` int64
      graph-<gen>.arrow    graph indexes (feature ``graph``, ``files["graph"]``): one row per node (see
                           ``graph.py``); its entry point and size in the manifest's ``graph``
      wal-<gen>.log        the write-ahead log of everything since the last flush (see ``_wal.py``)
      LOCK                 ``flock``-ed by the one process that writes

Every file but the manifest and the WAL is written once under a fresh generation number and never
modified; files the manifest does not name are leftovers of an interrupted write and are removed
when the index is next opened for writing.

Format 2 (format 1 still opens: read as it is, migrated to format 2 when opened for writing)
---------------------------------------------------------------------------------------------
- ``checksums``: ``{file name: {"bytes": int, "crc32c": "8 hex digits"}}`` for every immutable file the
  manifest names (segments, state, deletes, and any file added under ``files``); checked when the file
  is read (on open). ``manifest_crc32c``: CRC32C of the manifest's canonical JSON without that key.
- ``features``: list of names of the optional parts this index uses (e.g. ``"string_ids"``); a reader
  that does not know one of them refuses to open the index, so parts can be added under version 2
  without a new version number: add the name to :data:`KNOWN_FEATURES` in the same change.
- ``files``: ``{role: file name}`` of further index-level files (e.g. a graph); a segment entry may hold
  its own ``files`` dict. Each such file gets a checksum like the built-in ones (see
  :func:`named_files`); name new files ``<kind>-<gen>.<ext>`` so leftovers are cleaned up.
- Unknown keys of the manifest and of segment entries are kept as they are by every rewrite.

Every file name read from a manifest is a plain name inside the directory (:func:`resolve`); nothing
in any file is ever imported (quantizers are looked up in vqdb's own registry by kind).
"""

from __future__ import annotations

import base64
import json
import os
import re

import google_crc32c
import numpy as np
import pyarrow as pa

from ..errors import CorruptIndexError, IncompatibleFormatError, VqdbError

FORMAT = "vqdb-index"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KNOWN_FEATURES: frozenset[str] = frozenset({"string_ids", "graph"})  # string_ids: _ids.py; graph: graph.py
MANIFEST = "manifest.json"
MANIFEST_CRC = "manifest_crc32c"
LOCK = "LOCK"
_OWNED = re.compile(r"^[a-z]+-\d+\.(arrow|log|bin)$|^manifest\.json\.tmp$|^.*\.tmp$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_CHUNK = 8 << 20

ID, LIST, CODE, VECTOR = "__id", "__list", "__code", "__vector"
SID = "__sid"  # string ids (format 2): the id each ``__id`` key stands for


class LockedError(VqdbError, RuntimeError):
    """The index directory is open for writing by another process (or another Index object)."""


# ---- names and checksums ---------------------------------------------------------------------
def resolve(root: str, name, *, what: str = "file") -> str:
    """``root/name`` for a plain file name read from a manifest; :class:`CorruptIndexError` for anything
    else (absolute paths, ``..``, separators, NUL, empty, not a string, a symbolic link)."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", ".."):
        raise CorruptIndexError(
            f"the manifest of {root!r} names {what} {str(name)[:80]!r}, which is not a plain file name "
            "inside the index directory (letters, digits, '._-', no path separators)",
            file=MANIFEST,
        )
    path = os.path.join(root, name)
    if os.path.islink(path):
        raise CorruptIndexError(f"{what} {name!r} of index {root!r} is a symbolic link; refused", file=name)
    return path


def crc32c(data) -> int:
    """CRC32C (Castagnoli) of a bytes-like object (bytes, pyarrow Buffer, contiguous uint8 ndarray)."""
    return int(google_crc32c.value(data))


def crc_hex(value: int) -> str:
    return f"{value:08x}"


def file_entry(path: str) -> dict:
    """``{"bytes": size, "crc32c": hex}`` of the file at ``path`` (read in chunks)."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = google_crc32c.extend(crc, chunk)
            size += len(chunk)
    return {"bytes": size, "crc32c": crc_hex(crc)}


def bytes_entry(data) -> dict:
    """``{"bytes": size, "crc32c": hex}`` of ``data`` held in memory (bytes or a pyarrow Buffer)."""
    return {"bytes": len(data), "crc32c": crc_hex(crc32c(data))}


def check_bytes(data, entry: dict | None, *, name: str, root: str) -> None:
    """Raise :class:`CorruptIndexError` naming ``name`` unless ``data`` has the size and CRC32C in
    ``entry`` (``None``: format 1, no checksum to check)."""
    if entry is None:
        return
    size = len(data) if not isinstance(data, pa.Buffer) else data.size
    if size != entry.get("bytes"):
        raise CorruptIndexError(
            f"file {name!r} of index {root!r} has {size} bytes; the manifest says {entry.get('bytes')} "
            "(truncated or damaged)",
            file=name,
        )
    if crc_hex(crc32c(data)) != entry.get("crc32c"):
        raise CorruptIndexError(
            f"file {name!r} of index {root!r} fails its checksum (CRC32C); it is damaged", file=name
        )


def named_files(manifest: dict) -> list[str]:
    """Every immutable file ``manifest`` names (segments, their ``files``, state, deletes, ``files``)."""
    names = []
    for seg in manifest.get("segments", []):
        names.append(seg["file"])
        names.extend((seg.get("files") or {}).values())
    for key in ("state_file", "deletes_file"):
        if manifest.get(key):
            names.append(manifest[key])
    names.extend((manifest.get("files") or {}).values())
    return names


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
def _canonical(manifest: dict) -> bytes:
    body = {k: v for k, v in manifest.items() if k != MANIFEST_CRC}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def seal_manifest(manifest: dict) -> dict:
    """``manifest`` with its own checksum (CRC32C of its canonical JSON without that field) added."""
    return {**manifest, MANIFEST_CRC: crc_hex(crc32c(_canonical(manifest)))}


def manifest_seal_ok(manifest: dict) -> bool:
    """True when ``manifest``'s own checksum matches its fields."""
    return manifest.get(MANIFEST_CRC) == crc_hex(crc32c(_canonical(manifest)))


def write_manifest(root: str, manifest: dict) -> None:
    """Atomically replace ``root/manifest.json`` (with its checksum): temp file, fsync, rename, fsync dir."""
    manifest = seal_manifest(manifest)
    tmp = os.path.join(root, MANIFEST + ".tmp")
    write_bytes_durable(tmp, json.dumps(manifest, indent=1, sort_keys=True).encode())
    os.replace(tmp, os.path.join(root, MANIFEST))
    fsync_dir(root)


def read_manifest(root: str) -> dict:
    """Read and check the manifest (format, version, checksum, features, file names).

    Raises
    ------
    IncompatibleFormatError
        Not an index, or a format version / feature this vqdb cannot read.
    CorruptIndexError
        The manifest is damaged (checksum) or names a file outside the directory.
    """
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        raise IncompatibleFormatError(f"{root!r} is not a vqdb index directory (no {MANIFEST})")
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(f"{path!r} is not a readable vqdb manifest: {exc}", file=MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleFormatError(
            f"{path!r} is not a vqdb index manifest (format field {manifest.get('format')!r})"
            if isinstance(manifest, dict)
            else f"{path!r} is not a vqdb index manifest"
        )
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        from .. import __version__

        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise IncompatibleFormatError(
            f"index at {root!r} has format version {version!r} (written by vqdb {manifest.get('vqdb_version', '?')}); "
            f"this vqdb {__version__} reads format versions {', '.join(map(str, READABLE_VERSIONS))}. "
            + (
                "Upgrade vqdb to open it."
                if newer
                else "Open it with the vqdb version that wrote it and export it."
            )
        )
    if version >= 2:
        if not manifest_seal_ok(manifest):
            raise CorruptIndexError(f"{path!r} fails its checksum (CRC32C); it is damaged", file=MANIFEST)
        unknown = sorted(set(manifest.get("features") or []) - KNOWN_FEATURES)
        if unknown:
            raise IncompatibleFormatError(
                f"index at {root!r} uses features {unknown} that this vqdb does not know; upgrade vqdb to open it"
            )
    _check_manifest_fields(root, manifest)
    return manifest


def is_int(v, lo: int = 0, hi: int | None = None) -> bool:
    """True for a JSON integer (not a bool) in ``lo..hi``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def is_checksum_entry(entry) -> bool:
    """True for a manifest's ``{"bytes": int, "crc32c": str}`` entry of one file."""
    return isinstance(entry, dict) and is_int(entry.get("bytes")) and isinstance(entry.get("crc32c"), str)


def _check_manifest_fields(root: str, m: dict) -> None:
    """Types of the fields an open relies on, and every file name plain (no path outside ``root``)."""

    def bad(what):
        raise CorruptIndexError(f"the manifest of {root!r} is damaged: {what}", file=MANIFEST)

    for key in ("dim", "code_size", "generation", "next_id"):
        if not is_int(m.get(key), 1 if key in ("dim", "code_size") else 0):
            bad(f"{key} = {m.get(key)!r}")
    if not isinstance(m.get("segments"), list) or not all(isinstance(e, dict) for e in m["segments"]):
        bad("segments is not a list of entries")
    for e in m["segments"]:
        if not is_int(e.get("rows")) or not is_int(e.get("bytes")):
            bad(f"segment entry {e!r}")
        resolve(root, e.get("file"), what="segment")
        if not isinstance(e.get("files") or {}, dict):
            bad(f"segment entry {e!r}")
    resolve(root, m.get("state_file"), what="state file")
    resolve(root, m.get("wal_file"), what="write-ahead log")
    if m.get("deletes_file") is not None:
        resolve(root, m["deletes_file"], what="deletes file")
    if not isinstance(m.get("files") or {}, dict):
        bad("files is not a dict")
    for role, name in (m.get("files") or {}).items():
        resolve(root, name, what=f"{role} file")
    if not isinstance(m.get("quantizer"), dict) or not isinstance(m["quantizer"].get("config"), dict):
        bad("quantizer is not a dict with a config")
    if m["format_version"] >= 2:
        sums = m.get("checksums")
        if not isinstance(sums, dict):
            bad("no checksums")
        for name in named_files(m):
            if not is_checksum_entry(sums.get(name)):
                bad(f"no checksum for {name!r}")


def checksum_of(manifest: dict, name: str) -> dict | None:
    """The checksum entry of ``name`` (None in a format-1 manifest, which has none)."""
    return (manifest.get("checksums") or {}).get(name) if manifest.get("format_version", 1) >= 2 else None


def schema_to_json(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_json(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


# ---- arrays file (quantizer state, centre, centroids) -----------------------------------------
_ARRAY_KINDS = "biuf"  # bool, signed/unsigned integers, floats: nothing else is ever stored


def write_arrays(path: str, arrays: dict[str, np.ndarray]) -> dict:
    """Write the arrays file; return its checksum entry."""
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
    data = sink.getvalue()
    write_bytes_durable(path, data.to_pybytes())
    return bytes_entry(data)


def read_arrays(path: str, entry: dict | None = None) -> dict[str, np.ndarray]:
    """Read (and check against ``entry``) an arrays file; :class:`CorruptIndexError` if damaged."""
    root, name = os.path.split(path)
    with open(path, "rb") as f:
        data = f.read()
    check_bytes(data, entry, name=name, root=root)
    try:
        table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
        table.validate(full=True)
        out = {}
        for key, dtype, shape, blob in zip(
            *(table.column(c).to_pylist() for c in ("name", "dtype", "shape", "data"))
        ):
            dt = np.dtype(dtype)
            if dt.kind not in _ARRAY_KINDS or any(s < 0 for s in shape):
                raise ValueError(f"array {key!r} has dtype {dtype!r} and shape {shape}")
            out[key] = np.frombuffer(blob, dtype=dt).reshape(shape).copy()
    except (pa.ArrowException, ValueError, TypeError, KeyError) as exc:
        raise CorruptIndexError(f"file {name!r} of index {root!r} is damaged: {exc}", file=name) from None
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


def write_table_file(path: str, table: pa.Table) -> dict:
    """Write ``table`` as one-record-batch Arrow IPC file, fsync it; return its checksum entry."""
    table = table.combine_chunks()
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as w:
            if table.num_rows:
                w.write_batch(table.to_batches(max_chunksize=max(table.num_rows, 1))[0])
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return file_entry(path)


def map_table_file(path: str, entry: dict | None = None, *, check: bool = True) -> pa.Table:
    """Memory-map an Arrow IPC file (checked against ``entry``, then validated in full); the returned
    table's buffers point into the map (no copy). :class:`CorruptIndexError` names the file if damaged."""
    root, name = os.path.split(path)
    try:
        buf = pa.memory_map(path, "r").read_buffer()
    except OSError as exc:
        raise CorruptIndexError(f"file {name!r} of index {root!r} cannot be read: {exc}", file=name) from None
    if check:
        check_bytes(buf, entry, name=name, root=root)
    return _open_ipc(buf, name, root, validate=check)


def read_table_file(path: str, entry: dict | None = None) -> pa.Table:
    """Read (and check against ``entry``) a small Arrow IPC file into memory."""
    root, name = os.path.split(path)
    with open(path, "rb") as f:
        data = f.read()
    check_bytes(data, entry, name=name, root=root)
    return _open_ipc(pa.py_buffer(data), name, root, validate=True)


def _open_ipc(buf: pa.Buffer, name: str, root: str, *, validate: bool) -> pa.Table:
    try:
        table = pa.ipc.open_file(buf).read_all()
        if validate:
            table.validate(full=True)  # offsets, lengths, UTF-8: no out-of-bounds read later
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise CorruptIndexError(f"file {name!r} of index {root!r} is damaged: {exc}", file=name) from None
    return table


# ---- housekeeping ----------------------------------------------------------------------------
def referenced_files(manifest: dict) -> set[str]:
    names = set(named_files(manifest))
    if manifest.get("wal_file"):
        names.add(manifest["wal_file"])
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
