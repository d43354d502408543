"""Persistence: reopen in a new process, WAL tail repair, format version, compaction, locking, snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

import vqdb
from vqdb.errors import IncompatibleFormatError
from vqdb.index import LockedError, ReadOnlyError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD_SEARCH = """
import json, sys
import numpy as np
import vqdb
path, qfile = sys.argv[1], sys.argv[2]
q = np.load(qfile)
with vqdb.open(path) as index:
    res = index.search(q, 10, filter={"half": 1})
    got = index.get([1, 3, 4001])
    print(json.dumps({"len": len(index), "ids": res.ids.tolist(), "scores": res.scores.tolist(),
                      "meta": got.metadata, "vec": got.vectors.tolist(), "stats": index.stats()["ivf"]}))
"""


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([REPO, os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def build(path, wordnet, quantizer, meta, **kw):
    """An index with flushed segments, tombstones, an upsert, and un-flushed WAL records."""
    index = vqdb.Index(
        wordnet.dim,
        metric="cos",
        quantizer=quantizer,
        ivf=16,
        path=path,
        store_vectors=True,
        flush_rows=700,
        **kw,
    )
    x = wordnet.base
    index.add(x[:1000], metadata=meta[:1000])  # trains IVF, flushes a segment
    index.add(x[1000:2000], ids=np.arange(1000, 2000), metadata=meta[1000:2000])
    index.delete([0, 2, 1500])  # tombstones in a flushed segment
    index.upsert(x[[10]], ids=[1], metadata=[{"half": 1, "note": "upserted"}])
    index.add(x[4000:4100], ids=np.arange(4000, 4100), metadata=meta[4000:4100])  # stays in the WAL
    return index


def test_reopen_in_a_new_process(tmp_path, wordnet, quantizer, meta):
    path = tmp_path / "ix"
    index = build(path, wordnet, quantizer, meta)
    q = wordnet.queries[:25]
    expected = index.search(q, 10, filter={"half": 1})
    got = index.get([1, 3, 4001])
    assert index.stats()["memory_rows"] > 0 and index.stats()["segments"] >= 1
    n = len(index)
    index.close()
    np.save(tmp_path / "q.npy", q)
    out = run_child(CHILD_SEARCH, path, tmp_path / "q.npy")
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout)
    assert child["len"] == n == 2100 - 3
    np.testing.assert_array_equal(child["ids"], expected.ids)
    np.testing.assert_allclose(child["scores"], expected.scores, rtol=1e-6)
    assert child["meta"] == got.metadata and child["meta"][0] == {"half": 1, "note": "upserted"}
    np.testing.assert_array_equal(np.array(child["vec"], np.float32), got.vectors)
    assert child["stats"]["trained"] and child["stats"]["nlist"] == 16


def test_save_flushes_and_reopen_is_memory_mapped(tmp_path, wordnet, quantizer, meta):
    path = tmp_path / "ix"
    index = build(path, wordnet, quantizer, meta)
    index.save()
    assert index.stats()["memory_rows"] == 0 and index.stats()["wal_bytes"] == 8
    index.close()
    before = pa.total_allocated_bytes()
    with vqdb.open(path) as again:
        mapped = sum(seg.codes.nbytes + seg.vectors.nbytes for seg in again._snap.segments)
        assert pa.total_allocated_bytes() - before < 0.05 * mapped  # codes and vectors were not copied
        for seg in again._snap.segments:
            assert seg.file is not None and not seg.codes.flags.owndata and not seg.ids.flags.owndata
        assert again.stats()["heap_bytes"] < 20 * len(again)


def test_compact_merges_and_drops_deleted(tmp_path, wordnet, quantizer, meta):
    path = tmp_path / "ix"
    index = build(path, wordnet, quantizer, meta)
    q = wordnet.queries[:30]
    before = index.search(q, 10, rerank=True)
    index.compact()
    s = index.stats()
    assert s["segments"] == 1 and s["rows_deleted"] == 0 and s["memory_rows"] == 0 and len(index) == 2097
    after = index.search(q, 10, rerank=True)
    np.testing.assert_array_equal(before.ids, after.ids)
    names = sorted(os.listdir(path))
    assert [n.split("-")[0] for n in names if n not in ("manifest.json", "LOCK")] == ["seg", "state", "wal"]
    index.close()
    with vqdb.open(path) as again:
        np.testing.assert_array_equal(again.search(q, 10, rerank=True).ids, before.ids)


def test_compact_files_vectors_added_before_ivf_training(tmp_path, wordnet, quantizer):
    index = vqdb.Index(
        wordnet.dim, metric="cos", quantizer=quantizer, ivf=16, store_vectors=True, path=tmp_path / "ix"
    )
    index.add(wordnet.base[:300])  # below the training threshold: not in any list
    index.add(wordnet.base[300:2000])  # trains
    assert index.stats()["ivf"]["unassigned"] == 300
    hit = index.search(wordnet.base[:50], 1, nprobe=1)  # unassigned rows are always scanned
    np.testing.assert_array_equal(hit.ids[:, 0], np.arange(50))
    index.compact()
    assert index.stats()["ivf"]["unassigned"] == 0
    hit = index.search(wordnet.base[:50], 1, nprobe=1)
    assert np.mean(hit.ids[:, 0] == np.arange(50)) > 0.9
    index.close()


def wal_path(path) -> str:
    return os.path.join(path, json.load(open(os.path.join(path, "manifest.json")))["wal_file"])


def test_format_version_mismatch_is_a_clear_error(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    vqdb.Index(wordnet.dim, quantizer=quantizer, path=path).close()
    mpath = os.path.join(path, "manifest.json")
    manifest = json.load(open(mpath))
    manifest["format_version"] = 99
    json.dump(manifest, open(mpath, "w"))
    with pytest.raises(
        IncompatibleFormatError, match="format version 99.*reads format versions 1, 2.*Upgrade"
    ):
        vqdb.open(path)
    with pytest.raises(IncompatibleFormatError, match="not a vqdb index"):
        vqdb.open(tmp_path)
    with open(mpath, "w") as f:
        f.write("{not json")
    with pytest.raises(IncompatibleFormatError):
        vqdb.open(path)


def test_lock_read_only_and_create_over_existing(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, path=path)
    index.add(wordnet.base[:100])
    with pytest.raises(LockedError):
        vqdb.open(path)
    reader = vqdb.open(path, read_only=True)  # sees everything acknowledged so far
    assert len(reader) == 100
    with pytest.raises(ReadOnlyError):
        reader.add(wordnet.base[:1])
    with pytest.raises(vqdb.errors.InvalidInputError, match="already holds an index"):
        vqdb.Index(wordnet.dim, quantizer=quantizer, path=path)
    index.close()
    with pytest.raises(ReadOnlyError):
        index.add(wordnet.base[:1])
    vqdb.open(path).close()


def test_in_memory_save_attaches_and_export_snapshots(tmp_path, wordnet, quantizer, meta):
    index = vqdb.Index(wordnet.dim, metric="l2sq", quantizer=quantizer, store_vectors="float32")
    index.add(wordnet.base[:500], metadata=meta[:500])
    index.delete([5])
    with pytest.raises(vqdb.errors.InvalidInputError, match="save\\(path\\)"):
        index.save()
    index.save(tmp_path / "a")
    index.add(wordnet.base[500:600])  # now logged in tmp_path/a
    q = wordnet.queries[:10]
    expected = index.search(q, 5)
    index.export(tmp_path / "snap")
    index.add(wordnet.base[600:700])  # not in the snapshot
    index.close()
    with vqdb.open(tmp_path / "a") as a, vqdb.open(tmp_path / "snap") as snap:
        assert len(a) == 699 and len(snap) == 599
        np.testing.assert_array_equal(snap.search(q, 5).ids, expected.ids)
        assert snap.get([7]).metadata == [meta[7]] and snap.metric == "l2sq"


def test_leftover_files_of_an_interrupted_write_are_removed(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    index = vqdb.Index(wordnet.dim, quantizer=quantizer, path=path)
    index.add(wordnet.base[:50])
    index.close()
    for name in ("seg-999999.arrow", "manifest.json.tmp", "wal-999998.log"):
        with open(os.path.join(path, name), "wb") as f:
            f.write(b"half written")
    with vqdb.open(path) as again:
        assert len(again) == 50
    assert not {"seg-999999.arrow", "manifest.json.tmp", "wal-999998.log"} & set(os.listdir(path))
