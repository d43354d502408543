"""``vqdb.Client`` and ``vqdb.AsyncClient``: typed HTTP clients of ``vqdb serve`` that mirror the embedded API.

>>> client = vqdb.Client("http://127.0.0.1:8000", api_key=None)           # doctest: +SKIP
>>> docs = client.create_collection("docs", dim=384, metric="cos")        # doctest: +SKIP
>>> docs.upsert(vectors, ids, metadata=[{"lang": "en"}, ...])             # doctest: +SKIP
>>> res = docs.search(queries, 10, filter={"lang": "en"})                 # doctest: +SKIP
>>> res.ids.shape, res.scores.shape                                       # (m, 10), -1 / -inf padded

``client.collection(name)`` is a :class:`RemoteCollection`, which implements ``vqdb.IndexProtocol``
exactly as ``vqdb.Index`` does (same names, arguments, return types and errors); ``AsyncClient`` gives
an :class:`AsyncRemoteCollection` with the same methods as coroutines. Ids are integers or strings
(UUIDs included), one kind per collection. Vectors are sent as base64 float32 in batches (upserts and
query vectors alike); searches come back as columns of ids and scores. Each client keeps its HTTP
connections open between calls (keep-alive).

HTTP errors are raised as the matching :mod:`vqdb.errors` class (404 -> ``NotFoundError``, 401 ->
``AuthenticationError``, ...). Idempotent calls (reads, searches, upserts, deletes that ignore missing
ids) are retried ``retries`` times, with exponential backoff, when the connection fails or the server
answers 502 / 503 / 504; ``add`` and the other non-idempotent calls are sent once. Thread-safe (one
``httpx.Client`` underneath); an ``AsyncClient`` belongs to one event loop.

Every call is defined once, without I/O, in :mod:`vqdb._client_ops`; the two clients only drive it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from . import _client_ops as ops
from . import errors as E
from ._client_ops import MAX_BATCH_BYTES, MAX_QUERIES  # noqa: F401  (public constants, kept here)
from ._validation import check_k

_BY_STATUS = {
    400: E.InvalidInputError,
    401: E.AuthenticationError,
    403: E.PermissionDeniedError,
    404: E.NotFoundError,
    409: E.AlreadyExistsError,
    413: E.RequestTooLargeError,
    422: E.InvalidInputError,
}
RETRY_STATUS = (502, 503, 504)
BACKOFF_S = 0.2  # first retry after this long, then doubling


class _Api:
    """Everything both clients share: the operations, in terms of ``self._run(op)``."""

    url: str

    def _run(self, op):  # pragma: no cover - implemented by the two drivers
        raise NotImplementedError

    # ---- collections ----------------------------------------------------------------------------
    def collections(self):
        """Every collection, described (name, dim, metric, quantizer, id_type, count, bytes, ...)."""
        return self._run(_one(ops.Request("GET", "/collections"), lambda r: r["collections"]))

    def describe(self, name: str):
        return self._run(_one(ops.Request("GET", f"/collections/{name}")))

    def delete_collection(self, name: str):
        return self._run(_one(ops.Request("DELETE", f"/collections/{name}", idempotent=False)))

    def compact(self, name: str):
        return self._run(_one(ops.Request("POST", f"/collections/{name}/compact")))

    # ---- points ---------------------------------------------------------------------------------
    def upsert(self, name: str, vectors, ids, metadata=None, *, batch_bytes: int = MAX_BATCH_BYTES):
        """Insert or replace (n, d) float32 ``vectors`` under ``ids``; returns the live count afterwards."""
        return self._run(
            _then(ops.upsert(name, vectors, ids, metadata, batch_bytes=batch_bytes), lambda r: r[1])
        )

    def get(self, name: str, ids, *, with_vector: bool = False):
        """Points ``{"id", "payload", "vector"}`` for the ids that exist (missing ids are left out)."""
        return self._run(ops.get_points(name, ids, with_vector=with_vector))

    def delete(self, name: str, ids=None, *, filter: dict | None = None, missing_ok: bool = True):
        """Delete points by ids (absent ones are ignored unless ``missing_ok=False``), or every point
        matching ``filter``; returns how many were deleted."""
        return self._run(ops.delete(name, ids, filter=filter, missing_ok=missing_ok))

    def update_payload(self, name: str, ids, metadata, *, merge: bool = True):
        """Set the payload of existing points without re-sending their vectors; returns how many."""
        return self._run(ops.update_payload(name, ids, metadata, merge=merge))

    def scroll(self, name: str, *, limit: int = 100, offset=None, filter=None, with_vector: bool = False):
        """One page ``{"points": [...], "next_offset": id or None}`` of the collection, in a stable order."""
        return self._run(ops.scroll(name, limit=limit, offset=offset, filter=filter, with_vector=with_vector))

    def ids(self, name: str, *, filter: dict | None = None):
        """Every id of the collection (or of the points matching ``filter``), as a list."""
        return self._run(ops.all_ids(name, filter=filter))

    # ---- search ---------------------------------------------------------------------------------
    def search(self, name: str, queries, k: int = 10, *, filter=None, nprobe=None, rerank=None, ef=None):
        """Like ``vqdb.Index.search``: a :class:`vqdb.SearchResult` with (m, k) ids (-1 padded) and scores."""
        return self._run(
            _search_by_name(name, queries, k, filter=filter, nprobe=nprobe, rerank=rerank, ef=ef)
        )

    def query(
        self,
        name: str,
        queries,
        k: int = 10,
        *,
        filter=None,
        nprobe=None,
        rerank=None,
        with_payload: bool = True,
        with_vector: bool = False,
        ef=None,
    ):
        """Hits ``{"id", "score", "payload"}`` best first, one list per query row of ``queries`` (m, d)."""
        return self._run(
            ops.query(
                name,
                queries,
                k,
                filter=filter,
                nprobe=nprobe,
                rerank=rerank,
                ef=ef,
                with_payload=with_payload,
                with_vector=with_vector,
            )
        )

    def search_by_id(self, name: str, point_id, k: int = 10, **kwargs):
        """Hits nearest to the stored vector of ``point_id``."""
        point_id = ops.user_ids([point_id]).tolist()[0]
        body = {"id": point_id, "k": check_k(k), **{k_: v for k_, v in kwargs.items() if v is not None}}
        return self._run(
            _one(ops.Request("POST", f"/collections/{name}/search", body), lambda r: r["results"])
        )

    # ---- text (vqdb.rag on the server) ----------------------------------------------------------
    def _create_text(self, name, quantizer, chunk_size, chunk_overlap, exist_ok):
        body = {"name": name, "quantizer": quantizer}
        body.update(
            {
                key: int(v)
                for key, v in (("chunk_size", chunk_size), ("chunk_overlap", chunk_overlap))
                if v is not None
            }
        )
        try:
            info = yield ops.Request("POST", "/text-collections", body, idempotent=False)
        except E.AlreadyExistsError:
            if not exist_ok:
                raise
            info = yield ops.Request("GET", f"/collections/{name}/text")
        return info

    def create_text_collection(
        self,
        name: str,
        *,
        quantizer: str = "turbo-4",
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        exist_ok: bool = False,
    ):
        """Create a text collection (the server's embedding model, cosine); returns its settings."""
        return self._run(self._create_text(name, quantizer, chunk_size, chunk_overlap, exist_ok))

    def add_documents(
        self, name: str, texts: list[str], metadata: list[dict | None] | None = None, *, ids=None
    ):
        """Chunk, embed and store ``texts`` on the server, under ``ids`` (one per text, all int or all str;
        None: new ids). Returns the (n_passages,) passage ids as ``TextCollection.add`` does: int64, or
        object str in a string-id collection (``"<id>#<chunk>"`` for a document cut into several)."""
        if isinstance(texts, str):
            raise E.InvalidInputError("texts must be a list of strings, not one string")
        body: dict[str, Any] = {"texts": list(texts)}
        if metadata is not None:
            body["metadata"] = list(metadata)
        if ids is not None:
            body["ids"] = ops.user_ids(ids, len(body["texts"])).tolist()
        request = ops.Request("POST", f"/collections/{name}/documents", body, idempotent=False)
        return self._run(_one(request, lambda r: ops._as_id_array(r["ids"])))

    def query_text(self, name: str, text: str, k: int = 10, *, mode: str = "hybrid", filter=None):
        """The passages that best answer ``text``: hits ``{"id", "score", "text", "metadata", "doc_id", ...}``
        best first; ``mode`` is "hybrid" (BM25 + dense, rank fusion), "dense" or "bm25"."""
        body = {"text": text, "k": check_k(k), "mode": mode}
        if filter is not None:
            body["filter"] = filter
        return self._run(_one(ops.Request("POST", f"/collections/{name}/query", body), lambda r: r["hits"]))

    # ---- snapshots ------------------------------------------------------------------------------
    def create_snapshot(self, name: str):
        return self._run(_one(ops.Request("POST", f"/collections/{name}/snapshots", idempotent=False)))

    def snapshots(self, name: str):
        return self._run(_one(ops.Request("GET", f"/collections/{name}/snapshots"), lambda r: r["snapshots"]))

    def delete_snapshot(self, name: str, snapshot: str):
        return self._run(
            _one(ops.Request("DELETE", f"/collections/{name}/snapshots/{snapshot}", idempotent=False))
        )


def _one(request: ops.Request, parse=lambda r: r):
    """An operation of one request."""
    reply = yield request
    return parse(reply)


def _then(op, parse):
    result = yield from op
    return parse(result)


def _search_by_name(name, queries, k, **knobs):
    info = yield ops.Request("GET", f"/collections/{name}")
    return (
        yield from ops.search(
            name,
            queries,
            k,
            metric=info["metric"],
            id_type=info.get("id_type"),
            dim=int(info["dim"]),
            **knobs,
        )
    )


def _error_from(response) -> E.VqdbError:
    try:
        body = response.json()
        detail, name = body.get("detail"), body.get("error")
    except Exception:
        detail, name = response.text[:500], None
    cls = getattr(E, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, E.VqdbError)):
        cls = _BY_STATUS.get(response.status_code, E.ServiceError)
    message = detail if isinstance(detail, str) else f"{detail}"
    return cls(f"HTTP {response.status_code}: {message}")


