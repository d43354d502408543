"""``VqdbVectorStore``: a LangChain ``VectorStore`` over vqdb (``pip install vqdb[langchain]``).

>>> from langchain_core.embeddings import DeterministicFakeEmbedding            # doctest: +SKIP
>>> from vqdb.integrations.langchain import VqdbVectorStore                      # doctest: +SKIP
>>> store = VqdbVectorStore(embedding=DeterministicFakeEmbedding(size=64))       # in memory
>>> store = VqdbVectorStore(embedding=emb, path="kb")                            # embedded, on disk
>>> store = VqdbVectorStore(embedding=emb, url="http://127.0.0.1:8000", collection="kb")  # vqdb serve
>>> store.add_texts(["a cat", "a dog"], metadatas=[{"src": "x"}, {"src": "y"}])  # doctest: +SKIP
>>> store.similarity_search("kitten", k=1, filter={"src": "x"})                 # doctest: +SKIP

Documents are stored as ``{"page_content", "metadata"}`` payloads (lossless JSON); ``filter`` is
vqdb's Mongo-style dict on metadata keys (``{"year": {"$gte": 2020}}``, ``$and``/``$or``/``$in``...;
nested keys dotted), and a key no document has matches nothing. Scores of
``similarity_search_with_score`` are similarities, higher is better (cosine by default; ``ip``:
inner product; ``l2sq``: minus the squared distance). Ids are strings (uuid4 when not given);
adding an existing id replaces it. Collections up to 1,000 documents are ranked
exactly (larger ones re-score 1,000 candidates).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from ..errors import InvalidInputError
from ._backend import Backend, Record, make_backend

TEXT, META = "page_content", "metadata"


def _prefixed(flt: dict | None) -> dict | None:
    """A filter on metadata keys as one on the stored payload (``year`` -> ``metadata.year``)."""
    if flt is None:
        return None
    if not isinstance(flt, dict):
        raise InvalidInputError(
            f"filter must be a dict (vqdb's Mongo-style filter); got {type(flt).__name__}"
        )
    out = {}
    for key, value in flt.items():
        if key in ("$and", "$or", "$nor"):
            out[key] = (
                [_prefixed(v) if isinstance(v, dict) else v for v in value]
                if isinstance(value, list)
                else value
            )
        elif key == "$not":
            out[key] = _prefixed(value) if isinstance(value, dict) else value
        elif isinstance(key, str) and key.startswith("$"):
            out[key] = value
        else:
            out[f"{META}.{key}"] = value
    return out


def _document(record: Record) -> Document:
    payload = record.payload
    return Document(page_content=payload.get(TEXT, ""), metadata=payload.get(META) or {}, id=record.id)


class VqdbVectorStore(VectorStore):
    """A LangChain vector store on a vqdb index.

    Parameters
    ----------
    embedding : Embeddings
    path : str or None
        A directory: opened if it holds an index, else created at the first write. ``None`` (and no
        ``url``): an empty in-memory store.
    url, collection, api_key, client :
        A running ``vqdb serve`` (``url`` or a ``vqdb.Client``) and the collection name (created at the
        first write).
    metric : {"cos", "ip", "l2sq"}
    quantizer : str
        A vqdb preset for the codes (``vqdb.presets``); float32 vectors are kept beside them for
        exact re-ranking.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        path=None,
        url: str | None = None,
        collection: str | None = None,
        api_key: str | None = None,
        client=None,
        metric: str = "cos",
        quantizer: str = "turbo-4",
    ):
        self.embedding = embedding
        self._backend: Backend = make_backend(
            path=path,
            url=url,
            client=client,
            collection=collection,
            api_key=api_key,
            metric=metric,
            quantizer=quantizer,
            unindexed=(TEXT,),  # filters are on metadata; the text stays in the JSON only
        )

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def backend(self) -> Backend:
        return self._backend

    def __len__(self) -> int:
        return self._backend.count()

    # ---- writes -----------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InvalidInputError(f"{len(texts)} texts need {len(texts)} metadatas; got {len(metadatas)}")
        if ids is None:
            ids = [str(uuid.uuid4()) for _ in texts]
        else:
            ids = [i if i else str(uuid.uuid4()) for i in ids]
            if len(ids) != len(texts):
                raise InvalidInputError(f"{len(texts)} texts need {len(texts)} ids; got {len(ids)}")
        if not texts:
            return []
        latest = {i: j for j, i in enumerate(ids)}  # an id given twice: the later text wins
        keep = sorted(latest.values())
        vectors = np.asarray(self.embedding.embed_documents([texts[j] for j in keep]), dtype=np.float32)
        payloads = [{TEXT: texts[j], META: dict((metadatas or [{}] * len(texts))[j] or {})} for j in keep]
        self._backend.upsert([ids[j] for j in keep], vectors, payloads)
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete ``ids`` (missing ones are ignored); ``ids=None`` deletes every document."""
        if ids is None:
            self._backend.clear()
        else:
            self._backend.delete(list(ids))
        return True

    # ---- reads ------------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [_document(r) for r in self._backend.get(list(ids))]

    def similarity_search(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = self.embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter=filter, **kwargs)

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        hits = self._backend.search(embedding, k, filter=_prefixed(filter))
        return [(_document(r), s) for r, s in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter=filter)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = self.embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter=filter)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        hits = self._backend.search(embedding, max(fetch_k, k), filter=_prefixed(filter), with_vectors=True)
        if not hits:
            return []
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), [r.vector for r, _ in hits], lambda_mult=lambda_mult, k=k
        )
        return [_document(hits[i][0]) for i in chosen]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Similarity -> relevance in [0, 1]: cosine (1 + s) / 2, ip the same for unit vectors, l2sq
        1 - distance / sqrt(2)."""
        metric = self._backend.metric
        if metric == "l2sq":
            return lambda s: 1.0 - math.sqrt(max(0.0, -s)) / math.sqrt(2)
        return lambda s: (1.0 + s) / 2.0

    # ---- construction -----------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> VqdbVectorStore:
        """A new store (``kwargs``: ``path``, ``url``, ``collection``, ... as the constructor) holding ``texts``."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
