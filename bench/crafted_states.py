"""Crafted index directories with VALID checksums: state arrays of the wrong shape, dtype or range, and
manifest counts that disagree with the files. Used by ``bench.corruption_sweep`` (family ``crafted``).

A byte flip is caught by the CRC32C; these are what a hand-made snapshot can hold instead: the file is
rewritten and re-signed, so only the checks of what is *in* it stand between it and a kernel. Every
craft must open as a clear vqdb error (or read back exactly the undamaged data): never a crash, an
out-of-bounds read, a raw exception or different results.

Each source index is small (400 WordNet MiniLM vectors) and uses one quantizer layout; the mutations
are generated from the arrays its state file actually holds, so a new array is swept without edits.
"""

from __future__ import annotations

import json
import os

import numpy as np

# (source name, preset, index options): every array layout the built-in quantizers write
SOURCES = {
    "turbo-4": ("turbo-4", {}),  # FHT-Kac signs, one block
    "turbo-2.5": ("turbo-2.5", {}),  # two blocks (fractional bits)
    "turbo-pca-4": ("turbo-pca-4", {}),  # dense fitted rotation, data-dependent slices
    "turbo-prod-3": ("turbo-prod-3", {}),  # + the QJL sketch
    "turbo-hadamard-4": ("turbo-hadamard-4", {}),
    "qjl": ("qjl", {}),
    "polar": ("polar", {}),
    "ivf-turbo-4": ("turbo-4", {"ivf": 8}),  # + IVF centroids
}
ROWS = 400


def build_sources(root: str, base: np.ndarray, names=None) -> dict[str, str]:
    """Write each source index (of ``names``; None: all) under ``root/src-<name>``; return
    ``{name: directory name}``."""
    import vqdb

    out = {}
    for name, (preset, options) in SOURCES.items():
        if names is not None and name not in names:
            continue
        d = f"src-{name}"
        with vqdb.Index(
            base.shape[1], metric="cos", quantizer=preset, path=os.path.join(root, d), **options
        ) as index:
            index.add(base[:ROWS], metadata=[{"i": i} for i in range(ROWS)])
            index.save()
        out[name] = d
    return out


def _array_changes(key: str, a: np.ndarray) -> list[str]:
    """The mutations that apply to one array (names understood by :func:`_mutate`). A centre (or an
    IVF centroid) is data, the mean of what was added: any finite value, however large, is a valid
    one, so ``huge`` is not tried on those."""
    changes = ["drop", "short", "long", "empty", "reshape", "bool"]
    if a.dtype.kind == "f":
        data = key.endswith("centre") or key.endswith("centroids") and key.startswith("index/")
        changes += ["nan", "inf", "-inf", *([] if data else ["huge"]), "float16", "as-int"]
    elif a.dtype.kind in "iu":
        changes += ["neg"] * (a.dtype.kind == "i") + ["big", "huge-int", "int32", "as-float"]
    return changes


def _mutate(a: np.ndarray, change: str) -> np.ndarray | None:
    a = np.array(a, copy=True)
    first = (0,) * a.ndim
    if change == "drop":
        return None
    if change == "short":
        return a[..., :-1] if a.ndim else a.reshape(1)
    if change == "long":
        return np.concatenate([a, a[:1]], axis=0) if a.ndim else np.stack([a, a])
    if change == "empty":
        return a[:0] if a.ndim else a.reshape(0)
    if change == "reshape":
        return a.reshape(-1) if a.ndim > 1 else a.reshape(1, -1)
    if change == "bool":
        return a.astype(bool)
    if change in ("nan", "inf", "-inf", "huge"):
        if a.size:
            a[first] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 3e38}[change]
        return a
    if change == "float16":
        return a.astype(np.float16)
    if change == "as-int":
        return a.astype(np.int64)
    if change in ("neg", "big", "huge-int"):
        if a.size:
            huge = min(2**40, int(np.iinfo(a.dtype).max))
            a[first] = {"neg": -1, "big": int(a.max()) + 1, "huge-int": huge}[change]
        return a
    if change == "int32":
        return a.astype(np.int32)
    if change == "as-float":
        return a.astype(np.float64)
    raise ValueError(change)


# manifest edits (dotted key, new value or a function of the old one): counts that disagree
MANIFEST_CHANGES = {
    "code_size+1": ("code_size", lambda v: v + 1),
    "code_size-1": ("code_size", lambda v: v - 1),
    "dim+1": ("dim", lambda v: v + 1),
    "quantizer.dim+1": ("quantizer.config.dim", lambda v: v + 1),
    "quantizer.bits": ("quantizer.config.bits", lambda v: 2 if v != 2 else 3),
    "quantizer.kind": ("quantizer.kind", lambda v: "qjl" if v != "qjl" else "polar"),
    "quantizer.seed": ("quantizer.config.seed", lambda v: v + 1),  # the arrays are used, not re-drawn
    "segment.rows+1": ("segments.0.rows", lambda v: v + 1),
    "segment.rows-1": ("segments.0.rows", lambda v: v - 1),
    "next_id=0": ("next_id", lambda v: 0),
    "ivf.nlist+1": ("ivf.nlist", lambda v: v + 1),
    "ivf.nlist-1": ("ivf.nlist", lambda v: v - 1),
}


def crafts(root: str, sources: dict[str, str]) -> list[dict]:
    """Every craft of every source: ``{"source", "target", "key", "change"}``."""
    from vqdb.index import _storage as st

    out = []
    for d in sources.values():
        m = json.load(open(os.path.join(root, d, st.MANIFEST)))
        arrays = st.read_arrays(os.path.join(root, d, m["state_file"]))
        for key in sorted(arrays):
            for change in _array_changes(key, arrays[key]):
                out.append({"source": d, "target": "state", "key": key, "change": change})
        out.append({"source": d, "target": "state", "key": "quantizer/bogus", "change": "add"})
        for change, (path, _) in MANIFEST_CHANGES.items():
            if _get(m, path) is not None:
                out.append({"source": d, "target": "manifest", "key": path, "change": change})
    return out


def _get(m, path):
    for part in path.split("."):
        if isinstance(m, list):
            m = m[int(part)] if int(part) < len(m) else None
        elif isinstance(m, dict):
            m = m.get(part)
        if m is None:
            return None
    return m


def _set(m, path, fn):
    *head, last = path.split(".")
    for part in head:
        m = m[int(part)] if isinstance(m, list) else m[part]
    m[int(last) if isinstance(m, list) else last] = fn(m[int(last) if isinstance(m, list) else last])


def apply(work: str, craft: dict) -> None:
    """Apply ``craft`` to the index copy ``work`` and re-sign what it changed (valid checksums)."""
    from vqdb.index import _storage as st

    m = json.load(open(os.path.join(work, st.MANIFEST)))
    if craft["target"] == "state":
        name = m["state_file"]
        arrays = st.read_arrays(os.path.join(work, name))
        if craft["change"] == "add":
            arrays[craft["key"]] = np.arange(5, dtype=np.int64)
        else:
            new = _mutate(arrays[craft["key"]], craft["change"])
            if new is None:
                del arrays[craft["key"]]
            else:
                arrays[craft["key"]] = new
        m["checksums"][name] = st.write_arrays(os.path.join(work, name), arrays)
    else:
        _set(m, craft["key"], MANIFEST_CHANGES[craft["change"]][1])
    st.write_manifest(work, m)
