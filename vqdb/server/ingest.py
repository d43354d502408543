"""Turn request bodies into ``(vectors, ids, payloads)``: (n, d) float32, (n,) int64, list of dicts or None.

All checks happen here, with messages naming what is wrong: dimension, finite values, one id per
vector, no id twice in one request, payload column types.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from .._validation import as_float32_matrix
from ..errors import DimensionMismatchError, InvalidInputError, RequestTooLargeError
from ..index._ids import as_user_ids, duplicates
from .arrow_size import inflated_size
from .schemas import INT64_MAX

ARROW_STREAM = "application/vnd.apache.arrow.stream"  # the media type of Arrow IPC stream bodies
Batch = tuple[np.ndarray, np.ndarray, "list[dict | None] | None"]


def unique_ids(ids) -> np.ndarray:
    """int64 ids or an object array of string ids (all of one kind), refusing duplicates (an upsert of
    the same id twice in one call is ambiguous)."""
    _, arr = as_user_ids(ids)  # DTypeError (400) for mixed kinds, floats, bools
    dup = duplicates(arr)
    if dup:
        raise InvalidInputError(f"id {dup[0]!r} appears more than once in this request")
    return arr


def from_points(points, dim: int) -> Batch:
    """From ``PointsUpsert.points`` (already schema-validated pydantic models)."""
    widths = {len(p.vector) for p in points}
    if widths != {dim}:
        bad = next(i for i, p in enumerate(points) if len(p.vector) != dim)
        raise DimensionMismatchError(
            f"points[{bad}].vector has {len(points[bad].vector)} dimensions; this collection expects {dim}"
        )
    with np.errstate(over="ignore"):  # 1e39 becomes inf here and is refused just below
        vectors = as_float32_matrix(
            np.array([p.vector for p in points], dtype=np.float32), dim, name="vectors"
        )
    ids = unique_ids([p.id for p in points])
    payloads = [p.payload for p in points]
    return vectors, ids, (payloads if any(p for p in payloads) else None)


def from_b64(body, dim: int) -> Batch:
    """From ``PointsB64``: base64 of little-endian float32, row-major (n, dim)."""
    try:
        raw = base64.b64decode(body.vectors, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"'vectors' is not valid base64: {exc}") from None
    if body.ids is None:  # the server assigns ids (an add)
        if len(raw) % (dim * 4) or not raw:
            raise DimensionMismatchError(
                f"'vectors' decodes to {len(raw)} bytes, not a whole number of {dim}-d float32 vectors"
            )
        n = len(raw) // (dim * 4)
    else:
        n = len(body.ids)
    if len(raw) != n * dim * 4:
        raise DimensionMismatchError(
            f"'vectors' decodes to {len(raw)} bytes; {n} ids x {dim} dimensions x 4 bytes = {n * dim * 4} expected"
        )
    vectors = as_float32_matrix(np.frombuffer(raw, dtype="<f4").reshape(n, dim), dim, name="vectors")
    ids = None if body.ids is None else unique_ids(body.ids)
    payloads = body.payloads
    if payloads is not None and len(payloads) != n:
        raise DimensionMismatchError(f"'payloads' has {len(payloads)} entries; expected {n} (one per id)")
    return vectors, ids, (payloads if payloads is not None and any(p for p in payloads) else None)


def from_arrow_stream(data: bytes, dim: int, *, max_inflated: int) -> Batch:
    """From an Arrow IPC stream with columns ``id``, ``vector`` and optional payload columns.

    A compressed stream whose buffers would unpack to more than ``max_inflated`` bytes is refused
    (:class:`RequestTooLargeError`) from its metadata, before anything is decompressed.
    """
    import pyarrow as pa

    inflated = inflated_size(data, limit=max_inflated)
    if inflated > max_inflated:
        raise RequestTooLargeError(
            f"the Arrow stream unpacks to more than {max_inflated} bytes ({len(data)} bytes sent); this "
            "server's limit is VQDB_MAX_INFLATE_RATIO times the body size, at most VQDB_MAX_BULK_BYTES"
        )
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"body is not an Arrow IPC stream: {exc}") from None
    names = table.column_names
    if "id" not in names or "vector" not in names:
        raise InvalidInputError(f"the Arrow stream needs columns 'id' and 'vector'; got {names}")
    if table.num_rows == 0:
        raise InvalidInputError("the Arrow stream holds no rows")
    ids = _arrow_ids(table.column("id"))
    vectors = _arrow_vectors(table.column("vector"), dim)
    rest = table.drop_columns(["id", "vector"])
    payloads = None
    if rest.num_columns:
        for field in rest.schema:
            _check_payload_type(field)
        payloads = rest.to_pylist()
        for row in payloads:
            for key, value in row.items():
                if isinstance(value, float) and not np.isfinite(value):
                    raise InvalidInputError(
                        f"payload column {key!r} holds NaN or inf; payload floats must be finite"
                    )
    return vectors, ids, payloads


def queries_from_arrow(data: bytes, dim: int, *, max_inflated: int) -> np.ndarray:
    """(n, dim) float32 query vectors from an Arrow IPC stream with the one column ``vector``."""
    import pyarrow as pa

    if inflated_size(data, limit=max_inflated) > max_inflated:
        raise RequestTooLargeError(
            f"the Arrow stream unpacks to more than {max_inflated} bytes ({len(data)} bytes sent)"
        )
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"body is not an Arrow IPC stream: {exc}") from None
    if table.column_names != ["vector"]:
        raise InvalidInputError(
            f"the Arrow query stream needs exactly one column 'vector'; got {table.column_names}"
        )
    if table.num_rows == 0:
        raise InvalidInputError("the Arrow stream holds no rows")
    return _arrow_vectors(table.column("vector"), dim)


def _arrow_ids(column) -> np.ndarray:
    import pyarrow as pa

    if column.null_count:
        raise InvalidInputError("column 'id' holds nulls")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return unique_ids(column.to_numpy(zero_copy_only=False))
    if not pa.types.is_integer(column.type):
        raise InvalidInputError(f"column 'id' must be integers or strings; got {column.type}")
    arr = column.to_numpy()
    if pa.types.is_unsigned_integer(column.type) and arr.size and arr.max() > INT64_MAX:
        raise InvalidInputError("column 'id' holds values above int64")
    return unique_ids(arr.astype(np.int64))


def _arrow_vectors(column, dim: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise InvalidInputError(f"column 'vector' must be a (fixed-size) list of floats; got {kind}")
    if not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise InvalidInputError(f"column 'vector' must hold floats; got {kind}")
    if column.null_count:
        raise InvalidInputError("column 'vector' holds nulls")
    chunk = column.combine_chunks()
    lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != dim).any():
        bad = int(np.flatnonzero(lengths != dim)[0])
        raise DimensionMismatchError(
            f"row {bad} of 'vector' has {int(lengths[bad])} dimensions; expected {dim}"
        )
    values = chunk.flatten()
    if values.null_count:
        raise InvalidInputError("column 'vector' holds null values inside vectors")
    flat = values.to_numpy(zero_copy_only=False)
    return as_float32_matrix(flat.reshape(len(column), dim), dim, name="vector")


def _check_payload_type(field) -> None:
    import pyarrow as pa

    def scalar_ok(t) -> bool:
        return (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_null(t)
        )

    t = field.type
    ok = scalar_ok(t) or ((pa.types.is_list(t) or pa.types.is_large_list(t)) and scalar_ok(t.value_type))
    if not ok:
        raise InvalidInputError(
            f"payload column {field.name!r} has type {t}; payload columns must be strings, integers, floats, "
            "booleans or lists of those"
        )
