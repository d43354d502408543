"""Lexical retrieval: BM25 (``bm25s``) over the passages of a collection.

Tokens are lower-cased Unicode words (``\\w+``) minus English stop words, the same for passages
and queries. The ``bm25s`` index is built from all passages at once; after writes it is rebuilt on
the next lexical query (token lists are cached, so a rebuild costs one pass of the index builder).
Rows are aligned with the passage ids given to :meth:`BM25Index.build`.
"""

from __future__ import annotations

import functools
import json
import os
import re

import numpy as np

from ..errors import BackendUnavailableError, IncompatibleFormatError

_WORD = re.compile(r"\w+")
FORMAT_VERSION = 1


@functools.cache
def _stopwords() -> frozenset[str]:
    try:  # bm25s imports numba: load it on first use, not with vqdb.rag
        from bm25s.stopwords import STOPWORDS_EN
    except ImportError:  # bm25s missing: BM25Index says so when built
        return frozenset()
    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` without English stop words."""
    stop = _stopwords()
    return [w for w in _WORD.findall(text.lower()) if w not in stop]


def _bm25s():
    try:
        import bm25s
    except ImportError as exc:
        raise BackendUnavailableError(
            "BM25 search needs the 'bm25s' package (pip install 'vqdb[rag]')"
        ) from exc
    return bm25s


class BM25Index:
    """A BM25 index over passages identified by int64 ids.

    Parameters
    ----------
    k1, b : float
        BM25 term-frequency saturation and length normalisation (Lucene variant).
    """

    def __init__(self, *, k1: float = 1.5, b: float = 0.75):
        self.k1 = float(k1)
        self.b = float(b)
        self.ids = np.zeros(0, dtype=np.int64)  # row -> passage id
        self.fields = None  # pyarrow.Table of filterable metadata, one row per id
        self._retriever = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def build(self, ids: np.ndarray, tokens: list[list[str]], fields=None) -> None:
        """(Re)build from ``tokens[i]`` of passage ``ids[i]``; ids is (n,) int64.

        ``fields``: optional ``pyarrow.Table`` with one row per id (metadata that filters read), kept
        and persisted alongside.
        """
        bm25s = _bm25s()
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.fields = fields
        if len(tokens) == 0:
            self._retriever = None
            return
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        # bm25s needs a non-empty vocabulary; an all-stop-word passage simply has no tokens
        vocab = {}
        corpus_ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in tokens]
        if not vocab:
            self._retriever = None
            return
        retriever.index((corpus_ids, vocab), show_progress=False)
        self._retriever = retriever

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` passages of positive BM25 score for ``query``.

        Parameters
        ----------
        query : str
        k : int
        mask : ndarray of shape (len(self),), bool, optional
            Rows allowed by a filter.

        Returns
        -------
        ids : ndarray of shape (<= k,), int64
            Best first; ties broken by row order. Passages sharing no term with the query are left out.
        scores : ndarray of shape (<= k,), float32
        """
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        if self._retriever is None:
            return empty
        term_ids = self._retriever.get_tokens_ids(tokenize(query))
        if not term_ids:
            return empty
        scores = np.asarray(self._retriever.get_scores_from_ids(term_ids), dtype=np.float32)
        if mask is not None:
            scores = np.where(mask, scores, 0.0).astype(np.float32)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > k:
            part = np.argpartition(-scores[candidates], k - 1)[:k]
            kth = scores[candidates[part]].min()
            candidates = candidates[scores[candidates] >= kth]  # keep ties, ordered below
        order = np.lexsort((candidates, -scores[candidates]))[:k]
        rows = candidates[order]
        return self.ids[rows], scores[rows]

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory: str) -> None:
        """Write the index into ``directory`` (created if needed)."""
        os.makedirs(directory, exist_ok=True)
        np.save(os.path.join(directory, "ids.npy"), self.ids)
        if self.fields is not None:
            import pyarrow as pa

            with pa.OSFile(os.path.join(directory, "fields.arrow"), "wb") as sink:
                with pa.ipc.new_file(sink, self.fields.schema) as writer:
                    writer.write_table(self.fields)
        state = {"format": FORMAT_VERSION, "k1": self.k1, "b": self.b, "empty": self._retriever is None}
        if self._retriever is not None:
            self._retriever.save(os.path.join(directory, "bm25s"))
        with open(os.path.join(directory, "bm25.json"), "w", encoding="utf-8") as f:
            json.dump(state, f)

    @classmethod
    def load(cls, directory: str) -> BM25Index:
        with open(os.path.join(directory, "bm25.json"), encoding="utf-8") as f:
            state = json.load(f)
        if state.get("format") != FORMAT_VERSION:
            raise IncompatibleFormatError(
                f"BM25 index format {state.get('format')!r}; this vqdb reads {FORMAT_VERSION}"
            )
        out = cls(k1=state["k1"], b=state["b"])
        out.ids = np.load(os.path.join(directory, "ids.npy"))
        fields_path = os.path.join(directory, "fields.arrow")
        if os.path.isfile(fields_path):
            import pyarrow as pa

            with pa.memory_map(fields_path) as source:
                out.fields = pa.ipc.open_file(source).read_all()
        if not state["empty"]:
            out._retriever = _bm25s().BM25.load(os.path.join(directory, "bm25s"), load_corpus=False)
        return out
