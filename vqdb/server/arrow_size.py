"""The decompressed size of an Arrow IPC stream, read from its metadata before anything is decompressed.

An IPC stream with body compression (LZ4 frame or ZSTD) stores each buffer as an int64 uncompressed
length followed by the compressed bytes (Arrow columnar format, "Compression"); the buffers of a
record batch are listed in its flatbuffer metadata. :func:`inflated_size` walks those messages with
``pyarrow.ipc.MessageReader`` (which decompresses nothing) and reads the few flatbuffer fields it
needs by hand:

    Message      { version: short (0); header_type: ubyte (1); header: offset (2); bodyLength: long (3) }
    RecordBatch  { length: long (0); nodes: [FieldNode] (1); buffers: [Buffer{offset, length}] (2);
                   compression: BodyCompression (3) }
    DictionaryBatch { id: long (0); data: RecordBatch (1) }
"""

from __future__ import annotations

import struct

from ..errors import InvalidInputError

_SCHEMA, _DICTIONARY, _RECORD_BATCH = 1, 2, 3


class _Table:
    """A flatbuffer table at ``pos`` in ``buf`` (reads only; raises IndexError/struct.error on garbage)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf = buf
        self.pos = pos
        (soffset,) = struct.unpack_from("<i", buf, pos)
        self.vtable = pos - soffset
        (self.vt_size,) = struct.unpack_from("<H", buf, self.vtable)

    def _field(self, i: int) -> int:
        at = 4 + 2 * i
        if at >= self.vt_size:
            return 0
        (off,) = struct.unpack_from("<H", self.buf, self.vtable + at)
        return off

    def scalar(self, i: int, fmt: str, default=0):
        off = self._field(i)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def target(self, i: int) -> int | None:
        off = self._field(i)
        if not off:
            return None
        (rel,) = struct.unpack_from("<I", self.buf, self.pos + off)
        return self.pos + off + rel

    def table(self, i: int) -> _Table | None:
        at = self.target(i)
        return None if at is None else _Table(self.buf, at)

    def structs(self, i: int, fmt: str) -> list[tuple]:
        at = self.target(i)
        if at is None:
            return []
        (n,) = struct.unpack_from("<I", self.buf, at)
        size = struct.calcsize("<" + fmt)
        if at + 4 + n * size > len(self.buf):
            raise IndexError("vector past the end of the metadata")
        return [struct.unpack_from("<" + fmt, self.buf, at + 4 + j * size) for j in range(n)]


def _batch_bytes(batch: _Table, body) -> int:
    """Bytes the buffers of one record batch take once decompressed."""
    compressed = batch.target(3) is not None
    total = 0
    for offset, length in batch.structs(2, "qq"):
        if offset < 0 or length < 0 or offset + length > body.size:
            raise InvalidInputError("the Arrow stream's metadata points outside its message body")
        if compressed and length >= 8:
            (raw,) = struct.unpack_from("<q", body, offset)
            total += length - 8 if raw == -1 else raw
        else:
            total += length
    return total


def inflated_size(data: bytes, *, limit: int) -> int:
    """Total decompressed buffer bytes of the IPC stream ``data``; :class:`InvalidInputError` for a
    stream that cannot be read, and the running total stops at the first message past ``limit``."""
    import pyarrow as pa

    try:
        reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"body is not an Arrow IPC stream: {exc}") from None
    total = 0
    while total <= limit:
        try:
            message = reader.read_next_message()
        except StopIteration:
            break
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InvalidInputError(f"body is not an Arrow IPC stream: {exc}") from None
        if message is None:
            break
        meta = message.metadata.to_pybytes()
        try:
            root = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
            kind = root.scalar(1, "B")
            header = root.table(2)
            if kind == _SCHEMA or header is None:
                continue
            if kind == _DICTIONARY:
                header = header.table(1)
                if header is None:
                    continue
            elif kind != _RECORD_BATCH:
                raise InvalidInputError("the Arrow stream holds a message that is not a record batch")
            total += _batch_bytes(header, message.body)
        except (IndexError, struct.error):
            raise InvalidInputError("the Arrow stream's message metadata is malformed") from None
    return total
