"""OpenAPI ``responses`` declarations shared by the routers (every error has the ErrorPublic shape)."""

from __future__ import annotations

from ..schemas import ErrorPublic


def errors(*codes: int) -> dict[int | str, dict]:
    text = {
        400: "invalid input (the message says what is expected)",
        401: "missing or unknown API key",
        403: "the key's scope does not allow this, or a non-loopback client without configured keys",
        404: "no such collection, point or snapshot",
        409: "already exists, or the collection is damaged on disk (DELETE frees its name)",
        413: "request body too large",
        422: "request does not match the schema, or an incompatible snapshot",
        503: "not ready",
    }
    return {code: {"model": ErrorPublic, "description": text[code]} for code in codes}


# every protected route may answer these
PROTECTED = errors(400, 401, 403, 413, 422)
