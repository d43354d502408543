"""Search: one vector, a batch of vectors, or the stored vector of a point; filters and knobs."""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Annotated, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..._validation import as_float32_matrix
from ...errors import InvalidInputError, NotFoundError
from .. import errors as errors_module
from .. import search_body
from ..auth import ReadAccess, Scope, refusal
from ..collections import Collection
from ..deps import CollectionDep, MetricsDep, SettingsDep
from ..ingest import ARROW_STREAM, queries_from_arrow, unique_ids
from ..limits import BodyCut, declared_refusal, read_body, read_within
from ..schemas import NAME_PATTERN, SearchRequest, SearchResponse
from ._responses import PROTECTED, errors

router = APIRouter(prefix="/collections/{name}", tags=["search"], responses={**PROTECTED, **errors(404)})


_NAME = re.compile(NAME_PATTERN)

# JSON bytes of one hit without payload or vector ({"id":..,"score":..}), and of one vector value
HIT_BYTES = 48
FLOAT_BYTES = 14


@router.post(
    "/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    dependencies=[ReadAccess],
    summary="k nearest points to a vector, a batch of vectors, or a stored point",
    description="Query vectors as JSON numbers (`vector` / `vectors`), as base64 of little-endian float32 "
    "or float16 (`vector_b64` / `vectors_b64` with `dtype`), or the stored vector of a point (`id`).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SearchRequest.model_json_schema()}},
        }
    },
)
async def search(request: Request, collection: CollectionDep, settings: SettingsDep, metrics: MetricsDep):
    # (served by the search lane, serve_search, in the app; this route declares the operation)
    return json_response(await answer(await read_body(request), collection, settings, metrics))


# A search of one query vector over at most this many rows runs on the event loop's thread (a few ms
# at most): the hop to a worker thread and back cost more server CPU than the JSON work around it.
INLINE_ROWS = 1 << 18


async def answer(raw: bytes, collection: Collection, settings, metrics, *, start=None) -> bytes:
    """The JSON answer to the raw search body ``raw`` (``start``: the request's perf_counter time)."""
    start = time.perf_counter() if start is None else start
    body = parsed(raw, settings)  # on the event loop: tens of microseconds for one 384-d vector

    def queries() -> np.ndarray:
        return _queries(body, collection, settings)

    if not search_body.is_batch(body) and collection.small_enough(INLINE_ROWS):
        data, n = searched(body, queries, collection, settings, start=start)
        metrics.queries.inc(n)
        return data
    return await respond(body, queries, collection, settings, metrics, start=start)


def answer_now(raw: bytes, collection, settings, *, start: float) -> tuple[bytes, int]:
    """:func:`answer` on the calling thread: (the JSON answer, number of query vectors searched)."""
    body = parsed(raw, settings)
    return searched(body, lambda: _queries(body, collection, settings), collection, settings, start=start)


def parsed(raw: bytes, settings) -> SearchRequest:
    """The validated search body: exactly one query field, ``k`` within the server's limit."""
    body = search_body.parse(raw)
    given = search_body.given_queries(body)
    if len(given) != 1:
        raise InvalidInputError(
            f"give exactly one of {', '.join(repr(f) for f in search_body.QUERY_FIELDS)}; got {given or 'none'}"
        )
    if body.k > settings.max_k:
        raise InvalidInputError(f"k={body.k} is above this server's limit of {settings.max_k}")
    return body


async def respond(
    body: SearchRequest, queries_of, collection: Collection, settings, metrics, *, start, batch=None
) -> bytes:
    """Search the matrix ``queries_of()`` with ``body``'s options and answer (one list of hits per query
    when ``batch``; None: as the body says), in a worker thread (one hop: the kernels release the GIL,
    so searches of concurrent requests overlap)."""

    def work() -> bytes:
        data, n = searched(body, queries_of, collection, settings, start=start, batch=batch)
        metrics.queries.inc(n)
        return data

    return await in_worker(work)


def searched(
    body: SearchRequest, queries_of, collection, settings, *, start, batch=None
) -> tuple[bytes, int]:
    """(the JSON answer, number of query vectors) of searching ``queries_of()`` with ``body``'s options."""
    queries = queries_of()
    result = collection.search(
        queries, body.k, filter=body.filter, nprobe=body.nprobe, rerank=body.rerank, ef=body.ef
    )
    per_query = search_body.is_batch(body) if batch is None else batch
    results = _hits(collection, np.asarray(result.ids), np.asarray(result.scores), body, per_query)
    data = bounded_json({"results": results, "time_ms": (time.perf_counter() - start) * 1e3}, settings)
    return data, queries.shape[0]


