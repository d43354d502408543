"""One place that turns exceptions into HTTP responses.

Every ``VqdbError`` subclass maps to a 4xx status with its message; request-validation errors are
422; anything else is a 500 that is logged (and is a bug: fuzz tests assert it never happens).
All error bodies have the shape of :class:`vqdb.server.schemas.ErrorPublic`.
"""

from __future__ import annotations

import logging

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


def status_of(exc: E.VqdbError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(status: int, error: str, detail) -> dict:
    return {"status": status, "error": error, "detail": detail}


async def _vqdb_error(request: Request, exc: E.VqdbError) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, type(exc).__name__, str(exc)), status_code=status, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # keep location and message; drop echoed inputs (they may be megabytes of floats)
    problems = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(500, "InternalError", "internal server error (logged)"), status_code=500)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(E.VqdbError, _vqdb_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
