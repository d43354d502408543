"""``VqdbDocumentStore`` and ``VqdbEmbeddingRetriever``: Haystack over vqdb (``pip install vqdb[haystack]``).

>>> from vqdb.integrations.haystack import VqdbDocumentStore, VqdbEmbeddingRetriever  # doctest: +SKIP
>>> store = VqdbDocumentStore(embedding_dim=384)                      # in memory
>>> store = VqdbDocumentStore(path="kb", embedding_dim=384)           # embedded, on disk
>>> store = VqdbDocumentStore(url="http://127.0.0.1:8000", collection="kb", embedding_dim=384)
>>> store.write_documents(docs)                                       # doctest: +SKIP
>>> VqdbEmbeddingRetriever(document_store=store, top_k=5).run(query_embedding=q)  # doctest: +SKIP

Filters are Haystack's (``{"field": "meta.year", "operator": ">=", "value": 2020}`` and
``{"operator": "AND" | "OR" | "NOT", "conditions": [...]}``), translated to vqdb's and run on the
index. Documents without an embedding are kept (a unit vector stands in) and never retrieved by
embedding. ``similarity``: ``"dot_product"`` (default, as ``InMemoryDocumentStore``), ``"cosine"``
(embeddings come back unit-normalised) or ``"l2"``. Embeddings are stored as float32, and
collections up to 1,000 documents are ranked exactly (larger ones re-score 1,000 candidates).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import numpy as np
from haystack import component, default_from_dict, default_to_dict
from haystack.dataclasses import Document
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError
from haystack.utils import Secret, deserialize_secrets_inplace

from .. import errors as E
from ._backend import Backend, Record, make_backend

SIMILARITIES = {"dot_product": "ip", "cosine": "cos", "l2": "l2sq"}
DOT_PRODUCT_SCALING_FACTOR = 100  # as InMemoryDocumentStore
EMBEDDED = "_embedded"  # payload flag: the document came with an embedding
DEFAULT_API_KEY = Secret.from_env_var("VQDB_API_KEY", strict=False)  # as vqdb serve reads it
WRITTEN = "_written"  # payload: [time_ns of the write, position in it] (filter_documents keeps write order)


# ---- Haystack filters -> vqdb filters ---------------------------------------------------------------

_COMPARE = {"==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def to_vqdb_filter(filters: dict[str, Any] | None) -> dict | None:
    """Haystack's filter syntax as vqdb's Mongo-style dict; raises Haystack's ``FilterError``."""
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise FilterError(f"filters must be a dict; got {type(filters).__name__}")
    if "field" not in filters and "conditions" not in filters:
        raise FilterError(
            f"invalid filter {filters!r}: expected a comparison (field) or a logical (conditions) one"
        )
    return _node(filters)


def _node(f: dict) -> dict:
    if not isinstance(f, dict):
        raise FilterError(f"a filter condition must be a dict; got {f!r}")
    if "field" in f:
        return _comparison(f)
    if "operator" not in f:
        raise FilterError(f"logical filter {f!r} has no 'operator'")
    if "conditions" not in f:
        raise FilterError(f"logical filter {f!r} has no 'conditions'")
    op, conditions = f["operator"], f["conditions"]
    if not isinstance(conditions, list) or not conditions:
        raise FilterError(f"'conditions' must be a non-empty list; got {conditions!r}")
    parts = [_node(c) for c in conditions]
    if op == "AND":
        return {"$and": parts}
    if op == "OR":
        return {"$or": parts}
    if op == "NOT":
        return {"$not": {"$and": parts}}
    raise FilterError(f"unknown logical operator {op!r}; expected AND, OR or NOT")


def _comparison(f: dict) -> dict:
    for key in ("operator", "value"):
        if key not in f:
            raise FilterError(f"comparison filter {f!r} has no {key!r}")
    field, op, value = f["field"], f["operator"], f["value"]
    if not isinstance(field, str) or not field:
        raise FilterError(f"filter field must be a non-empty string; got {field!r}")
    if op in ("in", "not in"):
        if not isinstance(value, list):
            raise FilterError(f"'{op}' takes a list of values; got {value!r}")
        return {field: {"$in" if op == "in" else "$nin": [_value(v, op) for v in value]}}
    if op not in _COMPARE:
        raise FilterError(
            f"unknown comparison operator {op!r}; expected one of {[*_COMPARE, 'in', 'not in']}"
        )
    if op in ("==", "!="):
        if isinstance(value, (list, dict)):
            raise FilterError(f"'{op}' on {field!r} takes a scalar; got {value!r}")
        return {field: _value(value, op) if op == "==" else {"$ne": _value(value, op)}}
    if value is None:
        return {field: {"$exists": False, "$ne": None}}  # an order comparison with None matches nothing
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise FilterError(f"'{op}' compares numbers or ISO dates; got the string {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FilterError(f"'{op}' compares numbers or ISO dates; got {value!r}")
    return {field: {_COMPARE[op]: _value(value, op)}}


def _value(v, op: str):
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, (int, float)):
        return float(v)  # payload numbers are float64 columns
    raise FilterError(f"'{op}' cannot compare with {v!r}")


