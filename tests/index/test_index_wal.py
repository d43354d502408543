"""The write-ahead log never drops an acknowledged write silently: only the torn tail of a write that was
never acknowledged is cut; any other damage refuses to open for writing, read-only open says what is
lost, and salvage keeps the intact records and moves the damaged log aside."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vqdb
from vqdb.errors import WalDamagedError
from vqdb.index import _wal

WRITER = """
import os, sys
import numpy as np
import vqdb
x = np.load(sys.argv[2])
index = vqdb.Index(x.shape[1], metric="ip", quantizer="turbo-hadamard-4", path=sys.argv[1])
for i in range(5):
    index.add(x[i * 10 : (i + 1) * 10], metadata=[{"batch": i}] * 10)
if sys.argv[3] == "deletes":
    for i in range(10):
        index.delete([i])
if sys.argv[4] == "crash":
    os._exit(0)  # no close: the log is left as a crash leaves it
index.close()
"""


def write(tmp_path, wordnet, *, crash: bool, deletes: bool = False):
    path = tmp_path / "ix"
    np.save(tmp_path / "x.npy", wordnet.base[:50])
    mode = ["deletes" if deletes else "adds", "crash" if crash else "close"]
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(tmp_path / "x.npy"), *mode], check=True)
    manifest = json.load(open(path / "manifest.json"))
    return path, str(path / manifest["wal_file"])


def damage(wal: str, how: str) -> None:
    size = os.path.getsize(wal)
    with open(wal, "r+b") as f:
        if how.startswith("cut"):
            f.truncate(size - int(how[3:]))
        elif how.startswith("flip"):
            at = int(how[4:])
            at = at if at >= 0 else size + at
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x40]))
        elif how == "garbage":  # a half-written header after the last good record
            f.seek(size)
            f.write(b"\x10\x00\x00")
        elif how == "zeros":  # a tail the file system extended but never filled
            f.seek(size)
            f.write(bytes(4096))


@pytest.mark.parametrize(
    "how, expected", [("cut7", 40), ("cut1000", 40), ("garbage", 50), ("zeros", 50), ("cut0", 50)]
)
def test_torn_tail_after_a_crash_is_cut(tmp_path, wordnet, how, expected):
    path, wal = write(tmp_path, wordnet, crash=True)
    damage(wal, how)
    with vqdb.open(path) as index:
        assert len(index) == expected
        np.testing.assert_array_equal(np.sort(index.ids()), np.arange(expected))
        index.add(wordnet.base[100:110])  # the log keeps working after the cut
    with vqdb.open(path) as index:
        assert len(index) == expected + 10


@pytest.mark.parametrize(
    "how", ["flip0", "flip3", "flip8", "flip9", "flip20", "flip400", "flip-20", "flip-1"]
)
def test_damage_refuses_to_open_for_writing_even_after_a_crash(tmp_path, wordnet, how):
    """Magic, a record header (length field included), an early payload, or the last record's payload:
    never taken for a torn tail, even after a crash (no clean-close size to compare with)."""
    path, wal = write(tmp_path, wordnet, crash=True)
    damage(wal, how)
    before = open(wal, "rb").read()
    with pytest.raises(WalDamagedError, match="is damaged.*salvage=True") as err:
        vqdb.open(path)
    assert err.value.file == os.path.basename(wal)
    assert open(wal, "rb").read() == before  # nothing truncated
    with vqdb.open(path, read_only=True) as index:
        assert len(index) < 50 and "wal_damage" in index.stats()
        assert "cannot be read" in index.stats()["wal_damage"]


@pytest.mark.parametrize("how, kept", [("cut7", 40), ("flip-20", 40), ("cut-record", 40)])
def test_a_log_damaged_after_a_clean_close_is_never_a_torn_tail(tmp_path, wordnet, how, kept):
    """cut-record removes exactly the last record: every remaining record is intact, but the log is
    shorter than at its close."""
    path, wal = write(tmp_path, wordnet, crash=False)
    if how == "cut-record":
        records = _wal.parse(open(wal, "rb").read()).records
        how = f"cut{12 + 1 + len(records[-1][1])}"
    damage(wal, how)
    with pytest.raises(WalDamagedError, match="last clean close" if how.startswith("cut") else "checksum"):
        vqdb.open(path)
    with vqdb.open(path, read_only=True) as index:
        assert len(index) == kept
    with vqdb.open(path, salvage=True) as index:
        assert len(index) == kept
        salvaged = index.stats()["salvaged"]
        assert salvaged["kept_records"] == kept // 10
        index.add(wordnet.base[100:110])
    aside = [n for n in os.listdir(path) if ".damaged-" in n]
    assert aside == [salvaged["damaged_log"]]
    with vqdb.open(path) as index:  # the fresh log is clean: opens for writing, nothing more lost
        assert len(index) == kept + 10
    assert [n for n in os.listdir(path) if ".damaged-" in n] == aside  # kept for the operator


def test_cutting_the_end_never_resurrects_acknowledged_deletes(tmp_path, wordnet):
    path, wal = write(tmp_path, wordnet, crash=False, deletes=True)
    damage(wal, "cut10")
    with pytest.raises(WalDamagedError):
        vqdb.open(path)
    with vqdb.open(path, read_only=True) as index:
        assert len(index) == 41  # 9 deletes readable: the damaged last one is reported, not hidden
        assert "wal_damage" in index.stats()


def test_salvage_is_not_read_only_and_a_clean_index_opens_unchanged(tmp_path, wordnet):
    path, wal = write(tmp_path, wordnet, crash=False)
    with pytest.raises(vqdb.errors.InvalidInputError, match="salvage"):
        vqdb.open(path, read_only=True, salvage=True)
    with vqdb.open(path, salvage=True) as index:  # nothing to salvage: a normal open
        assert len(index) == 50 and "salvaged" not in index.stats()
    assert not [n for n in os.listdir(path) if ".damaged-" in n]
