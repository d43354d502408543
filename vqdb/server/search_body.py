"""Parse a search body into a :class:`SearchRequest` and its (n, dim) float32 query matrix.

The raw body goes through pydantic-core's JSON validator in one pass (Rust): FastAPI's own body path
decodes with the stdlib ``json`` first and validates the Python objects after, which cost about 0.5 ms
for one 384-d vector. (orjson + ``np.array`` on the vector measured no faster than pydantic-core here,
and orjson turns integers beyond 64 bits into floats, which would change what a filter means.)

Query vectors may also come as base64 (``vector_b64`` / ``vectors_b64``) of little-endian float32 or
float16 (``dtype``): row-major (n, dim), no per-number parsing at all.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from .._validation import as_float32_matrix
from ..errors import DimensionMismatchError, InvalidInputError
from .schemas import SearchRequest

QUERY_FIELDS = ("vector", "vectors", "id", "vector_b64", "vectors_b64")
B64_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def parse(raw: bytes) -> SearchRequest:
    """``raw`` through the schema in one pass of pydantic-core's JSON parser; a mismatch is the same
    422 FastAPI gives for a body model."""
    try:
        return SearchRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def options(values: dict) -> SearchRequest:
    """Search options given as query parameters (``/search/arrow``) through the same schema; a mismatch
    is a 422 naming the parameter."""
    try:
        return SearchRequest.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in errors]) from None


def given_queries(body: SearchRequest) -> list[str]:
    """The query fields the request set (exactly one is allowed)."""
    return [f for f in QUERY_FIELDS if getattr(body, f) is not None]


def is_batch(body: SearchRequest) -> bool:
    """True when the answer is one list of hits per query (``vectors`` / ``vectors_b64``)."""
    return body.vectors is not None or body.vectors_b64 is not None


def json_matrix(rows: list[list[float]], dim: int, name: str, *, max_batch: int) -> np.ndarray:
    """(n, dim) float32 from the request's JSON rows."""
    if len(rows) > max_batch:
        raise InvalidInputError(f"{len(rows)} query vectors; this server takes at most {max_batch} per call")
    widths = {len(r) for r in rows}
    if widths != {dim}:
        raise DimensionMismatchError(
            f"query vectors have {sorted(widths)} dimensions; collection {name!r} expects {dim}"
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused
        return as_float32_matrix(np.asarray(rows, dtype=np.float32), dim, name="query")


def b64_matrix(text: str, dtype: str, dim: int, *, one: bool, max_batch: int) -> np.ndarray:
    """(n, dim) float32 from base64 of little-endian ``dtype`` values, row-major (``one``: n must be 1)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"the query vector is not valid base64: {exc}") from None
    item = B64_DTYPES[dtype]
    row = dim * item.itemsize
    if not raw or len(raw) % row:
        raise DimensionMismatchError(
            f"the query decodes to {len(raw)} bytes, not a whole number of {dim}-d {dtype} vectors "
            f"({row} bytes each)"
        )
    n = len(raw) // row
    if one and n != 1:
        raise DimensionMismatchError(
            f"'vector_b64' holds {n} vectors of {dim} {dtype} values; use 'vectors_b64' for a batch"
        )
    if n > max_batch:
        raise InvalidInputError(f"{n} query vectors; this server takes at most {max_batch} per call")
    x = np.frombuffer(raw, dtype=item).reshape(n, dim)
    with np.errstate(over="ignore"):
        return as_float32_matrix(x, dim, name="query")
