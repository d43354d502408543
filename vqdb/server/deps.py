"""``Annotated`` dependency aliases shared by the routers (also for extra routers, e.g. ``vqdb.rag``).

They are ``async`` (they only read app state, never block) so FastAPI calls them on the event loop
instead of hopping to a worker thread for each one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from .collections import Collection, CollectionStore
from .metrics import Metrics
from .schemas import NAME_PATTERN, SNAPSHOT_PATTERN
from .settings import Settings
from .snapshots import SnapshotStore

CollectionNamePath = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN, min_length=1, max_length=64, description="collection name", examples=["wordnet"]
    ),
]
SnapshotNamePath = Annotated[
    str, Path(pattern=SNAPSHOT_PATTERN, min_length=5, max_length=132, description="snapshot file name")
]


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> CollectionStore:
    return request.app.state.store


async def get_snapshots(request: Request) -> SnapshotStore:
    return request.app.state.snapshots


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[CollectionStore, Depends(get_store)]
SnapshotsDep = Annotated[SnapshotStore, Depends(get_snapshots)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_collection(name: CollectionNamePath, store: StoreDep) -> Collection:
    return store.get(name)


CollectionDep = Annotated[Collection, Depends(get_collection)]
