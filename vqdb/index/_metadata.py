"""Per-vector metadata as Arrow tables: input conversion, the index-wide schema, alignment.

The index keeps one metadata schema, the union of every field ever added. A segment written before a
field existed simply lacks the column; :func:`align` adds it as nulls when a filter or ``get`` needs it.
A field keeps the type it was first given (a field first seen with only nulls takes the first concrete
type that arrives). Later values must have that type, or widen to it without loss (an integer into a
float field, int32 into int64, string into large_string); nothing is ever coerced: a boolean field
given 5, an integer field given true, a string field given 5 are errors.

Limits: at most :data:`MAX_FIELDS_PER_POINT` fields per vector and :data:`MAX_FIELDS` per index (a
filter or ``get`` touches the index's fields, so an unbounded union made every search slow);
:meth:`Index.compact` drops the fields no live vector has any more.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import InvalidInputError

RESERVED_PREFIX = "__"
MAX_FIELDS_PER_POINT = 256
MAX_FIELDS = 1024
MAX_FIELD_NAME = 256  # characters


def empty_schema() -> pa.Schema:
    return pa.schema([])


def as_metadata_table(metadata, n: int) -> pa.Table:
    """Convert user metadata for ``n`` vectors into a ``pa.Table`` (zero columns when None).

    Accepts None, a list of n dicts (None entries mean "no fields"), a ``pa.Table`` / ``pa.RecordBatch``,
    a dict of n-long columns, or a pandas DataFrame.
    """
    if metadata is None:
        return pa.table({})
    try:
        if isinstance(metadata, pa.RecordBatch):
            table = pa.Table.from_batches([metadata])
        elif isinstance(metadata, pa.Table):
            table = metadata
        elif isinstance(metadata, dict):
            table = pa.table(metadata)
        elif type(metadata).__name__ == "DataFrame" and hasattr(metadata, "columns"):
            table = pa.Table.from_pandas(metadata, preserve_index=False)
        elif isinstance(metadata, (list, tuple)):
            rows = list(metadata)
            bad = next((i for i, r in enumerate(rows) if r is not None and not isinstance(r, dict)), None)
            if bad is not None:
                raise InvalidInputError(
                    f"metadata[{bad}] must be a dict or None; got {type(rows[bad]).__name__}"
                )
            if len(rows) != n:
                raise InvalidInputError(f"metadata has {len(rows)} entries; expected {n} (one per vector)")
            wide = next((i for i, r in enumerate(rows) if r and len(r) > MAX_FIELDS_PER_POINT), None)
            if wide is not None:
                raise InvalidInputError(
                    f"metadata[{wide}] has {len(rows[wide])} fields; at most {MAX_FIELDS_PER_POINT} per vector"
                )
            keys = list(dict.fromkeys(k for r in rows if r for k in r))  # union of keys, first-seen order
            if len(keys) > MAX_FIELDS:
                raise InvalidInputError(f"metadata has {len(keys)} distinct fields; at most {MAX_FIELDS}")
            table = pa.table({k: pa.array([r.get(k) if r else None for r in rows]) for k in keys})
        else:
            raise InvalidInputError(
                f"metadata must be a list of dicts, a pyarrow Table, a dict of columns or None; got {type(metadata).__name__}"
            )
    except (pa.ArrowException, TypeError) as exc:
        raise InvalidInputError(f"metadata could not be converted to Arrow: {exc}") from None
    if table.num_columns == 0:
        return pa.table({})
    if table.num_rows != n:
        raise InvalidInputError(f"metadata has {table.num_rows} rows; expected {n} (one per vector)")
    if not isinstance(metadata, (list, tuple)) and table.num_columns > MAX_FIELDS_PER_POINT:
        raise InvalidInputError(
            f"metadata has {table.num_columns} columns; at most {MAX_FIELDS_PER_POINT} fields per vector"
        )
    for name in table.column_names:
        if isinstance(name, str) and len(name) > MAX_FIELD_NAME:
            raise InvalidInputError(
                f"metadata field name of {len(name)} characters; at most {MAX_FIELD_NAME}"
            )
        if not isinstance(name, str) or not name or name.startswith(RESERVED_PREFIX):
            raise InvalidInputError(
                f"metadata field names must be non-empty and not start with '{RESERVED_PREFIX}'; got {name!r}"
            )
    if len(set(table.column_names)) != table.num_columns:
        raise InvalidInputError(f"metadata has duplicate field names: {table.column_names}")
    return table.combine_chunks()


def _widens(src: pa.DataType, dst: pa.DataType) -> bool:
    """True when values of type ``src`` go into a field of type ``dst`` without any loss or reinterpretation."""
    t = pa.types
    if src == dst or t.is_null(src):
        return True
    if t.is_integer(src) and (t.is_integer(dst) or t.is_floating(dst)):
        return True  # integers into an integer field (range checked by a safe cast) or a float field
    if t.is_floating(src) and t.is_floating(dst):
        return src.bit_width <= dst.bit_width
    if (t.is_string(src) or t.is_large_string(src)) and (t.is_string(dst) or t.is_large_string(dst)):
        return True
    if (t.is_binary(src) or t.is_large_binary(src)) and (t.is_binary(dst) or t.is_large_binary(dst)):
        return True
    if (t.is_list(src) or t.is_large_list(src)) and (t.is_list(dst) or t.is_large_list(dst)):
        return _widens(src.value_type, dst.value_type)
    return False


def merge_schema(schema: pa.Schema, table: pa.Table) -> tuple[pa.Schema, pa.Table]:
    """Union ``schema`` with the fields of ``table``; cast ``table`` to the result. Pure: nothing mutated.

    Raises
    ------
    InvalidInputError
        When values do not have their field's type (and do not widen to it without loss: see the
        module docstring), or the index would have more than :data:`MAX_FIELDS` fields.
    """
    fields = {f.name: f for f in schema}
    order = list(schema.names)
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        old = fields.get(name)
        if old is None:
            fields[name] = pa.field(name, col.type)
            order.append(name)
        elif col.type != old.type:
            if pa.types.is_null(old.type):
                fields[name] = pa.field(name, col.type)  # first concrete type wins
            elif not _widens(col.type, old.type):
                raise InvalidInputError(
                    f"metadata field {name!r} has type {old.type} in this index; got {col.type} values "
                    "(values are never converted: give the field's type)"
                )
            else:
                try:
                    col = col.cast(old.type, safe=True)
                except (pa.ArrowException, TypeError) as exc:
                    raise InvalidInputError(
                        f"metadata field {name!r} has type {old.type} in this index; got {col.type} values that "
                        f"do not fit it ({exc})"
                    ) from None
        columns[name] = col
    if len(order) > MAX_FIELDS:
        raise InvalidInputError(
            f"this write would give the index {len(order)} metadata fields; at most {MAX_FIELDS} "
            "(compact() drops the fields no live vector has)"
        )
    new_schema = pa.schema([fields[n] for n in order])
    return new_schema, pa.table(columns) if columns else pa.table({})


def prune(meta: pa.Table, schema: pa.Schema) -> tuple[pa.Table, pa.Schema]:
    """``meta`` and ``schema`` without the fields that have no value in any row of ``meta`` (compaction:
    ``meta`` holds every live row)."""
    keep = [n for n in meta.column_names if meta.column(n).null_count < meta.num_rows]
    return (meta.select(keep) if keep else pa.table({})), pa.schema([f for f in schema if f.name in keep])


def align(meta: pa.Table, schema: pa.Schema, n: int, names: list[str] | None = None) -> pa.Table:
    """``meta`` (n rows or no columns) with exactly the fields of ``schema`` (or ``names``), nulls where absent.

    With ``names`` only those fields are looked at (schema order kept), so the cost does not grow with
    the number of fields the index has."""
    if names is None:
        wanted = list(schema)
    else:
        wanted = sorted(
            (schema.field(i) for i in {schema.get_field_index(m) for m in names} if i >= 0),
            key=lambda f: schema.get_field_index(f.name),
        )
    have = meta.schema
    cols, fields = [], []
    for f in wanted:
        i = have.get_field_index(f.name)
        if i >= 0:
            col = meta.column(i)
            if col.type != f.type:
                col = col.cast(f.type)
        else:
            col = pa.nulls(n, f.type)
        cols.append(col)
        fields.append(f)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields)) if cols else pa.table({})


def rows_as_dicts(table: pa.Table, n: int) -> list[dict]:
    """One dict per row; fields with no value are left out."""
    if table.num_columns == 0:
        return [{} for _ in range(n)]
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


def take(meta: pa.Table, rows: np.ndarray) -> pa.Table:
    if meta.num_columns == 0:
        return meta
    return meta.take(pa.array(rows, type=pa.int64()))
