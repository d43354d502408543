"""Points: upsert (JSON, base64 float32, Arrow IPC stream), get, delete by ids or by filter.

Bulk bodies are parsed and ingested in a worker thread so searches keep being served.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from ...errors import InvalidInputError, NotFoundError
from ..auth import ReadAccess, WriteAccess
from ..collections import Collection
from ..deps import CollectionDep, MetricsDep, SettingsDep
from ..ingest import ARROW_STREAM, from_arrow_stream, from_b64, from_points, unique_ids
from ..limits import inflate_limit, read_body
from ..schemas import (
    DeleteResult,
    PayloadResult,
    PointList,
    PointPublic,
    PointsB64,
    PointsDelete,
    PointsGet,
    PointsPayload,
    PointsScroll,
    PointsUpsert,
    ScrollResult,
    UpsertResult,
)
from ._responses import PROTECTED, errors
from .search import check_response_size

router = APIRouter(
    prefix="/collections/{name}/points", tags=["points"], responses={**PROTECTED, **errors(404)}
)


def _upsert(collection: Collection, metrics, vectors, ids, payloads, *, replace: bool = True) -> UpsertResult:
    if ids is None or not replace:
        if ids is None and replace:
            raise InvalidInputError("an upsert needs ids; omit them only with upsert=false (an add)")
        given = ids is not None
        ids, count = collection.add_points(vectors, ids, payloads)
        metrics.vectors_ingested.inc(len(ids))
        return UpsertResult(upserted=len(ids), count=count, ids=None if given else ids.tolist())
    count = collection.upsert(vectors, ids, payloads)
    metrics.vectors_ingested.inc(len(ids))
    return UpsertResult(upserted=len(ids), count=count)


@router.post(
    "",
    response_model=UpsertResult,
    response_model_exclude_none=True,
    dependencies=[WriteAccess],
    responses=errors(409),
    summary="Upsert points given as JSON (id, vector, payload)",
)
def upsert_points(body: PointsUpsert, collection: CollectionDep, metrics: MetricsDep) -> UpsertResult:
    vectors, ids, payloads = from_points(body.points, collection.dim)
    return _upsert(collection, metrics, vectors, ids, payloads, replace=body.upsert)


@router.post(
    "/b64",
    response_model=UpsertResult,
    response_model_exclude_none=True,
    dependencies=[WriteAccess],
    responses=errors(409),
    summary="Bulk upsert: ids + base64 of little-endian float32 vectors (+ payloads)",
    description="The body is parsed and validated in a worker thread, so large batches do not hold up searches.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PointsB64.model_json_schema()}},
        }
    },
)
async def upsert_b64(request: Request, collection: CollectionDep, metrics: MetricsDep) -> UpsertResult:
    raw = await read_body(request)

    def work() -> UpsertResult:
        try:
            body = PointsB64.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_input=False)) from None
        vectors, ids, payloads = from_b64(body, collection.dim)
        return _upsert(collection, metrics, vectors, ids, payloads, replace=body.upsert)

    return await anyio.to_thread.run_sync(work)


@router.post(
    "/arrow",
    response_model=UpsertResult,
    response_model_exclude_none=True,
    dependencies=[WriteAccess],
    responses=errors(409),
    summary="Bulk upsert from an Arrow IPC stream",
    description="Body: an Arrow IPC *stream* with an integer column `id`, a `vector` column "
    "(fixed_size_list or list of float) and, optionally, more columns that become payload fields.",
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
async def upsert_arrow(
    request: Request, collection: CollectionDep, metrics: MetricsDep, settings: SettingsDep
) -> UpsertResult:
    body = await read_body(request)
    limit = inflate_limit(
        len(body),
        ratio=settings.max_inflate_ratio,
        floor=settings.max_body_bytes,
        cap=settings.max_bulk_bytes,
    )

    def work() -> UpsertResult:
        vectors, ids, payloads = from_arrow_stream(body, collection.dim, max_inflated=limit)
        return _upsert(collection, metrics, vectors, ids, payloads)

    return await anyio.to_thread.run_sync(work)


@router.get(
    "/{point_id}",
    response_model=PointPublic,
    response_model_exclude_none=True,
    dependencies=[ReadAccess],
    summary="Get one point",
)
def get_point(
    point_id: Annotated[str, Path(min_length=1, max_length=512, examples=["42"])],
    collection: CollectionDep,
    with_vector: bool = False,
) -> PointPublic:
    (record,) = collection.fetch(unique_ids([path_id(point_id, collection)]), with_vector=with_vector)
    if record is None:
        raise NotFoundError(f"point {point_id} does not exist in collection {collection.name!r}")
    return PointPublic(**record)


@router.post(
    "/get",
    response_model=PointList,
    response_model_exclude_none=True,
    dependencies=[ReadAccess],
    summary="Get points by id (missing ids are left out)",
)
def get_points(body: PointsGet, collection: CollectionDep, settings: SettingsDep) -> PointList:
    check_response_size(len(body.ids), 1, collection.dim, body.with_vector, settings)
    records = collection.fetch(unique_ids(body.ids), with_vector=body.with_vector)
    return PointList(points=[PointPublic(**r) for r in records if r is not None])


@router.post(
    "/delete",
    response_model=DeleteResult,
    dependencies=[WriteAccess],
    summary="Delete points by ids, or every point whose payload matches a filter",
)
def delete_points(body: PointsDelete, collection: CollectionDep) -> DeleteResult:
    if (body.ids is None) == (body.filter is None):
        raise InvalidInputError("give exactly one of 'ids' or 'filter'")
    if body.filter is not None:
        if not body.filter:
            raise InvalidInputError("an empty filter would delete every point; delete the collection instead")
        deleted = collection.delete_matching(body.filter)
    else:
        deleted = collection.delete_ids(unique_ids(body.ids), missing_ok=body.missing_ok) if body.ids else 0
    return DeleteResult(deleted=deleted, count=collection.size()[0])


@router.delete(
    "/{point_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[WriteAccess],
    summary="Delete one point",
)
def delete_point(
    point_id: Annotated[str, Path(min_length=1, max_length=512, examples=["42"])], collection: CollectionDep
) -> Response:
    if collection.delete_ids(unique_ids([path_id(point_id, collection)])) == 0:
        raise NotFoundError(f"point {point_id} does not exist in collection {collection.name!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def path_id(text: str, collection: Collection) -> int | str:
    """The id in a URL path: the string itself in a string-id collection, else a non-negative int64."""
    if collection.id_type() == "str":
        return text
    if not text.isascii() or not text.isdigit() or int(text) > 2**63 - 1:
        raise InvalidInputError(
            f"point id {text[:80]!r} is not a non-negative int64 (this collection has integer ids)"
        )
    return int(text)


@router.post(
    "/scroll",
    response_model=ScrollResult,
    response_model_exclude_none=True,
    dependencies=[ReadAccess],
    summary="One page of points (optionally filtered), in a stable order; next_offset continues",
)
def scroll_points(body: PointsScroll, collection: CollectionDep) -> ScrollResult:
    offset = body.offset
    page = collection.scroll(
        limit=body.limit,
        offset=offset,
        filter=body.filter,
        with_vector=body.with_vector,
        with_payload=body.with_payload,
    )
    return ScrollResult(points=[PointPublic(**p) for p in page["points"]], next_offset=page["next_offset"])


@router.post(
    "/payload",
    response_model=PayloadResult,
    dependencies=[WriteAccess],
    summary="Set the payloads of existing points without re-sending their vectors",
)
def update_payloads(body: PointsPayload, collection: CollectionDep) -> PayloadResult:
    if len(body.payloads) != len(body.ids):
        raise InvalidInputError(f"'payloads' has {len(body.payloads)} entries; expected {len(body.ids)}")
    return PayloadResult(
        updated=collection.update_payload(unique_ids(body.ids), body.payloads, merge=body.merge)
    )
