"""Bounded request bodies: an ASGI middleware that answers 413 once a body passes its limit.

The limit is checked against ``Content-Length`` before any byte is read, and counted while a
chunked body streams in; the app never sees more than ``limit`` bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request

from ..errors import RequestTooLargeError
from .errors import error_body


def _reply(status: int, error: str, detail: str):
    body = json.dumps(error_body(status, error, detail)).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    """Reject request bodies larger than ``limit_for(path)`` bytes with 413."""

    def __init__(self, app, *, limit_for: Callable[[str], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        refused = declared_refusal(scope, limit)
        if refused is not None:
            for message in refused:
                await send(message)
            return

        state = {"received": 0, "started": False, "cut": False}

        async def limited_receive():
            if state["cut"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit and not state["started"]:
                    state["cut"] = True
                    for reply in _reply(413, "RequestTooLargeError", _too_large(state["received"], limit)):
                        await send(reply)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["cut"]:
                return  # the 413 has been sent; drop whatever the app answers to the disconnect
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def declared_refusal(scope, limit: int):
    """The 400 / 413 response messages (``connection: close``) for a malformed ``Content-Length`` or
    one over ``limit``, else None."""
    declared = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1
    if declared is not None and declared < 0:
        return _reply(400, "InvalidInputError", "malformed Content-Length header")
    if declared is not None and declared > limit:
        return _reply(413, "RequestTooLargeError", _too_large(declared, limit))
    return None


async def read_within(receive, limit: int) -> bytes | None:
    """The whole body from an ASGI ``receive``, or None when the client disconnected first; a body
    passing ``limit`` bytes raises :class:`BodyCut` with its 413 messages (nothing more is read)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyCut(_reply(413, "RequestTooLargeError", _too_large(size, limit)))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyCut(Exception):
    """A body over its limit; ``messages`` is the 413 answer (``connection: close``)."""

    def __init__(self, messages):
        super().__init__("request body too large")
        self.messages = messages


def inflate_limit(size: int, *, ratio: float, floor: int, cap: int) -> int:
    """Bytes a compressed body or file of ``size`` bytes may unpack to: ``ratio`` times its size, at
    least ``floor`` (what an uncompressed body may be anyway), at most ``cap``."""
    return int(min(cap, max(floor, ratio * size)))


def _too_large(size: int, limit: int) -> str:
    return (
        f"request body of {size} bytes is over this endpoint's limit of {limit} bytes; "
        "split the upload into smaller batches"
    )


async def read_body(request: Request) -> bytes:
    """The whole raw body (its size is bounded by :class:`BodyLimitMiddleware`)."""
    try:
        return await request.body()
    except ClientDisconnect:  # the limit middleware cut the body and has already answered 413
        raise RequestTooLargeError("request body too large") from None
