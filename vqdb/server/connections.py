"""Connection deadlines and a connection cap: uvicorn's HTTP protocols (httptools, or h11) plus timers.

Why a protocol of ours: uvicorn closes an idle keep-alive connection after
``timeout_keep_alive`` but sets no deadline on a connection that has not sent a complete request head
(an idle or slowloris client holds its socket, and a file descriptor, for ever) nor on a body that
trickles in; its ``limit_concurrency`` answers 503 only after a connection is accepted and its head
parsed, and never frees a descriptor. An ASGI middleware sees a request only once its head is
complete, so these deadlines live in a subclass of ``H11Protocol`` that only adds timers, with the
semantics of Apache's mod_reqtimeout (the same for both parsers: httptools, the faster, when it is
installed, else h11):

* head: the request head must be complete ``header_timeout`` seconds after its first byte, or after
  the connection opened (a connection that never sends a byte is closed then too);
* body: the body must arrive within ``body_timeout + received / body_min_rate`` seconds;
* idle keep-alive: uvicorn's ``timeout_keep_alive``;
* cap: at most ``max_connections`` are open. A new connection past the cap closes the connection idle
  longest among those with no request in flight (as nginx reuses idle keep-alive connections), so an
  idle flood cannot lock out ``/healthz``; if every connection is busy the new one gets 503.

A connection cut in its head (after some bytes) or its body gets a 408 in the vqdb error shape, unless
a response has started. Counts of what was cut are in :class:`ConnectionStats`.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 only
    HttpToolsProtocol = None

from .errors import error_bytes

# descriptors kept free for everything but client sockets (logs, data files, pipes, Ray, ...)
RESERVED_FDS = 96
FDS_PER_OPEN_COLLECTION = 2


@dataclass
class ConnectionStats:
    """What the guards did since start (read by ``/metrics``)."""

    open: int = 0
    head_timeouts: int = 0
    body_timeouts: int = 0
    reaped_idle: int = 0
    refused_busy: int = 0


@dataclass
class ConnectionGuards:
    header_timeout: float = 10.0
    body_timeout: float = 20.0
    body_min_rate: int = 1024
    max_connections: int = 1000
    backlog: int = 2048
    stats: ConnectionStats = field(default_factory=ConnectionStats)


def accept_backlog() -> int:
    """The listen backlog: asyncio accepts up to this many connections in one burst, before the
    sockets closed for them are freed, so it is part of the descriptor budget (1/8 of the limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 2048
    return max(16, min(2048, soft // 8))


def default_max_connections(max_open_collections: int, backlog: int) -> int:
    """Client connections that fit under this process's soft descriptor limit (at most 4,096), leaving
    room for open collections, one accept burst (``backlog``) and ``RESERVED_FDS`` for the rest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    spare = soft - RESERVED_FDS - FDS_PER_OPEN_COLLECTION * max_open_collections - backlog
    return max(16, min(4096, spare))


def protocol_class(guards: ConnectionGuards, http: str = "auto") -> type:
    """A guarded uvicorn protocol class bound to ``guards`` (pass it as ``uvicorn.Config(http=...)``):
    ``http`` "httptools", "h11", or "auto" (httptools when it is installed)."""
    if http == "auto":
        http = "h11" if HttpToolsProtocol is None else "httptools"
    if http == "httptools":
        if HttpToolsProtocol is None:
            raise ImportError("http='httptools' needs the httptools package (pip install httptools)")
        return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"guards": guards})
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guards": guards})


class Guarded:
    """The deadlines and the cap, for a uvicorn protocol class that reports its request's phases:
    :meth:`_head_data` (bytes of a head), :meth:`_body_begins`, :meth:`_body_data`, :meth:`_request_in`."""

    guards: ConnectionGuards

    def _guard_init(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._phase = "head"  # head: no request in flight; body: receiving one; app: being answered
        self._idle_since = time.monotonic()
        self._head_bytes = 0
        self._body_start = 0.0
        self._body_bytes = 0

    # ---- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.guards.stats.open = len(self.connections)
        if len(self.connections) > self.guards.max_connections and not self._reap_one():
            self.guards.stats.refused_busy += 1
            self._reply_and_close(503, "ServiceBusyError", "too many open connections; retry shortly")
            return
        self._arm(self.guards.header_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._phase, self._idle_since, self._head_bytes = "head", time.monotonic(), 0
        self._cancel()  # uvicorn's keep-alive timer runs now; a new head re-arms ours

    def connection_lost(self, exc) -> None:
        self._cancel()
        super().connection_lost(exc)
        self.guards.stats.open = len(self.connections)

    # ---- phases ----------------------------------------------------------------------------------

    def _head_data(self, n: int) -> None:
        if self._phase != "head" or self._timer is None:
            self._phase = "head"
            self._arm(self.guards.header_timeout)
        self._head_bytes += n

    def _body_begins(self) -> None:
        self._phase, self._body_start, self._body_bytes = "body", time.monotonic(), 0
        self._arm_body()

    def _body_data(self, n: int) -> None:
        self._body_bytes += n
        self._arm_body()

    def _arm_body(self) -> None:
        g = self.guards
        self._arm_at(self._body_start + g.body_timeout + self._body_bytes / g.body_min_rate)

    def _request_in(self) -> None:
        self._phase = "app"
        self._cancel()

    # ---- timers ----------------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._arm_at(time.monotonic() + delay)

    def _arm_at(self, when: float) -> None:
        self._cancel()
        self._timer = self.loop.call_later(max(0.0, when - time.monotonic()), self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._phase == "body":
            self.guards.stats.body_timeouts += 1
            started = self.cycle is not None and self.cycle.response_started
            if not started:
                self._reply_and_close(
                    408,
                    "RequestTimeoutError",
                    f"the request body arrived too slowly (under {self.guards.body_min_rate} bytes/s "
                    f"after {self.guards.body_timeout:g} s); send it faster or in smaller requests",
                )
                return
        elif self._phase == "head":
            self.guards.stats.head_timeouts += 1
            if self._head_bytes:
                self._reply_and_close(
                    408,
                    "RequestTimeoutError",
                    f"the request head was not complete within {self.guards.header_timeout:g} s",
                )
                return
        self.transport.close()

    # ---- the cap ---------------------------------------------------------------------------------

    def _reap_one(self) -> bool:
        """Close the connection idle longest with no request in flight; False if there is none."""
        idle = [
            c
            for c in self.connections
            if c is not self
            and isinstance(c, Guarded)
            and c._phase == "head"
            and not c.transport.is_closing()
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c._idle_since)
        victim._cancel()
        victim.transport.close()
        self.guards.stats.reaped_idle += 1
        return True

    def _reply_and_close(self, status: int, error: str, detail: str) -> None:
        body = error_bytes(status, error, detail)
        reason = {408: "Request Timeout", 503: "Service Unavailable"}.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self._cancel()
        self.transport.write(head + body)
        self.transport.close()


class GuardedH11Protocol(Guarded, H11Protocol):
    """uvicorn's h11 protocol with the guards (phases read from h11's state after each chunk)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._guard_init()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel()
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":  # this chunk ended the head: its body bytes are not counted
                self._body_begins()
            else:
                self._body_data(len(data))
        elif state is h11.IDLE:  # part of a request head
            self._head_data(len(data))
        else:  # the whole request is in: the app answers it
            self._request_in()


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol with the guards (phases from the parser's callbacks)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._guard_init()

        def data_received(self, data: bytes) -> None:
            if self._phase == "head":
                self._head_data(len(data))
            super().data_received(data)
            if self.transport.is_closing():
                self._cancel()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._body_begins()  # a request without a body completes at once (on_message_complete)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._body_data(len(body))

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._request_in()
