"""String ids (UUIDs included) in ``vqdb.Index``: exact round trip in search / get / ids, persistence in
the WAL and in segments (reopened by a new process), collisions of the 63-bit key resolved, one id kind
per index, and clear errors that change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from index_helpers import exact_topk

import vqdb
from vqdb.errors import DTypeError, DuplicateIdError, InvalidInputError, NotFoundError
from vqdb.index import MAX_ID_BYTES, _ids

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def uuids(n: int, start: int = 0) -> list[str]:
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"doc-{i}")) for i in range(start, start + n)]


@pytest.fixture
def x(wordnet):
    return wordnet.base[:1200]


def test_string_ids_round_trip_exactly_in_search_get_and_ids(x, quantizer):
    sids = uuids(len(x))
    sids[7] = "Mixed Case/ünïcode ✓ id"  # not normalised, returned byte for byte
    index = vqdb.Index(x.shape[1], metric="ip", quantizer=quantizer, store_vectors=True)
    got = index.add(x, ids=sids, metadata=[{"i": i} for i in range(len(x))])
    assert got.dtype == object and got.tolist() == sids
    assert index.id_type == "str"
    res = index.search(x[:20], 5, rerank=True)
    truth, _ = exact_topk(x, x[:20], 5)
    want = np.array(sids, dtype=object)[truth]
    assert res.ids.dtype == object
    agree = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(res.ids.tolist(), want.tolist())])
    assert agree >= 0.95
    rec = index.get([sids[7], sids[3]])
    assert rec.ids.tolist() == [sids[7], sids[3]]
    assert [m["i"] for m in rec.metadata] == [7, 3]
    np.testing.assert_array_equal(rec.vectors, x[[7, 3]].astype(np.float16).astype(np.float32))
    assert sorted(index.ids().tolist()) == sorted(sids)
    assert sorted(index.ids(filter={"i": {"$lt": 3}}).tolist()) == sorted(sids[:3])
    assert sids[7] in index and "absent" not in index and 7 not in index


def test_uuid_objects_become_their_canonical_string(x, quantizer):
    index = vqdb.Index(x.shape[1], quantizer=quantizer)
    u = [uuid.UUID(s) for s in uuids(3)]
    assert index.add(x[:3], ids=u).tolist() == [str(v) for v in u]
    assert index.get([u[1]]).ids.tolist() == [str(u[1])]


def test_search_pads_string_results_with_none(x, quantizer):
    index = vqdb.Index(x.shape[1], quantizer=quantizer)
    index.add(x[:3], ids=["a", "b", "c"], metadata=[{"g": 1}, {"g": 2}, {"g": 1}])
    res = index.search(x[:2], 4, filter={"g": 1})
    assert res.ids.shape == (2, 4)
    assert res.ids[0, 0] == "a" and res.ids[1].tolist()[2:] == [None, None]
    assert set(res.ids[0, :2].tolist()) == {"a", "c"} and np.all(np.isinf(res.scores[:, 2:]))


def test_add_without_ids_on_a_string_index_makes_uuid4_strings(x, quantizer):
    index = vqdb.Index(x.shape[1], quantizer=quantizer, id_type="str")
    got = index.add(x[:4])
    assert all(str(uuid.UUID(s)) == s for s in got.tolist())
    assert index.get(got).ids.tolist() == got.tolist()


def test_upsert_delete_and_missing_ok_with_string_ids(x, quantizer):
    index = vqdb.Index(x.shape[1], metric="ip", quantizer=quantizer, store_vectors="float32")
    sids = uuids(50)
    index.add(x[:50], ids=sids, metadata=[{"v": 0}] * 50)
    index.upsert(x[100:102], ids=[sids[0], "new"], metadata=[{"v": 1}, {"v": 2}])
    assert len(index) == 51
    rec = index.get([sids[0], "new"])
    np.testing.assert_array_equal(rec.vectors, x[100:102])
    assert [m["v"] for m in rec.metadata] == [1, 2]
    with pytest.raises(DuplicateIdError):
        index.add(x[:1], ids=[sids[1]])
    with pytest.raises(NotFoundError):
        index.delete([sids[1], "nope"])
    assert len(index) == 51  # nothing deleted
    assert index.delete([sids[1], "nope"], missing_ok=True) == 1
    assert index.get([sids[2], "nope", sids[1]], missing_ok=True).ids.tolist() == [sids[2]]
    with pytest.raises(NotFoundError):
        index.get(["nope"])


@pytest.mark.parametrize(
    "bad, error",
    [
        (["a", 1], DTypeError),
        ([1.5, 2.5], DTypeError),
        ([b"raw", b"bytes"], DTypeError),
        (["", "b"], InvalidInputError),
        (["é" * (MAX_ID_BYTES // 2 + 1), "b"], InvalidInputError),  # 514 UTF-8 bytes, 257 characters
        (["a", "a"], DuplicateIdError),
        ([True, False], DTypeError),
    ],
)
def test_bad_ids_are_refused_and_change_nothing(x, quantizer, bad, error):
    index = vqdb.Index(x.shape[1], quantizer=quantizer)
    index.add(x[:2], ids=["p", "q"])
    with pytest.raises(error):
        index.add(x[2:4], ids=bad)
    assert len(index) == 2 and sorted(index.ids().tolist()) == ["p", "q"]


def test_the_longest_allowed_id_is_accepted(x, quantizer):
    index = vqdb.Index(x.shape[1], quantizer=quantizer)
    long_id = "é" * (MAX_ID_BYTES // 2)
    index.add(x[:1], ids=[long_id])
    assert index.get([long_id]).ids.tolist() == [long_id]


def test_one_id_kind_per_index(x, quantizer):
    ints = vqdb.Index(x.shape[1], quantizer=quantizer)
    ints.add(x[:2])  # no ids: integers
    assert ints.id_type == "int"
    with pytest.raises(DTypeError, match="integers as ids"):
        ints.add(x[2:3], ids=["a"])
    with pytest.raises(DTypeError):
        ints.get(["a"])
    strs = vqdb.Index(x.shape[1], quantizer=quantizer, id_type="str")
    with pytest.raises(DTypeError, match="strings as ids"):
        strs.add(x[:1], ids=[3])
    assert len(strs) == 0 and strs.id_type == "str"
    with pytest.raises(InvalidInputError):
        vqdb.Index(x.shape[1], quantizer=quantizer, id_type="uuid")


REOPEN = """
import json, sys
import numpy as np
import vqdb
index = vqdb.open(sys.argv[1], read_only=True)
q = np.load(sys.argv[2])
ids = json.loads(sys.argv[3])
rec = index.get(ids)
print(json.dumps({"id_type": index.id_type, "n": len(index), "get": rec.ids.tolist(),
                  "meta": [m["i"] for m in rec.metadata], "top": index.search(q, 1).ids[:, 0].tolist(),
                  "all": sorted(index.ids().tolist())}))
