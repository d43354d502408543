"""On-disk format 2: format-1 indexes still open (read as they are, migrated when opened for writing);
every file name in a manifest stays inside the index directory; quantizers come from vqdb's registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import vqdb
from vqdb.errors import CorruptIndexError, UnknownNameError
from vqdb.index import _storage as st

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "format1")


@pytest.fixture
def format1(tmp_path):
    """A copy of the committed format-1 index (written by tests/index/data/make_format1.py at 280c2e5)."""
    path = tmp_path / "v1"
    shutil.copytree(os.path.join(FIXTURE, "index"), path)
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        return path, json.load(f)


def _check_same(index, expected, wordnet):
    assert sorted(index.ids().tolist()) == expected["ids"]
    res = index.search(wordnet.queries[:5], 10)
    np.testing.assert_array_equal(res.ids, np.array(expected["search_ids"]))
    np.testing.assert_allclose(res.scores, np.array(expected["search_scores"]), rtol=1e-6, atol=1e-6)
    assert index.get([130]).metadata == expected["get_130"]


def test_format1_index_opens_read_only_as_it_is(format1, wordnet):
    path, expected = format1
    before = {n: open(os.path.join(path, n), "rb").read() for n in os.listdir(path)}
    with vqdb.open(path, read_only=True) as index:
        _check_same(index, expected, wordnet)
        assert index.stats()["format_version"] == 1
        assert len(index) == 155  # 160 added, 5 deleted (3 in the deletes file, 2 in the log)
    assert {n: open(os.path.join(path, n), "rb").read() for n in os.listdir(path)} == before


def test_format1_index_is_migrated_when_opened_for_writing(format1, wordnet):
    path, expected = format1
    with vqdb.open(path) as index:
        _check_same(index, expected, wordnet)
        assert index.stats()["format_version"] == 2
        index.add(wordnet.base[1000:1010], ids=np.arange(500, 510))
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert manifest["format_version"] == 2 and "class" not in manifest["quantizer"]
    assert set(manifest["checksums"]) == set(st.named_files(manifest))
    for name, entry in manifest["checksums"].items():
        assert st.file_entry(os.path.join(path, name)) == entry
    code = (
        "import sys, vqdb; ix = vqdb.open(sys.argv[1], read_only=True); "
        "print(len(ix), ix.stats()['format_version'], sorted(ix.ids().tolist())[-1])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["165", "2", "509"]
    with vqdb.open(path, read_only=True) as again:
        got = again.search(wordnet.queries[:5], 10)
        assert np.isin(np.array(expected["search_ids"]), again.ids()).all()
        assert got.ids.shape == (5, 10)


@pytest.mark.parametrize(
    "key, name",
    [
        ("wal_file", "/etc/passwd"),
        ("wal_file", "../outside.log"),
        ("state_file", "sub/state.arrow"),
        ("state_file", "st\x00ate.arrow"),
        ("deletes_file", ".."),
        ("segment", "../../seg-000001.arrow"),
        ("segment", ""),
        ("state_file", 5),
    ],
)
def test_manifest_file_names_must_stay_inside_the_directory(tmp_path, wordnet, quantizer, key, name):
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, quantizer=quantizer, path=path) as index:
        index.add(wordnet.base[:20])
        index.save()
    outside = tmp_path / "outside.log"
    outside.write_bytes(b"precious")
    mpath = os.path.join(path, "manifest.json")
    manifest = json.load(open(mpath))
    if key == "segment":
        manifest["segments"][0]["file"] = name
    else:
        manifest[key] = name
    st.write_manifest(str(path), manifest)  # a valid checksum: only the name is wrong
    for read_only in (True, False):
        with pytest.raises(CorruptIndexError, match="not a plain file name"):
            vqdb.open(path, read_only=read_only)
    assert outside.read_bytes() == b"precious"


def test_symlinked_file_is_refused(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, quantizer=quantizer, path=path) as index:
        index.add(wordnet.base[:20])
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    state = os.path.join(path, manifest["state_file"])
    os.rename(state, tmp_path / "elsewhere.arrow")
    os.symlink(tmp_path / "elsewhere.arrow", state)
    with pytest.raises(CorruptIndexError, match="symbolic link"):
        vqdb.open(path, read_only=True)


def test_quantizer_class_in_a_manifest_is_never_imported(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, quantizer=quantizer, path=path) as index:
        index.add(wordnet.base[:20])
    marker = tmp_path / "ran"
    evil = tmp_path / "evilmod.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\nclass Q:\n    pass\n")
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    manifest["quantizer"]["kind"] = "custom"
    manifest["quantizer"]["class"] = "evilmod:Q"
    st.write_manifest(str(path), manifest)
    code = "import sys, vqdb; sys.path.insert(0, sys.argv[2]); vqdb.open(sys.argv[1], read_only=True)"
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode != 0 and "UnknownNameError" in out.stderr and "unknown quantizer kind" in out.stderr
    assert not marker.exists()
    manifest["quantizer"]["kind"] = "this:x"
    st.write_manifest(str(path), manifest)
    with pytest.raises(UnknownNameError):
        vqdb.open(path, read_only=True)


def test_a_registered_custom_quantizer_reopens(tmp_path, wordnet):
    from vqdb.quantizers import QUANTIZERS, TurboQuantizer, register_quantizer

    class Custom(TurboQuantizer):
        kind = "test-custom-turbo"

    q = Custom(wordnet.dim, 4, rotation="hadamard")
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, quantizer=q, path=path) as index:
        index.add(wordnet.base[:50])
        expected = index.search(wordnet.queries[:3], 5).ids
    with pytest.raises(UnknownNameError, match="test-custom-turbo"):
        vqdb.open(path)
    register_quantizer(Custom)
    try:
        with vqdb.open(path) as again:
            assert type(again.quantizer) is Custom
            np.testing.assert_array_equal(again.search(wordnet.queries[:3], 5).ids, expected)
        with pytest.raises(vqdb.errors.InvalidInputError, match="already registered"):
            register_quantizer(type("Other", (TurboQuantizer,), {"kind": "test-custom-turbo"}))
    finally:
        QUANTIZERS.pop("test-custom-turbo", None)


def test_unknown_feature_is_refused_and_unknown_keys_survive_a_rewrite(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, quantizer=quantizer, path=path) as index:
        index.add(wordnet.base[:20])
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    manifest["future_key"] = {"kept": True}
    manifest["features"] = ["from-the-future"]
    st.write_manifest(str(path), manifest)
    with pytest.raises(vqdb.errors.IncompatibleFormatError, match="from-the-future"):
        vqdb.open(path, read_only=True)
    manifest["features"] = []
    st.write_manifest(str(path), manifest)
    with vqdb.open(path) as index:
        index.add(wordnet.base[20:30])
        index.save()
    assert json.load(open(os.path.join(path, "manifest.json")))["future_key"] == {"kept": True}
