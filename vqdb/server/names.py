"""Validation of collection and snapshot names: they become directory and file names on disk."""

from __future__ import annotations

import re

from ..errors import InvalidInputError
from .schemas import NAME_PATTERN, SNAPSHOT_PATTERN

_NAME = re.compile(NAME_PATTERN)
_SNAPSHOT = re.compile(SNAPSHOT_PATTERN)


def check_collection_name(name: str) -> str:
    """Return ``name`` if it is a safe collection name, else raise :class:`InvalidInputError`.

    Safe: 1-64 characters from ``[A-Za-z0-9_.-]``, starting with a letter or digit — so no path
    separators, no ``..`` component, no hidden files, nothing the filesystem treats specially.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid collection name {str(name)[:80]!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def check_snapshot_name(name: str) -> str:
    if not isinstance(name, str) or not _SNAPSHOT.fullmatch(name):
        raise InvalidInputError(
            f"invalid snapshot name {str(name)[:140]!r}: expected '<letters, digits, _-.>.tar'"
        )
    return name