"""


def _reopen_in_new_process(path, q, ids, tmp_path):
    import json

    qfile = tmp_path / "q.npy"
    np.save(qfile, q)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", REOPEN, str(path), str(qfile), json.dumps(ids)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("where", ["wal", "segments", "compacted"])
def test_string_ids_persist_and_reopen_in_a_new_process(tmp_path, x, quantizer, where):
    path = tmp_path / "ix"
    sids = uuids(600)
    index = vqdb.Index(x.shape[1], metric="ip", quantizer=quantizer, path=path, flush_rows=250)
    if where == "wal":
        index = vqdb.Index(
            x.shape[1], metric="ip", quantizer=quantizer, path=tmp_path / "w", flush_rows=10**6
        )
        path = tmp_path / "w"
    index.add(x[:600], ids=sids, metadata=[{"i": i} for i in range(600)])
    index.delete(sids[:5])
    index.upsert(x[:1], ids=["extra"], metadata=[{"i": -1}])
    if where == "compacted":
        index.compact()
    index.close()
    got = _reopen_in_new_process(path, x[10:13], [sids[10], "extra", sids[599]], tmp_path)
    assert got["id_type"] == "str" and got["n"] == 596
    assert got["get"] == [sids[10], "extra", sids[599]] and got["meta"] == [10, -1, 599]
    assert got["top"] == sids[10:13]
    assert got["all"] == sorted(sids[5:] + ["extra"])


def test_integer_index_written_without_id_type_still_opens_as_int(tmp_path, x, quantizer):
    """A manifest without ``id_type`` (format 1) holds integer ids."""
    import json

    path = tmp_path / "ix"
    with vqdb.Index(x.shape[1], quantizer=quantizer, path=path) as index:
        index.add(x[:10])
        index.save()
    mpath = path / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest.pop("id_type"), manifest.pop("id_aliases")
    from vqdb.index._storage import write_manifest

    write_manifest(str(path), manifest)  # with a valid checksum (format 2)
    with vqdb.open(path) as index:
        assert index.id_type == "int" and index.ids().tolist() == list(range(10))


def test_key_collisions_never_mix_up_string_ids(tmp_path, x, quantizer, monkeypatch):
    """With a hash that collides all the time (8 distinct keys), every id still maps to its own row,
    through upserts, deletes, re-adds, the WAL replay and the segments."""

    def weak_keys(strings):
        return np.array([len(s) % 8 for s in strings], dtype=np.int64)

    monkeypatch.setattr(_ids, "str_keys", weak_keys)
    path = tmp_path / "ix"
    sids = [f"id{i}" * (1 + i % 3) for i in range(40)]  # many share a length: many share a key
    index = vqdb.Index(
        x.shape[1], metric="ip", quantizer=quantizer, path=path, store_vectors="float32", flush_rows=25
    )
    index.add(x[:40], ids=sids, metadata=[{"i": i} for i in range(40)])
    index.delete(sids[:6])
    index.upsert(x[100:103], ids=sids[6:9], metadata=[{"i": 100}, {"i": 101}, {"i": 102}])
    index.add(x[:2], ids=sids[:2], metadata=[{"i": 0}, {"i": 1}])  # deleted, then re-added

    def check(ix):
        live = sids[:2] + sids[6:]
        assert len(ix) == len(live) and sorted(ix.ids().tolist()) == sorted(live)
        rec = ix.get(live)
        want = [0, 1, 100, 101, 102] + list(range(9, 40))
        assert rec.ids.tolist() == live and [m["i"] for m in rec.metadata] == want
        np.testing.assert_array_equal(rec.vectors[2:5], x[100:103])
        np.testing.assert_array_equal(rec.vectors[5:], x[9:40])
        res = ix.search(x[20:25], 1)
        assert res.ids[:, 0].tolist() == sids[20:25]
        assert all(s not in ix for s in sids[2:6])

    check(index)
    index.close()
    with vqdb.open(path) as again:  # segments + WAL replay, aliases from the manifest and the log
        check(again)
        again.compact()
        check(again)
    with vqdb.open(path) as again:
        check(again)


def test_integer_ids_keep_their_fast_path(x, quantizer):
    index = vqdb.Index(x.shape[1], quantizer=quantizer)
    got = index.add(x[:5], ids=[10, 11, 12, 13, 14])
    assert got.dtype == np.int64 and index.id_type == "int"
    assert index.search(x[:1], 1).ids.dtype == np.int64
    assert index.get(np.array([12], np.uint32)).ids.tolist() == [12]
    with pytest.raises(InvalidInputError):
        index.add(x[:1], ids=[-3])


def test_a_string_id_index_names_its_format_feature(tmp_path, x, quantizer):
    """Format 2: the manifest lists ``string_ids`` as soon as the first string id is written, so a
    reader that does not know string ids refuses the index instead of misreading its keys."""
    import json

    with vqdb.Index(x.shape[1], quantizer=quantizer, path=tmp_path / "s") as index:
        index.add(x[:2], ids=["a", "b"])  # in the WAL only
        manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
        assert manifest["format_version"] == 2 and "string_ids" in manifest["features"]
        assert manifest["id_type"] == "str"
    with vqdb.Index(x.shape[1], quantizer=quantizer, path=tmp_path / "i") as index:
        index.add(x[:2])
        index.save()
        assert "string_ids" not in json.loads((tmp_path / "i" / "manifest.json").read_text())["features"]