@router.post(
    "/search/arrow",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    dependencies=[ReadAccess],
    summary="k nearest points to each query vector of an Arrow IPC stream (a batch)",
    description="Body: an Arrow IPC *stream* with one column `vector` (fixed_size_list or list of float32 / "
    "float16 / float64), one row per query; the options are query parameters. The answer is that of "
    "`vectors`: one list of hits per query, in the order of the rows.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def search_arrow(
    request: Request,
    collection: CollectionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    k: Annotated[int, Query(ge=1)] = 10,
    filter: Annotated[
        str | None, Query(max_length=1 << 20, description="a payload filter as JSON text")
    ] = None,
    nprobe: Annotated[int | None, Query(ge=1, le=1 << 20)] = None,
    ef: Annotated[int | None, Query(ge=1, le=1 << 16)] = None,
    rerank: Annotated[str | None, Query(max_length=16, description="true, false, or a factor >= 1")] = None,
    with_payload: bool = True,
    with_vector: bool = False,
    layout: Literal["hits", "columns"] = "hits",
):
    start = time.perf_counter()
    raw = await read_body(request)
    options = {"k": k, "nprobe": nprobe, "ef": ef, "rerank": rerank, "with_payload": with_payload}
    options.update(with_vector=with_vector, layout=layout)
    if filter is not None:
        try:
            options["filter"] = orjson.loads(filter)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"the filter is not JSON: {exc}") from None
    body = search_body.options({key: value for key, value in options.items() if value is not None})
    if body.k > settings.max_k:
        raise InvalidInputError(f"k={body.k} is above this server's limit of {settings.max_k}")

    def queries() -> np.ndarray:
        x = queries_from_arrow(raw, collection.dim, max_inflated=settings.max_body_bytes)
        if x.shape[0] > settings.max_batch:
            raise InvalidInputError(
                f"{x.shape[0]} query vectors; this server takes at most {settings.max_batch} per call"
            )
        check_response_size(x.shape[0], body.k, collection.dim, body.with_vector, settings)
        return x

    return json_response(await respond(body, queries, collection, settings, metrics, start=start, batch=True))


ROUTE = "/collections/{name}/search"
JSON_HEADERS = [(b"content-type", b"application/json")]


async def serve_search(scope, receive, send, name: str) -> None:
    """Serve ``POST /collections/{name}/search`` as plain ASGI, ahead of FastAPI (its router, dependency
    solving, telemetry hooks and the middleware stack cost about as much CPU as the HTTP parsing).

    Everything the stack does for this route is done here, in the same order and with the same answers:
    a malformed or too large ``Content-Length`` is refused first (400 / 413), then a key that does not
    allow ``read`` (401 / 403, before any byte of the body is read), then a body passing the limit while
    it streams (413); errors get the app's handlers' responses, anything else the guard's 500 with an
    incident id; the request is counted and timed in the metrics under its route template.
    """
    start = time.perf_counter()
    state = scope["app"].state
    status = 500
    try:
        messages = await _search_messages(scope, receive, name, state, start)
    except Exception as exc:  # noqa: BLE001 - answered as the handlers / the guard would
        response = errors_module.response_for(exc)
        if response is None:
            messages = errors_module.last_resort(exc, scope)
        else:
            messages = [
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                },
                {"type": "http.response.body", "body": response.body},
            ]
    try:
        if messages:
            status = messages[0]["status"]
            for message in messages:
                await send(message)
    finally:
        state.metrics.observe("POST", ROUTE, status, time.perf_counter() - start)


async def _search_messages(scope, receive, name: str, state, start: float) -> list[dict]:
    limit = state.limit_for(scope["path"])
    refused = declared_refusal(scope, limit) or refusal(scope, Scope.read)
    if refused is not None:
        return refused
    try:
        raw = await read_within(receive, limit)
    except BodyCut as cut:
        return cut.messages
    if raw is None:  # the client went away
        return []
    collection = state.store.get(name)
    status = 200
    served = None if state.readers is None else await state.readers.search(collection, raw)
    if served is None:
        data = await answer(raw, collection, state.settings, state.metrics, start=start)
    else:
        status, data, queries = served
        state.metrics.queries.inc(queries)
        state.metrics.reader_searches.inc()
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(data)).encode())],
        },
        {"type": "http.response.body", "body": data},
    ]


