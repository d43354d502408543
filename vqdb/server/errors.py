"""One place that turns exceptions into HTTP responses.

Every ``VqdbError`` subclass maps to a 4xx status with its message; request-validation errors are
422. A few builtin exceptions that only bad input can cause (a filter nested thousands deep ->
``RecursionError``, an integer beyond int64 -> ``OverflowError``) are 400 as well, and running out
of file descriptors is a 503 with ``Retry-After``. Anything else is a bug: :class:`GuardMiddleware`
answers it with a 500 in the same shape, naming an incident id and never a traceback, and logs the
traceback under that id. All error bodies have the shape of :class:`vqdb.server.schemas.ErrorPublic`,
and no body names a server path: :func:`scrub` replaces the data directory (and the temporary and
working directories) with a placeholder.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors as E

log = logging.getLogger("vqdb.server")

# most specific first: the first matching class wins
STATUS_OF: list[tuple[type[E.VqdbError], int]] = [
    (E.AuthenticationError, 401),
    (E.PermissionDeniedError, 403),
    (E.NotFoundError, 404),
    (E.AlreadyExistsError, 409),
    (E.DamagedCollectionError, 409),
    (E.DuplicateIdError, 409),
    (E.RequestTooLargeError, 413),
    (E.IncompatibleFormatError, 422),
    (E.InvalidInputError, 400),
    (E.DTypeError, 400),
    (E.UnknownNameError, 400),
    (E.NotFittedError, 409),
    (E.BackendUnavailableError, 503),
    (E.VqdbError, 400),
]

# builtin exceptions that only the request's content can cause: (class, status, error name, detail)
INPUT_FAULTS: list[tuple[type[BaseException], int, str, str]] = [
    (
        RecursionError,
        400,
        "InvalidInputError",
        "the request nests too deeply (e.g. a filter's $and / $or / $not); flatten it",
    ),
    (OverflowError, 400, "InvalidInputError", "a number in the request is out of range"),
    (UnicodeError, 400, "InvalidInputError", "the request holds text that is not valid UTF-8"),
    (MemoryError, 413, "RequestTooLargeError", "the request needs more memory than this server can give it"),
]
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def status_of(exc: E.VqdbError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 400


# ---- no server paths in bodies --------------------------------------------------------------------

_roots: dict[str, str] = {}


def add_scrubbed_root(path, placeholder: str) -> None:
    """Replace ``path`` (as given and resolved) by ``placeholder`` in every error body from now on."""
    for form in {os.path.abspath(os.fspath(path)), os.path.realpath(os.fspath(path))}:
        if len(form) > 1:
            _roots[form.rstrip(os.sep)] = placeholder


def scrub(text: str) -> str:
    """``text`` with known server directories replaced (longest first), e.g. ``<data>/collections/x``."""
    for root in sorted(_roots, key=len, reverse=True):
        if root in text:
            text = re.sub(re.escape(root) + r"(?=$|[/\\'\"\s:,)\]])", _roots[root], text)
    return text


def error_body(status: int, error: str, detail) -> dict:
    if isinstance(detail, str):
        detail = scrub(detail)
    return {"status": status, "error": error, "detail": detail}


def error_bytes(status: int, error: str, detail) -> bytes:
    return json.dumps(error_body(status, error, detail)).encode()


# ---- handlers (inside the app) --------------------------------------------------------------------


async def _vqdb_error(request: Request, exc: E.VqdbError) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, type(exc).__name__, str(exc)), status_code=status, headers=headers)


def response_for(exc: BaseException) -> JSONResponse | None:
    """The response the app's handlers give ``exc`` (for code that runs outside FastAPI's routing, e.g.
    the search lane), or None for an exception they do not handle (a bug: let the guard answer it)."""
    if isinstance(exc, RequestValidationError):
        return validation_response(exc)
    found = classify(exc)
    if found is None:
        return None
    status, name, detail, headers = found
    return JSONResponse(error_body(status, name, detail), status_code=status, headers=headers or None)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return validation_response(exc)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    # keep location and message; drop echoed inputs (they may be megabytes of floats)
    problems = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": scrub(str(err.get("msg", ""))),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()[:20]
    ]
    return JSONResponse(error_body(422, "RequestValidationError", problems), status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        error_body(exc.status_code, "HTTPException", str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def classify(exc: BaseException) -> tuple[int, str, str, dict[str, str]] | None:
    """``(status, error, detail, headers)`` for an exception the request's content explains, else None."""
    if isinstance(exc, E.VqdbError):
        status = status_of(exc)
        return status, type(exc).__name__, str(exc), ({"WWW-Authenticate": "Bearer"} if status == 401 else {})
    for cls, status, name, detail in INPUT_FAULTS:
        if isinstance(exc, cls):
            return status, name, detail, {}
    if isinstance(exc, OSError) and exc.errno in OUT_OF_DESCRIPTORS:
        return (
            503,
            "ServiceBusyError",
            "the server is out of file descriptors; retry shortly",
            {"Retry-After": "1"},
        )
    return None


async def _input_fault(request: Request, exc: Exception) -> JSONResponse:
    status, name, detail, headers = classify(exc) or (500, "InternalError", "internal server error", {})
    return JSONResponse(error_body(status, name, detail), status_code=status, headers=headers or None)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` (the last-resort guard is :class:`GuardMiddleware`)."""
    app.add_exception_handler(E.VqdbError, _vqdb_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for cls, *_ in INPUT_FAULTS:
        app.add_exception_handler(cls, _input_fault)
    app.add_exception_handler(OSError, _os_error)


async def _os_error(request: Request, exc: OSError):
    if exc.errno in OUT_OF_DESCRIPTORS:
        return await _input_fault(request, exc)
    raise exc  # a real I/O failure: the guard answers 500 and logs it


# ---- last resort (outside the app's handlers) -----------------------------------------------------


class GuardMiddleware:
    """Answer any exception that escaped the handlers: a classified one with its 4xx, anything else with
    a 500 ``InternalError`` naming an incident id (the traceback goes to the log under that id, never
    into the body). Never re-raises, so the ASGI server never prints its own traceback."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_watch(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception as exc:  # noqa: BLE001 - the last resort, by design
            messages = last_resort(exc, scope)
            if started:
                return  # the response is under way: nothing more can be said; the connection ends
            for message in messages:
                await send(message)


def last_resort(exc: Exception, scope) -> list[dict]:
    """The response messages for an exception no handler answered: its 4xx when the request's content
    explains it, else a 500 naming an incident id (the traceback is logged under that id)."""
    found = classify(exc)
    if found is None:
        incident = uuid.uuid4().hex[:12]
        log.error(
            "incident %s: unhandled %s on %s %s",
            incident,
            type(exc).__name__,
            scope.get("method", ""),
            scope.get("path", ""),
            exc_info=exc,
        )
        found = (500, "InternalError", f"internal server error (incident {incident}, logged)", {})
    status, name, detail, headers = found
    body = error_bytes(status, name, detail)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    ]


add_scrubbed_root(tempfile.gettempdir(), "<tmp>")
