"""``vqdb serve``: the REST search service (FastAPI + uvicorn) over durable ``vqdb.Index`` collections.

>>> from vqdb.server import Settings, create_app                          # doctest: +SKIP
>>> app = create_app(Settings(data="./vqdb-data", api_key="secret"))      # doctest: +SKIP

Importing this package loads nothing heavy; ``create_app`` imports FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module 'vqdb.server' has no attribute {name!r}")
