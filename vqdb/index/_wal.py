"""The write-ahead log: one append-only file of checksummed records.

Layout (format 2)::

    file   := MAGIC record*
    MAGIC  := b"VQDBWAL2"
    record := length:u32le  crc32c(payload):u32le  crc32c(length, payload crc):u32le  payload[length]
    payload:= op:u8  body          op 1 = add, 2 = upsert (body: Arrow IPC stream of the rows),
                                   op 3 = delete (body: int64le keys)

(Format 1, ``VQDBWAL1``, has no header checksum and zlib's CRC-32 of the payload; it is still read.)

A write returns only after its record is on disk (``fdatasync``), and writes are serialised, so only
the *last* record can be incomplete: the torn tail of a write that was never acknowledged. On replay a
damaged record is that torn tail only when it is cut short -- fewer bytes left than its header claims
(or than a header), or nothing but zeros -- and it lies beyond the size the log had at its last clean
close (``wal_closed`` in the manifest, written by ``Index.close``). A complete record that fails its
checksum is damage even at the very end (a write that was cut short leaves a short record, never a
wrong one; format 1, without a header checksum, still takes a bad last record for a torn one). The torn tail is
cut off (the file truncated back to the last good record, when opened for writing). Anything else --
a bad header or magic, a bad record with more bytes after it, a log shorter than at its last close --
is damage: acknowledged writes may be lost, so :func:`read` reports it and the index refuses to open
for writing (see ``Index.open(salvage=True)``).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, field

import pyarrow as pa

from ._storage import crc32c, fsync_dir

log = logging.getLogger("vqdb.index")

MAGIC = b"VQDBWAL2"
MAGIC_V1 = b"VQDBWAL1"
OP_ADD, OP_UPSERT, OP_DELETE = 1, 2, 3
_OPS = (OP_ADD, OP_UPSERT, OP_DELETE)
_HEADER = struct.Struct("<III")  # length, payload crc32c, header crc32c (of the first 8 bytes)
_HEADER_V1 = struct.Struct("<II")  # length, payload zlib.crc32
MAX_RECORD = 1 << 31


@dataclass
class WalContents:
    """What :func:`read` found.

    ``records``: the intact records, in order (op, body). ``good``: bytes up to the end of the last of
    them. ``torn``: bytes of torn tail after them (cut when repaired). ``damage``: None, or what is
    wrong when the log is damaged (``records`` are then the intact prefix; what followed is lost).
    """

    records: list = field(default_factory=list)
    good: int = 0
    torn: int = 0
    size: int = 0
    damage: str | None = None


def create(path: str) -> None:
    """Create an empty log (just the magic), durably, directory entry included."""
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def _all_zero(view: memoryview) -> bool:
    return not any(view.tobytes().rstrip(b"\0"))


def parse(data: bytes, *, closed_bytes: int | None = None) -> WalContents:
    """Split log bytes into intact records, torn tail and damage (see the module docstring).

    ``closed_bytes``: the log's size at its last clean close (None when unknown).
    """
    out = WalContents(size=len(data))
    view = memoryview(data)
    buf = pa.py_buffer(data)
    magic = data[: len(MAGIC)]
    if magic not in (MAGIC, MAGIC_V1):
        out.damage = f"the log header is damaged ({bytes(magic)!r})"
        return out
    v2 = magic == MAGIC
    header = _HEADER if v2 else _HEADER_V1
    pos = out.good = len(MAGIC)
    tail = None  # why the bytes from ``pos`` are a torn tail
    while pos < len(data):
        left = len(data) - pos
        if left < header.size:
            tail = "an incomplete record header"
            break
        fields = header.unpack_from(data, pos)
        length, crc = fields[0], fields[1]
        if v2 and fields[2] != crc32c(data[pos : pos + 8]):
            if _all_zero(view[pos:]):
                tail = "a zero-filled tail"
                break
            out.damage = f"the record header at byte {pos} fails its checksum"
            return out
        start, end = pos + header.size, pos + header.size + length
        if length < 1:
            if _all_zero(view[pos:]):
                tail = "a zero-filled tail"
                break
            out.damage = f"the record at byte {pos} has length 0"
            return out
        if end > len(data):
            tail = f"an incomplete record ({left} of {header.size + length} bytes)"
            break
        payload = view[start:end]
        ok = (crc32c(buf.slice(start, length)) if v2 else zlib.crc32(payload)) == crc
        if not ok or payload[0] not in _OPS:
            if end == len(data) and not v2 and not ok:  # format 1: a torn last record may look so
                tail = "a last record that fails its checksum"
                break
            out.damage = f"the record at byte {pos} fails its checksum" + (
                f" ({len(data) - end} bytes follow it)" if end < len(data) else ""
            )
            return out
        out.records.append((payload[0], payload[1:]))
        pos = out.good = end
    if closed_bytes is not None and out.good < closed_bytes:
        what = "it is shorter" if tail is None else f"it has {tail} at byte {pos}"
        out.damage = (
            f"the log held {closed_bytes} bytes of records at its last clean close; {what} "
            f"(intact records end at byte {out.good})"
        )
        return out
    out.torn = len(data) - out.good
    if tail is not None:
        log.warning("write-ahead log: cut %s (%d bytes) after %d records", tail, out.torn, len(out.records))
    return out


def read(path: str, *, repair: bool, closed_bytes: int | None = None) -> WalContents:
    """Read the log at ``path`` (:func:`parse`); with ``repair``, truncate a torn tail (never damage)."""
    with open(path, "rb") as f:
        data = f.read()
    contents = parse(data, closed_bytes=closed_bytes)
    if repair and contents.damage is None and contents.torn:
        with open(path, "r+b") as f:
            f.truncate(contents.good)
            f.flush()
            os.fsync(f.fileno())
    return contents


class WalWriter:
    """Appends records to an existing format-2 log; every :meth:`append` is durable when it returns."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND)
        if os.pread(self._fd, len(MAGIC), 0) != MAGIC:
            os.close(self._fd)
            raise ValueError(f"{path!r} is not a format-2 write-ahead log")
        self.size = os.fstat(self._fd).st_size

    def append(self, op: int, body: bytes) -> None:
        """Write one record and fsync; on any failure, cut the file back so the record is absent."""
        payload = bytes((op,)) + body
        if len(payload) >= MAX_RECORD:
            raise ValueError(
                f"write-ahead log record of {len(payload)} bytes is too large; add fewer vectors per call"
            )
        head = struct.pack("<II", len(payload), crc32c(payload))
        record = head + struct.pack("<I", crc32c(head)) + payload
        try:
            view = memoryview(record)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)
        except BaseException:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass
            raise
        self.size += len(record)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
