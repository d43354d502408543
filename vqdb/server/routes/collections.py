"""Collections: create, list, describe, delete, compact."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from ...errors import InvalidInputError
from ..auth import AdminAccess, ReadAccess, WriteAccess
from ..deps import CollectionDep, CollectionNamePath, SettingsDep, StoreDep
from ..schemas import (
    MAX_DIM,
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    CompactResult,
    PresetList,
    PresetPublic,
)
from ._responses import PROTECTED, errors

router = APIRouter(prefix="/collections", tags=["collections"], responses=PROTECTED)


@router.get("", response_model=CollectionList, dependencies=[ReadAccess], summary="List collections")
def list_collections(store: StoreDep) -> CollectionList:
    return CollectionList(collections=[CollectionPublic(**c.describe()) for c in store.all()])


@router.post(
    "",
    response_model=CollectionPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminAccess],
    responses=errors(409),
    summary="Create a collection",
)
def create_collection(body: CollectionCreate, store: StoreDep, settings: SettingsDep) -> CollectionPublic:
    if body.dim > settings.max_dim:
        raise InvalidInputError(
            f"dim={body.dim} is above this server's limit of {settings.max_dim} (VQDB_MAX_DIM)"
        )
    collection = store.create(
        body.name,
        dim=body.dim,
        metric=body.metric,
        quantizer=body.quantizer,
        ivf=body.ivf,
        store_vectors=body.store_vectors,
        graph=body.graph,
        shards=body.shards,
        id_type=body.id_type,
    )
    return CollectionPublic(**collection.describe())


@router.get(
    "/{name}",
    response_model=CollectionPublic,
    dependencies=[ReadAccess],
    responses=errors(404),
    summary="Describe a collection (counts and bytes)",
)
def describe_collection(collection: CollectionDep) -> CollectionPublic:
    return CollectionPublic(**collection.describe())


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[AdminAccess],
    responses=errors(404),
    summary="Delete a collection and its data (its snapshots are kept); also a damaged one (409 elsewhere)",
)
def delete_collection(name: CollectionNamePath, store: StoreDep) -> Response:
    store.delete(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{name}/compact",
    response_model=CompactResult,
    dependencies=[WriteAccess],
    responses=errors(404),
    summary="Rewrite segments without deleted points",
)
def compact_collection(collection: CollectionDep) -> CompactResult:
    collection.compact()
    count, nbytes = collection.size()
    return CompactResult(count=count, bytes=nbytes)


presets_router = APIRouter(tags=["collections"], responses=PROTECTED)
routers = [router, presets_router]


@presets_router.get(
    "/presets",
    response_model=PresetList,
    dependencies=[ReadAccess],
    summary="Quantizer presets and their bytes per vector at a dimension",
)
def list_presets(dim: Annotated[int, Query(ge=2, le=MAX_DIM)] = 384) -> PresetList:
    from ...presets import presets

    return PresetList(
        dim=dim,
        presets=[
            PresetPublic(name=name, bytes_per_vector=int(nbytes), description=text)
            for name, nbytes, text in presets(dim)
        ],
    )
