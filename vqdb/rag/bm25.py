"""Lexical retrieval: an incremental BM25 index over the passages of a collection.

Tokens are lower-cased Unicode words (``\\w+``) minus English stop words, the same for passages and
queries. Scores are Lucene's BM25 (the ``method="lucene"`` of ``bm25s``, which the tests use as the
oracle)::

    score(q, d) = sum over query tokens t of  idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

with ``N``, ``df`` and ``avgdl`` over the live passages. Unlike a static index, :meth:`BM25Index.add`
and :meth:`BM25Index.remove` update the postings in time proportional to the passages written, so a
collection fed 100 passages at a time never rebuilds the whole index; statistics are read at query
time, so scores always equal those of a full rebuild over the live passages.

Layout: one row per passage ever added (removed rows are dead until :meth:`compact`, which runs when
they outnumber the live ones); per term, the rows and term frequencies of its postings. ``fields``
(optional ``pyarrow.Table``) has one row per row, for filters; a search ``mask`` is aligned with it.
"""

from __future__ import annotations

import functools
import json
import os
import re

import numpy as np

from ..errors import IncompatibleFormatError

_WORD = re.compile(r"\w+")
FORMAT_VERSION = 2  # 1 was a bm25s dump (rebuilt from the passages when found)


@functools.cache
def _stopwords() -> frozenset[str]:
    try:  # bm25s imports numba: load it on first use, not with vqdb.rag
        from bm25s.stopwords import STOPWORDS_EN
    except ImportError:  # bm25s missing: no stop words
        return frozenset()
    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` without English stop words."""
    stop = _stopwords()
    return [w for w in _WORD.findall(text.lower()) if w not in stop]


class _Postings:
    """Rows and term frequencies of one term: appended in chunks, read as two arrays."""

    __slots__ = ("parts", "rows", "tfs")

    def __init__(self):
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.rows = np.zeros(0, np.int64)
        self.tfs = np.zeros(0, np.float32)

    def append(self, rows: np.ndarray, tfs: np.ndarray) -> None:
        self.parts.append((rows, tfs))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.parts:
            self.rows = np.concatenate([self.rows] + [r for r, _ in self.parts])
            self.tfs = np.concatenate([self.tfs] + [t for _, t in self.parts])
            self.parts = []
        return self.rows, self.tfs


class BM25Index:
    """An incremental BM25 index over passages identified by ids (int64, or str in a string-id collection).

    Parameters
    ----------
    k1, b : float
        BM25 term-frequency saturation and length normalisation (Lucene variant).

    Notes
    -----
    Not thread-safe: the collection serialises calls with a lock.
    """

    def __init__(self, *, k1: float = 1.5, b: float = 0.75):
        self.k1 = float(k1)
        self.b = float(b)
        self._reset(np.zeros(0, np.int64))

    def _reset(self, ids_like: np.ndarray) -> None:
        self._row_ids = np.zeros(0, dtype=ids_like.dtype)  # row -> passage id
        self._alive = np.zeros(0, bool)
        self._lengths = np.zeros(0, np.float32)
        self._row_terms: list[np.ndarray] = []  # row -> unique term ids (for removal)
        self._row_of: dict = {}  # passage id -> row (live rows only)
        self._vocab: dict[str, int] = {}
        self._postings: list[_Postings] = []
        self._df = np.zeros(0, np.int64)
        self._n_live = 0
        self._total_len = 0.0
        self.fields = None

    # ---- sizes ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live passages."""
        return self._n_live

    @property
    def ids(self) -> np.ndarray:
        """(len,) ids of the live passages, in row order."""
        return self._row_ids[self._alive]

    @property
    def n_rows(self) -> int:
        """Rows, dead ones included (the length of ``fields`` and of a search ``mask``)."""
        return int(self._row_ids.shape[0])

    # ---- writes -----------------------------------------------------------------------------
    def build(self, ids: np.ndarray, tokens: list[list[str]], fields=None) -> None:
        """Replace the contents with passages ``ids`` (n,) whose tokens are ``tokens[i]``; ``fields``:
        optional ``pyarrow.Table`` of n rows (metadata that filters read)."""
        self._reset(np.asarray(ids))
        self.add(ids, tokens, fields=fields)

    def add(self, ids: np.ndarray, tokens: list[list[str]], fields=None) -> None:
        """Append passages (ids not in the index yet). Cost: proportional to the tokens added."""
        ids = np.asarray(ids)
        if ids.dtype != object:
            ids = ids.astype(np.int64)
        n = ids.shape[0]
        if n == 0:
            return
        if self._row_ids.dtype != ids.dtype and self.n_rows:
            raise IncompatibleFormatError("BM25 ids of two kinds in one index")
        first = self.n_rows
        vocab = self._vocab
        new_terms: list[np.ndarray] = []
        per_term: dict[int, tuple[list[int], list[int]]] = {}
        lengths = np.empty(n, np.float32)
        for j, doc in enumerate(tokens):
            lengths[j] = len(doc)
            counts: dict[int, int] = {}
            for t in doc:
                tid = vocab.get(t)
                if tid is None:
                    tid = vocab[t] = len(vocab)
                    self._postings.append(_Postings())
                counts[tid] = counts.get(tid, 0) + 1
            new_terms.append(np.fromiter(counts, dtype=np.int64, count=len(counts)))
            for tid, c in counts.items():
                rows_tfs = per_term.get(tid)
                if rows_tfs is None:
                    rows_tfs = per_term[tid] = ([], [])
                rows_tfs[0].append(first + j)
                rows_tfs[1].append(c)
        if len(vocab) > self._df.shape[0]:
            self._df = np.concatenate([self._df, np.zeros(len(vocab) - self._df.shape[0], np.int64)])
        for tid, (rows, tfs) in per_term.items():
            self._postings[tid].append(np.asarray(rows, np.int64), np.asarray(tfs, np.float32))
            self._df[tid] += len(rows)
        self._row_ids = np.concatenate([self._row_ids, ids]) if first else ids.copy()
        self._alive = np.concatenate([self._alive, np.ones(n, bool)])
        self._lengths = np.concatenate([self._lengths, lengths])
        self._row_terms.extend(new_terms)
        self._row_of.update(zip(ids.tolist(), range(first, first + n)))
        self._n_live += n
        self._total_len += float(lengths.sum())
        self.fields = _append_fields(self.fields, fields, first, n)

    def remove(self, ids) -> int:
        """Remove the passages ``ids`` that are present; returns how many. Compacts when dead rows
        outnumber live ones."""
        rows = [self._row_of.pop(i) for i in np.asarray(ids).tolist() if i in self._row_of]
        for r in rows:
            self._alive[r] = False
            self._df[self._row_terms[r]] -= 1
            self._total_len -= float(self._lengths[r])
        self._n_live -= len(rows)
        if self.n_rows - self._n_live > max(self._n_live, 1024):
            self.compact()
        return len(rows)

    def compact(self) -> None:
        """Drop dead rows (row numbers change; ``fields`` is compacted alike)."""
        keep = np.flatnonzero(self._alive)
        if keep.size == self.n_rows:
            return
        new_row = np.full(self.n_rows, -1, np.int64)
        new_row[keep] = np.arange(keep.size)
        for p in self._postings:
            rows, tfs = p.arrays()
            live = new_row[rows] >= 0 if rows.size else np.zeros(0, bool)
            p.rows, p.tfs = new_row[rows[live]], tfs[live]
        self._row_ids = self._row_ids[keep]
        self._alive = np.ones(keep.size, bool)
        self._lengths = self._lengths[keep]
        self._row_terms = [self._row_terms[r] for r in keep.tolist()]
        self._row_of = dict(zip(self._row_ids.tolist(), range(keep.size)))
        if self.fields is not None:
            import pyarrow as pa

            self.fields = self.fields.take(pa.array(keep)).combine_chunks()

    # ---- search -----------------------------------------------------------------------------
    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` passages of positive BM25 score for ``query``.

        Parameters
        ----------
        query : str
        k : int
        mask : ndarray of shape (n_rows,), bool, optional
            Rows allowed by a filter (aligned with ``fields``).

        Returns
        -------
        ids : ndarray of shape (<= k,)
            Best first; ties broken by row order. Passages sharing no term with the query are left out.
        scores : ndarray of shape (<= k,), float32
        """
        empty = (np.zeros(0, dtype=self._row_ids.dtype), np.zeros(0, dtype=np.float32))
        tids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        if not tids or self._n_live == 0:
            return empty
        n, avgdl = float(self._n_live), self._total_len / self._n_live
        scores = np.zeros(self.n_rows, np.float64)
        for tid in tids:  # repeated query words count again, as in bm25s
            rows, tfs = self._postings[tid].arrays()
            if rows.size == 0:
                continue
            df = float(self._df[tid])
            idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
            norm = self.k1 * (1.0 - self.b + self.b * self._lengths[rows] / avgdl)
            scores[rows] += idf * tfs / (tfs + norm)
        scores = scores.astype(np.float32)
        allowed = self._alive if mask is None else (self._alive & np.asarray(mask, bool)[: self.n_rows])
        scores = np.where(allowed, scores, 0.0).astype(np.float32)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > k:
            part = np.argpartition(-scores[candidates], k - 1)[:k]
            kth = scores[candidates[part]].min()
            candidates = candidates[scores[candidates] >= kth]  # keep ties, ordered below
        order = np.lexsort((candidates, -scores[candidates]))[:k]
        rows = candidates[order]
        return self._row_ids[rows], scores[rows]

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory: str) -> None:
        """Write the index (compacted) into ``directory`` (created if needed)."""
        self.compact()
        os.makedirs(directory, exist_ok=True)
        terms = sorted(self._vocab, key=self._vocab.get)
        flat_rows, flat_tfs, bounds = [], [], [0]
        for p in self._postings:
            rows, tfs = p.arrays()
            flat_rows.append(rows)
            flat_tfs.append(tfs)
            bounds.append(bounds[-1] + rows.size)
        np.savez(
            os.path.join(directory, "bm25.npz"),
            lengths=self._lengths,
            rows=np.concatenate(flat_rows) if flat_rows else np.zeros(0, np.int64),
            tfs=np.concatenate(flat_tfs) if flat_tfs else np.zeros(0, np.float32),
            bounds=np.asarray(bounds, np.int64),
            **({} if self._row_ids.dtype == object else {"ids": self._row_ids}),
        )
        meta = {"format": FORMAT_VERSION, "k1": self.k1, "b": self.b, "terms": terms}
        if self._row_ids.dtype == object:  # string ids: JSON (never a pickle)
            meta["ids"] = self._row_ids.tolist()
        if self.fields is not None:
            import pyarrow as pa

            with pa.OSFile(os.path.join(directory, "fields.arrow"), "wb") as sink:
                with pa.ipc.new_file(sink, self.fields.schema) as writer:
                    writer.write_table(self.fields)
        with open(os.path.join(directory, "bm25.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)

    @classmethod
    def load(cls, directory: str) -> BM25Index:
        with open(os.path.join(directory, "bm25.json"), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT_VERSION:
            raise IncompatibleFormatError(
                f"BM25 index format {meta.get('format')!r}; this vqdb reads {FORMAT_VERSION}"
            )
        out = cls(k1=meta["k1"], b=meta["b"])
        with np.load(os.path.join(directory, "bm25.npz"), allow_pickle=False) as z:
            lengths, rows, tfs, bounds = z["lengths"], z["rows"], z["tfs"], z["bounds"]
            if "ids" in z:
                ids = z["ids"]
            else:
                ids = np.empty(len(meta["ids"]), dtype=object)
                ids[:] = meta["ids"]
        n = ids.shape[0]
        out._row_ids, out._alive, out._lengths = ids, np.ones(n, bool), lengths.astype(np.float32)
        out._vocab = {t: i for i, t in enumerate(meta["terms"])}
        out._postings, out._df = [], np.zeros(len(out._vocab), np.int64)
        terms_of: list[list[int]] = [[] for _ in range(n)]
        for tid in range(len(out._vocab)):
            p = _Postings()
            p.rows, p.tfs = rows[bounds[tid] : bounds[tid + 1]], tfs[bounds[tid] : bounds[tid + 1]]
            out._postings.append(p)
            out._df[tid] = p.rows.size
            for r in p.rows.tolist():
                terms_of[r].append(tid)
        out._row_terms = [np.asarray(t, np.int64) for t in terms_of]
        out._row_of = dict(zip(ids.tolist(), range(n)))
        out._n_live, out._total_len = n, float(lengths.sum())
        fields_path = os.path.join(directory, "fields.arrow")
        if os.path.isfile(fields_path):
            import pyarrow as pa

            with pa.memory_map(fields_path) as source:
                out.fields = pa.ipc.open_file(source).read_all()
        return out


def _append_fields(table, new, first: int, n: int):
    """``table`` (``first`` rows, or None) followed by ``new`` (n rows, or None: all-null rows)."""
    import pyarrow as pa

    if new is None or new.num_rows != n:  # no filterable fields in these rows
        new = pa.table({"__row": pa.nulls(n)})
    if table is None:
        table = pa.table({"__row": pa.nulls(first)}) if first else new.slice(0, 0)
    out = pa.concat_tables([table, new], promote_options="permissive")
    return out.combine_chunks() if out.column(0).num_chunks > 64 else out
