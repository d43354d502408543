"""Metadata filters: a Mongo-style dict or a ``pyarrow.compute.Expression`` -> a boolean row mask.

Dict form (the REST API uses it too)::

    {"lang": "en",                              # implicit $eq
     "year": {"$gte": 2020, "$lt": 2025},       # several operators on one field: all must hold
     "tag": {"$in": ["a", "b"]},
     "$or": [{"src": "wiki"}, {"score": {"$gt": 0.5}}],
     "$not": {"draft": True}}

Operators: ``$eq $ne $lt $lte $gt $gte $in $nin $exists`` on a field, ``$not`` on a field or on a
whole sub-filter, ``$and $or $nor`` over lists of sub-filters. Entries of one dict are AND-ed.

Null semantics (Mongo's): a missing value (null, or a field a row never had) matches ``$ne``, ``$nin``,
``{"f": None}`` and ``{"f": {"$exists": False}}``; it never matches ``$eq``, ranges or ``$in``. Every
leaf yields true/false (never null), so ``$not`` is plain negation. A ``pyarrow.compute.Expression``
is used as given (Arrow semantics: a null result does not match).

A filter naming a field no row of the index has ever had is an error (it is almost always a typo).

Limits (a filter is user input, often from a request): nesting at most :data:`MAX_DEPTH` levels, at
most :data:`MAX_CONDITIONS` operators and sub-filters in all, at most :data:`MAX_IN_VALUES` values in
one ``$in``/``$nin``; integers within int64 (uint64 for values above it).
"""

from __future__ import annotations

import datetime as _dt
import numbers
import re

import numpy as np
import pyarrow as pa

from .._core.lazy import lazy_import
from ..errors import FilterError

# pyarrow.compute takes ~0.1 s to import (it builds a wrapper per compute function): only a filter needs it
pc = lazy_import("pyarrow.compute", globals(), "pc")

FIELD_OPERATORS = ("$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$exists", "$not")
LOGICAL_OPERATORS = ("$and", "$or", "$nor", "$not")
_COMPARE = {
    "$eq": "equal",
    "$ne": "not_equal",
    "$lt": "less",
    "$lte": "less_equal",
    "$gt": "greater",
    "$gte": "greater_equal",
}
MAX_DEPTH = 32
MAX_CONDITIONS = 1024
MAX_IN_VALUES = 65536
_INT_MIN, _UINT_MAX = -(1 << 63), (1 << 64) - 1
_SCALARS = (str, bytes, bool, numbers.Number, _dt.date, _dt.datetime, _dt.time, _dt.timedelta, np.generic)


def _coalesce(expr: pc.Expression, value: bool) -> pc.Expression:
    return pc.Expression._call("coalesce", [expr, pc.scalar(value)])


def _true() -> pc.Expression:
    return pc.scalar(True)


def _and(parts: list) -> pc.Expression:
    if not parts:
        return _true()
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out


def _or(parts: list) -> pc.Expression:
    if not parts:
        return pc.scalar(False)
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out


def _check_scalar(value, op: str, name: str):
    if not isinstance(value, _SCALARS) or isinstance(value, np.ndarray):
        raise FilterError(
            f"filter {op} on field {name!r} needs a scalar value (str, number, bool, date); got {str(value)[:100]!r}"
        )
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _UINT_MAX:
        raise FilterError(f"filter {op} on field {name!r}: integer {value} is outside the 64-bit range")
    return value


def _field_op(name: str, op: str, value) -> pc.Expression:
    f = pc.field(name)
    if op == "$not":
        if not isinstance(value, dict):
            raise FilterError(
                f"$not on field {name!r} takes a dict of operators, e.g. {{'$not': {{'$gt': 3}}}}; got {value!r}"
            )
        return ~_field(name, value)
    if op == "$exists":
        if not isinstance(value, (bool, np.bool_)):
            raise FilterError(f"$exists on field {name!r} takes true or false; got {value!r}")
        return f.is_valid() if value else f.is_null()
    if op in ("$in", "$nin"):
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise FilterError(f"{op} on field {name!r} takes a list of values; got {value!r}")
        values = list(value)
        if len(values) > MAX_IN_VALUES:
            raise FilterError(f"{op} on field {name!r} has {len(values)} values; at most {MAX_IN_VALUES}")
        values = [_check_scalar(v, op, name) for v in values]
        if not values:
            return pc.scalar(op == "$nin")
        hit = _coalesce(f.isin(values), False)
        return hit if op == "$in" else ~hit
    if op not in _COMPARE:
        raise FilterError(
            f"unknown filter operator {op!r} on field {name!r}; expected one of {list(FIELD_OPERATORS)}"
        )
    if value is None:
        if op == "$eq":
            return f.is_null()
        if op == "$ne":
            return f.is_valid()
        raise FilterError(f"{op} on field {name!r} cannot compare with None")
    value = _check_scalar(value, op, name)
    expr = pc.Expression._call(_COMPARE[op], [f, pc.scalar(value)])
    return _coalesce(expr, op == "$ne")  # a missing value matches $ne only


