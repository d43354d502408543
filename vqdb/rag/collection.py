"""``TextCollection``: documents in, passages out — chunking, local embeddings, dense + BM25 search.

A collection is a directory (or lives in memory with ``path=None``)::

    <path>/rag.json     model, chunking, fusion settings, id counters
    <path>/index/       the vqdb.Index: one vector per passage; text + metadata as metadata columns
    <path>/bm25/        the BM25 index (a cache: rebuilt from the passages when missing or stale)

Writes go to the index, whose write-ahead log makes them durable when the collection has a path;
``save()`` also writes the BM25 index so that a reopened collection answers lexical queries at once.
"""

from __future__ import annotations

import json
import os
import shutil
import threading

import numpy as np

from .._validation import as_float32_matrix, check_choice, check_int_range, check_k
from ..errors import (
    DimensionMismatchError,
    DuplicateIdError,
    IncompatibleFormatError,
    InvalidInputError,
    NotFoundError,
)
from ..index import _ids
from . import _store
from .bm25 import BM25Index, tokenize
from .chunking import DEFAULT_CHUNK_SIZE, check_chunking, chunk_spans
from .embed import Embedder
from .fusion import DEFAULT_RRF_K, reciprocal_rank_fusion
from .hits import Hit

MODES = ("dense", "bm25", "hybrid")
MANIFEST = "rag.json"
INDEX_DIR = "index"
BM25_DIR = "bm25"
FORMAT_VERSION = 1
DEFAULT_MAX_DOCUMENT_CHARS = 10_000_000
DEFAULT_CANDIDATES = 100
MAX_K = 10_000