def search_target(scope) -> str | None:
    """The collection name of a ``POST /collections/<name>/search`` request, else None."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    path = scope.get("path", "")
    if not (path.startswith("/collections/") and path.endswith("/search")):
        return None
    name = path[len("/collections/") : -len("/search")]
    return name if _NAME.fullmatch(name) else None


def check_response_size(n_queries: int, k: int, dim: int, with_vector: bool, settings) -> None:
    """Refuse, before searching, a search whose answer would pass ``max_hits`` or ``max_response_bytes``."""
    hits = n_queries * k
    if hits > settings.max_hits:
        raise InvalidInputError(
            f"{n_queries} queries x k={k} = {hits} hits; this server returns at most {settings.max_hits} "
            "per call (VQDB_MAX_HITS): lower k or split the batch"
        )
    estimate = hits * (HIT_BYTES + (dim * FLOAT_BYTES if with_vector else 0))
    if estimate > settings.max_response_bytes:
        raise InvalidInputError(
            f"the answer would be about {estimate} bytes, over this server's limit of "
            f"{settings.max_response_bytes} (VQDB_MAX_RESPONSE_BYTES): lower k, split the batch or "
            "leave out with_vector"
        )


def bounded_json(content: dict, settings) -> bytes:
    """``content`` as JSON bytes (orjson), refused (400) when they are over ``max_response_bytes``."""
    data = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(data) > settings.max_response_bytes:
        raise InvalidInputError(
            f"the answer is {len(data)} bytes, over this server's limit of {settings.max_response_bytes} "
            "(VQDB_MAX_RESPONSE_BYTES): lower k, split the batch, or ask for fewer payload fields"
        )
    return data


def json_response(data: bytes) -> Response:
    return Response(data, media_type="application/json")


def _queries(body: SearchRequest, collection: Collection, settings) -> np.ndarray:
    """The (n, dim) float32 query matrix; the response-size check comes first for JSON vectors."""
    dim = collection.dim
    if body.vector_b64 is not None or body.vectors_b64 is not None:
        one = body.vector_b64 is not None
        queries = search_body.b64_matrix(
            body.vector_b64 if one else body.vectors_b64,
            body.dtype,
            dim,
            one=one,
            max_batch=settings.max_batch,
        )
        check_response_size(queries.shape[0], body.k, dim, body.with_vector, settings)
        return queries
    n = len(body.vectors) if body.vectors is not None else 1
    check_response_size(n, body.k, dim, body.with_vector, settings)
    if body.id is not None:
        (record,) = collection.fetch(unique_ids([body.id]), with_vector=True)
        if record is None:
            raise NotFoundError(f"point {body.id} does not exist in collection {collection.name!r}")
        return as_float32_matrix(np.asarray(record["vector"], dtype=np.float32)[None, :], dim)
    rows = [body.vector] if body.vector is not None else body.vectors
    return search_body.json_matrix(rows, dim, collection.name, max_batch=settings.max_batch)


def _hits(collection: Collection, ids: np.ndarray, scores: np.ndarray, body: SearchRequest, batch: bool):
    """The ``results`` of the response: per query the hits best first (``layout="hits"``: JSON-ready
    dicts, ``payload`` / ``vector`` only when asked; ``"columns"``: lists of ids and scores)."""
    keep = ((ids != None) if ids.dtype == object else (ids >= 0)) & np.isfinite(scores)  # noqa: E711
    records = {}
    if body.with_payload or body.with_vector:
        found = np.unique(ids[keep])
        if found.size:
            for record in collection.fetch(found, with_vector=body.with_vector):
                if record is not None:
                    records[record["id"]] = record
    if body.layout == "columns":
        return _columns(ids, scores, keep, records, body, batch)
    if not records and keep.all():  # the common case: no payload, k hits per query
        out = [
            [{"id": i, "score": s} for i, s in zip(row_ids, row_scores)]
            for row_ids, row_scores in zip(ids.tolist(), scores.tolist())
        ]
        return out if batch else out[0]
    out = []
    for row_ids, row_scores, row_keep in zip(ids.tolist(), scores.tolist(), keep.tolist()):
        row = []
        for i, s, k in zip(row_ids, row_scores, row_keep):
            if not k or not math.isfinite(s):
                continue
            hit = {"id": i, "score": s}
            if records:
                record = records.get(i, {})
                if body.with_payload and record.get("payload") is not None:
                    hit["payload"] = record["payload"]
                if body.with_vector and record.get("vector") is not None:
                    hit["vector"] = record["vector"]
            row.append(hit)
        out.append(row)
    return out if batch else out[0]


def _columns(ids, scores, keep, records: dict, body: SearchRequest, batch: bool) -> dict:
    """``{"ids", "scores"[, "payloads"][, "vectors"]}``: (m, <=k) lists for a batch, (<=k,) for one query;
    int ids and scores go to orjson as NumPy arrays when every row is full (no Python object per hit)."""
    if keep.all() and ids.dtype != object:
        out = {"ids": np.ascontiguousarray(ids), "scores": np.ascontiguousarray(scores, dtype=np.float32)}
        rows = ids.tolist() if records else None
    else:
        rows = [r[kp].tolist() for r, kp in zip(ids, keep)]
        out = {"ids": rows, "scores": [s[kp].astype(np.float64).tolist() for s, kp in zip(scores, keep)]}
    for field, wanted in (("payload", body.with_payload), ("vector", body.with_vector)):
        if wanted:
            out[field + "s"] = [[records.get(i, {}).get(field) for i in row] for row in rows]
    return out if batch else {key: value[0] for key, value in out.items()}


async def in_worker(fn):
    """``fn()`` in the event loop's default worker pool (one hop, cheaper than anyio's limiter)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)
