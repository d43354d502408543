"""Search readers: worker processes that answer searches from read-only snapshots of the collections.

Why: one process parses HTTP, validates bodies and runs the Python around every search under one GIL,
so a second core did little for searches. With ``readers=N`` (``vqdb serve --readers N``) the serving
process still takes every connection, checks keys and limits and reads bodies, but hands each search body
to one of N reader processes (``python -m vqdb.server.readers``) over a Unix socket; the reader parses
it, searches its read-only snapshot (``vqdb.open(path, read_only=True)``) and returns the JSON answer.
Writes, every other route and sharded collections stay in the serving process.

Read-your-writes: a write is durable (its log record fsynced) before its collection's write lock is
released, and the release raises the collection's generation
(:class:`vqdb.server.collections.WriteLock`). A search goes to a reader only if that reader's snapshot of
the collection was opened after the current generation was reached; else the serving process answers it
itself, as without readers, and asks the readers to reopen their snapshot once writes to that collection
have been quiet for ``QUIET`` seconds. A reader that fails, dies or answers "stale" costs a local
answer, never a wrong one.

Frames (little-endian): request ``REQUEST`` then the collection name and the body; reply ``REPLY`` then
the body.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("vqdb.server")

REQUEST = struct.Struct("<IBQ32sHI")  # id, kind, generation, collection uid, name bytes, body bytes
REPLY = struct.Struct("<IBHII")  # id, kind, HTTP status, query vectors searched, body bytes
SEARCH, REFRESH = 1, 2  # request kinds
ANSWER, STALE, FAILED, REFRESHED, READY = 1, 2, 3, 4, 5  # reply kinds
QUIET = 0.2  # seconds without a write before the readers reopen a collection
SETTINGS = ("max_k", "max_batch", "max_hits", "max_response_bytes", "max_open_collections", "blas_threads")


class ReaderGone(Exception):
    """The reader process ended (or its socket broke) before answering."""


class Reader(asyncio.Protocol):
    """The serving process's end of one reader process: replies are cut from the socket's bytes as they
    arrive (no stream reader, no pump task) and each one resolves its request's future at once."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket, on_gone=None):
        self.proc = proc
        self.sock = sock
        self.on_gone = on_gone  # called with this reader once its process or socket is gone
        self.ready = False
        self.alive = True
        self.pending: dict[int, asyncio.Future] = {}
        self.at: dict[str, int] = {}  # collection uid -> generation of the reader's snapshot
        self.refreshing: set[str] = set()
        self._ids = itertools.count(1)
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    async def connect(self) -> None:
        await asyncio.get_running_loop().connect_accepted_socket(lambda: self, sock=self.sock)

    def connection_made(self, transport) -> None:
        self._transport = transport

    def request(self, kind: int, collection, generation: int, body: bytes = b"") -> asyncio.Future:
        rid = next(self._ids) & 0xFFFFFFFF
        name = collection.name.encode()
        head = REQUEST.pack(rid, kind, generation, collection.uid.encode(), len(name), len(body))
        future = asyncio.get_running_loop().create_future()
        if not self.alive:
            future.set_exception(ReaderGone())
            return future
        self.pending[rid] = future
        self._transport.write(b"".join((head, name, body)))
        return future

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        at = 0
        while len(buffer) - at >= REPLY.size:
            rid, kind, status, queries, size = REPLY.unpack_from(buffer, at)
            end = at + REPLY.size + size
            if len(buffer) < end:
                break
            body = bytes(buffer[at + REPLY.size : end])
            at = end
            if kind == READY:
                self.ready = True
                continue
            future = self.pending.pop(rid, None)
            if future is not None and not future.done():
                future.set_result((kind, status, queries, body))
        del buffer[:at]

    def connection_lost(self, exc) -> None:
        self.alive = self.ready = False
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ReaderGone())
        self.pending.clear()
        if self.on_gone is not None:
            self.on_gone(self)

    async def close(self) -> None:
        self.alive = False
        self.on_gone = None
        if self._transport is not None:
            self._transport.close()
        await asyncio.to_thread(_stop, self.proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ReaderPool:
    """N reader processes over the collections directory ``root`` of the serving process."""

    def __init__(self, count: int, root: Path, settings):
        self.count = int(count)
        self.root = Path(root)
        self.settings = settings
        self.readers: list[Reader] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing = False

    async def start(self) -> None:
        for _ in range(self.count):
            self.readers.append(await self._spawn())

    async def _spawn(self) -> Reader:
        options = json.dumps({key: getattr(self.settings, key) for key in SETTINGS})
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        proc = subprocess.Popen(
            [sys.executable, "-m", "vqdb.server.readers", str(theirs.fileno()), str(self.root), options],
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        reader = Reader(proc, mine, on_gone=self._gone)
        await reader.connect()
        return reader

    def _gone(self, reader: Reader) -> None:
        """A reader ended: reap it and start another in its place (searches meanwhile go elsewhere)."""
        log.warning(
            "search reader process %d ended (exit %s); starting another", reader.proc.pid, reader.proc.poll()
        )
        asyncio.get_running_loop().create_task(self._replace(reader))

    async def _replace(self, reader: Reader) -> None:
        await asyncio.to_thread(_stop, reader.proc)
        if self._closing or reader not in self.readers:
            return
        fresh = await self._spawn()
        if self._closing:
            await fresh.close()
            return
        self.readers[self.readers.index(reader)] = fresh

    async def close(self) -> None:
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        await asyncio.gather(*(r.close() for r in self.readers), return_exceptions=True)
        self.readers.clear()

    def pids(self) -> list[int]:
        return [r.proc.pid for r in self.readers if r.alive]

    async def search(self, collection, raw: bytes) -> tuple[int, bytes, int] | None:
        """(HTTP status, JSON body, query vectors) from a reader whose snapshot of ``collection`` is
        current, or None: the caller answers itself (no current reader yet, or the reader failed)."""
        if collection.info.shards > 1:
            return None
        generation = collection.write_lock.generation
        # (a write still under way is not acknowledged yet: a search need not see it)
        current = [r for r in self.readers if r.ready and r.at.get(collection.uid) == generation]
        if not current:
            self._refresh_later(collection)
            return None
        reader = min(current, key=lambda r: len(r.pending))
        try:
            kind, status, queries, body = await reader.request(SEARCH, collection, generation, raw)
        except ReaderGone:
            return None
        if kind != ANSWER:
            return None
        return status, body, queries

    def _refresh_later(self, collection) -> None:
        """Reopen the readers' snapshots of ``collection`` once its writes have been quiet for QUIET s."""
        if collection.uid in self._timers:
            return
        wait = collection.write_lock.last_write + QUIET - time.monotonic()
        loop = asyncio.get_running_loop()
        self._timers[collection.uid] = loop.call_later(max(0.0, wait), self._refresh, collection)

    def _refresh(self, collection) -> None:
        self._timers.pop(collection.uid, None)
        lock = collection.write_lock
        if collection.closed:
            return
        if lock.locked() or time.monotonic() - lock.last_write < QUIET:
            self._refresh_later(collection)
            return
        generation = lock.generation
        for reader in self.readers:
            if (
                reader.ready
                and collection.uid not in reader.refreshing
                and reader.at.get(collection.uid) != generation
            ):
                reader.refreshing.add(collection.uid)
                future = reader.request(REFRESH, collection, generation)
                future.add_done_callback(lambda f, r=reader: self._refreshed(r, collection, generation, f))

    def _refreshed(self, reader: Reader, collection, generation: int, future: asyncio.Future) -> None:
        reader.refreshing.discard(collection.uid)
        if future.cancelled() or future.exception() is not None:
            return
        kind, status, _, _ = future.result()
        if kind == REFRESHED and status == 0:
            reader.at[collection.uid] = generation


# ---- the reader process ---------------------------------------------------------------------------


class Snapshot:
    """A read-only index of one collection, as the search route uses a Collection."""

    def __init__(self, name: str, uid: str, generation: int, index):
        self.name = name
        self.uid = uid
        self.generation = generation
        self.index = index
        self.dim = index.dim

    def search(self, queries, k, **options):
        from . import engine

        return engine.search(self.index, queries, k, **options)

    def fetch(self, ids, *, with_vector: bool = False):
        from . import engine

        return engine.fetch(self.index, ids, with_vector=with_vector)


def serve(sock: socket.socket, root: Path, settings) -> None:
    """Answer requests on ``sock`` until it closes (one at a time, on this thread)."""
    from . import engine
    from . import errors as errors_module
    from .collections import INDEX_DIR
    from .routes.search import answer_now

    snapshots: OrderedDict[str, Snapshot] = OrderedDict()
    rfile = sock.makefile("rb", buffering=1 << 16)

    def reply(rid: int, kind: int, status: int = 0, queries: int = 0, body: bytes = b"") -> None:
        sock.sendall(REPLY.pack(rid, kind, status, queries, len(body)) + body)

    reply(0, READY)
    while True:
        head = rfile.read(REQUEST.size)
        if len(head) < REQUEST.size:
            return
        rid, kind, generation, uid, name_size, size = REQUEST.unpack(head)
        name = rfile.read(name_size).decode()
        body = rfile.read(size) if size else b""
        uid = uid.decode()
        if kind == REFRESH:
            try:
                index = engine.open_index(root / name / INDEX_DIR, read_only=True)
            except Exception as exc:  # noqa: BLE001 - the serving process keeps answering this collection
                log.warning("reader %d: collection %r not reopened: %s", os.getpid(), name, exc)
                reply(rid, REFRESHED, 1)
                continue
            old = snapshots.pop(name, None)
            if old is not None:
                engine.close(old.index)
            snapshots[name] = Snapshot(name, uid, generation, index)
            while len(snapshots) > settings.max_open_collections:
                engine.close(snapshots.popitem(last=False)[1].index)
            reply(rid, REFRESHED, 0)
            continue
        snap = snapshots.get(name)
        if snap is None or snap.uid != uid or snap.generation != generation:
            reply(rid, STALE)
            continue
        snapshots.move_to_end(name)
        try:
            data, queries = answer_now(body, snap, settings, start=time.perf_counter())
            reply(rid, ANSWER, 200, queries, data)
        except Exception as exc:  # noqa: BLE001 - the handlers' answer, or the serving process answers
            response = errors_module.response_for(exc)
            if response is None:
                reply(rid, FAILED)
            else:
                reply(rid, ANSWER, response.status_code, 0, bytes(response.body))


def main(argv: list[str]) -> int:
    from types import SimpleNamespace

    fd, root, options = int(argv[0]), Path(argv[1]), json.loads(argv[2])
    sock = socket.socket(fileno=fd)
    from ..kernels.warmup import warmup
    from .cli import limit_blas

    limit_blas(options["blas_threads"])
    warmup()
    try:
        serve(sock, root, SimpleNamespace(**options))
    except (ConnectionError, OSError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