def _field(name: str, cond) -> pc.Expression:
    if isinstance(cond, dict):
        if not cond:
            raise FilterError(f"empty operator dict for field {name!r}")
        ops = list(cond)
        if not all(isinstance(o, str) and o.startswith("$") for o in ops):
            raise FilterError(
                f"field {name!r}: a dict value must hold only operators ({', '.join(FIELD_OPERATORS)}); got keys {ops}"
                " (nested documents are not supported)"
            )
        return _and([_field_op(name, o, cond[o]) for o in ops])
    if isinstance(cond, (list, tuple, set)):
        raise FilterError(f"field {name!r}: a list is not a value; use {{'{name}': {{'$in': [...]}}}}")
    return _field_op(name, "$eq", cond)


def _sub_filters(op: str, value) -> list:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, dict) for v in value):
        raise FilterError(f"{op} takes a non-empty list of filter dicts; got {value!r}")
    return [_compile_dict(v) for v in value]


def _compile_dict(flt: dict) -> pc.Expression:
    parts = []
    for key, value in flt.items():
        if not isinstance(key, str):
            raise FilterError(f"filter keys must be field names or operators; got {key!r}")
        if key.startswith("$"):
            if key == "$and":
                parts.append(_and(_sub_filters(key, value)))
            elif key == "$or":
                parts.append(_or(_sub_filters(key, value)))
            elif key == "$nor":
                parts.append(~_or(_sub_filters(key, value)))
            elif key == "$not":
                if not isinstance(value, dict) or not value:
                    raise FilterError(f"$not takes a non-empty filter dict; got {value!r}")
                parts.append(~_compile_dict(value))
            else:
                raise FilterError(
                    f"unknown logical operator {key!r}; expected one of {list(LOGICAL_OPERATORS)}"
                    " (field operators go inside a field: {'year': {'$gte': 2020}})"
                )
        else:
            parts.append(_field(key, value))
    return _and(parts)


def _dict_fields(flt, out: set) -> set:
    if isinstance(flt, dict):
        for key, value in flt.items():
            if isinstance(key, str) and key.startswith("$"):
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    _dict_fields(v, out)
            else:
                out.add(key)
    return out


def _check_size(flt) -> None:
    """Depth and size limits, checked without recursion (a deep filter must not hit Python's stack)."""
    stack, conditions = [(flt, 1)], 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FilterError(f"filter is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            conditions += len(node)
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list, tuple)))
        elif isinstance(node, (list, tuple)):
            if node and all(isinstance(v, dict) for v in node):
                stack.extend((v, depth) for v in node)  # a list of sub-filters: one level with its operator
            else:  # a list of values ($in): counted by its own limit
                continue
        if conditions > MAX_CONDITIONS:
            raise FilterError(f"filter has more than {MAX_CONDITIONS} conditions")


def field_names(flt, schema: pa.Schema | None = None) -> list[str] | None:
    """The metadata fields a filter reads: those a dict names; for an Expression, those it references
    (:func:`expression_fields`, given the index's ``schema``). None when unknown: every field is then
    aligned, which costs time proportional to the number of fields, never a wrong answer."""
    if isinstance(flt, dict):
        return sorted(_dict_fields(flt, set()))
    if isinstance(flt, pc.Expression) and schema is not None:
        return expression_fields(flt, schema)
    return None


