"""Bounded unpacking of snapshot tars (plain, gzip, bz2 or xz): no bomb, no escape, no odd member.

A snapshot is streamed once through a counter that refuses to produce more than ``max_bytes``
decompressed bytes, so neither a member's data nor a huge PAX header can inflate past the bound;
each member is checked before anything of it is written:

* at most ``max_members`` members; only regular files and directories (no links, devices, sparse
  files);
* a relative name of plain components: no ``..``, no absolute path, no NUL or other control
  character, no backslash, at most 255 bytes per component and 1,024 in all;
* declared sizes that keep the total within ``max_bytes``.

``max_bytes`` for an upload is ``min(max_snapshot_bytes, max(max_body_bytes, ratio x file size))``:
a compressed file may unpack to at most ``ratio`` times its size (an uncompressed tar is about its
own size), which stops a 4 KB bz2 file from writing 200 MB.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from pathlib import Path

from ..errors import InvalidInputError, RequestTooLargeError

MAX_NAME = 1024
MAX_COMPONENT = 255
MAX_HEADER = 1 << 20  # a PAX / GNU long-name header is read into memory whole
_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_MAGIC = (
    (b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
    (b"BZh", lambda f: bz2.BZ2File(f, "rb")),
    (b"\xfd7zXZ\x00", lambda f: lzma.LZMAFile(f, "rb")),
)


class _CheckedInfo(tarfile.TarInfo):
    """Refuses an extended header larger than ``MAX_HEADER`` before tarfile reads it into memory."""

    def _proc_member(self, tarfile_):
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER:
            raise RequestTooLargeError(f"the snapshot holds an extended tar header of {self.size} bytes")
        return super()._proc_member(tarfile_)


class _Bounded(io.RawIOBase):
    """A read-only stream that raises :class:`RequestTooLargeError` past ``limit`` bytes."""

    def __init__(self, raw, limit: int):
        self.raw = raw
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.limit - self.count + 1)  # never ask the decompressor for more
        data = self.raw.read(want)
        self.count += len(data)
        if self.count > self.limit:
            raise RequestTooLargeError(
                f"the snapshot unpacks to more than {self.limit} bytes (this server's limit for it: "
                "VQDB_MAX_SNAPSHOT_BYTES, or VQDB_MAX_INFLATE_RATIO times the file's size)"
            )
        buffer[: len(data)] = data
        return len(data)


def extract(tar_path: Path, dest: Path, *, max_bytes: int, max_members: int) -> list[str]:
    """Unpack ``tar_path`` into the existing directory ``dest``; returns the member names.

    Raises :class:`InvalidInputError` for a file that is not a tar or holds a member that is not
    allowed, and :class:`RequestTooLargeError` past ``max_bytes`` or ``max_members``. On error,
    ``dest`` may hold part of the snapshot (the caller removes it).
    """
    with open(tar_path, "rb") as f:
        head = f.read(8)
        f.seek(0)
        opener = next((cls for magic, cls in _MAGIC if head.startswith(magic)), None)
        source = opener(f) if opener is not None else f
        bounded = io.BufferedReader(_Bounded(source, max_bytes), buffer_size=1 << 16)
        names: list[str] = []
        declared = 0
        try:
            with tarfile.open(fileobj=bounded, mode="r|", tarinfo=_CheckedInfo) as tar:
                for member in tar:
                    check_member(member)
                    names.append(member.name)
                    if len(names) > max_members:
                        raise RequestTooLargeError(
                            f"the snapshot holds more than {max_members} members (VQDB_MAX_SNAPSHOT_MEMBERS)"
                        )
                    declared += max(member.size, 0)
                    if declared > max_bytes:
                        raise RequestTooLargeError(
                            f"the snapshot's members declare more than {max_bytes} bytes "
                            "(VQDB_MAX_SNAPSHOT_BYTES, or VQDB_MAX_INFLATE_RATIO times the file's size)"
                        )
                    tar.extract(member, dest, filter="data")
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, ValueError) as exc:
            if isinstance(exc, (InvalidInputError, RequestTooLargeError)):
                raise
            raise InvalidInputError(f"not a readable snapshot tar: {_reason(exc)}") from None
    return names


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse a member that is not a plain file or directory with a plain relative name."""
    name = member.name
    shown = repr(name[:80])
    if not name or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise InvalidInputError(f"snapshot member name {shown} is empty or longer than {MAX_NAME} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        raise InvalidInputError(f"snapshot member name {shown} holds a control character or a backslash")
    if name.startswith("/") or os.path.isabs(name):
        raise InvalidInputError(f"snapshot member {shown} has an absolute path")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") or len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT for p in parts):
        raise InvalidInputError(f"snapshot member {shown} is not a plain relative path")
    if not (member.isreg() or member.isdir()) or member.issparse():
        raise InvalidInputError(f"snapshot member {shown} is not a regular file or directory")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