def _headers(api_key: str | None) -> dict:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _kwargs(request: ops.Request) -> dict:
    out: dict[str, Any] = {}
    if request.json is not None:
        out["json"] = request.json
    if request.params:
        out["params"] = request.params
    return out


class Client(_Api):
    """A connection to a ``vqdb serve`` service.

    Parameters
    ----------
    url : str
        Base URL of the service.
    api_key : str or None
        Sent as ``Authorization: Bearer <key>``.
    timeout : float
        Seconds per request (bulk uploads and snapshots may need more).
    retries : int
        How many times an idempotent call is re-sent after a connection failure or a 502/503/504.
    transport : httpx.BaseTransport or None
        For tests (e.g. a transport that fails on purpose in front of a real server).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        transport=None,
    ):
        import httpx

        self.url = url.rstrip("/")
        self.retries = int(retries)
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the driver ---------------------------------------------------------------------------
    def _run(self, op):
        reply, error = None, None
        while True:
            try:
                request = op.send(reply) if error is None else op.throw(error)
            except StopIteration as stop:
                return stop.value
            try:
                reply, error = self._send(request), None
            except E.VqdbError as exc:
                reply, error = None, exc

    def _send(self, request: ops.Request):
        import httpx

        tries = 1 + (self.retries if request.idempotent else 0)
        for attempt in range(tries):
            try:
                response = self._http.request(request.method, request.path, **_kwargs(request))
            except httpx.TransportError as exc:
                if attempt + 1 < tries:
                    time.sleep(BACKOFF_S * 2**attempt)
                    continue
                raise E.ServiceError(f"{request.method} {self.url}{request.path} failed: {exc}") from exc
            if response.status_code in RETRY_STATUS and attempt + 1 < tries:
                time.sleep(BACKOFF_S * 2**attempt)
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return orjson.loads(response.content) if response.content else None
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- sync-only calls ------------------------------------------------------------------------
    def health(self) -> bool:
        """True when ``/readyz`` says the service is ready."""
        try:
            return self._http.get("/readyz").status_code == 200
        except Exception:
            return False

    def metrics(self) -> str:
        """The Prometheus exposition text of ``/metrics``."""
        response = self._http.get("/metrics")
        if response.status_code >= 400:
            raise _error_from(response)
        return response.text

    def create_collection(
        self,
        name: str,
        dim: int,
        *,
        metric: str = "cos",
        quantizer: str = "turbo-4",
        ivf: bool | int = False,
        store_vectors: bool | str = False,
        id_type: str | None = None,
        exist_ok: bool = False,
        graph: bool | int = False,
    ) -> RemoteCollection:
        """Create a collection (arguments as ``vqdb.Index``); with ``exist_ok`` an existing one is returned."""
        info = self._run(
            ops.create_collection(
                name,
                dim,
                metric=metric,
                quantizer=quantizer,
                ivf=ivf,
                store_vectors=store_vectors,
                id_type=id_type,
                exist_ok=exist_ok,
                graph=graph,
            )
        )
        return RemoteCollection(self, info)

    def collection(self, name: str) -> RemoteCollection:
        return RemoteCollection(self, self.describe(name))

    def download_snapshot(self, name: str, snapshot: str, path: str | Path) -> Path:
        import httpx

        path = Path(path)
        try:
            with self._http.stream("GET", f"/collections/{name}/snapshots/{snapshot}") as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                with open(path, "wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
        except httpx.HTTPError as exc:
            raise E.ServiceError(f"downloading snapshot {snapshot!r} failed: {exc}") from exc
        return path

    def restore_snapshot(self, name: str, snapshot: str, new_name: str) -> RemoteCollection:
        request = ops.Request(
            "POST",
            f"/collections/{name}/snapshots/{snapshot}/restore",
            {"collection": new_name},
            idempotent=False,
        )
        return RemoteCollection(self, self._run(_one(request)))

    def upload_snapshot(self, path: str | Path, new_name: str) -> RemoteCollection:
        import httpx

        with open(path, "rb") as f:
            try:
                response = self._http.post(
                    f"/collections/{new_name}/snapshots/upload",
                    content=f,
                    headers={"Content-Type": "application/x-tar"},
                )
            except httpx.HTTPError as exc:
                raise E.ServiceError(f"uploading snapshot {path} failed: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return RemoteCollection(self, response.json())


class AsyncClient(_Api):
    """:class:`Client` for asyncio (``httpx.AsyncClient``): the same methods, as coroutines.

    >>> async with vqdb.AsyncClient("http://127.0.0.1:8000") as client:        # doctest: +SKIP
    ...     docs = await client.collection("docs")
    ...     res = await docs.search(queries, 10)
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        transport=None,
    ):
        import httpx

        self.url = url.rstrip("/")
        self.retries = int(retries)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _run(self, op):
        reply, error = None, None
        while True:
            try:
                request = op.send(reply) if error is None else op.throw(error)
            except StopIteration as stop:
                return stop.value
            try:
                reply, error = await self._send(request), None
            except E.VqdbError as exc:
                reply, error = None, exc

    async def _send(self, request: ops.Request):
        import httpx

        tries = 1 + (self.retries if request.idempotent else 0)
        for attempt in range(tries):
            try:
                response = await self._http.request(request.method, request.path, **_kwargs(request))
            except httpx.TransportError as exc:
                if attempt + 1 < tries:
                    await asyncio.sleep(BACKOFF_S * 2**attempt)
                    continue
                raise E.ServiceError(f"{request.method} {self.url}{request.path} failed: {exc}") from exc
            if response.status_code in RETRY_STATUS and attempt + 1 < tries:
                await asyncio.sleep(BACKOFF_S * 2**attempt)
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return orjson.loads(response.content) if response.content else None
        raise AssertionError("unreachable")  # pragma: no cover

    async def health(self) -> bool:
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except Exception:
            return False

    async def create_collection(
        self,
        name: str,
        dim: int,
        *,
        metric: str = "cos",
        quantizer: str = "turbo-4",
        ivf: bool | int = False,
        store_vectors: bool | str = False,
        id_type: str | None = None,
        exist_ok: bool = False,
        graph: bool | int = False,
    ) -> AsyncRemoteCollection:
        info = await self._run(
            ops.create_collection(
                name,
                dim,
                metric=metric,
                quantizer=quantizer,
                ivf=ivf,
                store_vectors=store_vectors,
                id_type=id_type,
                exist_ok=exist_ok,
                graph=graph,
            )
        )
        return AsyncRemoteCollection(self, info)

    async def collection(self, name: str) -> AsyncRemoteCollection:
        return AsyncRemoteCollection(self, await self.describe(name))


