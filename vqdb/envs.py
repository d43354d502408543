"""The only place that reads environment variables.

``VQDB_BACKEND``      force a kernel backend by name (``reference``, ``numba``, ``torch``, ...).
``VQDB_NUMBA_CACHE``  ``0`` disables numba's on-disk compile cache (default on).
``VQDB_LOG_LEVEL``    logging level of the ``vqdb`` logger (default ``WARNING``).
``VQDB_DATA_DIR``     default data directory of ``vqdb serve`` (default ``./vqdb-data``).
"""

from __future__ import annotations

import os


def backend() -> str | None:
    value = os.environ.get("VQDB_BACKEND", "").strip()
    return value or None


def numba_cache() -> bool:
    return os.environ.get("VQDB_NUMBA_CACHE", "1").strip() not in {"0", "false", "no"}


def log_level() -> str:
    return os.environ.get("VQDB_LOG_LEVEL", "WARNING").upper()


def shared_data_dir() -> str | None:
    """Where the full real data sets live (``../shared/data`` next to a checkout), if present."""
    explicit = os.environ.get("VQDB_SHARED_DATA")
    if explicit:
        return explicit if os.path.isdir(explicit) else None
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, "..", "..", "shared", "data"))
    return candidate if os.path.isdir(candidate) else None