# ---- the store --------------------------------------------------------------------------------------


def _payload_of(doc: Document, written: list[int]) -> dict:
    data = doc.to_dict(flatten=False)
    data.pop("embedding", None)
    data.pop("score", None)
    data[EMBEDDED] = doc.embedding is not None
    data[WRITTEN] = written  # a list: kept in the JSON, not a filter column
    return data


def _document(record: Record, *, score: float | None = None, with_embedding: bool = True) -> Document:
    data = dict(record.payload)
    embedded = data.pop(EMBEDDED, False)
    data.pop(WRITTEN, None)
    data["id"] = record.id
    if with_embedding and embedded and record.vector is not None:
        data["embedding"] = record.vector.tolist()
    if score is not None:
        data["score"] = score
    return Document.from_dict(data)


class VqdbDocumentStore:
    """A Haystack document store on a vqdb index (embedded or a running ``vqdb serve``).

    Parameters
    ----------
    path : str or None
        A directory (opened if it holds an index, else created). ``None`` and no ``url``: in memory.
    url, collection, api_key :
        A running ``vqdb serve`` and the collection to use (created when missing). ``api_key`` is a
        Haystack ``Secret`` (default: the ``VQDB_API_KEY`` environment variable, if set) or a string;
        ``to_dict`` keeps an environment-variable secret by name and refuses to write a plain token.
    embedding_dim : int
        Dimension of the embeddings (documents without one are stored with zeros of this size).
    similarity : {"dot_product", "cosine", "l2"}
    quantizer : str
        vqdb preset of the codes; float32 embeddings are kept beside them for exact re-ranking.
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        url: str | None = None,
        collection: str | None = None,
        api_key: Secret | str | None = DEFAULT_API_KEY,
        embedding_dim: int = 768,
        similarity: str = "dot_product",
        quantizer: str = "turbo-4",
    ):
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {sorted(SIMILARITIES)}; got {similarity!r}")
        if isinstance(api_key, str):
            api_key = Secret.from_token(api_key)
        self.path, self.url, self.collection, self.api_key = path, url, collection, api_key
        self.embedding_dim, self.similarity, self.quantizer = int(embedding_dim), similarity, quantizer
        self._backend: Backend = make_backend(
            path=path,
            url=url,
            collection=collection,
            api_key=None if api_key is None else api_key.resolve_value(),
            metric=SIMILARITIES[similarity],
            quantizer=quantizer,
            dim=self.embedding_dim,
            unindexed=("blob", "sparse_embedding"),  # kept in the JSON, not as filterable columns
        )
        dim = self._backend.dim()
        if dim is not None and dim != self.embedding_dim:
            raise ValueError(
                f"the index at {path or url!r} holds {dim}-dimensional embeddings, not {embedding_dim}"
            )

    @property
    def backend(self) -> Backend:
        return self._backend

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            path=None if self.path is None else str(self.path),
            url=self.url,
            collection=self.collection,
            api_key=None if self.api_key is None else self.api_key.to_dict(),
            embedding_dim=self.embedding_dim,
            similarity=self.similarity,
            quantizer=self.quantizer,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VqdbDocumentStore:
        deserialize_secrets_inplace(data.get("init_parameters", {}), keys=["api_key"])
        return default_from_dict(cls, data)

    # ---- the DocumentStore protocol -----------------------------------------------------------------

    def count_documents(self) -> int:
        return self._backend.count()

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Every document matching ``filters``, in the order they were written (an overwrite moves a
        document to the end)."""
        records = self._backend.get(self._ids(filters), with_vectors=True)
        records.sort(key=lambda r: r.payload.get(WRITTEN) or [0, 0])
        return [_document(r) for r in records]

    def _ids(self, filters) -> list[str]:
        try:
            return self._backend.ids(to_vqdb_filter(filters))
        except E.FilterError as exc:  # the filter does not fit the stored fields' types
            raise FilterError(str(exc)) from None

    def write_documents(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Write ``documents``; ``NONE`` means ``FAIL``. Returns how many were written."""
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise ValueError("write_documents takes a list of haystack Document objects")
        if policy == DuplicatePolicy.NONE:
            policy = DuplicatePolicy.FAIL
        by_id: dict[str, Document] = {}
        for doc in documents:
            if doc.id in by_id and policy == DuplicatePolicy.FAIL:
                raise DuplicateDocumentError(f"document {doc.id!r} appears twice in this write")
            if doc.id not in by_id or policy == DuplicatePolicy.OVERWRITE:
                by_id[doc.id] = doc
        if policy != DuplicatePolicy.OVERWRITE and by_id:
            existing = {r.id for r in self._backend.get(list(by_id))}
            if existing and policy == DuplicatePolicy.FAIL:
                raise DuplicateDocumentError(f"document(s) already in the store: {sorted(existing)[:10]}")
            by_id = {i: d for i, d in by_id.items() if i not in existing}
        if not by_id:
            return 0
        vectors = np.zeros((len(by_id), self.embedding_dim), dtype=np.float32)
        vectors[:, 0] = 1.0  # stands in for a missing embedding (never retrieved; "cosine" refuses zeros)
        for row, doc in enumerate(by_id.values()):
            if doc.embedding is not None:
                if len(doc.embedding) != self.embedding_dim:
                    raise ValueError(
                        f"document {doc.id!r} has a {len(doc.embedding)}-dimensional embedding; "
                        f"this store holds {self.embedding_dim}"
                    )
                vectors[row] = doc.embedding
        now = time.time_ns()
        payloads = [_payload_of(d, [now, j]) for j, d in enumerate(by_id.values())]
        self._backend.upsert(list(by_id), vectors, payloads)
        return len(by_id)

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete the documents with these ids (ids not in the store are ignored)."""
        self._backend.delete(list(document_ids))

    # ---- retrieval ----------------------------------------------------------------------------------

    def embedding_retrieval(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> list[Document]:
        """The ``top_k`` documents (with an embedding) most similar to ``query_embedding``, best first.

        ``score``: the dot product, the cosine, or the Euclidean distance (``l2``; lower is better);
        ``scale_score`` maps it into [0, 1] as ``InMemoryDocumentStore`` does."""
        if len(query_embedding) != self.embedding_dim:
            raise ValueError(
                f"query_embedding has {len(query_embedding)} dimensions; this store holds {self.embedding_dim}"
            )
        if top_k <= 0:
            return []
        flt = {EMBEDDED: True}
        user = self._filter(filters)
        if user is not None:
            flt = {"$and": [flt, user]}
        try:
            hits = self._backend.search(query_embedding, top_k, filter=flt, with_vectors=return_embedding)
        except E.FilterError as exc:
            raise FilterError(str(exc)) from None
        out = []
        for record, s in hits:
            score = math.sqrt(max(0.0, -s)) if self.similarity == "l2" else s
            if scale_score:
                score = self._scale(score)
            out.append(_document(record, score=score, with_embedding=return_embedding))
        return out

    @staticmethod
    def _filter(filters):
        return to_vqdb_filter(filters)

    def _scale(self, score: float) -> float:
        if self.similarity == "cosine":
            return (score + 1.0) / 2.0
        if self.similarity == "l2":
            return 1.0 / (1.0 + score)
        return float(1.0 / (1.0 + np.exp(-score / DOT_PRODUCT_SCALING_FACTOR)))


@component
class VqdbEmbeddingRetriever:
    """Retrieves documents from a :class:`VqdbDocumentStore` by embedding similarity."""

    def __init__(
        self,
        document_store: VqdbDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ):
        if not isinstance(document_store, VqdbDocumentStore):
            raise ValueError("document_store must be a VqdbDocumentStore")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0; got {top_k}")
        self.document_store = document_store
        self.filters = filters
        self.top_k = top_k
        self.scale_score = scale_score
        self.return_embedding = return_embedding

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            filters=self.filters,
            top_k=self.top_k,
            scale_score=self.scale_score,
            return_embedding=self.return_embedding,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VqdbEmbeddingRetriever:
        params = data.get("init_parameters", {})
        params["document_store"] = VqdbDocumentStore.from_dict(params["document_store"])
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        scale_score: bool | None = None,
        return_embedding: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Runtime ``filters`` replace the ones given at construction (Haystack's default policy)."""
        docs = self.document_store.embedding_retrieval(
            query_embedding=query_embedding,
            filters=filters if filters is not None else self.filters,
            top_k=self.top_k if top_k is None else top_k,
            scale_score=self.scale_score if scale_score is None else scale_score,
            return_embedding=self.return_embedding if return_embedding is None else return_embedding,
        )
        return {"documents": docs}
