"""The REST calls of ``vqdb.Client`` and ``vqdb.AsyncClient``, written once, without I/O.

Each operation is a generator: it yields :class:`Request` objects, receives each one's decoded JSON
body (or has the matching :mod:`vqdb.errors` exception thrown into it), and returns the result. The
sync and the async client only drive these generators (``send`` / ``throw``), so both speak exactly
the same protocol, and the ``RemoteCollection`` contract (``vqdb.IndexProtocol``) exists once.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import errors as E
from ._validation import as_float32_matrix, check_k
from .index._ids import INT, STR, as_user_ids, check_kind, duplicates

MAX_BATCH_BYTES = 8 << 20  # vectors per upsert request, before base64
MAX_QUERIES = 1024  # query vectors per search request (the server's default limit)
MAX_GET = 10_000  # ids per /points/get request (the schema's limit)
SCROLL_PAGE = 1000


@dataclass(frozen=True)
class Request:
    """One HTTP call. ``idempotent``: safe to send again when the first try got no answer."""

    method: str
    path: str
    json: Any = None
    idempotent: bool = True
    params: dict = field(default_factory=dict)


# ---- collections -------------------------------------------------------------------------------


def create_collection(name, dim, *, metric, quantizer, ivf, store_vectors, id_type, exist_ok, graph=False):
    body = {
        "name": name,
        "dim": int(dim),
        "metric": metric,
        "quantizer": quantizer,
        "ivf": ivf,
        "store_vectors": store_vectors,
    }
    if id_type is not None:
        body["id_type"] = id_type
    if graph:
        body["graph"] = graph
    try:
        info = yield Request("POST", "/collections", body, idempotent=False)
    except E.AlreadyExistsError:
        if not exist_ok:
            raise
        info = yield Request("GET", f"/collections/{name}")
    return info


# ---- points ------------------------------------------------------------------------------------


def user_ids(ids, n: int | None = None, id_type: str | None = None) -> np.ndarray:
    """Validated ids (int64 or object str), one kind, no repeats (as ``vqdb.Index`` checks them)."""
    kind, arr = as_user_ids(ids, n)
    check_kind(kind, id_type)
    dup = duplicates(arr)
    if dup:
        raise E.DuplicateIdError(f"ids repeat within one call: {dup}")
    return arr


def upsert(name, vectors, ids, metadata, *, batch_bytes=MAX_BATCH_BYTES, replace=True, dim=None):
    """Send ``vectors`` (n, d) under ``ids`` (None: the server assigns them, add only) in batches.

    Returns (ids as stored (n,), live count afterwards)."""
    x = as_float32_matrix(vectors, dim, name="vectors")
    n = x.shape[0]
    if ids is not None:
        ids = user_ids(ids, n)
    elif replace:
        raise E.InvalidInputError("upsert needs ids (use add to get new ids)")
    if metadata is not None and len(metadata) != n:
        raise E.DimensionMismatchError(f"metadata has {len(metadata)} entries; expected {n} (one per vector)")
    rows = max(1, batch_bytes // max(1, 4 * x.shape[1]))
    out_ids, count = [], None
    for s in range(0, n, rows):
        body = {
            "vectors": base64.b64encode(x[s : s + rows].astype("<f4").tobytes()).decode("ascii"),
            "upsert": bool(replace),
        }
        if ids is not None:
            body["ids"] = ids[s : s + rows].tolist()
        if metadata is not None:
            body["payloads"] = list(metadata[s : s + rows])
        reply = yield Request("POST", f"/collections/{name}/points/b64", body, idempotent=bool(replace))
        count = reply["count"]
        out_ids.extend(reply.get("ids") or [])
    if count is None:
        count = (yield Request("GET", f"/collections/{name}"))["count"]
    if ids is None:
        ids = _as_id_array(out_ids)
    return ids, int(count)


def get_points(name, ids, *, with_vector):
    """Points ``{"id", "payload", "vector"}`` of the ids that exist (in batches of :data:`MAX_GET`)."""
    ids = user_ids(ids)
    out = []
    for s in range(0, ids.size, MAX_GET):
        body = {"ids": ids[s : s + MAX_GET].tolist(), "with_vector": bool(with_vector)}
        out.extend((yield Request("POST", f"/collections/{name}/points/get", body))["points"])
    return out


def delete(name, ids=None, *, filter=None, missing_ok=True):
    if filter is not None:
        body = {"filter": filter}
    else:
        body = {"ids": user_ids(ids).tolist(), "missing_ok": bool(missing_ok)}
        if not body["ids"]:
            return 0
    reply = yield Request("POST", f"/collections/{name}/points/delete", body, idempotent=bool(missing_ok))
    return int(reply["deleted"])


def update_payload(name, ids, metadata, *, merge):
    ids = user_ids(ids)
    if isinstance(metadata, dict):
        metadata = [metadata] * ids.size
    body = {"ids": ids.tolist(), "payloads": list(metadata), "merge": bool(merge)}
    return int((yield Request("POST", f"/collections/{name}/points/payload", body))["updated"])


def scroll(name, *, limit, offset, filter, with_vector):
    body = {"limit": int(limit), "with_vector": bool(with_vector)}
    if offset is not None:
        body["offset"] = offset.item() if isinstance(offset, np.generic) else offset
    if filter is not None:
        body["filter"] = filter
    return (yield Request("POST", f"/collections/{name}/points/scroll", body))


def all_ids(name, *, filter=None):
    """Every id (or every id matching ``filter``), by scrolling."""
    out, offset = [], None
    while True:
        page = yield from scroll(name, limit=SCROLL_PAGE, offset=offset, filter=filter, with_vector=False)
        out.extend(p["id"] for p in page["points"])
        offset = page.get("next_offset")
        if offset is None:
            return out


# ---- search ------------------------------------------------------------------------------------


def _query_rows(q: np.ndarray) -> int:
    """Query rows per search request: at most MAX_QUERIES, and at most MAX_BATCH_BYTES of float32."""
    return max(1, min(MAX_QUERIES, MAX_BATCH_BYTES // max(1, 4 * q.shape[1])))


def _search_body(q: np.ndarray, k: int, knobs: dict, **fields) -> dict:
    """A search body with the query rows as base64 float32 (no per-number JSON either way)."""
    body = {"vectors_b64": base64.b64encode(q.astype("<f4", copy=False).tobytes()).decode("ascii"), "k": k}
    body.update(fields)
    body.update({key: value for key, value in knobs.items() if value is not None})
    return body


def query(name, queries, k, *, filter, nprobe, rerank, with_payload, with_vector, dim=None, ef=None):
    """Hits ``{"id", "score", "payload"}`` best first, one list per query row."""
    q = as_float32_matrix(queries, dim, name="queries")
    k = check_k(k)
    knobs = {"filter": filter, "nprobe": nprobe, "rerank": rerank, "ef": ef}
    out: list[list[dict]] = []
    rows = _query_rows(q)
    for s in range(0, q.shape[0], rows):
        body = _search_body(q[s : s + rows], k, knobs, with_payload=with_payload, with_vector=with_vector)
        out.extend((yield Request("POST", f"/collections/{name}/search", body))["results"])
    return out


def search(
    name, queries, k, *, filter, nprobe, rerank, metric, id_type, include_metadata=False, dim=None, ef=None
):
    """A ``vqdb.SearchResult``: ids (m, k) int64 -1 padded (object None padded for string ids), scores
    (m, k) float32 -inf padded, and the hits' metadata when asked. The server answers in columns."""
    from .index import SearchResult

    q = as_float32_matrix(queries, dim, name="queries")
    k = check_k(k)
    knobs = {"filter": filter, "nprobe": nprobe, "rerank": rerank, "ef": ef}
    id_rows: list = []
    score_rows: list = []
    payload_rows: list = []
    rows = _query_rows(q)
    for s in range(0, q.shape[0], rows):
        body = _search_body(q[s : s + rows], k, knobs, with_payload=bool(include_metadata), layout="columns")
        cols = (yield Request("POST", f"/collections/{name}/search", body))["results"]
        id_rows.extend(cols["ids"])
        score_rows.extend(cols["scores"])
        payload_rows.extend(cols.get("payloads") or [])
    m = q.shape[0]
    strings = id_type == STR or any(isinstance(i, str) for row in id_rows for i in row)
    ids = np.full((m, k), None, dtype=object) if strings else np.full((m, k), -1, dtype=np.int64)
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    meta = [[None] * k for _ in range(m)] if include_metadata else None
    if not strings and all(len(row) == k for row in id_rows):  # full rows: straight into the arrays
        ids[:] = np.asarray(id_rows, dtype=np.int64).reshape(m, k)
        scores[:] = np.asarray(score_rows, dtype=np.float32).reshape(m, k)
    else:
        for row, (row_ids, row_scores) in enumerate(zip(id_rows, score_rows)):
            ids[row, : len(row_ids)] = row_ids
            scores[row, : len(row_scores)] = row_scores
    if meta is not None:
        for row, payloads in enumerate(payload_rows):
            meta[row][: len(payloads)] = [p or {} for p in payloads]
    return SearchResult(ids, scores, metric, metadata=meta)


