"""The write-ahead log: one append-only file of checksummed records.

Layout::

    file   := MAGIC record*
    MAGIC  := b"VQDBWAL1"
    record := length:u32le  crc32(payload):u32le  payload[length]
    payload:= op:u8  body          op 1 = add, 2 = upsert (body: Arrow IPC stream of the rows),
                                   op 3 = delete (body: int64le ids)

A write returns only after its record is on disk (``fdatasync``). On replay the records are read in
order until the first one that is cut short, fails its checksum or has an unknown op: that record and
everything after it are the unacknowledged tail of an interrupted write, and are cut off (the file is
truncated back to the last good record). A bad tail is never fatal.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib

from ._storage import fsync_dir

log = logging.getLogger("vqdb.index")

MAGIC = b"VQDBWAL1"
OP_ADD, OP_UPSERT, OP_DELETE = 1, 2, 3
_OPS = (OP_ADD, OP_UPSERT, OP_DELETE)
_HEADER = struct.Struct("<II")
MAX_RECORD = 1 << 31


def create(path: str) -> None:
    """Create an empty log (just the magic), durably, directory entry included."""
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def read(path: str, *, repair: bool) -> tuple[list[tuple[int, memoryview]], int]:
    """Read every valid record of the log at ``path``.

    Parameters
    ----------
    repair : bool
        Truncate the file after the last valid record (when opened for writing).

    Returns
    -------
    records : list of (op, body)
    cut : int
        Number of bytes of invalid tail found (and removed when ``repair``).
    """
    with open(path, "rb") as f:
        data = f.read()
    view = memoryview(data)
    records = []
    if data[: len(MAGIC)] != MAGIC:
        good = 0
        log.warning("write-ahead log %s has a damaged header; treating it as empty", path)
    else:
        pos = good = len(MAGIC)
        while pos + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, pos)
            start, end = pos + _HEADER.size, pos + _HEADER.size + length
            if length < 1 or end > len(data):
                break
            payload = view[start:end]
            if zlib.crc32(payload) != crc or payload[0] not in _OPS:
                break
            records.append((payload[0], payload[1:]))
            pos = good = end
    cut = len(data) - good
    if cut:
        log.warning(
            "write-ahead log %s: cut %d bytes of incomplete or corrupt tail after %d good records",
            path,
            cut,
            len(records),
        )
        if repair:
            with open(path, "r+b") as f:
                if good == 0:
                    f.write(MAGIC)
                    good = len(MAGIC)
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
    return records, cut


class WalWriter:
    """Appends records to an existing log; every :meth:`append` is durable when it returns."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self.size = os.fstat(self._fd).st_size

    def append(self, op: int, body: bytes) -> None:
        """Write one record and fsync; on any failure, cut the file back so the record is absent."""
        payload = bytes((op,)) + body
        if len(payload) >= MAX_RECORD:
            raise ValueError(
                f"write-ahead log record of {len(payload)} bytes is too large; add fewer vectors per call"
            )
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
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
