"""Checks of a persisted quantizer state (``state_dict()["arrays"]``) before kernels use it.

A state read back from disk passed its checksum, but a crafted file carries a valid checksum too.
The kernels index codebooks by code values and channels by permutation entries without bounds
checks, so every array is checked once, when the state is loaded:

- :func:`check_round_trip`: the rebuilt quantizer writes back exactly the arrays it was given (same
  names, dtypes, shapes and values). This rejects arrays a loader would silently reshape, cast, pad or
  truncate, unknown extra arrays, and NaNs.
- the loaders call :func:`finite`, :func:`signs` and :func:`codebook` for what a round trip cannot
  see: infinite or absurd values and codebook tables that do not fit their bit widths.

Each failure is an :class:`~vqdb.errors.InvalidInputError` naming the array; the index turns it
into a ``CorruptIndexError`` naming the file.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError

MAX_BITS = 8  # the widest per-coordinate code any quantizer writes


def _bad(name: str, what: str) -> InvalidInputError:
    return InvalidInputError(f"quantizer state array {name!r} {what}")


def finite(name: str, a, *, bound: float | None = None) -> np.ndarray:
    """``a`` unchanged if it is numeric, every value finite and, with ``bound``, none beyond ``±bound``
    (an orthonormal matrix has no entry beyond 1; a sketch of rows of norm sqrt(d) none beyond sqrt(d))."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise _bad(name, f"has dtype {a.dtype}, not a number")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise _bad(name, "holds NaN or infinite values")
    if bound is not None and a.size and float(np.abs(a).max()) > bound * (1 + 1e-3):
        raise _bad(name, f"holds values beyond ±{bound:g}, impossible for a rotation or sketch")
    return a


def signs(name: str, a, shape: tuple[int, ...]) -> np.ndarray:
    """A ±1 sign table of exactly ``shape``."""
    a = np.asarray(a)
    if a.shape != shape:
        raise _bad(name, f"has shape {a.shape}; expected {shape}")
    if a.dtype.kind != "f" or not np.isin(a, (-1.0, 1.0)).all():
        raise _bad(name, "must hold only -1.0 and +1.0")
    return a


def codebook(name: str, table: np.ndarray, centroids: np.ndarray, boundaries: np.ndarray, width: int) -> None:
    """A slice table ``(n, 3)`` of ``[start, stop, bits]`` rows, sorted and disjoint within
    ``[0, width)``, bits in 1..8; and per row, ``2**bits`` finite strictly increasing centroids with
    the ``2**bits - 1`` boundaries between them (each row padded to the widest)."""
    if table.ndim != 2 or table.shape[1] != 3:
        raise _bad(f"{name}.slices", f"has shape {table.shape}; expected (n, 3)")
    prev = 0
    for j, (start, stop, bits) in enumerate(table.tolist()):
        if not (prev <= start < stop <= width) or not 1 <= bits <= MAX_BITS:
            raise _bad(
                f"{name}.slices",
                f"row {j} = [{start}, {stop}, {bits}]: slices must be sorted, disjoint, within [0, {width}) "
                f"and 1..{MAX_BITS} bits",
            )
        prev = stop
        k = 1 << bits
        if centroids.shape[1] < k or boundaries.shape[1] < k - 1:
            raise _bad(f"{name}.centroids", f"row {j} has fewer than the {k} entries of {bits} bits")
        c, b = centroids[j, :k], boundaries[j, : k - 1]
        if not (np.isfinite(c).all() and np.isfinite(b).all()):
            raise _bad(f"{name}.centroids", f"row {j} holds NaN or infinite values")
        if not (np.all(c[:-1] < b) and np.all(b < c[1:])):
            raise _bad(
                f"{name}.boundaries",
                f"row {j}: centroids and boundaries must interleave, strictly increasing",
            )


def check_round_trip(quantizer, arrays: dict[str, np.ndarray]) -> None:
    """Raise unless ``quantizer.state_dict()["arrays"]`` is exactly ``arrays`` (names, dtypes, shapes,
    values; NaN never compares equal)."""
    back = quantizer.state_dict()["arrays"]
    for key in sorted(set(arrays) | set(back)):
        if key not in back:
            raise _bad(key, f"is not part of a {type(quantizer).__name__} state")
        if key not in arrays:
            raise _bad(key, "is missing")
        a, b = np.asarray(arrays[key]), np.asarray(back[key])
        if a.dtype != b.dtype or a.shape != b.shape:
            raise _bad(key, f"is {a.dtype} {a.shape}; this quantizer holds it as {b.dtype} {b.shape}")
        if not np.array_equal(a, b):
            raise _bad(key, "holds values this quantizer cannot represent (NaN, or outside its table)")


def rows(name: str, a, dtype, *, n: int | None = None, width: int | None = None) -> np.ndarray:
    """``a`` as a 2-D ``dtype`` table of ``n`` rows or ``width`` columns (a 1-D array is one row), its
    values unchanged by the cast."""
    a = np.asarray(a)
    if a.dtype.kind not in ("iu" if np.dtype(dtype).kind in "iu" else "f"):
        raise _bad(name, f"has dtype {a.dtype}; expected {np.dtype(dtype)}")
    table = a.reshape(1, -1) if a.ndim == 1 else a
    if (
        table.ndim != 2
        or (n is not None and table.shape[0] != n)
        or (width is not None and table.shape[1] != width)
    ):
        raise _bad(
            name,
            f"has shape {a.shape}; expected ({'n' if n is None else n}, {'k' if width is None else width})",
        )
    out = table.astype(dtype)
    if not np.array_equal(out, table):
        raise _bad(name, f"holds values that {np.dtype(dtype)} cannot represent")
    return out


def vector(name: str, a, dim: int) -> np.ndarray:
    """A finite ``(dim,)`` float vector (a fitted centre)."""
    a = np.asarray(a)
    if a.shape != (dim,) or a.dtype.kind != "f":
        raise _bad(name, f"is {a.dtype} {a.shape}; expected ({dim},) float")
    return finite(name, a)
