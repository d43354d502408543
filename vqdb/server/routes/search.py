"""Search: one vector, a batch of vectors, or the stored vector of a point; filters and knobs."""

from __future__ import annotations

import json
import math
import time

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response

from ..._validation import as_float32_matrix
from ...errors import DimensionMismatchError, InvalidInputError, NotFoundError
from ..auth import ReadAccess
from ..collections import Collection
from ..deps import CollectionDep, MetricsDep, SettingsDep
from ..ingest import unique_ids
from ..schemas import SearchRequest, SearchResponse
from ._responses import PROTECTED, errors

router = APIRouter(prefix="/collections/{name}", tags=["search"], responses={**PROTECTED, **errors(404)})


# JSON bytes of one hit without payload or vector ({"id":..,"score":..}), and of one vector value
HIT_BYTES = 48
FLOAT_BYTES = 14


@router.post(
    "/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    dependencies=[ReadAccess],
    summary="k nearest points to a vector, a batch of vectors, or a stored point",
)
def search(body: SearchRequest, collection: CollectionDep, settings: SettingsDep, metrics: MetricsDep):
    start = time.perf_counter()
    given = [f for f in ("vector", "vectors", "id") if getattr(body, f) is not None]
    if len(given) != 1:
        raise InvalidInputError(f"give exactly one of 'vector', 'vectors' or 'id'; got {given or 'none'}")
    if body.k > settings.max_k:
        raise InvalidInputError(f"k={body.k} is above this server's limit of {settings.max_k}")
    n_queries = len(body.vectors) if body.vectors is not None else 1
    check_response_size(n_queries, body.k, collection.dim, body.with_vector, settings)
    queries = _queries(body, collection, settings)
    result = collection.search(
        queries, body.k, filter=body.filter, nprobe=body.nprobe, rerank=body.rerank, ef=body.ef
    )
    metrics.queries.inc(queries.shape[0])
    hits = _hits(collection, np.asarray(result.ids), np.asarray(result.scores), body)
    results = hits if body.vectors is not None else hits[0]
    return bounded_json({"results": results, "time_ms": (time.perf_counter() - start) * 1e3}, settings)


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
    """``content`` as a JSON response, refused (400) when it is over ``max_response_bytes``."""
    data = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > settings.max_response_bytes:
        raise InvalidInputError(
            f"the answer is {len(data)} bytes, over this server's limit of {settings.max_response_bytes} "
            "(VQDB_MAX_RESPONSE_BYTES): lower k, split the batch, or ask for fewer payload fields"
        )
    return Response(data, media_type="application/json")


def _queries(body: SearchRequest, collection: Collection, settings) -> np.ndarray:
    if body.id is not None:
        (record,) = collection.fetch(unique_ids([body.id]), with_vector=True)
        if record is None:
            raise NotFoundError(f"point {body.id} does not exist in collection {collection.name!r}")
        return as_float32_matrix(np.asarray(record["vector"], dtype=np.float32)[None, :], collection.dim)
    rows = [body.vector] if body.vector is not None else body.vectors
    if len(rows) > settings.max_batch:
        raise InvalidInputError(
            f"{len(rows)} query vectors; this server takes at most {settings.max_batch} per call"
        )
    widths = {len(r) for r in rows}
    if widths != {collection.dim}:
        raise DimensionMismatchError(
            f"query vectors have {sorted(widths)} dimensions; collection {collection.name!r} expects {collection.dim}"
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused
        return as_float32_matrix(np.asarray(rows, dtype=np.float32), collection.dim, name="query")


def _hits(
    collection: Collection, ids: np.ndarray, scores: np.ndarray, body: SearchRequest
) -> list[list[dict]]:
    """Per query, the hits best first as JSON-ready dicts (``payload`` / ``vector`` only when asked)."""
    keep = ((ids != None) if ids.dtype == object else (ids >= 0)) & np.isfinite(scores)  # noqa: E711
    records = {}
    if body.with_payload or body.with_vector:
        found = np.unique(ids[keep])
        if found.size:
            for record in collection.fetch(found, with_vector=body.with_vector):
                if record is not None:
                    records[record["id"]] = record
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
    return out
