"""Crafted index directories (as in an uploaded snapshot): files that are well-formed and carry valid
checksums but do not hold what the manifest promises. Each is a clear CorruptIndexError naming the
file, never a crash or wrong data. (Names outside the directory, symlinks and imported quantizer
classes: test_index_format.py; the service's unpacking limits: tests/server.)"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

import vqdb
from vqdb.errors import CorruptIndexError
from vqdb.index import _storage as st
from vqdb.index import _wal


@pytest.fixture
def stored(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, path=path, store_vectors=True) as index:
        index.add(wordnet.base[:200], metadata=[{"i": i, "w": f"w{i}"} for i in range(200)])
        index.save()
        index.delete([3, 4])
        index.save()
    return path


def _manifest(path):
    return json.load(open(path / st.MANIFEST))


def _replace(path, name, write):
    """Rewrite ``name`` with ``write(fpath)`` and re-sign it in the manifest (a valid checksum)."""
    write(str(path / name))
    m = _manifest(path)
    m["checksums"][name] = st.file_entry(str(path / name))
    for seg in m["segments"]:
        if seg["file"] == name:
            seg["bytes"] = m["checksums"][name]["bytes"]
    st.write_manifest(str(path), m)


def _open_fails(path, name, match):
    for read_only in (True, False):
        with pytest.raises(CorruptIndexError, match=match) as err:
            vqdb.open(path, read_only=read_only)
        assert err.value.file == name
    report = vqdb.index.verify(path)
    assert not report["ok"] and any(p["file"] == name for p in report["problems"])


def test_deletes_rows_out_of_range_or_of_an_unknown_segment(stored):
    m = _manifest(stored)
    name, seg = m["deletes_file"], m["segments"][0]["file"]
    for segs, rows in (([seg], [10**6]), (["seg-999999.arrow"], [1]), ([seg], [-1])):
        table = pa.table({"segment": pa.array(segs, pa.string()), "row": pa.array(rows, pa.int64())})
        _replace(stored, name, lambda p, t=table: st.write_table_file(p, t))
        _open_fails(stored, name, "deletes file .* is damaged")


@pytest.mark.parametrize(
    "change", ["code_width", "rows", "id_type", "unsorted_lists", "meta_type", "negative_id"]
)
def test_segment_without_the_promised_layout(stored, change):
    m = _manifest(stored)
    name = m["segments"][0]["file"]
    table = st.read_table_file(str(stored / name))
    if change == "code_width":
        codes = st.codes_from_arrow(table.column(st.CODE), table.schema.field(st.CODE).type.byte_width)
        table = table.set_column(2, st.CODE, st.codes_to_arrow(np.ascontiguousarray(codes[:, :-1])))
    elif change == "rows":
        table = table.slice(0, 150)
    elif change == "id_type":
        table = table.set_column(0, st.ID, table.column(st.ID).cast(pa.int32()))
    elif change == "unsorted_lists":
        table = table.set_column(1, st.LIST, pa.array(np.arange(table.num_rows, 0, -1) - 2, pa.int32()))
    elif change == "meta_type":
        i = table.schema.get_field_index("i")
        table = table.set_column(i, "i", table.column("i").cast(pa.string()))
    else:
        ids = table.column(st.ID).to_numpy().copy()
        ids[5] = -7
        table = table.set_column(0, st.ID, pa.array(ids))
    _replace(stored, name, lambda p: st.write_table_file(p, table))
    _open_fails(stored, name, "is damaged")


@pytest.mark.parametrize("what", ["object_dtype", "centre_shape"])
def test_state_arrays_that_do_not_fit(stored, wordnet, what):
    m = _manifest(stored)
    name = m["state_file"]
    arrays = st.read_arrays(str(stored / name))
    if what == "object_dtype":

        def write(p):
            st.write_arrays(p, arrays)
            table = pa.ipc.open_file(pa.memory_map(p)).read_all()
            dtypes = table.column("dtype").to_pylist()
            dtypes[0] = "|O"
            table = table.set_column(1, "dtype", pa.array(dtypes))
            with pa.OSFile(p, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)

    else:
        arrays["index/centre"] = np.zeros(wordnet.dim + 3, np.float32)

        def write(p):
            st.write_arrays(p, arrays)

    _replace(stored, name, write)
    _open_fails(stored, name, "is damaged" if what == "object_dtype" else "expected")


def test_log_record_with_valid_checksums_but_not_rows(stored, wordnet):
    m = _manifest(stored)
    w = _wal.WalWriter(str(stored / m["wal_file"]))
    w.append(_wal.OP_ADD, b"not an arrow stream")
    w.close()
    m.pop("wal_closed", None)
    st.write_manifest(str(stored), m)
    for read_only in (True, False):
        with pytest.raises(CorruptIndexError, match="damaged"):
            vqdb.open(stored, read_only=read_only)


def test_a_huge_length_in_a_log_header_is_not_read_as_a_torn_tail(stored):
    m = _manifest(stored)
    wal = stored / m["wal_file"]
    with open(wal, "ab") as f:  # a header claiming 2 GiB, with its header checksum valid, then more bytes
        head = (2**31 - 1).to_bytes(4, "little") + (0).to_bytes(4, "little")
        f.write(head + st.crc32c(head).to_bytes(4, "little") + os.urandom(64))
    m.pop("wal_closed", None)
    st.write_manifest(str(stored), m)
    with vqdb.open(stored) as index:  # cut short (64 of 2 GiB bytes): the torn tail of a write, cut
        assert len(index) == 198
    assert os.path.getsize(wal) == len(_wal.MAGIC)


def test_a_next_id_below_the_stored_ids_does_not_reuse_them(stored):
    m = _manifest(stored)
    m["next_id"] = 0
    st.write_manifest(str(stored), m)
    with vqdb.open(stored) as index:
        assert index.add(np.ones((2, index.dim), np.float32)).tolist() == [200, 201]
        assert len(index) == 200


def test_the_two_copies_of_the_centre_must_agree(tmp_path, wordnet, quantizer):
    stored = tmp_path / "fitted"
    with vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, path=stored) as index:
        index.add(wordnet.base[:300])  # >= 256 rows: the centre is fitted
    m = _manifest(stored)
    name = m["state_file"]
    arrays = st.read_arrays(str(stored / name))
    assert np.array_equal(arrays["quantizer/centre"], arrays["index/centre"])
    arrays["index/centre"] = arrays["index/centre"] * np.float32(1.5)
    _replace(stored, name, lambda p: st.write_arrays(p, arrays))
    _open_fails(stored, name, "centre")
