"""The vqdb exception tree.

Every error subclasses :class:`VqdbError` *and* the matching builtin, so callers may catch
either (``except ValueError`` keeps working).
"""

from __future__ import annotations


class VqdbError(Exception):
    """Base class of every error raised on purpose by vqdb."""


class InvalidInputError(VqdbError, ValueError):
    """An argument has the wrong value: NaN/inf, out-of-range bits, k <= 0, ..."""


class DimensionMismatchError(InvalidInputError):
    """An array has the wrong number of dimensions or the wrong width."""


class DTypeError(VqdbError, TypeError):
    """An array has a dtype vqdb refuses to reinterpret (e.g. codes that are not uint8)."""


class UnknownNameError(VqdbError, ValueError):
    """A name (preset, backend, variant, metric) is not one vqdb knows; the message lists the valid ones."""


class NotFoundError(VqdbError, KeyError):
    """An id or a collection does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep messages readable
        return str(self.args[0]) if self.args else ""


class DuplicateIdError(InvalidInputError):
    """The same id appears twice in one call, or an add would overwrite an existing id."""


class FilterError(InvalidInputError):
    """A metadata filter is malformed or names an unknown operator."""


class BackendUnavailableError(VqdbError, RuntimeError):
    """A kernel backend was requested but cannot run here; the message says why."""


class IncompatibleFormatError(VqdbError, RuntimeError):
    """An on-disk index was written by an incompatible format version."""


class CorruptIndexError(IncompatibleFormatError):
    """A file of an on-disk index failed its checksum or structural check, or is missing or not where
    it must be. ``file`` is the file's name inside the index directory (None for the directory itself)."""

    def __init__(self, message: str, file: str | None = None):
        super().__init__(message)
        self.file = file


class WalDamagedError(CorruptIndexError):
    """The write-ahead log holds a damaged record that is not the torn tail of an unacknowledged write:
    acknowledged writes after it cannot be read. Opening for writing is refused; ``Index.open(path,
    salvage=True)`` (or ``vqdb salvage PATH``) keeps the intact records and moves the damaged log aside."""


class NotFittedError(VqdbError, RuntimeError):
    """An operation needs state that ``fit`` has not produced yet."""


# ---- service errors (raised by ``vqdb serve`` and re-raised by ``vqdb.Client``) --------------------


class AlreadyExistsError(VqdbError, ValueError):
    """A collection (or snapshot) of that name already exists."""


class AuthenticationError(VqdbError, PermissionError):
    """No API key, or an unknown one, was presented (HTTP 401)."""


class PermissionDeniedError(VqdbError, PermissionError):
    """The API key is valid but its scope does not allow the operation (HTTP 403)."""


class DamagedCollectionError(VqdbError, RuntimeError):
    """A collection's directory exists but its files cannot be opened (HTTP 409 on every request naming
    it, create included; deleting it frees the name)."""


class RequestTooLargeError(InvalidInputError):
    """A request body is larger than the server accepts (HTTP 413)."""


class ServiceError(VqdbError, RuntimeError):
    """The service failed or could not be reached; the message carries the HTTP status and detail."""


# ---- distributed errors (raised by ``vqdb.distributed``) ------------------------------------------


class ShardUnavailableError(VqdbError, RuntimeError):
    """A shard of a ``ShardedIndex`` died or did not answer, and could not be restarted in time.

    ``shards`` lists the shard numbers concerned. A search never returns a silently partial result: it
    raises this unless the caller passed ``allow_partial=True``.
    """

    def __init__(self, message: str, shards=()):
        super().__init__(message)
        self.shards = tuple(int(s) for s in shards)