class _CollectionOps:
    """The ``vqdb.IndexProtocol`` operations of one remote collection, as client operations."""

    def __init__(self, client, info: dict):
        self.client = client
        self.name: str = info["name"]
        self.dim: int = int(info["dim"])
        self.metric: str = info["metric"]
        self.quantizer: str = info["quantizer"]
        self.store_vectors = info.get("store_vectors", False)
        self._id_type = info.get("id_type")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim}, metric={self.metric!r}, url={self.client.url!r})"

    @property
    def id_type(self) -> str | None:
        """``"int"`` or ``"str"`` (None while the collection has never been written)."""
        return self._id_type

    def _write(self, vectors, ids, metadata, *, replace: bool):
        if ids is None and self._id_type == "str":
            from .index._ids import new_str_ids

            ids = new_str_ids(np.asarray(vectors).shape[0] if np.ndim(vectors) == 2 else 0)
        if ids is not None:
            ids = ops.user_ids(ids, id_type=self._id_type)
        out, _ = yield from ops.upsert(self.name, vectors, ids, metadata, replace=replace, dim=self.dim)
        if self._id_type is None and out.size:
            self._id_type = ops.id_type_of(out)
        return out

    def _len(self):
        return int((yield ops.Request("GET", f"/collections/{self.name}"))["count"])

    def _contains(self, id_):
        try:
            rec = yield from ops.collection_get(
                self.name,
                [id_],
                dim=self.dim,
                id_type=self._id_type,
                include_vectors=False,
                missing_ok=True,
                exact=self.store_vectors,
            )
        except E.VqdbError:
            return False
        return bool(rec.ids.size)

    def _get(self, ids, include_vectors, missing_ok):
        return ops.collection_get(
            self.name,
            ids,
            dim=self.dim,
            id_type=self._id_type,
            include_vectors=include_vectors,
            missing_ok=missing_ok,
            exact=self.store_vectors,
        )

    def _delete(self, ids, filter, missing_ok):
        if filter is None:
            ids = ops.user_ids(ids, id_type=self._id_type)
        return ops.delete(self.name, ids, filter=filter, missing_ok=missing_ok)

    def _search(self, queries, k, filter, nprobe, rerank, include_metadata, ef=None):
        return ops.search(
            self.name,
            queries,
            k,
            filter=filter,
            nprobe=nprobe,
            rerank=rerank,
            ef=ef,
            metric=self.metric,
            id_type=self._id_type,
            include_metadata=include_metadata,
            dim=self.dim,
        )

    def _ids(self, filter):
        values = yield from ops.all_ids(self.name, filter=filter)
        arr = ops._as_id_array(values)
        if not values and self._id_type == "str":
            return np.zeros(0, dtype=object)
        return arr

    def _scroll(self, limit, offset, filter, include_vectors):
        return ops.collection_scroll(
            self.name,
            dim=self.dim,
            limit=limit,
            offset=offset,
            filter=filter,
            include_vectors=include_vectors,
            exact=self.store_vectors,
        )

    def _update(self, ids, metadata, merge):
        ids = ops.user_ids(ids, id_type=self._id_type)
        if not isinstance(metadata, dict) and (
            not isinstance(metadata, (list, tuple)) or len(metadata) != ids.size
        ):
            raise E.InvalidInputError(f"metadata must be one dict or a list of {ids.size} dicts (one per id)")
        return ops.update_payload(self.name, ids, metadata, merge=merge)


