"""The one place the framework stores talk to vqdb: an embedded ``vqdb.Index`` (in memory or on a path)
or a collection of a running ``vqdb serve`` (through ``vqdb.Client``).

Records are ``(id: str, payload: dict, vector)``; payloads are nested JSON (stored as in
:mod:`vqdb.integrations._payload`). Every store here keeps float32 vectors beside the codes and
re-ranks enough candidates that collections up to ``_exact.EXACT_ROWS`` vectors rank exactly.
``get`` and ``delete`` ignore ids that are not there (what every framework expects); ``upsert``
replaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, NotFoundError
from . import _exact, _payload

REMOTE_MAX_RERANK = 1024  # the service's largest re-rank factor


@dataclass(frozen=True)
class Record:
    """One stored item: its id, its payload (nested JSON), and its vector ((d,) float32) when asked."""

    id: str
    payload: dict
    vector: np.ndarray | None = None


def _ids(ids) -> list[str]:
    out = [str(i) if not isinstance(i, str) else i for i in ids]
    if any(not s for s in out):
        raise InvalidInputError("ids must be non-empty strings")
    return out


class Backend:
    """What the stores need: upsert / get / delete / search / ids / count / clear, with string ids."""

    metric: str

    def dim(self) -> int | None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError


class LocalBackend(Backend):
    """An embedded ``vqdb.Index``: in memory (``path=None``) or in a directory (opened if it holds an
    index, else created there at the first write, when the dimension is known)."""

    def __init__(
        self,
        path=None,
        *,
        metric: str = "cos",
        quantizer: str = "turbo-4",
        dim: int | None = None,
        unindexed: tuple[str, ...] = (),
    ):
        self.path = None if path is None else os.fspath(path)
        self.unindexed = unindexed
        self.metric = metric
        self.quantizer = quantizer
        self._index = None
        if self.path is not None and os.path.exists(os.path.join(self.path, "manifest.json")):
            import vqdb

            self._index = vqdb.open(self.path)
            self.metric = self._index.metric
        elif dim is not None:
            self._create(dim)

    def _create(self, dim: int):
        import vqdb

        self._index = vqdb.Index(
            int(dim),
            metric=self.metric,
            quantizer=self.quantizer,
            store_vectors="float32",
            id_type="str",
            path=self.path,
        )
        return self._index

    @property
    def index(self):
        """The ``vqdb.Index`` (None until the first write of a store created without a dimension)."""
        return self._index

    def dim(self) -> int | None:
        return None if self._index is None else self._index.dim

    def count(self) -> int:
        return 0 if self._index is None else len(self._index)

    def known_fields(self) -> set:
        return set() if self._index is None else set(self._index.stats()["metadata_fields"])

    def upsert(self, ids, vectors: np.ndarray, payloads: list[dict | None]) -> list[str]:
        ids = _ids(ids)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise InvalidInputError(f"{len(ids)} ids need ({len(ids)}, d) vectors; got shape {vectors.shape}")
        if len(payloads) != len(ids):
            raise InvalidInputError(f"{len(ids)} ids need {len(ids)} payloads; got {len(payloads)}")
        if not ids:
            return []
        index = self._index if self._index is not None else self._create(vectors.shape[1])
        rows = [_payload.to_row(p, unindexed=self.unindexed) for p in payloads]
        index.upsert(vectors, np.asarray(ids, dtype=object), metadata=rows)
        return ids

    def get(self, ids, *, with_vectors: bool = False) -> list[Record]:
        ids = _ids(ids)
        if self._index is None or not ids:
            return []
        rec = self._index.get(np.asarray(ids, dtype=object), include_vectors=with_vectors, missing_ok=True)
        vectors = rec.vectors
        return [
            Record(str(i), _payload.from_row(m), None if vectors is None else vectors[j])
            for j, (i, m) in enumerate(zip(rec.ids.tolist(), rec.metadata))
        ]

    def delete(self, ids) -> int:
        ids = _ids(ids)
        if self._index is None or not ids:
            return 0
        return int(self._index.delete(np.asarray(list(dict.fromkeys(ids)), dtype=object), missing_ok=True))

    def ids(self, filter: dict | None = None) -> list[str]:
        if self._index is None:
            return []
        flt = _payload.resolve_unknown(filter, self.known_fields())
        if flt is False:
            return []
        return [str(i) for i in self._index.ids(filter=None if flt is True else flt).tolist()]

    def search(self, vector, k: int, *, filter: dict | None = None, with_vectors: bool = False):
        """[(Record, score)] best first; scores higher-is-better (cos / ip / minus squared L2)."""
        n = self.count()
        if n == 0:
            return []
        flt = _payload.resolve_unknown(filter, self.known_fields())
        if flt is False:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        k = min(int(k), n)
        res = self._index.search(q, k, filter=None if flt is True else flt, rerank=_exact.rerank_factor(n, k))
        hits = [(i, s) for i, s in zip(res.ids[0].tolist(), res.scores[0].tolist()) if i is not None]
        records = {r.id: r for r in self.get([i for i, _ in hits], with_vectors=with_vectors)}
        return [(records[str(i)], float(s)) for i, s in hits if str(i) in records]

    def clear(self) -> None:
        """Delete every record (the index and its settings stay)."""
        if self._index is not None and len(self._index):
            self._index.delete(self._index.ids())

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


class RemoteBackend(Backend):
    """A collection of a running ``vqdb serve`` (created at the first write when it does not exist)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        collection: str,
        api_key: str | None = None,
        client=None,
        metric: str = "cos",
        quantizer: str = "turbo-4",
        dim: int | None = None,
        unindexed: tuple[str, ...] = (),
    ):
        self.unindexed = unindexed
        if client is None:
            import vqdb

            client = vqdb.Client(url or "http://127.0.0.1:8000", api_key=api_key)
        self.client = client
        self.name = collection
        self.metric = metric
        self.quantizer = quantizer
        self._coll = None
        try:
            self._coll = client.collection(collection)
            self.metric = self._coll.metric
        except NotFoundError:  # created at the first write
            if dim is not None:
                self._create(dim)

    def _create(self, dim: int):
        self._coll = self.client.create_collection(
            self.name,
            int(dim),
            metric=self.metric,
            quantizer=self.quantizer,
            store_vectors="float32",
            exist_ok=True,
        )
        return self._coll

    def dim(self) -> int | None:
        return None if self._coll is None else self._coll.dim

    def count(self) -> int:
        return 0 if self._coll is None else len(self._coll)

    def known_fields(self) -> set:
        if self._coll is None:
            return set()
        return set(self.client.describe(self.name)["stats"].get("metadata_fields", {}))

    def upsert(self, ids, vectors: np.ndarray, payloads: list[dict | None]) -> list[str]:
        ids = _ids(ids)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise InvalidInputError(f"{len(ids)} ids need ({len(ids)}, d) vectors; got shape {vectors.shape}")
        if not ids:
            return []
        coll = self._coll if self._coll is not None else self._create(vectors.shape[1])
        coll.upsert(vectors, ids, [_payload.to_row(p, unindexed=self.unindexed) for p in payloads])
        return ids

    def get(self, ids, *, with_vectors: bool = False) -> list[Record]:
        ids = _ids(ids)
        if self._coll is None or not ids:
            return []
        found = {p["id"]: p for p in self.client.get(self.name, ids, with_vector=with_vectors)}
        out = []
        for i in ids:
            p = found.get(i)
            if p is not None:
                vec = np.asarray(p["vector"], dtype=np.float32) if with_vectors and p.get("vector") else None
                out.append(Record(i, _payload.from_row(p.get("payload")), vec))
        return out

    def delete(self, ids) -> int:
        ids = list(dict.fromkeys(_ids(ids)))
        if self._coll is None or not ids:
            return 0
        return self.client.delete(self.name, ids)

    def ids(self, filter: dict | None = None) -> list[str]:
        if self._coll is None:
            return []
        flt = _payload.resolve_unknown(filter, self.known_fields())
        if flt is False:
            return []
        return [str(i) for i in self.client.ids(self.name, filter=None if flt is True else flt)]

    def search(self, vector, k: int, *, filter: dict | None = None, with_vectors: bool = False):
        n = self.count()
        if n == 0:
            return []
        flt = _payload.resolve_unknown(filter, self.known_fields())
        if flt is False:
            return []
        k = min(int(k), n)
        # the service caps the re-rank factor: ask for more hits so k_asked * factor still covers n
        k_asked = max(k, -(-n // REMOTE_MAX_RERANK)) if n <= _exact.EXACT_ROWS else k
        rerank = _exact.rerank_factor(n, k_asked, max_factor=REMOTE_MAX_RERANK)
        (hits,) = self.client.query(
            self.name,
            np.asarray(vector, dtype=np.float32).reshape(1, -1),
            k_asked,
            filter=None if flt is True else flt,
            rerank=rerank,
            with_payload=True,
            with_vector=with_vectors,
        )
        return [
            (
                Record(
                    str(h["id"]),
                    _payload.from_row(h.get("payload")),
                    np.asarray(h["vector"], dtype=np.float32) if with_vectors and h.get("vector") else None,
                ),
                float(h["score"]),
            )
            for h in hits[:k]
        ]

    def clear(self) -> None:
        if self._coll is not None:
            ids = self.ids()
            for s in range(0, len(ids), 10_000):  # bounded request bodies
                self.client.delete(self.name, ids[s : s + 10_000])

    def close(self) -> None:
        self.client.close()


def make_backend(*, path=None, url=None, client=None, collection=None, api_key=None, **options) -> Backend:
    """A local backend (``path`` or nothing: in memory) or a remote one (``url`` or ``client``)."""
    if url is not None or client is not None:
        if path is not None:
            raise InvalidInputError("give either path (embedded) or url / client (a vqdb serve), not both")
        if not collection:
            raise InvalidInputError("a remote store needs collection=<name>")
        return RemoteBackend(url, collection=collection, api_key=api_key, client=client, **options)
    return LocalBackend(path, **options)
