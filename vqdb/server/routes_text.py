"""Text endpoints (``vqdb.rag``): create a text collection, add documents, ask a question in words.

A text collection is an ordinary collection (vector endpoints work on it) whose directory also
holds ``rag.json`` (model, chunking) and a BM25 cache; its passages carry their text as metadata.
Its :class:`~vqdb.rag.TextCollection` wraps the collection's open index (one index object per
collection) and is kept per collection object. Writes take the collection's write lock.

    POST /text-collections                     {"name": "docs"}                        (admin)
    GET  /collections/{name}/text                                                       (read)
    POST /collections/{name}/documents         {"texts": [...], "metadata": [...], "ids": [...]} (write)
    POST /collections/{name}/query             {"text": "...", "k": 5, "mode": "hybrid"} (read)
    GET  /collections/{name}/query?text=...&k=5&mode=hybrid                             (read)
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidInputError
from ..rag.chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
from ..rag.collection import MANIFEST, TextCollection
from .auth import AdminAccess, ReadAccess, WriteAccess
from .collections import Collection
from .deps import CollectionDep, MetricsDep, SettingsDep, StoreDep
from .routes._responses import PROTECTED, errors
from .schemas import CollectionName, Payload, PointId

MAX_TEXTS = 10_000  # documents per request
MAX_QUERY_CHARS = 10_000  # the model reads at most 256 word pieces anyway
Mode = Literal["hybrid", "dense", "bm25"]

_TEXT: weakref.WeakKeyDictionary[Collection, TextCollection] = weakref.WeakKeyDictionary()
_TEXT_LOCK = threading.Lock()


# ---- schemas --------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextCollectionCreate(_In):
    name: CollectionName
    quantizer: str = Field("turbo-4", max_length=64, description="a preset name, see GET /presets")
    chunk_size: int = Field(DEFAULT_CHUNK_SIZE, ge=16, le=100_000, description="most characters per passage")
    chunk_overlap: int = Field(
        DEFAULT_CHUNK_OVERLAP,
        ge=0,
        le=50_000,
        description="most characters shared by neighbouring passages (< chunk_size)",
    )


class TextCollectionPublic(BaseModel):
    name: str
    model: str = Field(description="embedding model (all-MiniLM-L6-v2 by default)")
    dim: int
    quantizer: str | None
    chunk_size: int
    chunk_overlap: int
    passages: int = Field(description="stored passages")


class DocumentsAdd(_In):
    texts: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, max_length=MAX_TEXTS, description="documents (UTF-8 text), chunked into passages"
    )
    metadata: list[Payload | None] | None = Field(None, description="one flat metadata object per document")
    ids: list[PointId] | None = Field(
        None,
        max_length=MAX_TEXTS,
        description="one id per document, all int64 or all strings (<= 512); a string-id document cut into "
        "several passages gets '<id>#<chunk>' per passage; omitted: new ids",
    )


class DocumentsAdded(BaseModel):
    ids: list[int | str] = Field(description="new passage ids, document by document")
    documents: int
    passages: int = Field(description="passages in the collection afterwards")


class TextQuery(_In):
    text: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the question, in words")
    k: int = Field(10, ge=1, description="passages to return")
    mode: Mode = Field(
        "hybrid", description="dense (embeddings), bm25 (words) or hybrid (both, fused by rank)"
    )
    filter: dict[str, Any] | None = Field(
        None, description="Mongo-style metadata filter, applied to both sides"
    )


class TextHit(BaseModel):
    id: int | str
    score: float = Field(description="dense: cosine; bm25: BM25 score; hybrid: reciprocal-rank-fusion score")
    text: str
    metadata: dict[str, Any]
    doc_id: int | str
    chunk: int
    start: int
    end: int


class TextQueryResponse(BaseModel):
    hits: list[TextHit]
    time_ms: float


# ---- helpers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def leased_text(collection: Collection):
    """The TextCollection over ``collection``'s index, open for the ``with`` block; 400 if the collection
    holds no text. Rebuilt when the index was closed and reopened (an LRU of open indexes)."""
    with collection.lease() as index:
        with _TEXT_LOCK:
            col = _TEXT.get(collection)
            if col is None or col.index is not index:
                if not (collection.root / MANIFEST).is_file():
                    raise InvalidInputError(
                        f"collection {collection.name!r} is not a text collection (create one with POST /text-collections)"
                    )
                col = TextCollection(collection.root, index=index)
                _TEXT[collection] = col
        yield col


def _describe(collection: Collection, col: TextCollection) -> TextCollectionPublic:
    return TextCollectionPublic(
        name=collection.name,
        model=col.embedder.name,
        dim=col.dim,
        quantizer=col.quantizer_name,
        chunk_size=col.chunk_size,
        chunk_overlap=col.chunk_overlap,
        passages=len(col),
    )


# ---- routes ---------------------------------------------------------------------------------------

router = APIRouter(tags=["text"], responses=PROTECTED)


@router.post(
    "/text-collections",
    response_model=TextCollectionPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminAccess],
    responses=errors(409, 503),
    summary="Create a text collection (default embedding model, cosine)",
)
def create_text_collection(body: TextCollectionCreate, store: StoreDep) -> TextCollectionPublic:
    from ..presets import make_quantizer
    from ..rag.embed import Embedder

    if body.chunk_overlap >= body.chunk_size:
        raise InvalidInputError(
            f"chunk_overlap ({body.chunk_overlap}) must be smaller than chunk_size ({body.chunk_size})"
        )
    dim = Embedder().dim
    make_quantizer(body.quantizer, dim)  # UnknownNameError (400) listing the presets
    collection = store.create(body.name, dim=dim, metric="cos", quantizer=body.quantizer)
    with collection.write_lock, collection.lease() as index:
        col = TextCollection(
            collection.root,
            index=index,
            quantizer=body.quantizer,
            chunk_size=body.chunk_size,
            chunk_overlap=body.chunk_overlap,
        )
        with _TEXT_LOCK:
            _TEXT[collection] = col
        return _describe(collection, col)


@router.get(
    "/collections/{name}/text",
    response_model=TextCollectionPublic,
    dependencies=[ReadAccess],
    responses=errors(404),
    summary="Settings of a text collection",
)
def describe_text_collection(collection: CollectionDep) -> TextCollectionPublic:
    with leased_text(collection) as col:
        return _describe(collection, col)


@router.post(
    "/collections/{name}/documents",
    response_model=DocumentsAdded,
    dependencies=[WriteAccess],
    responses=errors(404, 503),
    summary="Add documents: chunked, embedded and stored",
)
def add_documents(body: DocumentsAdd, collection: CollectionDep) -> DocumentsAdded:
    with collection.write_lock, leased_text(collection) as col:
        collection._check_open()
        ids = col.add(body.texts, metadata=body.metadata, ids=body.ids)
        return DocumentsAdded(ids=ids.tolist(), documents=len(body.texts), passages=len(col))


def _query(collection: Collection, body: TextQuery, settings, metrics) -> TextQueryResponse:
    start = time.perf_counter()
    if body.k > settings.max_k:
        raise InvalidInputError(f"k={body.k} is above this server's limit of {settings.max_k}")
    with leased_text(collection) as col:
        hits = col.query(body.text, k=body.k, mode=body.mode, filter=body.filter)
    metrics.queries.inc(1)
    return TextQueryResponse(
        hits=[TextHit(**h.to_dict()) for h in hits], time_ms=(time.perf_counter() - start) * 1e3
    )


@router.post(
    "/collections/{name}/query",
    response_model=TextQueryResponse,
    dependencies=[ReadAccess],
    responses=errors(404, 503),
    summary="The passages that best answer a question in words",
)
def query_text(
    body: TextQuery, collection: CollectionDep, settings: SettingsDep, metrics: MetricsDep
) -> TextQueryResponse:
    return _query(collection, body, settings, metrics)


@router.get(
    "/collections/{name}/query",
    response_model=TextQueryResponse,
    dependencies=[ReadAccess],
    responses=errors(404, 503),
    summary="Same as POST, with the question in the URL (?text=...)",
)
def query_text_get(
    collection: CollectionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    text: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    k: Annotated[int, Query(ge=1)] = 10,
    mode: Mode = "hybrid",
) -> TextQueryResponse:
    return _query(collection, TextQuery(text=text, k=k, mode=mode), settings, metrics)
