"""A Qdrant-compatible REST subset under ``/qdrant``: enough for ``qdrant-client`` (``prefix="qdrant"``)
and ``langchain-qdrant`` to work unchanged against ``vqdb serve``.

Collections here are ordinary vqdb collections (also visible under ``/collections``), created with
``turbo-4`` codes plus float32 vectors: small collections are ranked exactly (every candidate is
re-scored from the stored vectors, see :mod:`vqdb.integrations._exact`), large ones re-rank an
oversampled shortlist — as Qdrant's quantization with ``rescore`` does. Payloads are nested JSON,
stored losslessly and filterable by dotted key (:mod:`vqdb.integrations._payload`).

Responses use Qdrant's envelope ``{"result": ..., "status": "ok", "time": s}``; errors Qdrant's
shape ``{"status": {"error": "..."}, "time": s}`` with the HTTP status of the vqdb error. The same
API keys as the rest of the service apply (``qdrant-client`` sends them as ``api-key``): read for
reads and queries, write for points and payload indexes, admin for creating/deleting collections.

Not supported (a 400 naming the field): named / sparse / multi vectors, prefetch and fusion,
recommend / discover / order_by, geo / nested / has_id / text filters, shard keys, snapshots,
aliases, payload updates without the vector, and gRPC.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .. import errors as E
from .._validation import as_float32_matrix
from ..integrations import _exact, _payload
from . import engine
from .auth import AdminAccess, ReadAccess, WriteAccess, check_access, key_of_headers
from .deps import CollectionNamePath, SettingsDep, StoreDep
from .errors import status_of
from .qdrant_schemas import (
    DISTANCES,
    METRIC_DISTANCE,
    CollectionCreate,
    Count,
    FieldIndex,
    PointsDelete,
    PointsRetrieve,
    PointsUpsert,
    Query,
    QueryBatch,
    Scroll,
    VectorParams,
    point_id,
    select_payload,
    to_vqdb_filter,
    wants_vector,
)

QDRANT_API_VERSION = "1.20.0"  # the Qdrant REST API this subset follows (tested with qdrant-client 1.20.0)
QUANTIZER = "turbo-4"


class QdrantRoute(APIRoute):
    """Answers every error of these routes in Qdrant's shape (validation errors included), and checks
    the API key before the body is read or parsed (401/403 before 422, as the native routes do)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        needed = [getattr(d.call, "vqdb_scope", None) for d in self.dependant.dependencies]
        needed = [n for n in needed if n is not None]

        async def qdrant_handler(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if needed:
                    host = request.client.host if request.client else ""
                    check_access(
                        request.app.state.keyring, host, key_of_headers(request.scope["headers"]), max(needed)
                    )
                return await handler(request)
            except E.VqdbError as exc:
                status, message = status_of(exc), str(exc)
            except RequestValidationError as exc:
                status, message = (
                    400,
                    "Format error in JSON body: " + "; ".join(_problem(err) for err in exc.errors()[:10]),
                )
            except StarletteHTTPException as exc:
                status, message = exc.status_code, str(exc.detail)
            return JSONResponse(
                {"status": {"error": message}, "time": time.perf_counter() - start}, status_code=status
            )

        return qdrant_handler


def _problem(err: dict) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    if err.get("type") == "extra_forbidden":
        return f"unknown or unsupported field `{where}` (vqdb's Qdrant subset does not have it)"
    return f"{where}: {err.get('msg', '')}"


router = APIRouter(prefix="/qdrant", tags=["qdrant"], route_class=QdrantRoute)


def ok(result, start: float) -> JSONResponse:
    return JSONResponse({"result": result, "status": "ok", "time": time.perf_counter() - start})


def _completed(n: int = 0) -> dict:
    return {"operation_id": int(n), "status": "completed"}


def _collection(store, name: str):
    try:
        return store.get(name)
    except E.NotFoundError:
        raise E.NotFoundError(f"Not found: Collection `{name}` doesn't exist!") from None


# ---- service --------------------------------------------------------------------------------------


@router.get("", summary="Version (qdrant-client reads it to check compatibility)")
@router.get("/", include_in_schema=False)
def root() -> JSONResponse:
    return JSONResponse(
        {
            "title": "vqdb - Qdrant-compatible API subset",
            "version": QDRANT_API_VERSION,
            "vqdb_version": __version__,
        }
    )


# ---- collections ----------------------------------------------------------------------------------


@router.get("/collections", dependencies=[ReadAccess], summary="List collections")
def list_collections(store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    return ok({"collections": [{"name": n} for n in store.names()]}, start)


@router.get("/collections/{name}/exists", dependencies=[ReadAccess], summary="Does a collection exist")
def collection_exists(name: CollectionNamePath, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    return ok({"exists": name in store}, start)


@router.get("/collections/{name}", dependencies=[ReadAccess], summary="Collection info")
def get_collection(name: CollectionNamePath, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    collection = _collection(store, name)
    info = collection.describe()
    distance = METRIC_DISTANCE.get(info["metric"])
    if distance is None:  # pragma: no cover - every vqdb metric has a Qdrant name
        raise E.InvalidInputError(f"collection {name!r} has metric {info['metric']!r}, which Qdrant lacks")
    count = int(info["count"])
    result = {
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": count,
        "points_count": count,
        "segments_count": max(1, int(info["stats"].get("segments", 0))),
        "config": {
            "params": {
                "vectors": {"size": collection.dim, "distance": distance},
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": True,
            },
            # vqdb has no HNSW graph or Qdrant optimizer: these are the defaults qdrant-client's model requires
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
            "optimizer_config": {
                "deleted_threshold": 0.2,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "flush_interval_sec": 5,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
        },
        "payload_schema": {},
    }
    return ok(result, start)


@router.put("/collections/{name}", dependencies=[AdminAccess], summary="Create a collection")
def create_collection(
    name: CollectionNamePath, body: CollectionCreate, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    start = time.perf_counter()
    vectors = body.vectors
    if isinstance(vectors, dict) and set(vectors) == {
        ""
    }:  # the unnamed vector by its empty name (langchain-qdrant)
        try:
            vectors = VectorParams.model_validate(vectors[""])
        except ValidationError as exc:
            raise E.InvalidInputError(f"vectors['']: {exc.errors(include_input=False)[:3]}") from None
    if isinstance(vectors, dict):
        raise E.InvalidInputError(
            "named vectors are not supported by vqdb's Qdrant subset: give 'vectors': {'size': d, 'distance': ...}"
        )
    metric = DISTANCES.get(vectors.distance)
    if metric is None:
        raise E.InvalidInputError(
            f"distance {vectors.distance!r} is not supported; choose one of {sorted(DISTANCES)}"
        )
    if vectors.size > settings.max_dim:
        raise E.InvalidInputError(f"size={vectors.size} is above this server's limit of {settings.max_dim}")
    try:
        store.create(name, dim=vectors.size, metric=metric, quantizer=QUANTIZER, store_vectors="float32")
    except E.AlreadyExistsError:
        raise E.AlreadyExistsError(f"Wrong input: Collection `{name}` already exists!") from None
    return ok(True, start)


@router.delete("/collections/{name}", dependencies=[AdminAccess], summary="Delete a collection")
def delete_collection(name: CollectionNamePath, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    if name not in store:
        return ok(False, start)
    store.delete(name)
    return ok(True, start)


@router.put("/collections/{name}/index", dependencies=[WriteAccess], summary="Payload index (a no-op)")
def create_field_index(name: CollectionNamePath, body: FieldIndex, store: StoreDep) -> JSONResponse:
    """Every scalar payload key is already a filterable column in vqdb; nothing to build."""
    start = time.perf_counter()
    _collection(store, name)
    return ok(_completed(), start)


@router.delete(
    "/collections/{name}/index/{field_name}",
    dependencies=[WriteAccess],
    summary="Drop a payload index (a no-op)",
)
def delete_field_index(name: CollectionNamePath, field_name: str, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    _collection(store, name)
    return ok(_completed(), start)


# ---- points ---------------------------------------------------------------------------------------


def _vqdb_ids(ids: list) -> np.ndarray | list:
    """Qdrant ids (already canonical) as vqdb ids: int64 when all are integers, else strings (UUIDs)."""
    if all(isinstance(i, int) for i in ids):
        return np.asarray(ids, dtype=np.int64)
    if all(isinstance(i, str) for i in ids):
        return np.asarray(ids, dtype=object)
    raise E.InvalidInputError("integer and UUID point ids cannot be mixed in one request")


def _qdrant_id(value):
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _vector(vector, where: str) -> list:
    if isinstance(vector, dict):
        if set(vector) == {""}:
            return vector[""]
        raise E.InvalidInputError(f"{where}: named vectors are not supported by vqdb's Qdrant subset")
    return vector


@router.put("/collections/{name}/points", dependencies=[WriteAccess], summary="Upsert points")
def upsert_points(name: CollectionNamePath, body: PointsUpsert, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    collection = _collection(store, name)
    if (body.points is None) == (body.batch is None):
        raise E.InvalidInputError("give exactly one of 'points' or 'batch'")
    if body.points is not None:
        ids = [point_id(p.id) for p in body.points]
        vectors = [_vector(p.vector, f"points[{i}].vector") for i, p in enumerate(body.points)]
        payloads = [p.payload for p in body.points]
    else:
        b = body.batch
        ids = [point_id(i) for i in b.ids]
        vectors = b.vectors
        payloads = b.payloads if b.payloads is not None else [None] * len(ids)
        if len(vectors) != len(ids) or len(payloads) != len(ids):
            raise E.DimensionMismatchError(
                f"batch has {len(ids)} ids, {len(vectors)} vectors and {len(payloads)} payloads; they must match"
            )
    last = {pid: j for j, pid in enumerate(ids)}  # an id given twice: the later point wins (as in Qdrant)
    keep = sorted(last.values())
    widths = {len(vectors[j]) for j in keep}
    if widths != {collection.dim}:
        raise E.DimensionMismatchError(
            f"Wrong input: Vector dimension error: expected dim: {collection.dim}, got {sorted(widths - {collection.dim})}"
        )
    with np.errstate(over="ignore"):
        x = as_float32_matrix(
            np.asarray([vectors[j] for j in keep], dtype=np.float32), collection.dim, name="vectors"
        )
    rows = [_payload.to_row(payloads[j]) for j in keep]
    collection.upsert(x, _vqdb_ids([ids[j] for j in keep]), rows)
    return ok(_completed(len(keep)), start)


def _records(collection, ids: list, *, with_payload, with_vector) -> list[dict]:
    """Qdrant ``Record``s of the ``ids`` that exist, in the order given."""
    if not ids:
        return []
    vector = wants_vector(with_vector)
    out = []
    for record in collection.fetch(_vqdb_ids(ids), with_vector=vector):
        if record is None:
            continue
        item = {"id": _qdrant_id(record["id"])}
        item["payload"] = select_payload(_payload.from_row(record.get("payload")), with_payload)
        if vector:
            item["vector"] = record["vector"]
        out.append(item)
    return out


@router.post("/collections/{name}/points", dependencies=[ReadAccess], summary="Retrieve points by id")
def retrieve_points(name: CollectionNamePath, body: PointsRetrieve, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    collection = _collection(store, name)
    ids = list(dict.fromkeys(point_id(i) for i in body.ids))
    with_payload = True if body.with_payload is None else body.with_payload
    return ok(_records(collection, ids, with_payload=with_payload, with_vector=body.with_vector), start)


@router.get("/collections/{name}/points/{pid}", dependencies=[ReadAccess], summary="Retrieve one point")
def get_point(name: CollectionNamePath, pid: str, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    collection = _collection(store, name)
    the_id = point_id(int(pid) if pid.isdigit() else pid)
    found = _records(collection, [the_id], with_payload=True, with_vector=True)
    if not found:
        raise E.NotFoundError(f"Not found: No point with id {the_id} found")
    return ok(found[0], start)


def _matching_ids(collection, qfilter) -> np.ndarray | None:
    """Ids of the points matching a Qdrant filter (storage order), or None for "every point"."""
    flt = _resolved(collection, qfilter)
    if flt is True:
        return None
    if flt is False:
        return np.zeros(0, dtype=np.int64)
    with collection.lease() as index:
        return engine.ids_matching(index, flt)


def _resolved(collection, qfilter) -> dict | bool:
    """A Qdrant filter as a vqdb filter dict, or True / False where it matches every / no point."""
    flt = to_vqdb_filter(qfilter)
    if flt is None:
        return True
    known = collection.describe()["stats"].get("metadata_fields", {})
    return _payload.resolve_unknown(flt, known)


def _all_ids(collection) -> np.ndarray:
    with collection.lease() as index:
        return np.asarray(index.ids())


@router.post("/collections/{name}/points/delete", dependencies=[WriteAccess], summary="Delete points")
def delete_points(name: CollectionNamePath, body: PointsDelete, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    collection = _collection(store, name)
    if (body.points is None) == (body.filter is None):
        raise E.InvalidInputError("give exactly one of 'points' (ids) or 'filter'")
    if body.points is not None:
        ids = list(dict.fromkeys(point_id(i) for i in body.points))
        n = collection.delete_ids(_vqdb_ids(ids)) if ids else 0
    else:
        ids = _matching_ids(collection, body.filter)
        if ids is None:
            ids = _all_ids(collection)
        n = collection.delete_ids(ids) if len(ids) else 0
    return ok(_completed(n), start)


def _sorted_ids(ids: np.ndarray) -> list:
    values = [_qdrant_id(i) for i in ids.tolist()]
    return sorted(values, key=lambda v: (isinstance(v, str), v))


@router.post("/collections/{name}/points/scroll", dependencies=[ReadAccess], summary="Page through points")
def scroll_points(name: CollectionNamePath, body: Scroll, store: StoreDep) -> JSONResponse:
    """Points in id order (integers, then UUIDs as strings), ``limit`` per page (default 10);
    ``next_page_offset`` is the first id of the next page."""
    start = time.perf_counter()
    collection = _collection(store, name)
    ids = _matching_ids(collection, body.filter)
    ordered = _sorted_ids(_all_ids(collection) if ids is None else np.asarray(ids))
    if body.offset is not None:
        first = point_id(body.offset)
        key = (isinstance(first, str), first)
        ordered = [v for v in ordered if (isinstance(v, str), v) >= key]
    limit = body.limit or 10
    page, rest = ordered[:limit], ordered[limit:]
    with_payload = True if body.with_payload is None else body.with_payload
    points = _records(collection, page, with_payload=with_payload, with_vector=body.with_vector)
    return ok({"points": points, "next_page_offset": rest[0] if rest else None}, start)


@router.post("/collections/{name}/points/count", dependencies=[ReadAccess], summary="Count points")
def count_points(name: CollectionNamePath, body: Count, store: StoreDep) -> JSONResponse:
    start = time.perf_counter()
    collection = _collection(store, name)
    ids = _matching_ids(collection, body.filter)
    return ok({"count": collection.size()[0] if ids is None else int(len(ids))}, start)


# ---- queries --------------------------------------------------------------------------------------


def _query_vector(collection, query) -> tuple[np.ndarray, dict | None]:
    """The (1, d) query vector, and the ``mmr`` options of a ``{"nearest": ..., "mmr": ...}`` query."""
    mmr = None
    if isinstance(query, dict):
        if not set(query) <= {"nearest", "mmr"} or "nearest" not in query:
            raise E.InvalidInputError(
                f"query {sorted(query)} is not supported by vqdb's Qdrant subset "
                "(a vector, a point id, or 'nearest' with an optional 'mmr')"
            )
        mmr = query.get("mmr")
        if mmr is not None and (
            not isinstance(mmr, dict) or not set(mmr) <= {"diversity", "candidates_limit"}
        ):
            raise E.InvalidInputError(f"mmr takes 'diversity' and 'candidates_limit'; got {mmr!r}")
        query = query["nearest"]
    if query is None:
        raise E.InvalidInputError("'query' is required (a vector, a point id, or {'nearest': ...})")
    if isinstance(query, (int, str)) and not isinstance(query, bool):
        the_id = point_id(query)
        (record,) = collection.fetch(_vqdb_ids([the_id]), with_vector=True)
        if record is None:
            raise E.NotFoundError(f"Not found: No point with id {the_id} found")
        query = record["vector"]
    if not isinstance(query, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in query
    ):
        raise E.InvalidInputError("query must be a dense vector (a list of numbers) or a point id")
    if len(query) != collection.dim:
        raise E.DimensionMismatchError(
            f"Wrong input: Vector dimension error: expected dim: {collection.dim}, got {len(query)}"
        )
    with np.errstate(over="ignore"):
        return as_float32_matrix(np.asarray([query], dtype=np.float32), collection.dim, name="query"), mmr


def _mmr_order(
    relevance: np.ndarray, vectors: np.ndarray, metric: str, diversity: float, k: int
) -> list[int]:
    """Maximal marginal relevance (Qdrant's: ``(1 - diversity) * sim(q, x) - diversity * max sim(x, chosen)``,
    similarities in the collection's orientation, higher is better); returns ``k`` row positions."""
    v = vectors.astype(np.float64)
    if metric == "l2sq":
        sq = np.einsum("ij,ij->i", v, v)
        between = -np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * v @ v.T, 0.0))
    else:
        between = v @ v.T
    chosen = [int(np.argmax(relevance))]
    closest = between[chosen[0]].copy()
    while len(chosen) < min(k, relevance.size):
        gain = (1.0 - diversity) * relevance - diversity * closest
        gain[chosen] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        closest = np.maximum(closest, between[best])
    return chosen


def _run_query(collection, q: Query, settings) -> dict:
    if q.using not in (None, ""):
        raise E.InvalidInputError(
            f"named vectors are not supported by vqdb's Qdrant subset (using={q.using!r})"
        )
    vector, mmr = _query_vector(collection, q.query)
    limit = q.limit or 10
    offset = q.offset or 0
    k = limit + offset
    wanted = k
    if mmr is not None:
        diversity = 0.5 if mmr.get("diversity") is None else mmr["diversity"]
        if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0 <= diversity <= 1:
            raise E.InvalidInputError(f"mmr.diversity must be a number in [0, 1]; got {diversity!r}")
        limit_c = mmr.get("candidates_limit")
        if limit_c is not None and (isinstance(limit_c, bool) or not isinstance(limit_c, int) or limit_c < 1):
            raise E.InvalidInputError(f"mmr.candidates_limit must be a positive integer; got {limit_c!r}")
        k = max(k, limit_c or k)
    if k > settings.max_k:
        raise E.InvalidInputError(f"limit + offset = {k} is above this server's limit of {settings.max_k}")
    flt = _resolved(collection, q.filter)
    if flt is False:
        return {"points": []}
    n = collection.size()[0]
    if n == 0:
        return {"points": []}
    rerank = _exact.rerank_factor(n, k)
    result = collection.search(vector, k, filter=None if flt is True else flt, nprobe=None, rerank=rerank)
    ids, scores = np.asarray(result.ids)[0], np.asarray(result.scores)[0]
    metric = collection.info.metric
    hits = []
    for i, s in zip(ids.tolist(), scores.tolist()):
        if i is None or (isinstance(i, int) and i < 0) or not math.isfinite(s):
            continue
        score = math.sqrt(max(0.0, -s)) if metric == "l2sq" else s
        if q.score_threshold is not None and (
            score > q.score_threshold if metric == "l2sq" else score < q.score_threshold
        ):
            continue
        hits.append((_qdrant_id(i), score, s))
    if mmr is not None and hits:
        found = collection.fetch(_vqdb_ids([h[0] for h in hits]), with_vector=True)
        vectors = np.asarray([r["vector"] for r in found], dtype=np.float32)
        order = _mmr_order(np.asarray([h[2] for h in hits]), vectors, metric, float(diversity), wanted)
        hits = [hits[j] for j in order]
    hits = [(pid, score) for pid, score, _ in hits[offset:wanted]]
    with_payload = False if q.with_payload is None else q.with_payload
    vector_wanted = wants_vector(q.with_vector)
    records = {}
    if hits and (with_payload is not False or vector_wanted):
        for r in _records(
            collection, [h[0] for h in hits], with_payload=with_payload, with_vector=q.with_vector
        ):
            records[r["id"]] = r
    points = []
    for pid, score in hits:
        point = {"id": pid, "version": 0, "score": score}
        record = records.get(pid, {})
        if with_payload is not False:
            point["payload"] = record.get("payload")
        if vector_wanted:
            point["vector"] = record.get("vector")
        points.append(point)
    return {"points": points}


@router.post("/collections/{name}/points/query", dependencies=[ReadAccess], summary="Nearest points")
def query_points(
    name: CollectionNamePath, body: Query, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    start = time.perf_counter()
    return ok(_run_query(_collection(store, name), body, settings), start)


@router.post("/collections/{name}/points/query/batch", dependencies=[ReadAccess], summary="Batch of queries")
def query_batch(
    name: CollectionNamePath, body: QueryBatch, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    start = time.perf_counter()
    collection = _collection(store, name)
    return ok([_run_query(collection, q, settings) for q in body.searches], start)
