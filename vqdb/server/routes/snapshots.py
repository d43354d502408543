"""Snapshots: create, list, download, delete, restore into a new collection, upload-and-restore.

Creating and restoring run in a worker thread (a tar of a large index takes a while); searches on
the collection continue meanwhile, writes to it wait until the tar is written.
"""

from __future__ import annotations

import os
import tempfile

import anyio
from fastapi import APIRouter, Request, status
from fastapi.responses import FileResponse, Response
from starlette.requests import ClientDisconnect

from ...errors import RequestTooLargeError
from ..auth import AdminAccess
from ..deps import CollectionDep, CollectionNamePath, SettingsDep, SnapshotNamePath, SnapshotsDep, StoreDep
from ..schemas import CollectionPublic, SnapshotList, SnapshotPublic, SnapshotRestore
from ._responses import PROTECTED, errors

router = APIRouter(
    prefix="/collections/{name}/snapshots",
    tags=["snapshots"],
    responses={**PROTECTED, **errors(404)},
    dependencies=[AdminAccess],
)

TAR = "application/x-tar"


@router.post(
    "",
    response_model=SnapshotPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Save the collection and write a consistent snapshot (tar)",
)
async def create_snapshot(collection: CollectionDep, snapshots: SnapshotsDep) -> SnapshotPublic:
    return SnapshotPublic(**await anyio.to_thread.run_sync(snapshots.create, collection))


@router.get(
    "",
    response_model=SnapshotList,
    summary="List snapshots of a collection (also of a deleted one: snapshots are kept)",
)
def list_snapshots(name: CollectionNamePath, snapshots: SnapshotsDep) -> SnapshotList:
    return SnapshotList(snapshots=[SnapshotPublic(**s) for s in snapshots.list(name)])


@router.get(
    "/{snapshot}",
    response_class=FileResponse,
    summary="Download a snapshot (tar)",
    responses={200: {"content": {TAR: {"schema": {"type": "string", "format": "binary"}}}}},
)
def download_snapshot(name: CollectionNamePath, snapshot: SnapshotNamePath, snapshots: SnapshotsDep):
    return FileResponse(snapshots.path(name, snapshot), media_type=TAR, filename=snapshot)


@router.delete(
    "/{snapshot}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a snapshot",
)
def delete_snapshot(
    name: CollectionNamePath, snapshot: SnapshotNamePath, snapshots: SnapshotsDep
) -> Response:
    snapshots.delete(name, snapshot)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{snapshot}/restore",
    response_model=CollectionPublic,
    status_code=status.HTTP_201_CREATED,
    responses=errors(409),
    summary="Restore a snapshot into a NEW collection",
)
async def restore_snapshot(
    name: CollectionNamePath, snapshot: SnapshotNamePath, body: SnapshotRestore, snapshots: SnapshotsDep
) -> CollectionPublic:
    collection = await anyio.to_thread.run_sync(snapshots.restore, name, snapshot, body.collection)
    return CollectionPublic(**collection.describe())


@router.post(
    "/upload",
    response_model=CollectionPublic,
    status_code=status.HTTP_201_CREATED,
    responses=errors(409),
    summary="Create collection {name} from an uploaded snapshot tar",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                TAR: {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def upload_snapshot(
    name: CollectionNamePath, request: Request, store: StoreDep, settings: SettingsDep
) -> CollectionPublic:
    settings.snapshots_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tar", dir=settings.snapshots_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                async for chunk in request.stream():
                    f.write(chunk)
            except ClientDisconnect:  # cut by the body-limit middleware, which has answered 413
                raise RequestTooLargeError("snapshot upload too large") from None
        collection = await anyio.to_thread.run_sync(store.restore, tmp, name)
    finally:
        os.unlink(tmp)
    return CollectionPublic(**collection.describe())
