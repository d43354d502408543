"""Boundary validation. Every public entry point converts its inputs here; private code assumes valid input."""

from __future__ import annotations

import numpy as np

from .errors import DimensionMismatchError, DTypeError, InvalidInputError


def as_float32_matrix(
    x, dim: int | None = None, *, name: str = "x", allow_nonfinite: bool = False
) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 array of shape (n, dim).

    Raises a clear error for 1-D input, a wrong width, a non-numeric dtype or NaN/inf values.
    """
    arr = np.asarray(x)
    if arr.dtype != np.float32 and (  # float32 (the usual input) is numeric: skip the dtype checks
        arr.dtype == object
        or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer))
    ):
        raise DTypeError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DimensionMismatchError(
            f"{name} must be 2-D of shape (n, {dim if dim is not None else 'd'}); got {arr.ndim}-D shape {arr.shape}"
            + (" (use x[None, :] for a single vector)" if arr.ndim == 1 else "")
        )
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(f"{name} has {arr.shape[1]} dimensions per row; expected {dim}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not allow_nonfinite and out.size and not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise InvalidInputError(
            f"{name} contains NaN or inf (first bad row: {bad}); all values must be finite"
        )
    return out


def as_codes(codes, code_size: int, *, name: str = "codes") -> np.ndarray:
    """Return ``codes`` as C-contiguous uint8 of shape (n, code_size); refuse other dtypes rather than cast."""
    arr = np.asarray(codes)
    if arr.dtype != np.uint8:
        raise DTypeError(f"{name} must be uint8; got {arr.dtype}")
    if arr.ndim != 2:
        raise DimensionMismatchError(f"{name} must be 2-D of shape (n, {code_size}); got shape {arr.shape}")
    if arr.shape[1] != code_size:
        raise DimensionMismatchError(
            f"{name} rows are {arr.shape[1]} bytes wide; this quantizer's code_size is {code_size}"
        )
    return np.ascontiguousarray(arr)


def as_ids(ids, n: int | None = None, *, name: str = "ids") -> np.ndarray:
    """Return ``ids`` as a 1-D int64 array (of length n when given); refuse floats and NaN."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DimensionMismatchError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DTypeError(f"{name} must be integers; got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise DimensionMismatchError(f"{name} has {arr.shape[0]} entries; expected {n} (one per vector)")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"k must be a positive integer; got {k!r}")
    if k <= 0:
        raise InvalidInputError(f"k must be a positive integer; got {k}")
    return int(k)


def check_choice(value, options, *, name: str):
    if value not in options:
        from .errors import UnknownNameError

        raise UnknownNameError(f"unknown {name} {value!r}; expected one of {sorted(options)}")
    return value


def check_int_range(value, lo: int, hi: int, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InvalidInputError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
    return int(value)