def _check_texts(texts, max_chars: int) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, (bytes, bytearray)) or not hasattr(texts, "__iter__") or isinstance(texts, dict):
        raise InvalidInputError(f"texts must be a list of strings; got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if isinstance(t, (bytes, bytearray)):
            raise InvalidInputError(f"text {i} is bytes; decode it first (e.g. data.decode('utf-8'))")
        if not isinstance(t, str):
            raise InvalidInputError(f"text {i} must be a string; got {type(t).__name__}")
        if not t.strip():
            raise InvalidInputError(f"text {i} is empty (or only whitespace); every document needs some text")
        if len(t) > max_chars:
            raise InvalidInputError(
                f"text {i} has {len(t):,} characters; the limit is {max_chars:,} per document "
                "(max_document_chars): split it into several documents or raise the limit"
            )
    return out


def _check_metadata(metadata, n: int) -> list[dict]:
    if metadata is None:
        return [{} for _ in range(n)]
    if isinstance(metadata, dict):
        metadata = [metadata] * n
    if not isinstance(metadata, (list, tuple)):
        raise InvalidInputError(
            f"metadata must be None, a dict or a list of dicts (one per text); got {type(metadata).__name__}"
        )
    if len(metadata) != n:
        raise InvalidInputError(f"metadata has {len(metadata)} entries; expected {n} (one per text)")
    out = []
    for i, md in enumerate(metadata):
        if md is None:
            md = {}
        if not isinstance(md, dict):
            raise InvalidInputError(f"metadata {i} must be a dict or None; got {type(md).__name__}")
        bad = [key for key in md if not isinstance(key, str) or not key or key in _store.RESERVED]
        if bad:
            raise InvalidInputError(
                f"metadata {i} has invalid key(s) {bad}: keys must be non-empty strings other than {list(_store.RESERVED)}"
            )
        out.append(dict(md))
    return out


def _check_query(text) -> str:
    if isinstance(text, (bytes, bytearray)):
        raise InvalidInputError("query text is bytes; decode it first")
    if not isinstance(text, str):
        raise InvalidInputError(f"query text must be a string; got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError("query text is empty")
    return text


def _fields_table(rows: list[dict]):
    """pyarrow Table of the filterable metadata of ``rows`` (what BM25-side filters read)."""
    import pyarrow as pa

    names: dict[str, None] = {}
    for r in rows:  # union of the keys (from_pylist would read the first row's only)
        names.update(dict.fromkeys(r))
    return pa.table({name: pa.array([r.get(name) for r in rows]) for name in names})


class TextCollection:
    """Passages of text with local embeddings, searchable by meaning (dense), by words (BM25) or both.

    Parameters
    ----------
    path : str or None
        Directory of the collection. An existing collection there is opened (its stored settings
        win); otherwise a new one is created. None keeps everything in memory.
    model : str, path or None
        Sentence-transformers model; None is the bundled all-MiniLM-L6-v2 (offline).
    quantizer : str or Quantizer
        How passage vectors are compressed (a preset name such as ``"turbo-4"``, ``"turbo-2"``).
    chunk_size, chunk_overlap : int
        Longest passage and overlap of neighbouring passages, in characters (see
        :mod:`vqdb.rag.chunking`); ``chunk_overlap=None`` is ``min(100, chunk_size // 4)``.
    rrf_k : float
        Rank offset of the reciprocal-rank fusion of ``mode="hybrid"``.
    candidates : int
        How deep each side (dense, BM25) is read before fusing (at least ``k``).
    max_document_chars : int
        Longest accepted document; longer ones are refused with an error (split them first).
    device : str
        Torch device of the embedding model.

    Notes
    -----
    Thread-safe: queries may run concurrently with one another and with writes.

    Examples
    --------
    >>> col = TextCollection()                                   # doctest: +SKIP
    >>> ids = col.add(["A cat sat on the mat.", "Dogs bark."], metadata=[{"src": "a"}, {"src": "b"}])
    >>> col.query("kitten", k=1)[0].text                         # doctest: +SKIP
    'A cat sat on the mat.'
    """

    def __init__(
        self,
        path=None,
        model=None,
        quantizer="turbo-4",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        chunk_overlap: int | None = None,
        *,
        rrf_k: float = DEFAULT_RRF_K,
        candidates: int = DEFAULT_CANDIDATES,
        max_document_chars: int = DEFAULT_MAX_DOCUMENT_CHARS,
        device: str = "cpu",
        index=None,
        id_type: str | None = None,
    ):
        self.path = None if path is None else os.fspath(path)
        self._lock = threading.RLock()
        self._bm25: BM25Index | None = None
        self._bm25_lock = threading.Lock()
        self._bm25_fresh = False
        self._owns_index = index is None
        if self.path is not None and os.path.isfile(os.path.join(self.path, MANIFEST)):
            self._open_existing(model, device, index)
            return
        if self.path is not None and os.path.isdir(self.path) and os.listdir(self.path) and index is None:
            raise InvalidInputError(
                f"{self.path!r} exists, is not empty and holds no text collection ({MANIFEST} missing)"
            )
        self.chunk_size, self.chunk_overlap = check_chunking(chunk_size, chunk_overlap)
        self.rrf_k = self._check_rrf_k(rrf_k)
        self.candidates = check_int_range(candidates, 1, MAX_K, name="candidates")
        self.max_document_chars = check_int_range(max_document_chars, 1, 1 << 40, name="max_document_chars")
        self.embedder = Embedder(model, device=device)
        self.quantizer_name = (
            quantizer if isinstance(quantizer, str) else getattr(quantizer, "kind", type(quantizer).__name__)
        )
        self._next_id = 0
        self._next_doc = 0
        if index is not None:
            self.index = index
        else:
            if self.path is not None:
                os.makedirs(self.path, exist_ok=True)
            self.index = _store.new_index(
                self.embedder.dim,
                quantizer,
                None if self.path is None else os.path.join(self.path, INDEX_DIR),
                id_type=_ids.check_id_type(id_type),
            )
        self._check_dim()
        self._write_manifest()

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path, *, model=None, device: str = "cpu") -> TextCollection:
        """Open an existing collection; :class:`NotFoundError` when ``path`` holds none."""
        if not os.path.isfile(os.path.join(os.fspath(path), MANIFEST)):
            raise NotFoundError(f"no text collection at {os.fspath(path)!r} ({MANIFEST} missing)")
        return cls(path, model=model, device=device)

    @staticmethod
    def _check_rrf_k(value) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not np.isfinite(value)
            or value <= 0
        ):
            raise InvalidInputError(f"rrf_k must be a positive number; got {value!r}")
        return float(value)

    def _open_existing(self, model, device, index) -> None:
        try:
            with open(os.path.join(self.path, MANIFEST), encoding="utf-8") as f:
                m = json.load(f)
        except (OSError, ValueError) as exc:
            raise IncompatibleFormatError(f"unreadable {MANIFEST} in {self.path!r}: {exc}") from None
        if m.get("format") != FORMAT_VERSION:
            raise IncompatibleFormatError(
                f"text collection format {m.get('format')!r}; this vqdb reads {FORMAT_VERSION}"
            )
        self.chunk_size, self.chunk_overlap = int(m["chunk_size"]), int(m["chunk_overlap"])
        self.rrf_k, self.candidates = float(m["rrf_k"]), int(m["candidates"])
        self.max_document_chars = int(m["max_document_chars"])
        self.quantizer_name = m.get("quantizer")
        stored_model = m["model"]
        self.embedder = Embedder(stored_model if model is None else model, device=device)
        if model is not None and self.embedder.name != stored_model:
            raise InvalidInputError(
                f"this collection was embedded with model {stored_model!r}; got model={self.embedder.name!r}. "
                "Queries must use the same model (pass model=None to use the stored one)"
            )
        self.index = index if index is not None else _store.open_index(os.path.join(self.path, INDEX_DIR))
        if int(m["dim"]) != self._index_dim():
            raise IncompatibleFormatError(
                f"{MANIFEST} says dim {m['dim']}, the index has {self._index_dim()}"
            )
        self._check_dim()
        ids = _store.live_ids(self.index)
        top = int(ids[-1]) + 1 if ids.size and ids.dtype != object else 0
        self._next_id = max(int(m.get("next_id", 0)), top)
        self._next_doc = int(m.get("next_doc", 0))
        bm25_dir = os.path.join(self.path, BM25_DIR)
        if os.path.isfile(os.path.join(bm25_dir, "bm25.json")):
            try:
                bm25 = BM25Index.load(bm25_dir)
            except Exception:  # a cache: rebuild it rather than fail
                bm25 = None
            if bm25 is not None and np.array_equal(np.sort(bm25.ids), ids):
                self._bm25, self._bm25_fresh = bm25, True

    def _index_dim(self) -> int:
        return int(self.index.dim)

    def _check_dim(self) -> None:
        """Model width vs index width, when the model's width is known without loading it (else the
        index refuses mismatched vectors at the first add or query)."""
        d = self._index_dim()
        if self.embedder.known_dim is not None and self.embedder.known_dim != d:
            raise DimensionMismatchError(
                f"the embedding model {self.embedder.name!r} gives {self.embedder.known_dim}-d vectors; the index holds {d}-d"
            )

    def _manifest(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "model": self.embedder.name,
            "dim": self._index_dim(),
            "quantizer": self.quantizer_name,
            "chunk_size": self.chunk_size,
            "chunk_overlap": self.chunk_overlap,
            "rrf_k": self.rrf_k,
            "candidates": self.candidates,
            "max_document_chars": self.max_document_chars,
            "next_id": self._next_id,
            "next_doc": self._next_doc,
        }

    def _write_manifest(self) -> None:
        if self.path is None:
            return
        tmp = os.path.join(self.path, MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._manifest(), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.path, MANIFEST))

    # ---- writes --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return _store.size(self.index)

    @property
    def dim(self) -> int:
        return self._index_dim()

    def add(self, texts, metadata=None, *, ids=None, vectors=None, progress: bool = False) -> np.ndarray:
        """Add documents: chunk, embed and store them.

        Parameters
        ----------
        texts : list of str (or one str)
            Documents; each is cut into passages of at most ``chunk_size`` characters.
        metadata : list of dict, dict or None
            One dict per document (a single dict applies to all); every passage of a document
            carries its document's metadata. Keys starting ``_text``/``_doc``/... are reserved.
        ids : list of int or str, optional
            One id per document (all of one kind, as the collection's ``id_type``). A document stored as
            one passage gets exactly its id; with string ids, a document cut into several passages gets
            ``"<id>#<chunk>"`` for each (its id is then ``Hit.doc_id``); with integer ids every document
            must fit one passage. Without ids: new integer ids (new UUID strings in a string-id
            collection).
        vectors : array of shape (len(texts), dim), float, optional
            Precomputed unit-norm embeddings, one per text. Then each text is stored as exactly one
            passage (no chunking, no model run) — for importing already-embedded corpora.
        progress : bool
            Show progress bars (embedding).

        Returns
        -------
        ndarray of shape (n_passages,), int64 (object of str in a string-id collection)
            The new passage ids, document by document, chunks in order.

        Raises
        ------
        InvalidInputError
            A text is not a string, is empty, or longer than ``max_document_chars``; bad metadata.
        DimensionMismatchError
            ``vectors`` has the wrong shape.
        """
        texts = _check_texts(texts, self.max_document_chars)
        metas = _check_metadata(metadata, len(texts))
        doc_ids = self._doc_ids(ids, len(texts))
        if vectors is not None:
            vectors = as_float32_matrix(vectors, self.dim, name="vectors")
            if vectors.shape[0] != len(texts):
                raise DimensionMismatchError(
                    f"vectors has {vectors.shape[0]} rows; expected {len(texts)} (one per text)"
                )
            spans = [[(0, len(t))] for t in texts]
        else:
            spans = [self._spans(t) for t in texts]
        passages = [texts[d][s:e] for d, doc_spans in enumerate(spans) for s, e in doc_spans]
        if not passages:
            return np.zeros(0, dtype=object if doc_ids is not None and doc_ids.dtype == object else np.int64)
        passage_ids = None if doc_ids is None else self._passage_ids(doc_ids, spans)
        if vectors is None:
            vectors = self.embedder.encode(passages, progress=progress)
        with self._lock:
            if passage_ids is None:
                ids = np.arange(self._next_id, self._next_id + len(passages), dtype=np.int64)
            else:
                ids = passage_ids
            first_doc = self._next_doc
            rows = []
            for d, doc_spans in enumerate(spans):
                for c, (s, e) in enumerate(doc_spans):
                    rows.append(
                        {
                            **metas[d],
                            _store.TEXT: texts[d][s:e],
                            _store.DOC: doc_ids[d] if ids.dtype == object else first_doc + d,
                            _store.CHUNK: c,
                            _store.START: s,
                            _store.END: e,
                        }
                    )
            # reserve the ids first: after a crash between the two writes, ids are skipped, never reused
            if ids.dtype != object:
                self._next_id = max(self._next_id, int(ids.max()) + 1)
            self._next_doc += len(texts)
            self._write_manifest()
            before = _store.size(self.index)
            _store.add(self.index, vectors, ids, rows)
            self._bm25_after_add(ids, rows, before)
        return ids

    def _bm25_after_add(self, ids: np.ndarray, rows: list[dict], before: int) -> None:
        """Add the new passages to a BM25 index that is in step with the index (cost: these passages
        only); one that is not (never built, or written behind our back) is rebuilt on the next query."""
        with self._bm25_lock:
            bm25 = self._bm25
            if bm25 is None or not self._bm25_fresh or len(bm25) != before:
                self._bm25_fresh = False
                return
            fields = _fields_table([{k: v for k, v in r.items() if k != _store.TEXT} for r in rows])
            bm25.add(ids, [tokenize(r[_store.TEXT]) for r in rows], fields=fields)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Chunks of ``text``: at most ``chunk_size`` characters and at most the embedding model's window
        of tokens (counted with its own tokenizer), so the model never truncates a passage."""
        from .chunking import token_offsets

        tokenizer = self.embedder.tokenizer
        spans = chunk_spans(
            text,
            self.chunk_size,
            self.chunk_overlap,
            token_offsets=token_offsets(tokenizer, text),
            max_tokens=self.embedder.max_tokens,
        )
        return [(s.start, s.end) for s in spans]

    def _doc_ids(self, ids, n: int) -> np.ndarray | None:
        """Validated document ids (None: integer passage ids allocated by the collection)."""
        id_type = getattr(self.index, "id_type", None)
        if ids is None:
            return _ids.new_str_ids(n) if id_type == _ids.STR else None
        kind, arr = _ids.as_user_ids(ids, n)
        _ids.check_kind(kind, id_type)
        dup = _ids.duplicates(arr)
        if dup:
            raise DuplicateIdError(f"ids repeat within one call: {dup}")
        return arr

    @staticmethod
    def _passage_ids(doc_ids: np.ndarray, spans) -> np.ndarray:
        """Passage ids from document ids: the id itself for a one-passage document, ``"<id>#<c>"`` per
        chunk for a longer one (string ids only)."""
        if doc_ids.dtype != object:
            long = [d for d, s in enumerate(spans) if len(s) != 1]
            if long:
                raise InvalidInputError(
                    f"document {long[0]} is cut into {len(spans[long[0]])} passages; an integer id names one "
                    "passage: use string ids (passages get '<id>#<chunk>') or a larger chunk_size"
                )
            return doc_ids
        out = []
        for doc, doc_spans in zip(doc_ids.tolist(), spans):
            out.extend([doc] if len(doc_spans) == 1 else [f"{doc}#{c}" for c in range(len(doc_spans))])
        arr = np.empty(len(out), dtype=object)
        arr[:] = out
        return arr

    def delete(self, ids) -> int:
        """Remove passages by id; returns how many were removed.

        Raises
        ------
        NotFoundError
            An id does not exist (then nothing is removed).
        """
        _, ids = _ids.as_user_ids(ids)
        with self._lock:
            n = _store.delete(self.index, ids)
            with self._bm25_lock:
                if self._bm25 is not None and self._bm25_fresh:
                    self._bm25.remove(ids)
                    self._bm25_fresh = len(self._bm25) == _store.size(self.index)
        return n

    def save(self) -> None:
        """Persist the index and the BM25 index (only for a collection with a path)."""
        if self.path is None:
            raise InvalidInputError("this collection lives in memory (path=None); nothing to save to")
        with self._lock:
            _store.save(self.index)
            bm25 = self._ensure_bm25()
            tmp = os.path.join(self.path, BM25_DIR + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            bm25.save(tmp)
            final = os.path.join(self.path, BM25_DIR)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self._write_manifest()

    def close(self) -> None:
        """Save (with a path) and release the index; the collection is unusable afterwards.

        An index passed in as ``index=`` belongs to the caller and is left open.
        """
        with self._lock:
            if self.path is not None:
                self.save()
            if self._owns_index and hasattr(self.index, "close"):
                self.index.close()

    def __enter__(self) -> TextCollection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- BM25 ----------------------------------------------------------------------------------
    def _ensure_bm25(self) -> BM25Index:
        """The BM25 index; built from the stored passages when there is none in step with the index.

        Writes through this object update it incrementally; the size check catches writes made to the
        index directly (e.g. through the service's vector endpoints). Lock order: ``_lock`` first."""
        with self._bm25_lock:
            if self._bm25 is not None and self._bm25_fresh and len(self._bm25) == _store.size(self.index):
                return self._bm25
        with self._lock, self._bm25_lock:
            if self._bm25 is not None and self._bm25_fresh and len(self._bm25) == _store.size(self.index):
                return self._bm25
            ids = _store.live_ids(self.index)
            rows = _store.rows(self.index, ids) if ids.size else []
            bm25 = BM25Index()
            fields = _fields_table([{key: v for key, v in r.items() if key != _store.TEXT} for r in rows])
            # a vector stored without text (through the vector API) has no words
            bm25.build(ids, [tokenize(r.get(_store.TEXT) or "") for r in rows], fields=fields)
            self._bm25, self._bm25_fresh = bm25, True
            return bm25

    # ---- queries -------------------------------------------------------------------------------
    def query(self, text: str, k: int = 10, mode: str = "hybrid", filter=None, *, rerank=None) -> list[Hit]:
        """The ``k`` passages that best answer ``text``.

        Parameters
        ----------
        text : str
            The question (or keywords).
        k : int
            Most passages to return.
        mode : {"hybrid", "dense", "bm25"}
            ``dense``: nearest embeddings; ``bm25``: lexical match; ``hybrid``: both, fused by
            reciprocal rank.
        filter : dict or pyarrow.compute.Expression, optional
            Metadata filter (Mongo-style dict, see ``vqdb.Index.search``), applied to both sides.
        rerank : bool or float, optional
            Dense side: re-score candidates from stored float vectors (when the index keeps them).

        Returns
        -------
        list of Hit
            Best first; fewer than ``k`` when fewer passages qualify (BM25 only returns passages
            sharing a word with the query).
        """
        return self.query_many([text], k=k, mode=mode, filter=filter, rerank=rerank)[0]

    def query_many(
        self,
        texts: list[str],
        k: int = 10,
        mode: str = "hybrid",
        filter=None,
        *,
        rerank=None,
        query_vectors=None,
    ) -> list[list[Hit]]:
        """:meth:`query` for several questions at once (the embeddings are computed in one batch).

        ``query_vectors`` (m, dim) float32, optional: precomputed query embeddings (skips the model).
        """
        if isinstance(texts, str):
            raise InvalidInputError("query_many takes a list of strings; use query() for one")
        texts = [_check_query(t) for t in texts]
        k = check_k(k)
        if k > MAX_K:
            raise InvalidInputError(f"k must be at most {MAX_K}; got {k}")
        check_choice(mode, MODES, name="mode")
        if not texts:
            return []
        depth = k if mode != "hybrid" else max(k, self.candidates)
        dense = bm25 = None
        if mode in ("dense", "hybrid"):
            dense = self._dense(texts, depth, filter, rerank, query_vectors)
        if mode in ("bm25", "hybrid"):
            bm25 = self._lexical(texts, depth, filter)
        results = []
        for i in range(len(texts)):
            if mode == "dense":
                ids, scores = dense[i]
            elif mode == "bm25":
                ids, scores = bm25[i]
            else:
                ids, scores = reciprocal_rank_fusion([dense[i][0], bm25[i][0]], k, rrf_k=self.rrf_k)
            results.append((ids[:k], scores[:k]))
        return self._hits(results)

    def _dense(self, texts, depth, flt, rerank, query_vectors):
        if query_vectors is None:
            q = self.embedder.encode(texts)
        else:
            q = as_float32_matrix(query_vectors, self.dim, name="query_vectors")
            if q.shape[0] != len(texts):
                raise DimensionMismatchError(f"query_vectors has {q.shape[0]} rows; expected {len(texts)}")
        ids, scores = _store.search(self.index, q, depth, flt, rerank=rerank)
        out = []
        for row_ids, row_scores in zip(ids, scores):
            keep = (row_ids != None) if row_ids.dtype == object else (row_ids >= 0)  # noqa: E711
            out.append((row_ids[keep], row_scores[keep]))
        return out

    def _lexical(self, texts, depth, flt):
        bm25 = self._ensure_bm25()
        with self._bm25_lock:  # BM25Index is not thread-safe; mask and search see the same rows
            mask = None
            if flt is not None:  # same filter semantics as the index (same compiler), on the BM25 rows
                from ..index import _filters

                table = bm25.fields if bm25.fields is not None else _fields_table([])
                mask = (
                    _filters.evaluate(_filters.compile_filter(flt, table.schema), table)
                    if len(bm25)
                    else None
                )
            return [bm25.search(t, depth, mask) for t in texts]

    def _hits(self, results) -> list[list[Hit]]:
        all_ids = np.unique(np.concatenate([r[0] for r in results])) if results else np.zeros(0, np.int64)
        rows = dict(zip(all_ids.tolist(), _store.rows(self.index, all_ids) if all_ids.size else []))
        out = []
        for ids, scores in results:
            hits = []
            for pid, score in zip(ids.tolist(), scores.tolist()):
                row = rows.get(pid)
                if row is None or _store.TEXT not in row:  # deleted meanwhile, or a vector without text
                    continue
                md = {key: v for key, v in row.items() if key not in _store.RESERVED and v is not None}
                hits.append(
                    Hit(
                        id=pid,
                        text=row[_store.TEXT],
                        score=float(score),
                        metadata=md,
                        doc_id=_doc_id(row.get(_store.DOC, -1)),
                        chunk=int(row.get(_store.CHUNK, 0)),
                        start=int(row.get(_store.START, 0)),
                        end=int(row.get(_store.END, len(row[_store.TEXT]))),
                    )
                )
            out.append(hits)
        return out

    def __repr__(self) -> str:
        where = "memory" if self.path is None else repr(self.path)
        return f"TextCollection({where}, model={self.embedder.name!r}, passages={len(self)})"


def _doc_id(value):
    return value if isinstance(value, str) else int(value)


def open_collection(path, *, model=None, device: str = "cpu") -> TextCollection:
    """Open the text collection at ``path``; :class:`NotFoundError` if there is none."""
    return TextCollection.open(path, model=model, device=device)