# Arrow names the first field an expression references that a schema lacks: "No match for
# FieldRef.Name(x) in ...", or for a nested reference "FieldRef.Nested(FieldRef.Name(x) ...": x is the
# top-level field.
_MISSING_FIELD = re.compile(r"No match for FieldRef\.(?:Nested\(FieldRef\.)?Name\(([^)]*)\)")


def _project(expr: pc.Expression, table: pa.Table) -> pa.ChunkedArray:
    """``expr`` evaluated over the rows of ``table`` (an Acero projection on the calling thread: no
    column is copied, and no thread pool is woken for a small table)."""
    from pyarrow import acero

    decl = acero.Declaration.from_sequence(
        [
            acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
            acero.Declaration("project", acero.ProjectNodeOptions([expr], ["mask"])),
        ]
    )
    return decl.to_table(use_threads=False).column(0)


def _bind(expr: pc.Expression, schema: pa.Schema) -> None:
    """Raise the Arrow error ``expr`` gives against ``schema`` (unknown field, type mismatch), if any,
    or TypeError when it does not give booleans."""
    col = _project(expr, schema.empty_table())
    if not pa.types.is_boolean(col.type):
        raise TypeError(f"a filter must evaluate to booleans; this one gives {col.type}")


def expression_fields(expr: pc.Expression, schema: pa.Schema) -> list[str] | None:
    """The top-level fields of ``schema`` that ``expr`` references, in the order Arrow reports them.

    Found by binding ``expr`` against growing sub-schemas of ``schema`` (same names, same types): each
    failure names one more missing field, and the first bind that succeeds proves the set complete (a
    named reference resolves to the same column in the sub-schema as in the whole one). None when that
    cannot be told: a positional reference (``pc.field(0)``, which a sub-schema would re-point), or an
    error that names no field of ``schema``."""
    if "FieldPath(" in str(expr):
        return None
    names: list[str] = []
    for _ in range(len(schema.names) + 1):
        try:
            _bind(expr, pa.schema([schema.field(n) for n in names]))
            return names
        except pa.ArrowInvalid as exc:
            found = _MISSING_FIELD.search(str(exc))
            if found is None or found.group(1) in names or schema.get_field_index(found.group(1)) < 0:
                return None
            names.append(found.group(1))
        except (pa.ArrowException, TypeError, ValueError):
            return None
    return None  # pragma: no cover - each round adds one field of schema


def compile_filter(flt, schema: pa.Schema) -> pc.Expression | None:
    """Compile a filter against the index's metadata ``schema``; raise :class:`FilterError` if malformed.

    Parameters
    ----------
    flt : dict, pyarrow.compute.Expression or None
    schema : pyarrow.Schema
        Union of all metadata fields of the index.

    Returns
    -------
    expr : pyarrow.compute.Expression or None (no filter)
    """
    if flt is None:
        return None
    if isinstance(flt, pc.Expression):
        expr = flt
        names = expression_fields(expr, schema)
    elif isinstance(flt, dict):
        _check_size(flt)
        names = sorted(_dict_fields(flt, set()))
        unknown = [n for n in names if schema.get_field_index(n) < 0]
        if unknown:
            raise FilterError(
                f"filter names unknown metadata field(s) {unknown}; known fields: {schema.names}"
            )
        expr = _compile_dict(flt)
    else:
        raise FilterError(f"filter must be a dict or a pyarrow.compute.Expression; got {type(flt).__name__}")
    # bind now so that type errors surface before any scan; against only the fields it reads when they
    # are known (binding against a 1,000-field schema takes ~15 ms)
    bound = schema if names is None else pa.schema([schema.field(n) for n in names])
    try:
        _bind(expr, bound)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise FilterError(f"filter {flt!r} does not fit the metadata schema ({schema}): {exc}") from None
    return expr


def evaluate(expr: pc.Expression, table: pa.Table) -> np.ndarray:
    """(n,) bool mask of the rows of ``table`` that ``expr`` matches (null counts as no match).

    The expression is projected (Acero), so no column is copied or filtered.
    """
    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    try:
        col = _project(expr, table)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise FilterError(f"filter could not be evaluated: {exc}") from None
    if not pa.types.is_boolean(col.type):
        raise FilterError(f"filter must evaluate to booleans; {expr} gives {col.type}")
    if len(col) != n:
        raise FilterError(f"filter gave {len(col)} values for {n} rows")
    return col.fill_null(False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
