"""The top-level files of a sharded index are checksummed like a ``vqdb.Index``'s: every byte flip in
``sharded.json`` or the quantizer files is a clear error naming the file (or, for JSON whitespace, the
very same data), checked before any Ray actor starts. No Ray needed: nothing here gets that far."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vqdb.distributed import _manifest as mf
from vqdb.distributed import open_sharded
from vqdb.distributed._checks import resolve_quantizer
from vqdb.distributed._routing import ROUTING
from vqdb.errors import CorruptIndexError, IncompatibleFormatError

DIM = 32


def _quantizer():
    q = resolve_quantizer(DIM, "ip", "turbo-4", {})
    q.centre_ = np.linspace(-1, 1, DIM, dtype=np.float32)
    return q


def _body(**changes):
    body = {
        "dim": DIM,
        "metric": "ip",
        "n_shards": 2,
        "routing": ROUTING,
        "index_kwargs": {},
        "next_id": 7,
        "id_type": "int",
        "centre_decided": True,
        "shards_created": True,
        "shards": ["shard-00000", "shard-00001"],
    }
    body.update(changes)
    return body


def _write_set(path):
    os.makedirs(path, exist_ok=True)
    files = mf.write_quantizer(path, _quantizer())
    mf.write_manifest(path, _body(**files))
    return files


def _state(path):
    """Everything an open takes from the top-level files: the manifest and the quantizer's state."""
    m = mf.read_manifest(path)
    q = mf.read_quantizer(path, m)
    s = q.state_dict()
    return m, s["kind"], s["config"], {k: np.asarray(v) for k, v in s["arrays"].items()}, q.centre_


def _same(a, b) -> bool:
    (ma, ka, ca, aa, za), (mb, kb, cb, ab, zb) = a, b
    return (
        ma == mb
        and (ka, ca) == (kb, cb)
        and aa.keys() == ab.keys()
        and all(aa[k].dtype == ab[k].dtype and np.array_equal(aa[k], ab[k]) for k in aa)
        and np.array_equal(za, zb)
    )


def test_round_trip_and_format(tmp_path):
    path = str(tmp_path / "s")
    files = _write_set(path)
    assert files["quantizer_files"] == {"json": "quantizer-1.json", "npz": "quantizer-1.npz"}
    m, kind, config, arrays, centre = _state(path)
    assert m["format_version"] == 2 and m["next_id"] == 7 and len(m[mf.MANIFEST_CRC]) == 8
    want = _quantizer().state_dict()
    assert (kind, config) == (want["kind"], want["config"])
    assert all(np.array_equal(arrays[k], want["arrays"][k]) for k in want["arrays"])
    np.testing.assert_array_equal(centre, np.linspace(-1, 1, DIM, dtype=np.float32))
    assert sorted(os.listdir(path)) == ["quantizer-1.json", "quantizer-1.npz", "sharded.json"]


def _flips(size: int, rng, cap: int):
    positions = np.arange(size) if size <= cap else np.sort(rng.choice(size, cap, replace=False))
    return [(int(p), int(rng.integers(1, 256))) for p in positions]


@pytest.mark.parametrize("name", ["sharded.json", "quantizer-1.json", "quantizer-1.npz"])
def test_every_byte_flip_is_a_clear_error_or_the_same_data(tmp_path, name):
    path = str(tmp_path / "s")
    _write_set(path)
    original = _state(path)
    file = os.path.join(path, name)
    data = open(file, "rb").read()
    outcomes = {"error": 0, "same": 0}
    for pos, xor in _flips(len(data), np.random.default_rng(17), cap=600):
        damaged = bytearray(data)
        damaged[pos] ^= xor
        with open(file, "wb") as f:
            f.write(damaged)
        try:
            got = _state(path)
        except (CorruptIndexError, IncompatibleFormatError) as exc:
            outcomes["error"] += 1
            if isinstance(exc, CorruptIndexError):
                assert exc.file == name, (pos, xor, exc)
            continue
        assert _same(got, original), f"flip at byte {pos} (xor {xor:#x}) of {name} changed the data silently"
        outcomes["same"] += 1
    with open(file, "wb") as f:
        f.write(data)
    assert _same(_state(path), original)
    if name == "sharded.json":  # only whitespace may change without an error (JSON reads the same)
        assert outcomes["error"] >= 0.7 * sum(outcomes.values()), outcomes
    else:  # the CRC32C covers every byte of the quantizer files
        assert outcomes == {"error": min(len(data), 600), "same": 0}


