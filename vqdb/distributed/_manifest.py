"""The top-level manifest of a sharded index directory.

Layout of ``path/`` (format 2)::

    sharded.json          this manifest (format, dim, metric, shard count, routing scheme, next id, the
                          names and CRC32C checksums of the quantizer files, and its own checksum)
    quantizer-<n>.json    quantizer kind + config + class (JSON)
    quantizer-<n>.npz     quantizer arrays (rotation, codebooks, ...: the drawn state itself) + fitted centre
    shard-00000/ ...      one ``vqdb.Index`` directory per shard (checksummed by its own manifest)

The quantizer state is stored once, at the top, and handed to every shard when the set is created
or re-sharded, so every shard encodes with exactly the state a single index would use. It is
rewritten under a fresh ``<n>`` (the first write fits its centre), and the manifest, replaced
atomically (temporary name, fsync, rename, fsync the directory), is what makes the new files current:
a crash between the two leaves the old manifest naming the old, intact files. Files it no longer
names are removed after it is replaced.

Checksums are those of ``vqdb.Index`` (:mod:`vqdb.index._storage`): ``checksums`` maps each quantizer
file to ``{"bytes", "crc32c"}``, ``manifest_crc32c`` is the CRC32C of the manifest's canonical JSON
without that key. A damaged file is a :class:`CorruptIndexError` naming it, raised before any Ray
actor starts. Format 1 (fixed names ``quantizer.json`` / ``quantizer.npz``, no checksums) still
opens and is rewritten as format 2 by its first manifest write.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any

import numpy as np

from ..errors import CorruptIndexError, IncompatibleFormatError, NotFoundError, VqdbError
from ..index._storage import (
    MANIFEST_CRC,
    bytes_entry,
    check_bytes,
    is_checksum_entry,
    is_int,
    manifest_seal_ok,
    seal_manifest,
)

MANIFEST = "sharded.json"
QUANTIZER_JSON = "quantizer.json"  # format 1 names
QUANTIZER_NPZ = "quantizer.npz"
FORMAT = "vqdb-sharded"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_SHARDS = 4096
METRICS = ("cos", "ip", "l2sq")
_QUANTIZER_FILE = re.compile(r"^quantizer-(\d{1,12})\.(json|npz)$")


def shard_dirname(shard: int) -> str:
    return f"shard-{shard:05d}"


def is_sharded_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MANIFEST))


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def write_quantizer(path: str, quantizer) -> dict[str, Any]:
    """Write ``quantizer`` (its ``state_dict()``, class, and fitted ``centre_`` if any) under fresh names
    in ``path``; returns ``{"quantizer_files": {"json", "npz"}, "checksums": {...}}``, the part of the
    manifest that makes them current (:func:`write_manifest`)."""
    from ._codec import quantizer_state

    state = quantizer_state(quantizer)
    arrays = {f"q/{name}": a for name, a in state["arrays"].items()}
    if state["centre"] is not None:
        arrays["centre"] = state["centre"]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz = buf.getvalue()
    meta = {"kind": state["kind"], "config": state["config"], "class": state["class"]}
    text = json.dumps(meta, indent=1, sort_keys=True).encode()
    taken = [int(m.group(1)) for m in map(_QUANTIZER_FILE.match, os.listdir(path)) if m]
    n = max(taken, default=0) + 1
    names = {"json": f"quantizer-{n}.json", "npz": f"quantizer-{n}.npz"}
    _atomic_write(os.path.join(path, names["npz"]), npz)
    _atomic_write(os.path.join(path, names["json"]), text)
    return {
        "quantizer_files": names,
        "checksums": {names["json"]: bytes_entry(text), names["npz"]: bytes_entry(npz)},
    }


def read_quantizer(path: str, manifest: dict[str, Any]):
    """The quantizer object of the set whose manifest is ``manifest`` (``centre_`` restored), each file
    checked against its checksum.

    Raises
    ------
    CorruptIndexError
        A quantizer file is missing, damaged, or not a quantizer state of this vqdb.
    """
    from ._codec import load_quantizer_state

    if manifest["format_version"] >= 2:
        names, sums = manifest["quantizer_files"], manifest["checksums"]
    else:
        names, sums = {"json": QUANTIZER_JSON, "npz": QUANTIZER_NPZ}, {}
    blobs = {}
    for role, name in names.items():
        try:
            with open(os.path.join(path, name), "rb") as f:
                blobs[role] = f.read()
        except OSError as exc:
            raise CorruptIndexError(
                f"file {name!r} of sharded index {path!r} cannot be read: {exc.strerror}", file=name
            ) from None
        check_bytes(blobs[role], sums.get(name), name=name, root=path)
    try:
        meta = json.loads(blobs["json"])
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            raise ValueError("not a quantizer description")
        with np.load(io.BytesIO(blobs["npz"]), allow_pickle=False) as z:
            arrays = {name[2:]: z[name] for name in z.files if name.startswith("q/")}
            centre = z["centre"] if "centre" in z.files else None
        return load_quantizer_state({**meta, "arrays": arrays, "centre": centre})
    except CorruptIndexError:
        raise
    except (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile, VqdbError) as exc:
        raise CorruptIndexError(
            f"the quantizer files {sorted(names.values())} of sharded index {path!r} are damaged: {exc}",
            file=names["npz"],
        ) from None


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Atomically replace ``path/sharded.json`` (format 2, with its checksum; ``manifest`` holds the
    :func:`write_quantizer` part), then remove quantizer files it does not name."""
    body = seal_manifest({**manifest, "format": FORMAT, "format_version": FORMAT_VERSION})
    _atomic_write(os.path.join(path, MANIFEST), json.dumps(body, indent=1, sort_keys=True).encode())
    keep = set(body["quantizer_files"].values())
    for name in os.listdir(path):
        if (_QUANTIZER_FILE.match(name) or name in (QUANTIZER_JSON, QUANTIZER_NPZ)) and name not in keep:
            try:
                os.remove(os.path.join(path, name))
            except OSError:  # pragma: no cover - removed by someone else
                pass


