"""``verify``: check every file of an index directory without changing anything.

Checks the manifest (checksum, version, features, file names), every immutable file it names against
its recorded size and CRC32C (all of them, so one report lists every damaged file), then opens the
index read-only (segment layouts, deletes, state, quantizer) and reads the write-ahead log record by
record. A torn tail of the log is a note (it is cut on the next writable open and held no acknowledged
write); log damage is a problem.
"""

from __future__ import annotations

import os

from ..errors import VqdbError
from . import _storage as st
from . import _wal


def verify(path) -> dict:
    """Report on the index at ``path``.

    Returns
    -------
    dict
        ``ok`` (bool), ``path``, ``format_version``, ``checked`` (file names found intact),
        ``problems`` (list of ``{"file", "error"}``), ``notes`` (list of str).
    """
    root = os.fspath(path)
    report = {"ok": False, "path": root, "format_version": None, "checked": [], "problems": [], "notes": []}

    def problem(name, exc):
        report["problems"].append({"file": getattr(exc, "file", None) or name, "error": str(exc)})

    try:
        manifest = st.read_manifest(root)
    except (VqdbError, OSError) as exc:
        problem(st.MANIFEST, exc)
        return report
    report["format_version"] = manifest["format_version"]
    report["checked"].append(st.MANIFEST)
    for name in st.named_files(manifest):
        try:
            fpath = st.resolve(root, name)
            if not os.path.isfile(fpath):
                raise st.CorruptIndexError(f"file {name!r} named by the manifest is missing", file=name)
            entry = st.checksum_of(manifest, name)
            if entry is None:
                report["notes"].append(f"{name}: no checksum (format 1); checked by its layout only")
            elif st.file_entry(fpath) != {"bytes": entry["bytes"], "crc32c": entry["crc32c"]}:
                raise st.CorruptIndexError(f"file {name!r} fails its checksum (CRC32C)", file=name)
            report["checked"].append(name)
        except (VqdbError, OSError) as exc:
            problem(name, exc)
    wal = manifest["wal_file"]
    try:
        closed = manifest.get("wal_closed") or {}
        with open(st.resolve(root, wal, what="write-ahead log"), "rb") as f:
            contents = _wal.parse(
                f.read(), closed_bytes=closed.get("bytes") if closed.get("file") == wal else None
            )
        if contents.damage:
            report["problems"].append(
                {
                    "file": wal,
                    "error": f"{contents.damage}; {len(contents.records)} intact records precede it, "
                    f"{contents.size - contents.good} bytes after them cannot be read (vqdb salvage keeps "
                    "the intact records)",
                }
            )
        else:
            report["checked"].append(wal)
            if contents.torn:
                report["notes"].append(
                    f"{wal}: a torn tail of {contents.torn} bytes (an unacknowledged write), cut on the next open"
                )
    except (VqdbError, OSError) as exc:
        problem(wal, exc)
    if not report["problems"]:
        from .index import Index

        try:
            Index.open(root, read_only=True).close()  # layouts, deletes, state, quantizer, log replay
        except (VqdbError, OSError) as exc:
            problem(None, exc)
    report["ok"] = not report["problems"]
    return report
