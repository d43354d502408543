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
from ..auth import ReadAccess
from ..collections import Collection
from ..deps import CollectionDep, MetricsDep, SettingsDep
from ..ingest import ARROW_STREAM, queries_from_arrow, unique_ids
from ..limits import read_body
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
    # (served by SearchLane in the app; this route declares the operation and answers without the lane)
    return await answer(await read_body(request), collection, settings, metrics)


async def answer(raw: bytes, collection: Collection, settings, metrics) -> Response:
    """The search response for the raw JSON body ``raw``."""
    start = time.perf_counter()
    body = search_body.parse(raw)  # on the event loop: tens of microseconds for one 384-d vector
    given = search_body.given_queries(body)
    if len(given) != 1:
        raise InvalidInputError(
            f"give exactly one of {', '.join(repr(f) for f in search_body.QUERY_FIELDS)}; got {given or 'none'}"
        )
    if body.k > settings.max_k:
        raise InvalidInputError(f"k={body.k} is above this server's limit of {settings.max_k}")

    return await respond(
        body, lambda: _queries(body, collection, settings), collection, settings, metrics, start=start
    )


async def respond(
    body: SearchRequest, queries_of, collection: Collection, settings, metrics, *, start, batch=None
) -> Response:
    """Search the matrix ``queries_of()`` with ``body``'s options and answer (one list of hits per query
    when ``batch``; None: as the body says), in a worker thread (one hop: the kernels release the GIL,
    so searches of concurrent requests overlap)."""

    def work() -> Response:
        queries = queries_of()
        result = collection.search(
            queries, body.k, filter=body.filter, nprobe=body.nprobe, rerank=body.rerank, ef=body.ef
        )
        metrics.queries.inc(queries.shape[0])
        per_query = search_body.is_batch(body) if batch is None else batch
        results = _hits(collection, np.asarray(result.ids), np.asarray(result.scores), body, per_query)
        return bounded_json({"results": results, "time_ms": (time.perf_counter() - start) * 1e3}, settings)

    return await in_worker(work)


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

    return await respond(body, queries, collection, settings, metrics, start=start, batch=True)


class SearchLane:
    """ASGI middleware serving ``POST /collections/{name}/search`` without Starlette's router and
    FastAPI's dependency solving (about a third of the server's CPU time per search request).

    It sets ``scope["route"]`` to the search route, so the middlewares outside it see the request as
    before: :class:`~vqdb.server.auth.AuthMiddleware` checks the key on the first read of the body,
    metrics label it by its path template, the body limit applies. Errors get the app's handlers'
    responses (:func:`vqdb.server.errors.response_for`); a name that is not a collection name, and every
    other request, goes on to the app unchanged.
    """

    def __init__(self, app):
        self.app = app
        (self.route,) = [r for r in router.routes if r.path.endswith("/search") and "POST" in r.methods]

    async def __call__(self, scope, receive, send):
        name = _search_target(scope)
        if name is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        scope["path_params"] = {"name": name}
        state = scope["app"].state
        try:
            raw = await read_body(Request(scope, receive))  # the key is checked on this first read
            response = await answer(raw, state.store.get(name), state.settings, state.metrics)
        except Exception as exc:  # noqa: BLE001 - answered as the app's handlers would, or re-raised
            response = errors_module.response_for(exc)
            if response is None:
                raise
        await response(scope, receive, send)


def _search_target(scope) -> str | None:
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


def bounded_json(content: dict, settings) -> Response:
    """``content`` as a JSON response (orjson), refused (400) when it is over ``max_response_bytes``."""
    data = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(data) > settings.max_response_bytes:
        raise InvalidInputError(
            f"the answer is {len(data)} bytes, over this server's limit of {settings.max_response_bytes} "
            "(VQDB_MAX_RESPONSE_BYTES): lower k, split the batch, or ask for fewer payload fields"
        )
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