def read_manifest(path: str) -> dict[str, Any]:
    """Read and check ``path/sharded.json`` (checksum, format, the fields an open relies on).

    Raises
    ------
    NotFoundError
        ``path`` holds no sharded index.
    CorruptIndexError
        The manifest is damaged (checksum, unreadable, or a field of the wrong type or range).
    IncompatibleFormatError
        The manifest was written by another format (version).
    """
    file = os.path.join(path, MANIFEST)
    if not os.path.isfile(file):
        raise NotFoundError(
            f"{path!r} holds no sharded index (no {MANIFEST}); "
            "create one with ShardedIndex(dim, n_shards, path=...)"
        )
    try:
        with open(file, "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(
            f"{file!r} is not a readable sharded manifest: {exc}", file=MANIFEST
        ) from None
    if isinstance(manifest, dict) and MANIFEST_CRC in manifest:
        if not manifest_seal_ok(manifest):
            raise CorruptIndexError(f"{file!r} fails its checksum (CRC32C); it is damaged", file=MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleFormatError(
            f"{file} is not a sharded vqdb manifest"
            + (f" (format {manifest.get('format')!r})" if isinstance(manifest, dict) else "")
        )
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise IncompatibleFormatError(
            f"{file} has format version {version!r}; this vqdb reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version >= 2 and MANIFEST_CRC not in manifest:
        raise CorruptIndexError(f"{file!r} has no checksum; it is damaged", file=MANIFEST)
    _check_fields(file, manifest)
    return manifest


def _check_fields(file: str, m: dict) -> None:
    """Types and ranges of the fields an open relies on; quantizer file names plain and checksummed."""

    def bad(what):
        raise CorruptIndexError(f"{file!r} is damaged: {what}", file=MANIFEST)

    if not is_int(m.get("dim"), 1):
        bad(f"dim = {m.get('dim')!r}")
    if not is_int(m.get("n_shards"), 1, MAX_SHARDS):
        bad(f"n_shards = {m.get('n_shards')!r} (1 to {MAX_SHARDS})")
    if not is_int(m.get("next_id", 0)):
        bad(f"next_id = {m.get('next_id')!r}")
    if m.get("metric") not in METRICS:
        bad(f"metric = {m.get('metric')!r}")
    if not isinstance(m.get("index_kwargs", {}), dict):
        bad("index_kwargs is not a dict")
    for key in ("centre_decided", "shards_created"):
        if not isinstance(m.get(key, False), bool):
            bad(f"{key} = {m.get(key)!r}")
    if m.get("id_type") not in (None, "int", "str"):
        bad(f"id_type = {m.get('id_type')!r}")
    if m["format_version"] < 2:
        return
    files, sums = m.get("quantizer_files"), m.get("checksums")
    if not isinstance(files, dict) or sorted(files) != ["json", "npz"] or not isinstance(sums, dict):
        bad("no quantizer files or checksums")
    for role, name in files.items():
        found = _QUANTIZER_FILE.match(name) if isinstance(name, str) else None
        if found is None or found.group(2) != role:
            bad(f"quantizer file {str(name)[:80]!r} is not a plain quantizer-<n>.{role} name")
        if not is_checksum_entry(sums.get(name)):
            bad(f"no checksum for {name!r}")
