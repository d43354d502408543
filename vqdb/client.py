"""``vqdb.Client``: a typed HTTP client of ``vqdb serve`` that mirrors the embedded API.

>>> client = vqdb.Client("http://127.0.0.1:8000", api_key=None)           # doctest: +SKIP
>>> docs = client.create_collection("docs", dim=384, metric="cos")        # doctest: +SKIP
>>> docs.upsert(vectors, ids, metadata=[{"lang": "en"}, ...])             # doctest: +SKIP
>>> res = docs.search(queries, 10, filter={"lang": "en"})                 # doctest: +SKIP
>>> res.ids.shape, res.scores.shape                                       # (m, 10), -1 / -inf padded

``RemoteCollection.search`` returns the same :class:`vqdb.SearchResult` as ``vqdb.Index.search``;
``query`` returns hits with payloads. Vectors are sent as base64 float32 in batches. HTTP errors
are raised as the matching :mod:`vqdb.errors` class (404 -> ``NotFoundError``, 401 ->
``AuthenticationError``, ...). Thread-safe (one ``httpx.Client`` underneath).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from . import errors as E
from ._validation import as_float32_matrix, as_ids, check_k

_BY_STATUS = {
    400: E.InvalidInputError,
    401: E.AuthenticationError,
    403: E.PermissionDeniedError,
    404: E.NotFoundError,
    409: E.AlreadyExistsError,
    413: E.RequestTooLargeError,
    422: E.InvalidInputError,
}
MAX_BATCH_BYTES = 8 << 20  # vectors per upsert request, before base64
MAX_QUERIES = 1024  # query vectors per search request (the server's default limit)


class Client:
    """A connection to a ``vqdb serve`` service.

    Parameters
    ----------
    url : str
        Base URL of the service.
    api_key : str or None
        Sent as ``Authorization: Bearer <key>``.
    timeout : float
        Seconds per request (bulk uploads and snapshots may need more).
    transport : httpx.BaseTransport or None
        For tests (e.g. ``httpx.ASGITransport`` is async-only; use ``fastapi.testclient`` instead).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport=None,
    ):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self._metric_of: dict[str, str] = {}

    # ---- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise E.ServiceError(f"{method} {self.url}{path} failed: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    # ---- service ------------------------------------------------------------------------------------

    def health(self) -> bool:
        """True when ``/readyz`` says the service is ready."""
        try:
            return self._http.get("/readyz").status_code == 200
        except Exception:
            return False

    def metrics(self) -> str:
        """The Prometheus exposition text of ``/metrics``."""
        return self._request("GET", "/metrics").text

    # ---- collections ------------------------------------------------------------------------------

    def collections(self) -> list[dict]:
        """Every collection, described (name, dim, metric, quantizer, count, bytes, ...)."""
        return self._json("GET", "/collections")["collections"]

    def create_collection(
        self,
        name: str,
        dim: int,
        *,
        metric: str = "cos",
        quantizer: str = "turbo-4",
        ivf: bool | int = False,
        store_vectors: bool | str = False,
        exist_ok: bool = False,
    ) -> RemoteCollection:
        """Create a collection (arguments as ``vqdb.Index``); with ``exist_ok`` an existing one is returned."""
        body = {
            "name": name,
            "dim": int(dim),
            "metric": metric,
            "quantizer": quantizer,
            "ivf": ivf,
            "store_vectors": store_vectors,
        }
        try:
            info = self._json("POST", "/collections", json=body)
        except E.AlreadyExistsError:
            if not exist_ok:
                raise
            info = self.describe(name)
        self._metric_of[name] = info["metric"]
        return RemoteCollection(self, info)

    def collection(self, name: str) -> RemoteCollection:
        return RemoteCollection(self, self.describe(name))

    def describe(self, name: str) -> dict:
        info = self._json("GET", f"/collections/{name}")
        self._metric_of[name] = info["metric"]
        return info

    def delete_collection(self, name: str) -> None:
        self._request("DELETE", f"/collections/{name}")

    def compact(self, name: str) -> dict:
        return self._json("POST", f"/collections/{name}/compact")

    # ---- points -----------------------------------------------------------------------------------

    def upsert(
        self,
        name: str,
        vectors,
        ids,
        metadata: list[dict | None] | None = None,
        *,
        batch_bytes: int = MAX_BATCH_BYTES,
    ) -> int:
        """Insert or replace (n, d) float32 ``vectors`` under ``ids``; returns the live count afterwards."""
        x = as_float32_matrix(vectors, name="vectors")
        ids = as_ids(ids, x.shape[0])
        if metadata is not None and len(metadata) != x.shape[0]:
            raise E.DimensionMismatchError(f"metadata has {len(metadata)} entries; expected {x.shape[0]}")
        rows = max(1, batch_bytes // max(1, 4 * x.shape[1]))
        count = None
        for s in range(0, x.shape[0], rows):
            body = {
                "ids": ids[s : s + rows].tolist(),
                "vectors": base64.b64encode(x[s : s + rows].astype("<f4").tobytes()).decode("ascii"),
            }
            if metadata is not None:
                body["payloads"] = list(metadata[s : s + rows])
            count = self._json("POST", f"/collections/{name}/points/b64", json=body)["count"]
        return int(count if count is not None else self.describe(name)["count"])

    def get(self, name: str, ids, *, with_vector: bool = False) -> list[dict]:
        """Points ``{"id", "payload", "vector"}`` for the ids that exist (missing ids are left out)."""
        body = {"ids": as_ids(ids).tolist(), "with_vector": with_vector}
        return self._json("POST", f"/collections/{name}/points/get", json=body)["points"]

    def delete(self, name: str, ids=None, *, filter: dict | None = None) -> int:
        """Delete points by ids, or every point matching ``filter``; returns how many were deleted."""
        body = {"filter": filter} if filter is not None else {"ids": as_ids(ids).tolist()}
        return int(self._json("POST", f"/collections/{name}/points/delete", json=body)["deleted"])

    # ---- search -----------------------------------------------------------------------------------

    def search(
        self,
        name: str,
        queries,
        k: int = 10,
        *,
        filter: dict | None = None,
        nprobe: int | None = None,
        rerank: bool | float | None = None,
    ):
        """Like ``vqdb.Index.search``: a :class:`vqdb.SearchResult` with (m, k) ids (-1 padded) and scores."""
        from .index import SearchResult

        hits = self.query(name, queries, k, filter=filter, nprobe=nprobe, rerank=rerank, with_payload=False)
        m = len(hits)
        ids = np.full((m, k), -1, dtype=np.int64)
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        for row, row_hits in enumerate(hits):
            for col, hit in enumerate(row_hits[:k]):
                ids[row, col] = hit["id"]
                scores[row, col] = hit["score"]
        metric = self._metric_of.get(name) or self.describe(name)["metric"]
        return SearchResult(ids, scores, metric)

    def query(
        self,
        name: str,
        queries,
        k: int = 10,
        *,
        filter: dict | None = None,
        nprobe: int | None = None,
        rerank: bool | float | None = None,
        with_payload: bool = True,
        with_vector: bool = False,
    ) -> list[list[dict]]:
        """Hits ``{"id", "score", "payload"}`` best first, one list per query row of ``queries`` (m, d)."""
        q = as_float32_matrix(queries, name="queries")
        k = check_k(k)
        out: list[list[dict]] = []
        for s in range(0, q.shape[0], MAX_QUERIES):
            body = {
                "vectors": q[s : s + MAX_QUERIES].tolist(),
                "k": k,
                "with_payload": with_payload,
                "with_vector": with_vector,
            }
            for key, value in (("filter", filter), ("nprobe", nprobe), ("rerank", rerank)):
                if value is not None:
                    body[key] = value
            out.extend(self._json("POST", f"/collections/{name}/search", json=body)["results"])
        return out

    def search_by_id(self, name: str, point_id: int, k: int = 10, **kwargs) -> list[dict]:
        """Hits nearest to the stored vector of ``point_id``."""
        body = {"id": int(point_id), "k": check_k(k), **{k_: v for k_, v in kwargs.items() if v is not None}}
        return self._json("POST", f"/collections/{name}/search", json=body)["results"]

    # ---- text (vqdb.rag on the server) ------------------------------------------------------------

    def create_text_collection(
        self,
        name: str,
        *,
        quantizer: str = "turbo-4",
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        exist_ok: bool = False,
    ) -> dict:
        """Create a text collection (the server's embedding model, cosine); returns its settings."""
        body = {"name": name, "quantizer": quantizer}
        body.update(
            {
                key: int(v)
                for key, v in (("chunk_size", chunk_size), ("chunk_overlap", chunk_overlap))
                if v is not None
            }
        )
        try:
            return self._json("POST", "/text-collections", json=body)
        except E.AlreadyExistsError:
            if not exist_ok:
                raise
            return self._json("GET", f"/collections/{name}/text")

    def add_documents(
        self, name: str, texts: list[str], metadata: list[dict | None] | None = None
    ) -> np.ndarray:
        """Chunk, embed and store ``texts`` on the server; (n_passages,) int64 new passage ids."""
        if isinstance(texts, str):
            raise E.InvalidInputError("texts must be a list of strings, not one string")
        body = {"texts": list(texts)}
        if metadata is not None:
            body["metadata"] = list(metadata)
        return np.asarray(
            self._json("POST", f"/collections/{name}/documents", json=body)["ids"], dtype=np.int64
        )

    def query_text(
        self, name: str, text: str, k: int = 10, *, mode: str = "hybrid", filter: dict | None = None
    ) -> list[dict]:
        """The passages that best answer ``text``: hits ``{"id", "score", "text", "metadata", "doc_id", ...}``
        best first; ``mode`` is "hybrid" (BM25 + dense, rank fusion), "dense" or "bm25"."""
        body = {"text": text, "k": check_k(k), "mode": mode}
        if filter is not None:
            body["filter"] = filter
        return self._json("POST", f"/collections/{name}/query", json=body)["hits"]

    # ---- snapshots --------------------------------------------------------------------------------

    def create_snapshot(self, name: str) -> dict:
        return self._json("POST", f"/collections/{name}/snapshots")

    def snapshots(self, name: str) -> list[dict]:
        return self._json("GET", f"/collections/{name}/snapshots")["snapshots"]

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
        info = self._json(
            "POST", f"/collections/{name}/snapshots/{snapshot}/restore", json={"collection": new_name}
        )
        return RemoteCollection(self, info)

    def upload_snapshot(self, path: str | Path, new_name: str) -> RemoteCollection:
        with open(path, "rb") as f:
            info = self._json(
                "POST",
                f"/collections/{new_name}/snapshots/upload",
                content=f,
                headers={"Content-Type": "application/x-tar"},
            )
        return RemoteCollection(self, info)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        self._request("DELETE", f"/collections/{name}/snapshots/{snapshot}")


class RemoteCollection:
    """A collection on a server, with the method names of ``vqdb.Index``."""

    def __init__(self, client: Client, info: dict):
        self.client = client
        self.name: str = info["name"]
        self.dim: int = int(info["dim"])
        self.metric: str = info["metric"]
        self.quantizer: str = info["quantizer"]
        self.store_vectors = info.get("store_vectors", False)

    def __repr__(self) -> str:
        return f"RemoteCollection({self.name!r}, dim={self.dim}, metric={self.metric!r}, url={self.client.url!r})"

    def __len__(self) -> int:
        return int(self.stats()["count"])

    def stats(self) -> dict:
        return self.client.describe(self.name)

    def upsert(self, vectors, ids, metadata=None) -> int:
        return self.client.upsert(
            self.name, as_float32_matrix(vectors, self.dim, name="vectors"), ids, metadata
        )

    def delete(self, ids=None, *, filter: dict | None = None) -> int:
        return self.client.delete(self.name, ids, filter=filter)

    def get(self, ids, *, include_vectors: bool = True):
        """Like ``vqdb.Index.get``: :class:`vqdb.index.Records` of ``ids`` in the order given.

        Raises ``NotFoundError`` when some ids are not in the collection."""
        from .index import Records

        ids = as_ids(ids)
        found = {p["id"]: p for p in self.client.get(self.name, ids, with_vector=include_vectors)}
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise E.NotFoundError(f"{len(missing)} id(s) not in collection {self.name!r}: {missing[:10]}")
        rows = [found[int(i)] for i in ids]
        vectors = (
            np.asarray([p["vector"] for p in rows], dtype=np.float32).reshape(len(rows), self.dim)
            if include_vectors
            else None
        )
        return Records(ids, vectors, [p.get("payload") or {} for p in rows], exact=bool(self.store_vectors))

    def search(self, queries, k: int = 10, *, filter=None, nprobe=None, rerank=None):
        self.client._metric_of[self.name] = self.metric
        return self.client.search(
            self.name,
            as_float32_matrix(queries, self.dim, name="queries"),
            k,
            filter=filter,
            nprobe=nprobe,
            rerank=rerank,
        )

    def query(self, queries, k: int = 10, **kwargs) -> list[list[dict]]:
        return self.client.query(self.name, as_float32_matrix(queries, self.dim, name="queries"), k, **kwargs)

    def compact(self) -> dict:
        return self.client.compact(self.name)

    def snapshot(self) -> dict:
        return self.client.create_snapshot(self.name)


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
