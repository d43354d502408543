"""What a caller can make the server do is bounded: decompression bombs (bz2 snapshots, zstd Arrow
bodies), odd snapshot members, k x queries and response size; inputs that used to give a 500 now get a
4xx in the vqdb error shape; no error body names a server path. Against a real ``vqdb serve`` with
small limits."""

from __future__ import annotations

import bz2
import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pytest
from vqdb_server_harness import Server, write_keys_file

DIM = 8
NAME = "limits"
LIMITS = {
    "VQDB_MAX_BODY_BYTES": str(1 << 20),
    "VQDB_MAX_BULK_BYTES": str(4 << 20),
    "VQDB_MAX_HITS": "5000",
    "VQDB_MAX_RESPONSE_BYTES": str(256 << 10),
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    server = Server(root / "data", keys_file=write_keys_file(root / "keys.txt"), env=LIMITS).start()
    with server.client("admin") as http:
        assert http.post("/collections", json={"name": NAME, "dim": DIM}).status_code == 201
        rng = np.random.default_rng(0)
        points = [
            {"id": i, "vector": rng.normal(size=DIM).tolist(), "payload": {"year": 2000 + i}}
            for i in range(50)
        ]
        assert http.post(f"/collections/{NAME}/points", json={"points": points}).status_code == 200
    yield server
    server.stop()
    assert "Traceback" not in server.read_log(), server.read_log()


@pytest.fixture(scope="module")
def http(srv):
    with srv.client("admin") as c:
        yield c


def _expect(r, status, *words):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"status", "error", "detail"} and body["status"] == status, body
    for w in words:
        assert w.lower() in json.dumps(body["detail"]).lower(), (w, body)
    return body


