"""Nested JSON payloads <-> vqdb metadata rows, and filters on fields a collection has never seen.

vqdb metadata is flat, typed Arrow columns; framework and Qdrant payloads are nested JSON
(``{"metadata": {"source": "a.txt", "page": 3}}``). One row keeps both views:

* ``_payload``: the whole payload as JSON text, so what comes back is exactly what went in
  (nesting, lists, ints stay ints);
* one column per scalar leaf, named by its dotted path (``metadata.source``, ``metadata.page``), so
  filters run on the columns. Every number is stored as float64 (so one field may hold ints in one
  row and floats in another), booleans as bool, text as string. Lists and nulls live only in the
  JSON; filtering on a list-valued field is not supported.

Filters follow Mongo's null semantics (vqdb's), and a field that no row has (yet) behaves like a
missing value instead of raising: :func:`resolve_unknown` folds such conditions to true/false.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidInputError

BLOB = "_payload"
MATCH_ALL = True
MATCH_NONE = False


def to_row(payload: dict | None, *, unindexed: tuple[str, ...] = ()) -> dict:
    """The metadata row of one payload: the JSON blob plus one column per scalar leaf (leaves under
    the top-level keys ``unindexed`` stay in the JSON only: bulky parts nobody filters on)."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidInputError(f"a payload must be a JSON object (dict); got {type(payload).__name__}")
    try:
        blob = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"payload is not JSON-serialisable (finite numbers only): {exc}") from None
    row: dict[str, Any] = {BLOB: blob}
    _flatten({k: v for k, v in payload.items() if k not in unindexed} if unindexed else payload, "", row)
    return row


def _flatten(obj: dict, prefix: str, out: dict) -> None:
    for key, value in obj.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"payload keys must be non-empty strings; got {key!r}")
        path = prefix + key
        if path == BLOB or path.startswith("__"):
            raise InvalidInputError(f"payload key {path!r} is reserved (names starting '__', and {BLOB!r})")
        if isinstance(value, dict):
            _flatten(value, path + ".", out)
        elif isinstance(value, bool) or isinstance(value, str):
            out[path] = value
        elif isinstance(value, (int, float)):
            out[path] = float(value)
        # None and lists: kept in the JSON blob only


def from_row(row: dict | None) -> dict:
    """The payload of a metadata row: the JSON blob when present, else the columns re-nested."""
    row = row or {}
    blob = row.get(BLOB)
    if isinstance(blob, str):
        return json.loads(blob)
    out: dict = {}
    for key, value in row.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else node
        node[leaf] = value
    return out


# ---- filters on unknown fields -------------------------------------------------------------------


def resolve_unknown(flt: dict | None, known) -> dict | bool:
    """``flt`` (vqdb's Mongo-style dict) with every condition on a field not in ``known`` replaced by
    what it gives for a missing value; returns True (matches everything), False (matches nothing) or
    the reduced filter."""
    if flt is None or flt == {}:
        return MATCH_ALL
    return _dict(flt, set(known))


def _and(parts: list) -> dict | bool:
    if any(p is False for p in parts):
        return False
    rest = [p for p in parts if p is not True]
    if not rest:
        return True
    return rest[0] if len(rest) == 1 else {"$and": rest}


def _or(parts: list) -> dict | bool:
    if any(p is True for p in parts):
        return True
    rest = [p for p in parts if p is not False]
    if not rest:
        return False
    return rest[0] if len(rest) == 1 else {"$or": rest}


def _not(part: dict | bool) -> dict | bool:
    return (not part) if isinstance(part, bool) else {"$not": part}


def _dict(flt: dict, known: set) -> dict | bool:
    parts = []
    for key, value in flt.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidInputError(f"{key} takes a non-empty list of filters; got {value!r}")
            subs = [_dict(v, known) if isinstance(v, dict) else _bad(key, v) for v in value]
            parts.append(_and(subs) if key == "$and" else _or(subs) if key == "$or" else _not(_or(subs)))
        elif key == "$not":
            parts.append(_not(_dict(value, known) if isinstance(value, dict) else _bad(key, value)))
        elif key.startswith("$"):
            parts.append({key: value})  # let vqdb's compiler name the unknown operator
        elif key in known:
            parts.append({key: value})
        else:
            parts.append(_missing_matches(key, value))
    return _and(parts)


def _bad(op: str, value):
    raise InvalidInputError(f"{op} takes filter dicts; got {value!r}")


def _missing_matches(field: str, cond) -> bool:
    """Does a row without ``field`` match ``cond`` (Mongo semantics, as vqdb's filters)?"""
    if not isinstance(cond, dict):
        return cond is None
    out = True
    for op, value in cond.items():
        if op == "$eq":
            hit = value is None
        elif op == "$ne":
            hit = value is not None
        elif op in ("$lt", "$lte", "$gt", "$gte", "$in"):
            hit = False
        elif op == "$nin":
            hit = True
        elif op == "$exists":
            hit = not value
        elif op == "$not":
            hit = not _missing_matches(field, value)
        else:
            raise InvalidInputError(f"unknown filter operator {op!r} on field {field!r}")
        out = out and hit
    return out