class RemoteCollection(_CollectionOps):
    """A collection on a server, implementing ``vqdb.IndexProtocol`` like ``vqdb.Index``."""

    def __len__(self) -> int:
        return self.client._run(self._len())

    def __contains__(self, id_) -> bool:
        return self.client._run(self._contains(id_))

    def stats(self) -> dict:
        return self.client.describe(self.name)

    def add(self, vectors, ids=None, metadata=None) -> np.ndarray:
        """Add new vectors; returns their ids. ``DuplicateIdError`` (nothing added) if an id exists."""
        return self.client._run(self._write(vectors, ids, metadata, replace=False))

    def upsert(self, vectors, ids, metadata=None) -> np.ndarray:
        """Insert or replace by id; returns the ids."""
        if ids is None:
            raise E.InvalidInputError("upsert needs ids (use add to get new ids)")
        return self.client._run(self._write(vectors, ids, metadata, replace=True))

    def delete(self, ids=None, *, filter: dict | None = None, missing_ok: bool = False) -> int:
        """Delete by ids (``NotFoundError``, nothing deleted, when some are absent and ``missing_ok`` is
        False) or every point matching ``filter``; returns how many were deleted."""
        return self.client._run(self._delete(ids, filter, missing_ok))

    def get(self, ids, *, include_vectors: bool = True, missing_ok: bool = False):
        """Like ``vqdb.Index.get``: :class:`vqdb.index.Records` of ``ids`` in the order given."""
        return self.client._run(self._get(ids, include_vectors, missing_ok))

    def update_metadata(self, ids, metadata, *, merge: bool = True) -> int:
        return self.client._run(self._update(ids, metadata, merge))

    def search(
        self, queries, k: int = 10, filter=None, nprobe=None, rerank=None, *, include_metadata=False, ef=None
    ):
        return self.client._run(self._search(queries, k, filter, nprobe, rerank, include_metadata, ef))

    def ids(self, filter=None) -> np.ndarray:
        return self.client._run(self._ids(filter))

    def scroll(self, *, limit: int = 100, offset=None, filter=None, include_vectors: bool = False):
        return self.client._run(self._scroll(limit, offset, filter, include_vectors))

    def query(self, queries, k: int = 10, **kwargs) -> list[list[dict]]:
        return self.client.query(self.name, queries, k, **kwargs)

    def compact(self) -> dict:
        return self.client.compact(self.name)

    def snapshot(self) -> dict:
        return self.client.create_snapshot(self.name)

    def close(self) -> None:
        """Nothing to release per collection (the client owns the connection)."""


