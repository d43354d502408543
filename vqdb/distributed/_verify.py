"""``verify`` of a sharded index directory: the top-level files, then every shard's own index.

Reads only; starts no Ray actor. The report has the shape of :func:`vqdb.index.verify`'s, with each
shard's file names prefixed by its directory (``shard-00001/seg-000004.arrow``).
"""

from __future__ import annotations

import os

from ..errors import VqdbError
from ..index._verify import verify as verify_index
from . import _manifest


def verify_sharded(path) -> dict:
    """Report on the sharded index at ``path``: ``ok``, ``path``, ``format_version``, ``checked``,
    ``problems`` (``{"file", "error"}``), ``notes``."""
    root = os.fspath(path)
    report = {"ok": False, "path": root, "format_version": None, "checked": [], "problems": [], "notes": []}
    try:
        manifest = _manifest.read_manifest(root)
        report["format_version"] = manifest["format_version"]
        report["checked"].append(_manifest.MANIFEST)
        _manifest.read_quantizer(root, manifest)
        files = manifest.get("quantizer_files") or {
            "json": _manifest.QUANTIZER_JSON,
            "npz": _manifest.QUANTIZER_NPZ,
        }
        report["checked"].extend(sorted(files.values()))
        if manifest["format_version"] < 2:
            report["notes"].append(
                "format 1: the top-level files have no checksums (rewritten on the next write)"
            )
    except (VqdbError, OSError) as exc:
        report["problems"].append(
            {"file": getattr(exc, "file", None) or _manifest.MANIFEST, "error": str(exc)}
        )
        return report
    for shard in range(manifest["n_shards"]):
        name = _manifest.shard_dirname(shard)
        if not os.path.isdir(os.path.join(root, name)):
            if manifest.get("shards_created"):
                report["problems"].append({"file": name, "error": f"shard directory {name!r} is missing"})
            else:
                report["notes"].append(f"{name}: not created yet (no write reached the set)")
            continue
        sub = verify_index(os.path.join(root, name))
        report["checked"].extend(f"{name}/{f}" for f in sub["checked"])
        report["problems"].extend(
            {"file": f"{name}/{p['file']}" if p["file"] else name, "error": p["error"]}
            for p in sub["problems"]
        )
        report["notes"].extend(f"{name}: {n}" for n in sub["notes"])
    report["ok"] = not report["problems"]
    return report
