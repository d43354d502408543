"""The top-level manifest of a sharded index directory.

Layout of ``path/``::

    sharded.json          this manifest (format, dim, metric, shard count, routing scheme, next id)
    quantizer.json        quantizer kind + config + class (JSON)
    quantizer.npz         quantizer arrays (rotation, codebooks, ...: the drawn state itself) + fitted centre
    shard-00000/ ...      one ``vqdb.Index`` directory per shard

The quantizer state is stored once, at the top, and handed to every shard when the set is created
or re-sharded, so every shard encodes with exactly the state a single index would use. Files are
written to a temporary name, fsynced, then renamed, so a crash never leaves a half-written manifest.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..errors import IncompatibleFormatError, NotFoundError

MANIFEST = "sharded.json"
QUANTIZER_JSON = "quantizer.json"
QUANTIZER_NPZ = "quantizer.npz"
FORMAT = "vqdb-sharded"
FORMAT_VERSION = 1


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


def write_quantizer(path: str, quantizer) -> None:
    """Persist ``quantizer`` (its ``state_dict()``, class, and fitted ``centre_`` if any) under ``path``."""
    import io

    from ._codec import quantizer_state

    state = quantizer_state(quantizer)
    arrays = {f"q/{name}": a for name, a in state["arrays"].items()}
    if state["centre"] is not None:
        arrays["centre"] = state["centre"]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write(os.path.join(path, QUANTIZER_NPZ), buf.getvalue())
    meta = {"kind": state["kind"], "config": state["config"], "class": state["class"]}
    _atomic_write(os.path.join(path, QUANTIZER_JSON), json.dumps(meta, indent=1, sort_keys=True).encode())


def read_quantizer(path: str):
    """Inverse of :func:`write_quantizer`: the quantizer object, ``centre_`` restored."""
    from ._codec import load_quantizer_state

    with open(os.path.join(path, QUANTIZER_JSON), encoding="utf-8") as f:
        meta = json.load(f)
    with np.load(os.path.join(path, QUANTIZER_NPZ), allow_pickle=False) as z:
        arrays = {name[2:]: z[name] for name in z.files if name.startswith("q/")}
        centre = z["centre"] if "centre" in z.files else None
    return load_quantizer_state({**meta, "arrays": arrays, "centre": centre})


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    _atomic_write(os.path.join(path, MANIFEST), json.dumps(body, indent=1, sort_keys=True).encode())


def read_manifest(path: str) -> dict[str, Any]:
    """Read and check ``path/sharded.json``.

    Raises
    ------
    NotFoundError
        ``path`` holds no sharded index.
    IncompatibleFormatError
        The manifest was written by another format (version).
    """
    file = os.path.join(path, MANIFEST)
    if not os.path.isfile(file):
        raise NotFoundError(
            f"{path!r} holds no sharded index (no {MANIFEST}); "
            "create one with ShardedIndex(dim, n_shards, path=...)"
        )
    with open(file, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise IncompatibleFormatError(
            f"{file} is not a sharded vqdb manifest (format {manifest.get('format')!r})"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IncompatibleFormatError(
            f"{file} has format version {manifest.get('format_version')!r}; this vqdb reads version {FORMAT_VERSION}"
        )
    return manifest