class AsyncRemoteCollection(_CollectionOps):
    """:class:`RemoteCollection` for :class:`AsyncClient`: the same methods, as coroutines."""

    async def count(self) -> int:
        return await self.client._run(self._len())

    async def contains(self, id_) -> bool:
        return await self.client._run(self._contains(id_))

    async def stats(self) -> dict:
        return await self.client.describe(self.name)

    async def add(self, vectors, ids=None, metadata=None) -> np.ndarray:
        return await self.client._run(self._write(vectors, ids, metadata, replace=False))

    async def upsert(self, vectors, ids, metadata=None) -> np.ndarray:
        if ids is None:
            raise E.InvalidInputError("upsert needs ids (use add to get new ids)")
        return await self.client._run(self._write(vectors, ids, metadata, replace=True))

    async def delete(self, ids=None, *, filter: dict | None = None, missing_ok: bool = False) -> int:
        return await self.client._run(self._delete(ids, filter, missing_ok))

    async def get(self, ids, *, include_vectors: bool = True, missing_ok: bool = False):
        return await self.client._run(self._get(ids, include_vectors, missing_ok))

    async def update_metadata(self, ids, metadata, *, merge: bool = True) -> int:
        return await self.client._run(self._update(ids, metadata, merge))

    async def search(
        self, queries, k: int = 10, filter=None, nprobe=None, rerank=None, *, include_metadata=False, ef=None
    ):
        return await self.client._run(self._search(queries, k, filter, nprobe, rerank, include_metadata, ef))

    async def ids(self, filter=None) -> np.ndarray:
        return await self.client._run(self._ids(filter))

    async def scroll(self, *, limit: int = 100, offset=None, filter=None, include_vectors: bool = False):
        return await self.client._run(self._scroll(limit, offset, filter, include_vectors))
