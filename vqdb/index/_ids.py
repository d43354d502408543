"""Ids as users have them: non-negative integers, or strings (UUIDs included).

An index is either integer-id or string-id (``id_type`` ``"int"`` / ``"str"``), fixed by its first write
(or at creation) and persisted. Inside, every row is keyed by an int64 **key**, so lookups, tombstones,
the WAL's deletes and the scans are the same code for both kinds:

- integer ids: the key *is* the id;
- string ids: the key is a 63-bit BLAKE2b hash of the id's UTF-8 bytes (:func:`str_keys`), and the
  string itself is stored next to it (segment / WAL column ``__sid``). Every lookup compares the stored
  string, so a hash collision can never return the wrong row; the rare string whose key is already held
  by another string gets an alternate key (:func:`alternate_key`), remembered in a small alias map
  (persisted in the manifest, rebuilt from the WAL on replay).

String ids round-trip exactly as given (no case folding or UUID normalisation); ``uuid.UUID`` objects
are taken as their canonical string ``str(u)``.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np

from ..errors import DimensionMismatchError, DTypeError, InvalidInputError

INT, STR = "int", "str"
ID_TYPES = (INT, STR)
MAX_ID_BYTES = 512  # longest string id, in UTF-8 bytes (Pinecone's limit; UUIDs are 36, SHA-256 hex 64)
_KEY_MASK = np.uint64((1 << 63) - 1)  # keys are >= 0: -1 pads search results


def as_user_ids(ids, n: int | None = None, *, name: str = "ids") -> tuple[str, np.ndarray]:
    """Validate ids and tell their kind.

    Parameters
    ----------
    ids : int, str, UUID, or a sequence / 1-D array of them (all of one kind)
    n : int, optional
        Required length.

    Returns
    -------
    kind : {"int", "str"}
    ids : ndarray of shape (n,)
        int64 for ``"int"``; object array of ``str`` for ``"str"``.

    Raises
    ------
    DTypeError
        Floats, bools, bytes, or integers mixed with strings.
    InvalidInputError
        A negative integer, an empty string, or a string over :data:`MAX_ID_BYTES` bytes.
    """
    if isinstance(ids, (str, uuid.UUID)) or np.isscalar(ids):
        ids = [ids]
    if not isinstance(ids, np.ndarray):
        ids = list(ids)
        try:
            fast = np.asarray(ids)  # a list of plain ints: the integer fast path, as before string ids
        except (ValueError, TypeError):
            fast = None
        if fast is not None and fast.dtype.kind in "iu":
            ids = fast
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        arr = ids
    elif isinstance(ids, np.ndarray) and ids.dtype.kind == "U":
        arr = ids.astype(object)
    else:
        items = ids if isinstance(ids, np.ndarray) else list(ids)
        values = items.tolist() if isinstance(items, np.ndarray) else items
        types = set(map(type, values))  # one C-level pass; the per-element check only when mixed
        kinds = {STR} if types == {str} else {_kind_of(x) for x in values}
        if len(kinds) > 1:
            if None in kinds:
                bad = next(x for x in items if _kind_of(x) is None)
                raise DTypeError(f"{name} must be integers or strings; got {type(bad).__name__} {bad!r}")
            raise DTypeError(f"{name} mix integers and strings; a collection's ids are all of one kind")
        kind = kinds.pop() if kinds else INT
        if kind is None:
            bad = next(iter(items))
            raise DTypeError(f"{name} must be integers or strings; got {type(bad).__name__} {bad!r}")
        if kind == INT:
            arr = np.asarray([int(x) for x in items], dtype=np.int64) if len(items) else np.zeros(0, np.int64)
        else:
            arr = np.empty(len(items), dtype=object)
            arr[:] = [x if isinstance(x, str) else str(x) for x in items]
    if arr.ndim != 1:
        raise DimensionMismatchError(f"{name} must be 1-D; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DimensionMismatchError(f"{name} has {arr.shape[0]} entries; expected {n} (one per vector)")
    if arr.dtype != object:
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise InvalidInputError(f"{name} must fit in int64; got {int(arr.max())}")
        arr = np.ascontiguousarray(arr, dtype=np.int64)
        if arr.size and arr.min() < 0:
            raise InvalidInputError(f"{name} must be >= 0 (-1 pads search results); got {int(arr.min())}")
        return INT, arr
    _check_strings(arr, name)
    return STR, arr


def _kind_of(x) -> str | None:
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, (int, np.integer)):
        return INT
    if isinstance(x, (str, uuid.UUID)):
        return STR
    return None


def _check_strings(arr: np.ndarray, name: str) -> None:
    if not arr.size:
        return
    lengths = np.fromiter(map(len, arr.tolist()), dtype=np.int64, count=arr.size)
    if lengths.min() == 0:
        raise InvalidInputError(f"{name} must not contain the empty string")
    if lengths.max() * 4 <= MAX_ID_BYTES:  # UTF-8 has at most 4 bytes per character
        return
    for s in arr[lengths * 4 > MAX_ID_BYTES].tolist():
        if len(s.encode("utf-8")) > MAX_ID_BYTES:
            raise InvalidInputError(
                f"{name} has a string of {len(s.encode('utf-8'))} UTF-8 bytes; at most {MAX_ID_BYTES} are allowed"
                f" (starts {s[:40]!r})"
            )


def check_kind(kind: str, id_type: str | None, *, name: str = "ids") -> None:
    """Refuse ids of the other kind than the collection's (``id_type`` None: not fixed yet)."""
    if id_type is not None and kind != id_type:
        want = "integers" if id_type == INT else "strings"
        got = "integers" if kind == INT else "strings"
        raise DTypeError(f"this collection has {want} as ids; {name} are {got} (one kind per collection)")


def check_id_type(value) -> str | None:
    if value is not None and value not in ID_TYPES:
        raise InvalidInputError(f"id_type must be 'int', 'str' or None; got {value!r}")
    return value


def duplicates(ids: np.ndarray) -> list:
    """Up to 10 ids that repeat within ``ids`` (int64 or object strings); empty when all are distinct."""
    if ids.dtype != object:
        uniq, counts = np.unique(ids, return_counts=True)
        return uniq[counts > 1][:10].tolist()
    if len(set(ids.tolist())) == ids.size:
        return []
    seen, dup = set(), []
    for s in ids.tolist():
        if s in seen and s not in dup:
            dup.append(s)
        seen.add(s)
    return dup[:10]


def str_keys(strings) -> np.ndarray:
    """(n,) int64 primary keys of string ids: the first 8 bytes of BLAKE2b(utf-8), top bit cleared."""
    blake = hashlib.blake2b
    buf = b"".join(blake(s.encode("utf-8"), digest_size=8).digest() for s in strings)
    if not buf:
        return np.zeros(0, np.int64)
    return (np.frombuffer(buf, dtype="<u8") & _KEY_MASK).astype(np.int64)


def alternate_key(s: str, attempt: int) -> int:
    """The ``attempt``-th (>= 1) alternate key of string id ``s`` (used when its primary key is taken)."""
    digest = hashlib.blake2b(s.encode("utf-8"), digest_size=8, salt=attempt.to_bytes(8, "little")).digest()
    return int(np.frombuffer(digest, dtype="<u8")[0] & _KEY_MASK)


def new_str_ids(n: int) -> np.ndarray:
    """(n,) object array of fresh random UUID4 strings (ids of a string-id add without ids)."""
    out = np.empty(n, dtype=object)
    out[:] = [str(uuid.uuid4()) for _ in range(n)]
    return out