def _tar(members, *, fmt=tarfile.PAX_FORMAT) -> bytes:
    """A tar of ``(name, bytes | None for a directory | TarInfo)`` members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
                continue
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _leftovers(srv) -> list[str]:
    hidden = [
        *srv.data.joinpath("collections").glob(".tmp-*"),
        *srv.data.joinpath("snapshots").glob(".upload-*"),
    ]
    return [p.name for p in hidden]


UPLOAD = "/collections/{}/snapshots/upload"
TAR = {"Content-Type": "application/x-tar"}


def test_bz2_snapshot_bomb_is_refused_before_it_is_written(srv, http):
    # 24 MB of zeros in one member: a bz2 file of ~100 bytes + tar headers
    raw = io.BytesIO()
    with bz2.BZ2File(raw, "wb") as z, tarfile.open(fileobj=z, mode="w|") as tar:
        info = tarfile.TarInfo("collection.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
        info = tarfile.TarInfo("index/segment.arrow")
        info.size = 24 << 20
        tar.addfile(info, io.BytesIO(bytes(24 << 20)))
    bomb = raw.getvalue()
    assert len(bomb) < 8 << 10
    _expect(http.post(UPLOAD.format("bomb"), content=bomb, headers=TAR), 413, "more than 1048576 bytes")
    assert http.get("/collections/bomb").status_code == 404
    assert _leftovers(srv) == []


def test_declared_member_size_over_the_limit_is_refused_from_its_header(http):
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w")
    tar.addfile(_member("collection.json", size=2), io.BytesIO(b"{}"))
    head = buf.getvalue()[: tar.offset]
    # a 1 TiB member in a 2 KB file: refused from its header, before any byte of it is read
    head += _member("index/segment.arrow", size=1 << 40).tobuf(tarfile.PAX_FORMAT)
    _expect(http.post(UPLOAD.format("huge"), content=head, headers=TAR), 413, "declare more than")


def _member(name, kind=tarfile.REGTYPE, **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    for k, v in attrs.items():
        setattr(info, k, v)
    return info


@pytest.mark.parametrize(
    "member, words",
    [
        (_member("index/a", pax_headers={"path": "index/a\x00b"}), ["control character"]),
        (_member("index/a\nb"), ["control character"]),
        (_member("index/link", tarfile.SYMTYPE, linkname="/etc/passwd"), ["not a regular file"]),
        (_member("index/hard", tarfile.LNKTYPE, linkname="collection.json"), ["not a regular file"]),
        (_member("index/dev", tarfile.CHRTYPE), ["not a regular file"]),
        (_member("/abs/file"), ["absolute"]),
        (_member("index/../../x"), ["plain relative"]),
        (_member("index\\..\\x"), ["backslash"]),
        (_member("index/" + "y" * 300), ["plain relative"]),
    ],
)
def test_snapshot_members_that_are_not_plain_files_are_refused(srv, http, member, words):
    data = _tar([("collection.json", b"{}"), ("index", None), (member.name, member)])
    _expect(http.post(UPLOAD.format("odd"), content=data, headers=TAR), 400, *words)
    assert http.get("/collections/odd").status_code == 404
    assert _leftovers(srv) == []


def test_too_many_members_are_refused(http, srv):
    # the member bound is the server's (100,000 by default); a restart-free check uses many tiny members
    # up to the inflate bound instead: 5,000 empty directories fit; the tar header bytes are what count
    members = [("collection.json", b"{}"), ("index", None)] + [(f"index/d{i}", None) for i in range(5000)]
    data = _tar(members, fmt=tarfile.USTAR_FORMAT)
    r = http.post(UPLOAD.format("many"), content=data, headers=TAR)
    # 5,000 directories are allowed; the snapshot is then refused for what it is: not an index
    assert 400 <= r.status_code < 500, r.text
    assert _leftovers(srv) == []


def _arrow(table, compression=None) -> bytes:
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _vectors(n):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * DIM, np.float32)), DIM)


ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}


def test_zstd_arrow_bomb_is_refused_from_its_metadata(http):
    n = 1 << 20  # 1 M rows: 8 MB of ids + 32 MB of vectors, a few KB once compressed
    bomb = _arrow(pa.table({"id": np.zeros(n, np.int64), "vector": _vectors(n)}), "zstd")
    assert len(bomb) < 64 << 10
    body = _expect(
        http.post(f"/collections/{NAME}/points/arrow", content=bomb, headers=ARROW),
        413,
        "unpacks to more than",
    )
    assert str(len(bomb)) in body["detail"]
    assert http.get(f"/collections/{NAME}").json()["count"] == 50


def test_compressed_arrow_within_the_bound_is_accepted(http):
    rng = np.random.default_rng(1)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=100 * DIM).astype(np.float32)), DIM)
    body = _arrow(pa.table({"id": np.arange(1000, 1100), "vector": vec, "year": np.full(100, 2024)}), "zstd")
    r = http.post(f"/collections/{NAME}/points/arrow", content=body, headers=ARROW)
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": 100, "count": 150}
    assert http.post(f"/collections/{NAME}/points/delete", json={"ids": list(range(1000, 1100))}).json() == {
        "deleted": 100,
        "count": 50,
    }


V = [0.1] * DIM


def test_k_times_queries_is_bounded(http):
    _expect(
        http.post(f"/collections/{NAME}/search", json={"vectors": [V] * 100, "k": 100}),
        400,
        "VQDB_MAX_HITS",
        "10000",
    )
    r = http.post(f"/collections/{NAME}/search", json={"vectors": [V] * 50, "k": 100})
    assert r.status_code == 200
    assert [len(row) for row in r.json()["results"]] == [50] * 50  # 50 points: every one of them


def test_response_size_is_bounded(http):
    # estimate: 5,000 hits x (48 + 8 x 14) bytes = 800 KB with vectors > 256 KiB -> refused before searching
    _expect(
        http.post(f"/collections/{NAME}/search", json={"vectors": [V] * 50, "k": 100, "with_vector": True}),
        400,
        "VQDB_MAX_RESPONSE_BYTES",
    )
    # the rendered answer is measured too: 20 points with 20 KB payloads each, asked for 20 x 20
    text = "w" * 20_000
    points = [{"id": 500 + i, "vector": V, "payload": {"text": text}} for i in range(20)]
    assert http.post(f"/collections/{NAME}/points", json={"points": points}).status_code == 200
    _expect(
        http.post(f"/collections/{NAME}/search", json={"vectors": [V] * 20, "k": 20}), 400, "the answer is"
    )
    ok = http.post(f"/collections/{NAME}/search", json={"vectors": [V] * 20, "k": 20, "with_payload": False})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 20
    assert (
        http.post(
            f"/collections/{NAME}/points/delete", json={"ids": [500 + i for i in range(20)]}
        ).status_code
        == 200
    )


def _nested(op, depth, leaf) -> str:
    """The JSON text of ``op`` wrapped ``depth`` times around ``leaf`` (built as text: too deep for json)."""
    inner = json.dumps(leaf)
    if op == "$not":
        return '{"$not": ' * depth + inner + "}" * depth
    return ('{"' + op + '": [') * depth + inner + "]}" * depth


@pytest.mark.parametrize(
    "flt",
    [
        json.dumps({"year": 2**70}),
        json.dumps({"year": {"$gt": 2**64}}),
        json.dumps({"year": {"$in": [1, -(2**70)]}}),
        _nested("$and", 450, {"year": 2001}),
        _nested("$or", 499, {"year": 2001}),
        _nested("$and", 5000, {"year": 2001}),
    ],
    ids=["int-2^70", "gt-2^64", "in-minus-2^70", "and-450", "or-499", "and-5000"],
)
def test_inputs_that_used_to_give_500_get_a_4xx(http, flt):
    for url, body in (
        (f"/collections/{NAME}/search", '{"vector": ' + json.dumps(V) + ', "k": 3, "filter": ' + flt + "}"),
        (f"/collections/{NAME}/points/delete", '{"filter": ' + flt + "}"),
    ):
        r = http.post(url, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
        assert set(r.json()) == {"status", "error", "detail"}
    assert http.get(f"/collections/{NAME}").json()["count"] == 50  # nothing was deleted


def test_no_server_path_in_error_bodies(srv, http):
    """Errors from opening an uploaded index mention files; never the server's directories."""
    bad_index = _tar(
        [
            ("collection.json", json.dumps({"name": "x"}).encode()),
            ("index", None),
            ("index/manifest.json", b"{"),
        ]
    )
    bodies = [
        http.post(UPLOAD.format("broken"), content=bad_index, headers=TAR),
        http.post(UPLOAD.format("broken"), content=b"\x1f\x8b not gzip", headers=TAR),
        http.post(
            UPLOAD.format("broken"), content=_tar([("collection.json", b"{}"), ("index", None)]), headers=TAR
        ),
    ]
    for r in bodies:
        assert 400 <= r.status_code < 500, r.text
        text = r.text
        for root in {str(srv.data), str(srv.data.resolve()), "/tmp/"}:
            assert root not in text, text
    assert _leftovers(srv) == []
