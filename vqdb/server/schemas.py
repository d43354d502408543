"""Request and response models of the REST API (``XCreate`` in, ``XPublic`` out).

Vectors travel as JSON lists of finite floats, or as base64 of little-endian float32 (bulk ingest:
``PointsB64``; search: ``vector_b64`` / ``vectors_b64``, float16 too) or an Arrow IPC stream. Payloads are flat JSON objects whose values are
strings, integers (int64), finite floats, booleans, null, or lists of those scalars.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SNAPSHOT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.tar$"
MAX_DIM = 65_536
INT64_MAX = 2**63 - 1

CollectionName = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        min_length=1,
        max_length=64,
        description="letters, digits, '_', '-', '.'; starts with a letter or digit; at most 64 characters",
    ),
]
IntId = Annotated[StrictInt, Field(ge=0, le=INT64_MAX, description="non-negative int64")]
StrId = Annotated[
    StrictStr,
    Field(min_length=1, max_length=512, description="a string id (UUIDs included), at most 512 UTF-8 bytes"),
]
PointId = IntId | StrId  # one kind per collection (fixed by its first write, or id_type at creation)
IdType = Literal["int", "str"]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=INT64_MAX)]
Scalar = StrictBool | Int64 | FiniteFloat | StrictStr | None
PayloadValue = Scalar | list[StrictBool | Int64 | FiniteFloat | StrictStr]
Payload = dict[Annotated[str, Field(min_length=1, max_length=256)], PayloadValue]
Vector = Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_DIM)]
Metric = Literal["cos", "ip", "l2sq"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorPublic(BaseModel):
    status: int
    error: str = Field(description="error class, e.g. DimensionMismatchError")
    detail: str | list[dict[str, Any]] = Field(description="what was wrong, and what is expected")


class Health(BaseModel):
    status: str
    collections: int | None = None


# ---- collections ---------------------------------------------------------------------------------


class CollectionCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "docs", "dim": 384, "metric": "cos", "quantizer": "turbo-4"}]
        },
    )
    name: CollectionName
    dim: int = Field(ge=2, le=MAX_DIM)
    metric: Metric = "cos"
    quantizer: str = Field("turbo-4", max_length=64, description="a preset name, see GET /presets")
    ivf: bool | Annotated[int, Field(ge=1, le=1 << 20)] = Field(
        False,
        description="false: flat scan; true: IVF with an automatic nlist; an integer: IVF with that nlist",
    )
    store_vectors: bool | Literal["float16", "float32"] = Field(
        False, description="also keep the full vectors (true = float16) for exact re-ranking and exact get"
    )
    graph: bool | Annotated[int, Field(ge=4, le=256)] = Field(
        False,
        description="true: a graph index (degree 32; an integer sets the degree), exclusive with ivf; "
        "searched with ef; a graph collection always keeps its vectors (float16 unless store_vectors says)",
    )
    id_type: IdType | None = Field(
        None, description='"int" or "str" ids; null: fixed by the first upsert (one kind per collection)'
    )
    shards: int = Field(
        1,
        ge=1,
        le=256,
        description="1: one index; more: a vqdb.distributed.ShardedIndex over that "
        "many Ray actors (the server must run with --ray-address)",
    )


class CollectionPublic(BaseModel):
    name: str
    dim: int
    metric: str
    quantizer: str
    ivf: bool | int
    store_vectors: bool | str
    graph: bool | int = Field(False, description="false, or the graph index's degree")
    shards: int = Field(1, description="number of shards (Ray actors); 1 = a plain index")
    id_type: str | None = Field(None, description='"int" or "str"; null until the first write fixes it')
    count: int = Field(description="live vectors")
    bytes: int = Field(
        description="bytes on disk: segments (codes, ids, metadata, vectors) + write-ahead log"
    )
    created_at: str
    stats: dict[str, Any] = Field(default_factory=dict, description="the index's own stats()")


class CollectionList(BaseModel):
    collections: list[CollectionPublic]


class PresetPublic(BaseModel):
    name: str
    bytes_per_vector: int | None = None
    description: str | None = None


class PresetList(BaseModel):
    dim: int
    presets: list[PresetPublic]


# ---- points -------------------------------------------------------------------------------------


class PointIn(_In):
    id: PointId
    vector: Vector
    payload: Payload | None = None


class PointsUpsert(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"points": [{"id": 1, "vector": [0.1, 0.2, 0.3], "payload": {"lang": "en", "year": 2024}}]}
            ]
        },
    )
    points: list[PointIn] = Field(min_length=1, max_length=100_000)
    upsert: bool = Field(True, description="false: refuse ids that already exist (409), like Index.add")


class PointsB64(_In):
    ids: list[PointId] | None = Field(
        None,
        min_length=1,
        description="one id per vector; omitted with upsert=false: the server assigns them",
    )
    vectors: str = Field(description="base64 of the little-endian float32 matrix (n, dim), row-major")
    payloads: list[Payload | None] | None = Field(None, description="one payload per vector, or omitted")
    upsert: bool = Field(True, description="false: refuse ids that already exist (409), like Index.add")


class UpsertResult(BaseModel):
    upserted: int
    count: int = Field(description="live vectors in the collection afterwards")
    ids: list[int | str] | None = Field(None, description="the ids the server assigned (ids omitted)")


class PointsGet(_In):
    ids: list[PointId] = Field(min_length=1, max_length=10_000)
    with_vector: bool = False


class PointPublic(BaseModel):
    id: int | str
    payload: dict[str, Any] | None = None
    vector: list[float] | None = None


class PointList(BaseModel):
    points: list[PointPublic]


class PointsDelete(_In):
    ids: list[PointId] | None = Field(None, max_length=1_000_000)
    filter: dict[str, Any] | None = Field(None, description="Mongo-style payload filter; deletes every match")
    missing_ok: bool = Field(True, description="false: 404 (and nothing deleted) when some ids do not exist")


class DeleteResult(BaseModel):
    deleted: int
    count: int


class PointsScroll(_In):
    limit: int = Field(100, ge=1, le=10_000, description="points per page")
    offset: PointId | None = Field(None, description="the next_offset of the previous page; null: the first")
    filter: dict[str, Any] | None = Field(None, description="Mongo-style payload filter")
    with_payload: bool = True
    with_vector: bool = False


class ScrollResult(BaseModel):
    points: list[PointPublic]
    next_offset: int | str | None = Field(
        None, description="pass as offset for the next page; absent on the last"
    )


class PointsPayload(_In):
    ids: list[PointId] = Field(min_length=1, max_length=10_000)
    payloads: list[Payload | None] = Field(description="one payload per id")
    merge: bool = Field(True, description="true: set these fields, keep the others; false: replace")


class PayloadResult(BaseModel):
    updated: int


# ---- search -------------------------------------------------------------------------------------


class SearchRequest(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": 42, "k": 5},
                {"vector": [0.1, 0.2, 0.3], "k": 10, "filter": {"lang": "en", "year": {"$gte": 2020}}},
            ]
        },
    )
    vector: Vector | None = Field(None, description="one query vector")
    vectors: list[Vector] | None = Field(None, min_length=1, description="a batch of query vectors")
    id: PointId | None = Field(None, description="use the stored vector of this point as the query")
    vector_b64: str | None = Field(
        None, description="one query vector as base64 of little-endian `dtype` values (dim of them)"
    )
    vectors_b64: str | None = Field(
        None,
        description="a batch of query vectors: base64 of the little-endian `dtype` matrix (n, dim), row-major",
    )
    dtype: Literal["float32", "float16"] = Field(
        "float32", description="the values of vector_b64 / vectors_b64"
    )
    k: int = Field(10, ge=1)
    filter: dict[str, Any] | None = Field(
        None, description='Mongo-style payload filter, e.g. {"lang": "en", "year": {"$gte": 2020}}'
    )
    nprobe: int | None = Field(None, ge=1, le=1 << 20, description="IVF lists to scan")
    ef: int | None = Field(
        None,
        ge=1,
        le=1 << 16,
        description="graph collections: the search beam (more = slower, higher recall)",
    )
    rerank: bool | Annotated[float, Field(ge=1, le=1024)] | None = Field(
        None,
        description="re-score candidates with the stored full-precision vectors: true, or an oversampling "
        "factor >= 1; false turns it off; null uses the collection default",
    )
    with_payload: bool = True
    with_vector: bool = False
    layout: Literal["hits", "columns"] = Field(
        "hits",
        description='"hits": per query a list of {id, score, payload, vector}; "columns": per query the lists '
        '{"ids", "scores"} (and "payloads" / "vectors" when asked), no object per hit',
    )


class Hit(BaseModel):
    id: int | str
    score: float = Field(description="higher is better (l2sq: minus the squared distance)")
    payload: dict[str, Any] | None = None
    vector: list[float] | None = None


class HitColumns(BaseModel):
    """``layout="columns"``: the hits as parallel lists, best first (one list per query for a batch)."""

    ids: list[int | str] | list[list[int | str]]
    scores: list[float] | list[list[float]]
    payloads: list[dict[str, Any] | None] | list[list[dict[str, Any] | None]] | None = None
    vectors: list[list[float] | None] | list[list[list[float] | None]] | None = None


class SearchResponse(BaseModel):
    results: list[Hit] | list[list[Hit]] | HitColumns = Field(
        description="hits best first for `vector` / `id`; one such list per query for `vectors`; "
        "parallel lists with layout=columns"
    )
    time_ms: float


# ---- maintenance and snapshots ------------------------------------------------------------------


class CompactResult(BaseModel):
    count: int
    bytes: int


class SnapshotPublic(BaseModel):
    name: str
    collection: str
    size_bytes: int
    created_at: str


class SnapshotList(BaseModel):
    snapshots: list[SnapshotPublic]


class SnapshotRestore(_In):
    collection: CollectionName = Field(description="name of the NEW collection to restore into")
