"""Request bodies of the Qdrant-compatible subset (``/qdrant``), and Qdrant filters -> vqdb filters.

Bodies forbid unknown fields: a Qdrant feature this subset does not have (``prefetch``, ``shard_key``,
named vectors, geo filters, ...) is a 400 that names it, never silently ignored. Field names and
shapes are Qdrant's REST API (as ``qdrant-client`` 1.20 sends them, ``exclude_none``).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from ..errors import InvalidInputError

PointId = StrictInt | StrictStr
DISTANCES = {"Cosine": "cos", "Dot": "ip", "Euclid": "l2sq"}
METRIC_DISTANCE = {v: k for k, v in DISTANCES.items()}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VectorParams(_In):
    size: int = Field(ge=2, le=65_536)
    distance: str
    on_disk: bool | None = None  # accepted: vqdb keeps vectors on disk, memory-mapped, anyway


class CollectionCreate(_In):
    vectors: VectorParams | dict[str, Any]
    on_disk_payload: bool | None = None
    shard_number: int | None = Field(None, ge=1, le=1)
    replication_factor: int | None = Field(None, ge=1, le=1)
    write_consistency_factor: int | None = Field(None, ge=1, le=1)
    sparse_vectors: dict[str, Any] | None = Field(None, max_length=0)  # langchain-qdrant sends {}


class Batch(_In):
    ids: list[PointId] = Field(min_length=1)
    vectors: list[list[StrictFloat | StrictInt]]
    payloads: list[dict[str, Any] | None] | None = None


class PointStruct(_In):
    id: PointId
    vector: list[StrictFloat | StrictInt] | dict[str, Any]
    payload: dict[str, Any] | None = None


class PointsUpsert(_In):
    points: list[PointStruct] | None = Field(None, min_length=1, max_length=100_000)
    batch: Batch | None = None


class PointsRetrieve(_In):
    ids: list[PointId] = Field(max_length=10_000)
    with_payload: bool | list[str] | dict[str, Any] | None = None
    with_vector: bool | list[str] | None = None


class PointsDelete(_In):
    points: list[PointId] | None = None
    filter: dict[str, Any] | None = None


class Scroll(_In):
    offset: PointId | None = None
    limit: int | None = Field(None, ge=1, le=100_000)
    filter: dict[str, Any] | None = None
    with_payload: bool | list[str] | dict[str, Any] | None = None
    with_vector: bool | list[str] | None = None


class Count(_In):
    filter: dict[str, Any] | None = None
    exact: bool | None = None


class SearchParams(_In):
    hnsw_ef: int | None = Field(None, ge=1)  # accepted; vqdb scans (flat) and re-ranks exactly
    exact: bool | None = None
    indexed_only: bool | None = None


class Query(_In):
    query: Any = None
    filter: dict[str, Any] | None = None
    params: SearchParams | None = None
    score_threshold: float | None = None
    limit: int | None = Field(None, ge=1, le=10_000)
    offset: int | None = Field(None, ge=0, le=100_000)
    with_payload: bool | list[str] | dict[str, Any] | None = None
    with_vector: bool | list[str] | None = None
    using: str | None = None


class QueryBatch(_In):
    searches: list[Query] = Field(min_length=1, max_length=1_024)


class FieldIndex(_In):
    field_name: str = Field(min_length=1)
    field_schema: Any = None


# ---- ids ----------------------------------------------------------------------------------------


def point_id(value) -> int | str:
    """A Qdrant point id: an unsigned int, or a UUID (returned in its canonical hyphenated form)."""
    if isinstance(value, bool):
        raise InvalidInputError(f"point ids are unsigned integers or UUIDs; got {value!r}")
    if isinstance(value, int):
        if value < 0 or value >= 2**63:
            raise InvalidInputError(f"integer point ids must be in [0, 2^63); got {value}")
        return value
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise InvalidInputError(f"point id {value!r} is neither an unsigned integer nor a UUID") from None
    raise InvalidInputError(f"point ids are unsigned integers or UUIDs; got {type(value).__name__}")


# ---- filters ------------------------------------------------------------------------------------

_FILTER_KEYS = ("must", "should", "must_not", "min_should")
_CONDITION_KEYS = ("match", "range", "is_empty", "is_null")


def to_vqdb_filter(flt: dict | None) -> dict | None:
    """A Qdrant ``Filter`` as vqdb's Mongo-style dict (None when it has no condition).

    must -> $and, should -> $or, must_not -> $nor; ``match`` {value | any | except}, ``range``
    {gt, gte, lt, lte}, ``is_empty``, ``is_null`` on a (dotted) payload key. Everything else
    (geo, nested, has_id, values_count, text match, min_should) is a 400 naming it.
    """
    if flt is None:
        return None
    out = _filter(flt, "filter")
    return out or None


def _as_list(value, where: str) -> list:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    raise InvalidInputError(f"{where} must be a condition or a list of conditions; got {value!r}")


def _filter(flt, where: str) -> dict:
    if not isinstance(flt, dict):
        raise InvalidInputError(f"{where} must be an object; got {flt!r}")
    unknown = [k for k in flt if k not in _FILTER_KEYS]
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown filter field(s) {unknown}; this subset knows {list(_FILTER_KEYS)}"
        )
    if flt.get("min_should") is not None:
        raise InvalidInputError(f"{where}.min_should is not supported by vqdb's Qdrant subset")
    parts = []
    for key, op in (("must", "$and"), ("should", "$or"), ("must_not", "$nor")):
        value = flt.get(key)
        if value is None:
            continue
        conds = [
            _condition(c, f"{where}.{key}[{i}]") for i, c in enumerate(_as_list(value, f"{where}.{key}"))
        ]
        conds = [c for c in conds if c]
        if not conds:
            continue
        if op == "$and":
            parts.extend(conds)
        else:
            parts.append({op: conds})
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _condition(cond, where: str) -> dict:
    if not isinstance(cond, dict):
        raise InvalidInputError(f"{where} must be an object; got {cond!r}")
    if any(k in cond for k in _FILTER_KEYS):
        return _filter(cond, where)
    if set(cond) == {"is_empty"}:
        return {_key(cond["is_empty"], where): {"$exists": False}}
    if set(cond) == {"is_null"}:
        return {_key(cond["is_null"], where): None}
    if "key" not in cond:
        raise InvalidInputError(
            f"{where}: unsupported condition {sorted(cond)}; vqdb's Qdrant subset supports field conditions "
            "(key + match / range / is_empty / is_null), is_empty, is_null and nested must/should/must_not"
        )
    key = cond["key"]
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{where}.key must be a non-empty string")
    given = [k for k in cond if k != "key" and cond[k] is not None]
    unknown = [k for k in given if k not in _CONDITION_KEYS]
    if unknown:
        raise InvalidInputError(
            f"{where}: condition field(s) {unknown} are not supported by vqdb's Qdrant subset"
        )
    if len(given) != 1:
        raise InvalidInputError(f"{where}: give exactly one of {list(_CONDITION_KEYS)}; got {given}")
    (kind,) = given
    value = cond[kind]
    if kind == "match":
        return {key: _match(value, f"{where}.match")}
    if kind == "range":
        return {key: _range(value, f"{where}.range")}
    if not isinstance(value, bool):
        raise InvalidInputError(f"{where}.{kind} must be true or false")
    if kind == "is_empty":
        return {key: {"$exists": not value}}
    return {key: None} if value else {key: {"$ne": None}}


def _key(field, where: str) -> str:
    if isinstance(field, dict) and isinstance(field.get("key"), str) and set(field) == {"key"}:
        return field["key"]
    raise InvalidInputError(f"{where}: expected {{'key': <payload key>}}; got {field!r}")


def _scalar(value, where: str):
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, float)):
        return float(value)  # payload numbers are stored as float64 (see vqdb.integrations._payload)
    raise InvalidInputError(f"{where}: expected a string, number or boolean; got {value!r}")


def _match(match, where: str):
    if not isinstance(match, dict) or len(match) != 1:
        raise InvalidInputError(f"{where} must hold exactly one of 'value', 'any', 'except'; got {match!r}")
    ((kind, value),) = match.items()
    if kind == "value":
        return _scalar(value, where + ".value")
    if kind in ("any", "except"):
        if not isinstance(value, list):
            raise InvalidInputError(f"{where}.{kind} must be a list; got {value!r}")
        values = [_scalar(v, f"{where}.{kind}") for v in value]
        return {"$in" if kind == "any" else "$nin": values}
    raise InvalidInputError(
        f"{where}: match kind {kind!r} is not supported by vqdb's Qdrant subset (value, any, except)"
    )


def _range(rng, where: str) -> dict:
    if not isinstance(rng, dict) or not rng:
        raise InvalidInputError(f"{where} must be an object with gt / gte / lt / lte")
    unknown = [k for k in rng if k not in ("gt", "gte", "lt", "lte")]
    if unknown:
        raise InvalidInputError(f"{where}: unknown range field(s) {unknown}")
    out = {}
    for k, v in rng.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise InvalidInputError(f"{where}.{k} must be a number (or an ISO date-time string); got {v!r}")
        out["$" + k] = float(v) if isinstance(v, (int, float)) else v
    if not out:
        raise InvalidInputError(f"{where} has no bound")
    return out


# ---- payload selectors ----------------------------------------------------------------------------


def select_payload(payload: dict, selector) -> dict | None:
    """Apply a Qdrant ``with_payload`` selector (bool, list of keys, {"include"} or {"exclude"})."""
    if selector is None or selector is True:
        return payload
    if selector is False:
        return None
    if isinstance(selector, list):
        return {k: payload[k] for k in selector if k in payload}
    if isinstance(selector, dict) and set(selector) == {"include"} and isinstance(selector["include"], list):
        return {k: payload[k] for k in selector["include"] if k in payload}
    if isinstance(selector, dict) and set(selector) == {"exclude"} and isinstance(selector["exclude"], list):
        return {k: v for k, v in payload.items() if k not in selector["exclude"]}
    raise InvalidInputError(
        f"with_payload must be a bool, a list of keys, {{'include': [...]}} or {{'exclude': [...]}}; got {selector!r}"
    )


def wants_vector(selector) -> bool:
    if selector is None or isinstance(selector, bool):
        return bool(selector)
    if isinstance(selector, list) and all(isinstance(s, str) for s in selector):
        if any(s != "" for s in selector):
            raise InvalidInputError("named vectors are not supported by vqdb's Qdrant subset (with_vector)")
        return True
    raise InvalidInputError(f"with_vector must be a bool; got {selector!r}")
