"""``VqdbVectorStore``: a LlamaIndex vector store over vqdb (``pip install vqdb[llama-index]``).

>>> from llama_index.core import StorageContext, VectorStoreIndex                # doctest: +SKIP
>>> from vqdb.integrations.llama_index import VqdbVectorStore                    # doctest: +SKIP
>>> store = VqdbVectorStore()                                                    # in memory
>>> store = VqdbVectorStore(path="kb")                                           # embedded, on disk
>>> store = VqdbVectorStore(url="http://127.0.0.1:8000", collection="kb")        # vqdb serve
>>> index = VectorStoreIndex.from_documents(
...     docs, storage_context=StorageContext.from_defaults(vector_store=store))  # doctest: +SKIP

Nodes are stored whole (text, relationships, metadata: lossless JSON); ``MetadataFilters``
(``==, !=, >, >=, <, <=, in, nin, is_empty``; AND / OR / NOT; nested) run on the metadata as vqdb
filters, and a key no node has matches nothing. Similarities are cosine by default (``metric``),
higher is better. Collections up to 1,000 nodes are ranked exactly
(larger ones re-score 1,000 candidates).
"""

from __future__ import annotations

import json
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from ..errors import InvalidInputError
from ._backend import Backend, Record, make_backend

META, NODE, NODE_TYPE, REF_DOC, NODE_ID = "metadata", "_node", "_node_type", "ref_doc_id", "node_id"

_OPS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}


def _number(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def to_vqdb_filter(filters: MetadataFilters | None) -> dict | None:
    """LlamaIndex ``MetadataFilters`` as vqdb's Mongo-style dict on the stored metadata."""
    if filters is None or not filters.filters:
        return None
    parts = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            sub = to_vqdb_filter(f)
            if sub is not None:
                parts.append(sub)
            continue
        if not isinstance(f, MetadataFilter):
            raise InvalidInputError(
                f"filters must be MetadataFilter or MetadataFilters; got {type(f).__name__}"
            )
        key = f"{META}.{f.key}"
        if f.operator == FilterOperator.IS_EMPTY:
            parts.append({key: {"$exists": False}})
            continue
        op = _OPS.get(f.operator)
        if op is None:
            raise InvalidInputError(
                f"filter operator {f.operator.value!r} is not supported by vqdb (list-valued metadata is not "
                f"filterable); supported: {[o.value for o in _OPS]} and is_empty"
            )
        if op in ("$in", "$nin"):
            if not isinstance(f.value, list):
                raise InvalidInputError(f"operator {f.operator.value!r} takes a list; got {f.value!r}")
            parts.append({key: {op: [_number(v) for v in f.value]}})
        else:
            if isinstance(f.value, list):
                raise InvalidInputError(f"operator {f.operator.value!r} takes a scalar; got {f.value!r}")
            parts.append({key: {op: _number(f.value)}})
    if not parts:
        return None
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.OR:
        return {"$or": parts}
    if condition == FilterCondition.NOT:
        return {"$nor": parts}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _payload_of(node: BaseNode) -> dict:
    data = node.model_dump(mode="json")  # bytes (images) become strings
    data["embedding"] = None
    metadata = data.pop("metadata", {}) or {}
    return {
        META: metadata,
        REF_DOC: node.ref_doc_id,
        NODE_ID: node.node_id,
        NODE_TYPE: node.class_name(),
        NODE: data,
    }


def _node(record: Record) -> BaseNode:
    payload = record.payload
    data = dict(payload[NODE])
    data["metadata"] = payload.get(META) or {}
    return metadata_dict_to_node({"_node_content": json.dumps(data), "_node_type": payload.get(NODE_TYPE)})


def _and(*parts) -> dict | None:
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


class VqdbVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store on a vqdb index (embedded or a running ``vqdb serve``).

    Parameters
    ----------
    path : str or None
        A directory (opened if it holds an index, else created at the first write). ``None`` and no
        ``url``: an empty in-memory store.
    url, collection, api_key :
        A running ``vqdb serve`` and the collection (created at the first write).
    metric : {"cos", "ip", "l2sq"}
    quantizer : str
        vqdb preset of the codes; float32 vectors are kept beside them for exact re-ranking.
    """

    stores_text: bool = True
    flat_metadata: bool = False

    _backend: Backend = PrivateAttr()

    def __init__(
        self,
        path: str | None = None,
        *,
        url: str | None = None,
        collection: str | None = None,
        api_key: str | None = None,
        metric: str = "cos",
        quantizer: str = "turbo-4",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._backend = make_backend(
            path=path,
            url=url,
            collection=collection,
            api_key=api_key,
            metric=metric,
            quantizer=quantizer,
            unindexed=(NODE,),
        )

    @classmethod
    def class_name(cls) -> str:
        return "VqdbVectorStore"

    @property
    def client(self) -> Backend:
        """The vqdb backend (an embedded index or a vqdb serve collection)."""
        return self._backend

    def add(self, nodes: list[BaseNode], **add_kwargs: Any) -> list[str]:
        """Store ``nodes`` (each must have an embedding); an existing node id is replaced."""
        if not nodes:
            return []
        missing = [n.node_id for n in nodes if n.embedding is None]
        if missing:
            raise InvalidInputError(f"nodes without an embedding cannot be stored: {missing[:5]}")
        latest = {n.node_id: n for n in nodes}
        self._backend.upsert(
            list(latest),
            [n.get_embedding() for n in latest.values()],
            [_payload_of(n) for n in latest.values()],
        )
        return [n.node_id for n in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        self._backend.delete(self._backend.ids({REF_DOC: ref_doc_id}))

    def _selected_ids(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[str]:
        if node_ids is not None and filters is None:
            return [r.id for r in self._backend.get(node_ids)]
        ids = self._backend.ids(to_vqdb_filter(filters))
        if node_ids is not None:
            wanted = set(node_ids)
            ids = [i for i in ids if i in wanted]
        return ids

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Nodes by id (missing ids left out) and/or matching ``filters``; all nodes when neither is given."""
        return [_node(r) for r in self._backend.get(self._selected_ids(node_ids, filters))]

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        if node_ids is None and filters is None:
            raise InvalidInputError(
                "delete_nodes needs node_ids or filters (use clear() to delete everything)"
            )
        self._backend.delete(self._selected_ids(node_ids, filters))

    def clear(self) -> None:
        self._backend.clear()

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise InvalidInputError(
                f"query mode {query.mode.value!r} is not supported by vqdb; use 'default'"
            )
        if query.query_embedding is None:
            raise InvalidInputError("vqdb answers queries by embedding: query_embedding is required")
        flt = _and(
            to_vqdb_filter(query.filters),
            # empty lists mean "no restriction" (LlamaIndex's retriever sends node_ids=[]; SimpleVectorStore)
            {REF_DOC: {"$in": list(query.doc_ids)}} if query.doc_ids else None,
            {NODE_ID: {"$in": list(query.node_ids)}} if query.node_ids else None,
        )
        hits = self._backend.search(query.query_embedding, query.similarity_top_k, filter=flt)
        return VectorStoreQueryResult(
            nodes=[_node(r) for r, _ in hits], similarities=[s for _, s in hits], ids=[r.id for r, _ in hits]
        )