def test_open_refuses_a_damaged_set_before_starting_ray(tmp_path):
    path = str(tmp_path / "s")
    _write_set(path)
    npz = os.path.join(path, "quantizer-1.npz")
    data = bytearray(open(npz, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(npz, "wb").write(data)
    with pytest.raises(CorruptIndexError, match="checksum") as err:
        open_sharded(path)  # ray is never initialised by this test: the check comes first
    assert err.value.file == "quantizer-1.npz"
    os.remove(npz)
    with pytest.raises(CorruptIndexError, match="cannot be read"):
        open_sharded(path)


@pytest.mark.parametrize(
    "change, what",
    [
        ({"n_shards": 10**9}, "n_shards"),
        ({"n_shards": 0}, "n_shards"),
        ({"dim": -3}, "dim"),
        ({"metric": "hamming"}, "metric"),
        ({"next_id": "7"}, "next_id"),
        ({"id_type": "uuid"}, "id_type"),
        ({"quantizer_files": {"json": "../quantizer-1.json", "npz": "quantizer-1.npz"}}, "plain"),
        ({"quantizer_files": {"json": "/etc/passwd", "npz": "quantizer-1.npz"}}, "plain"),
        ({"quantizer_files": {"json": "quantizer-1.npz", "npz": "quantizer-1.json"}}, "plain"),
        ({"checksums": {}}, "no checksum"),
    ],
)
def test_a_crafted_manifest_with_a_valid_checksum_is_refused(tmp_path, change, what):
    path = str(tmp_path / "s")
    files = _write_set(path)
    body = _body(**files)
    body.update(change)
    _write_raw(path, body)
    with pytest.raises(CorruptIndexError, match=what) as err:
        mf.read_manifest(path)
    assert err.value.file == "sharded.json"


def _write_raw(path, body):
    """The manifest exactly as given (a valid checksum), bypassing write_manifest's clean-up."""
    body = mf.seal_manifest({**body, "format": mf.FORMAT, "format_version": mf.FORMAT_VERSION})
    with open(os.path.join(path, mf.MANIFEST), "w") as f:
        json.dump(body, f)


def test_a_crash_before_the_manifest_keeps_the_old_quantizer(tmp_path):
    """The first write refits the centre: new quantizer files, then the manifest. Stopped in between,
    the old manifest still names the old, intact files; the next manifest write removes the new ones."""
    path = str(tmp_path / "s")
    _write_set(path)
    before = _state(path)
    q = _quantizer()
    q.centre_ = np.zeros(DIM, dtype=np.float32)
    files = mf.write_quantizer(path, q)  # ... and the process dies here
    assert files["quantizer_files"]["npz"] == "quantizer-2.npz"
    assert _same(_state(path), before)
    mf.write_manifest(path, _body(**_quantizer_part(path)))
    assert sorted(os.listdir(path)) == ["quantizer-1.json", "quantizer-1.npz", "sharded.json"]


def _quantizer_part(path):
    m = mf.read_manifest(path)
    return {"quantizer_files": m["quantizer_files"], "checksums": m["checksums"]}


def test_format_1_still_opens_and_is_rewritten_checksummed(tmp_path):
    path = str(tmp_path / "s")
    os.makedirs(path)
    files = mf.write_quantizer(path, _quantizer())  # lay the files out under format 1's fixed names
    os.rename(os.path.join(path, files["quantizer_files"]["json"]), os.path.join(path, mf.QUANTIZER_JSON))
    os.rename(os.path.join(path, files["quantizer_files"]["npz"]), os.path.join(path, mf.QUANTIZER_NPZ))
    with open(os.path.join(path, mf.MANIFEST), "w") as f:
        json.dump({"format": mf.FORMAT, "format_version": 1, **_body()}, f)
    m, kind, config, arrays, centre = _state(path)
    assert m["format_version"] == 1 and kind == "turbo"
    np.testing.assert_array_equal(centre, _quantizer().centre_)
    migrated = mf.write_quantizer(
        path, mf.read_quantizer(path, m)
    )  # what ShardedIndex does on its next write
    mf.write_manifest(path, _body(**migrated))
    assert sorted(os.listdir(path)) == ["quantizer-1.json", "quantizer-1.npz", "sharded.json"]
    assert mf.read_manifest(path)["format_version"] == 2
    np.testing.assert_array_equal(_state(path)[4], _quantizer().centre_)


def _set_with_shards(path):
    """A sharded directory as ShardedIndex writes it (top-level files + one vqdb.Index per shard),
    made without Ray: each shard is a plain index directory."""
    import vqdb

    _write_set(path)
    x = np.random.default_rng(2).standard_normal((40, DIM)).astype(np.float32)
    for s in range(2):
        with vqdb.Index(
            DIM, metric="ip", quantizer=_quantizer(), path=os.path.join(path, mf.shard_dirname(s))
        ) as ix:
            ix.add(x[s::2], ids=np.arange(s, 40, 2))
            ix.save()


def test_vqdb_verify_checks_the_top_level_files_and_every_shard(tmp_path, capsys):
    from vqdb.cli import main

    path = str(tmp_path / "s")
    _set_with_shards(path)
    assert main(["verify", path]) == 0
    assert "OK" in capsys.readouterr().out
    seg = next(n for n in os.listdir(os.path.join(path, "shard-00001")) if n.startswith("seg-"))
    for name in (f"shard-00001/{seg}", "quantizer-1.npz"):
        target = os.path.join(path, name)
        data = open(target, "rb").read()
        damaged = bytearray(data)
        damaged[len(data) // 2] ^= 0x10
        open(target, "wb").write(damaged)
        assert main(["verify", path, "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert not report["ok"] and [p["file"] for p in report["problems"]] == [name], report
        open(target, "wb").write(data)
    assert main(["verify", path]) == 0
    assert main(["verify", os.path.join(path, "shard-00000")]) == 0  # a plain index still verifies
