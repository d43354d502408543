"""Collections: create, list, describe, delete, compact."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ...errors import UnknownNameError
from ..auth import AdminAccess, ReadAccess, WriteAccess
from ..deps import CollectionDep, StoreDep
from ..schemas import CollectionCreate, CollectionList, CollectionPublic, CompactResult, PresetList, PresetPublic
from ._responses import PROTECTED, errors

router = APIRouter(prefix="/collections", tags=["collections"], responses=PROTECTED)


@router.get("", response_model=CollectionList, dependencies=[ReadAccess], summary="List collections")
def list_collections(store: StoreDep) -> CollectionList:
    return CollectionList(collections=[CollectionPublic(**c.describe()) for c in store.all()])


@router.post("", response_model=CollectionPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[AdminAccess], responses=errors(409), summary="Create a collection")
def create_collection(body: CollectionCreate, store: StoreDep) -> CollectionPublic:
    _check_preset(body.quantizer, body.dim)
    collection = store.create(body.name, dim=body.dim, metric=body.metric, quantizer=body.quantizer, ivf=body.ivf,
                              store_vectors=body.store_vectors, shards=body.shards)
    return CollectionPublic(**collection.describe())


@router.get("/{name}", response_model=CollectionPublic, dependencies=[ReadAccess], responses=errors(404),
            summary="Describe a collection (counts and bytes)")
def describe_collection(collection: CollectionDep) -> CollectionPublic:
    return CollectionPublic(**collection.describe())


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               dependencies=[AdminAccess], responses=errors(404),
               summary="Delete a collection and its data (its snapshots are kept)")
def delete_collection(collection: CollectionDep, store: StoreDep) -> Response:
    store.delete(collection.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/compact", response_model=CompactResult, dependencies=[WriteAccess], responses=errors(404),
             summary="Rewrite segments without deleted points")
def compact_collection(collection: CollectionDep) -> CompactResult:
    collection.compact()
    count, nbytes = collection.size()
    return CompactResult(count=count, bytes=nbytes)


presets_router = APIRouter(tags=["collections"], responses=PROTECTED)
routers = [router, presets_router]


@presets_router.get("/presets", response_model=PresetList, dependencies=[ReadAccess],
                    summary="Quantizer presets and their bytes per vector at a dimension")
def list_presets(dim: int = 384) -> PresetList:
    from ...presets import presets

    table = presets(dim)
    return PresetList(dim=dim, presets=[PresetPublic(**_preset_row(name, row)) for name, row in _rows(table)])


def _rows(table):
    if isinstance(table, dict):
        return list(table.items())
    return [(getattr(r, "name", None) or r["name"], r) for r in table]


def _preset_row(name, row) -> dict:
    get = row.get if isinstance(row, dict) else (lambda k, d=None: getattr(row, k, d))
    nbytes = get("bytes_per_vector", None) or get("code_size", None)
    return {"name": str(name), "bytes_per_vector": None if nbytes is None else int(nbytes),
            "description": get("description", None)}


def _check_preset(name: str, dim: int) -> None:
    """Fail fast (400, listing the valid names) on an unknown quantizer preset."""
    from ...presets import make_quantizer

    try:
        make_quantizer(name, dim)
    except UnknownNameError:
        raise
    except (ValueError, TypeError) as exc:
        raise UnknownNameError(f"quantizer {name!r} cannot be built for dim={dim}: {exc}") from None