# ---- the RemoteCollection contract (vqdb.IndexProtocol) -----------------------------------------


def records(points, ids, *, dim, include_vectors, exact):
    """``vqdb.index.Records`` of ``points`` (dicts from the server) in the order of ``ids``."""
    from .index import Records

    rows = {p["id"]: p for p in points}
    rows = [rows[i] for i in ids.tolist()]
    vectors = (
        np.asarray([p["vector"] for p in rows], dtype=np.float32).reshape(len(rows), dim)
        if include_vectors
        else None
    )
    return Records(ids, vectors, [p.get("payload") or {} for p in rows], exact=bool(exact))


def collection_get(name, ids, *, dim, id_type, include_vectors, missing_ok, exact):
    ids = user_ids(ids, id_type=id_type)
    points = yield from get_points(name, ids, with_vector=include_vectors)
    found = {p["id"] for p in points}
    missing = [i for i in ids.tolist() if i not in found]
    if missing:
        if not missing_ok:
            raise E.NotFoundError(f"{len(missing)} id(s) not in collection {name!r}: {missing[:10]}")
        ids = ids[np.array([i in found for i in ids.tolist()], dtype=bool)]
    return records(points, ids, dim=dim, include_vectors=include_vectors, exact=exact)


def collection_scroll(name, *, dim, limit, offset, filter, include_vectors, exact):
    from .index import Page

    page = yield from scroll(name, limit=limit, offset=offset, filter=filter, with_vector=include_vectors)
    ids = _as_id_array([p["id"] for p in page["points"]])
    rec = records(page["points"], ids, dim=dim, include_vectors=include_vectors, exact=exact)
    return Page(rec, page.get("next_offset"))


def _as_id_array(values) -> np.ndarray:
    if any(isinstance(v, str) for v in values):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.asarray(values, dtype=np.int64) if values else np.zeros(0, np.int64)


def id_type_of(ids) -> str:
    return STR if np.asarray(ids).dtype == object else INT
