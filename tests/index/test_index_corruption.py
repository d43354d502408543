"""Damaged files: one flipped byte anywhere in an index is a clear error naming the file (or changes
nothing), never wrong data and never a crash; ``verify`` finds every damaged file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vqdb
from bench import corruption_sweep as sweep
from vqdb.errors import CorruptIndexError


def test_byte_flip_sweep_every_outcome_is_a_clear_error_or_identical(tmp_path):
    """6 flips in each of segment, state, deletes, manifest, log (closed and crashed), each trial in a
    subprocess (a crash is counted, not fatal). Every flip in a checksummed file is an error naming it."""
    result = sweep.run_sweep(6, seed=7, root=str(tmp_path))
    for t in result["trials"]:
        assert t["outcome"] in ("error", "identical"), t
        if t["kind"].startswith("control"):  # nothing flipped: the read-back must match exactly
            assert t["outcome"] == "identical", t
        elif t["kind"] != "manifest":  # a manifest flip may hit JSON whitespace: identical data
            assert t["outcome"] == "error" and t["named"], t
    summary = result["summary"]
    assert sum(s["silent"] + s["raw"] + s["crash"] for s in summary.values()) == 0
    assert all(sum(s[o] for o in sweep.OUTCOMES) == 6 for k, s in summary.items() if k in sweep.KINDS)


def _stored(tmp_path, wordnet, quantizer):
    path = tmp_path / "ix"
    with vqdb.Index(wordnet.dim, quantizer=quantizer, path=path, store_vectors=True) as index:
        index.add(wordnet.base[:300], metadata=[{"i": i} for i in range(300)])
        index.save()
        index.delete([1, 2])
        index.save()
        index.add(wordnet.base[300:320])
    return path, json.load(open(path / "manifest.json"))


def _flip(path, offset=-100):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(offset % size)
        b = f.read(1)
        f.seek(offset % size)
        f.write(bytes([b[0] ^ 1]))


def test_verify_reports_every_damaged_file_and_the_cli_exits_1(tmp_path, wordnet, quantizer):
    path, manifest = _stored(tmp_path, wordnet, quantizer)
    with vqdb.open(path, read_only=True) as index:
        report = index.verify()
    assert report["ok"] and report["problems"] == [] and report["format_version"] == 2
    assert set(report["checked"]) == {
        "manifest.json",
        *vqdb.index._storage.named_files(manifest),
        manifest["wal_file"],
    }
    seg, state = manifest["segments"][0]["file"], manifest["state_file"]
    _flip(path / seg)
    _flip(path / state)
    report = vqdb.index.verify(path)
    assert not report["ok"] and sorted(p["file"] for p in report["problems"]) == sorted([seg, state])
    out = subprocess.run(
        [sys.executable, "-m", "vqdb.cli", "verify", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 1 and "DAMAGED" in out.stdout and seg in out.stdout and state in out.stdout
    with pytest.raises(CorruptIndexError) as err:
        vqdb.open(path, read_only=True)
    assert err.value.file in (seg, state)


def test_salvage_cli_keeps_the_intact_log_records(tmp_path, wordnet, quantizer):
    path, manifest = _stored(tmp_path, wordnet, quantizer)
    _flip(path / manifest["wal_file"], offset=-5)  # the last (only) log record: 20 vectors
    out = subprocess.run(
        [sys.executable, "-m", "vqdb.cli", "verify", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 1 and manifest["wal_file"] in out.stdout and "salvage" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "vqdb.cli", "salvage", str(path), "--json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["vectors"] == 298 and result["salvaged"]["kept_records"] == 0
    assert os.path.exists(path / result["salvaged"]["damaged_log"])
    assert vqdb.index.verify(path)["ok"]
    with vqdb.open(path) as index:
        assert len(index) == 298 and np.isin(np.arange(3, 300), index.ids()).all()


def test_crafted_states_with_valid_checksums_are_clear_errors(tmp_path):
    """State arrays of the wrong shape / dtype / range and manifest counts that disagree, each file
    re-signed (valid checksums), over three quantizer layouts: each is a clear vqdb error at open, or
    (a seed the stored arrays override, a next_id below the stored ids) reads back identical data."""
    sources = ["turbo-4", "ivf-turbo-4", "turbo-pca-4"]
    result = sweep.run_sweep(0, kinds=(), root=str(tmp_path), crafted=True, crafted_sources=sources)
    crafted = [t for t in result["trials"] if t["kind"] == "crafted"]
    assert len(crafted) > 200 and {t["source"] for t in crafted} == {f"src-{s}" for s in sources}
    for t in crafted:
        assert t["outcome"] in ("error", "identical"), t
        if t["outcome"] == "identical":
            assert t["craft"]["change"] in ("quantizer.seed", "next_id=0"), t
    errors = [t for t in crafted if t["outcome"] == "error"]
    assert len(errors) == len(crafted) - 2 * len(sources)
    assert all(t["error"] == "CorruptIndexError" for t in errors), {t["error"] for t in errors}
