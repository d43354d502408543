"""``vqdb.Index``: an embedded vector index over quantized codes, with ids, metadata filters, IVF,
exact re-rank, and durable storage (segments + write-ahead log).

Scores are always **higher is better**: ``ip`` returns the inner product, ``cos`` the cosine similarity
(vectors and queries are normalised on input, then scored by inner product), ``l2sq`` the *negated*
squared Euclidean distance ``-||q - x||^2``.

Thread safety
-------------
Every public method may be called from any thread. Writes (``add``, ``upsert``, ``delete``, ``train``,
``save``, ``compact``, ``set_default_params``) are serialised by one lock. Reads (``search``, ``get``,
``len``, ``stats``, ``ids``, ``in``) take no lock while they work: they grab an immutable snapshot of the
index state and scan it, so many searches run concurrently with each other and with one write, and each
sees the index as it was when it started. ``close()`` must not race with other calls on the same object.
Only one process (one ``Index`` object) may open a directory for writing at a time (an ``flock``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from .._validation import as_float32_matrix, check_choice, check_int_range, check_k
from ..errors import DuplicateIdError, InvalidInputError, NotFoundError, VqdbError
from ..kernels import numpy_path
from ..kernels import scanner as _scanner
from . import _filters, _ids, _ivf, _plan, _scan, _state, _wal
from . import _metadata as md
from . import _storage as st
from . import graph as _graph
from ._codec import make_quantizer, quantizer_meta
from ._params import SearchParams, SearchResult
from ._persist import _Persistence, _Snapshot
from ._segment import Segment, build_table, concat, from_table

log = logging.getLogger("vqdb.index")

METRICS = ("cos", "ip", "l2sq")
FIT_MIN = 256  # the first add fits the quantizer's centre if it has at least this many vectors
MAX_MEMORY_CHUNKS = 24  # in-memory chunks are always merged beyond this
SUBSET_MAX_ROWS = _plan.SUBSET_MAX_ROWS  # (the planner's thresholds, re-exported)
GRAPH_SUBSET_FRACTION = _plan.GRAPH_SUBSET_FRACTION
WRITE_CHUNK = 131072  # larger adds/upserts are logged and applied in chunks of this many vectors
_F16_MAX = 65504.0
MAX_K = 100_000  # results per query (Elasticsearch allows 10,000, Milvus 16,384)
MAX_RESULTS = 1 << 26  # queries x k per search call (67M results: 800 MB of ids and scores)


@dataclass(frozen=True)
class Records:
    """What :meth:`Index.get` returns.

    Attributes
    ----------
    ids : ndarray of shape (n,), int64 (integer-id index) or object of str (string-id index)
    vectors : ndarray of shape (n, d), float32, or None
        The stored vectors (``store_vectors``: exact to float16/float32 precision, normalised for ``cos``)
        or, when none are stored, the quantizer's reconstruction from the codes (``exact`` is False).
    metadata : list of n dicts (fields without a value are left out)
    exact : bool
    """

    ids: np.ndarray
    vectors: np.ndarray | None
    metadata: list
    exact: bool


@dataclass(frozen=True)
class Page:
    """What :meth:`Index.scroll` returns: ``records`` of one page, and ``next_offset`` (the id to pass as
    ``offset`` for the next page; None on the last page)."""

    records: Records
    next_offset: int | str | None


def _check_result_size(m: int, k: int) -> None:
    """A search allocates (m, k) results (and its heaps): refuse sizes that cannot be meant."""
    if k > MAX_K:
        raise InvalidInputError(f"k = {k:,} is larger than the {MAX_K:,} results a search returns at most")
    if m * k > MAX_RESULTS:
        raise InvalidInputError(
            f"{m:,} queries x k = {k:,} is {m * k:,} results; at most {MAX_RESULTS:,} per call "
            "(search fewer queries per call)"
        )


def _unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 rows scaled to unit length, and (n,) bool: the rows that are all zeros (left zero).

    Rows whose float32 norm overflows (a finite row of values near 3e38 has norm inf) or may underflow
    (values near 1e-30) are first divided by their largest magnitude; the others exactly as ``x / ||x||``."""
    norms = np.linalg.norm(x, axis=1)
    if x.shape[0] == 1 and 1e-18 <= float(norms[0]) < np.inf:  # one usual query: the same x / ||x||, sooner
        return x / norms[:, None], np.zeros(1, dtype=bool)
    risky = ~np.isfinite(norms) | (norms < 1e-18)
    if np.any(risky):
        rows = x[risky]
        scale = np.abs(rows).max(axis=1)
        scale[scale == 0] = 1.0
        rows = rows / scale[:, None]
        x = x.copy()
        x[risky] = rows
        norms[risky] = np.linalg.norm(rows, axis=1)
    zero = norms == 0
    return np.ascontiguousarray(x / np.where(zero, 1.0, norms)[:, None], dtype=np.float32), zero


def _as_store_vectors(value) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return "float16"
    if value in ("float16", "float32"):
        return value
    raise InvalidInputError(f"store_vectors must be False, True, 'float16' or 'float32'; got {value!r}")


def _as_ivf(value) -> tuple[bool, int | None]:
    if (
        value is None
        or value is False
        or (not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value == 0)
    ):
        return False, None
    if value is True:
        return True, None
    return True, check_int_range(value, 1, 1 << 24, name="ivf (number of lists)")


class Index(_Persistence):
    """A vector index: ids + quantized codes (+ optional stored vectors) + Arrow metadata.

    Parameters
    ----------
    dim : int
        Dimension ``d`` of every vector.
    metric : {"cos", "ip", "l2sq"}
        ``cos`` normalises vectors and queries on input and scores the inner product; ``ip`` scores the
        inner product; ``l2sq`` scores ``-||q - x||^2``. Higher scores are always better.
    quantizer : str or Quantizer
        A preset name (``"turbo-4"``, ``"turbo-2"``, ``"qjl"``, ... see ``vqdb.presets(dim)``) or a quantizer
        instance (copied). The first ``add`` of at least 256 vectors fits its centre (the mean), once;
        it never changes afterwards.
    graph : bool or int
        ``True``: a graph index (degree 32); an int sets the degree. Exclusive with ``ivf``. Searches
        walk the graph scoring each hop's neighbours on their codes (fast-scan LUTs) and score the nodes
        they expand exactly from float16 vectors (search knob ``ef``, see :class:`SearchParams`); the
        quantizer must support fast scans (TurboQuant, QJL). Needs ``store_vectors`` (the default for a
        graph). Filters below ``GRAPH_SUBSET_FRACTION`` of the rows scan the matching rows instead.
        Deleted nodes are skipped and dropped by :meth:`compact` (which rebuilds the graph).
    ivf : bool or int
        ``False``: flat scan over all codes. ``True``: an IVF partition whose number of lists is chosen when
        it is trained (about ``4 sqrt(n)``). An int: that many lists. The partition (k-means, faiss) is
        trained once, at the first ``add`` that brings enough vectors (32 per list, at least 256), or by
        :meth:`train`; later vectors are assigned to their nearest list without retraining. Codes hold the
        residual from their list centroid.
    path : str or None
        A directory to store the index in (created; must not already hold an index: use ``vqdb.open``).
        ``None`` keeps the index in memory (``save(path)`` writes it out later).
    id_type : {"int", "str"} or None
        The kind of ids: non-negative integers, or strings (UUIDs included, at most
        ``vqdb.index.MAX_ID_BYTES`` UTF-8 bytes each). ``None``: fixed by the first write (an ``add``
        without ids makes it ``"int"``). Ids of the other kind are refused with ``DTypeError``.
    store_vectors : bool, {"float16", "float32"} or None
        Also keep the full vectors (``True`` = float16), memory-mapped on disk, for exact re-ranking and
        exact ``get``. ``None`` (default): float16 for a graph index, none otherwise.
    default_params : SearchParams, optional
        Defaults of the search knobs (persisted with the index).
    flush_rows : int
        Rows kept in memory (and in the write-ahead log) before they are written into a segment.
    seed : int
        Seed of the IVF k-means.
    device : {"cpu", "cuda"}
        ``"cuda"``: codes are kept resident on the GPU and flat / filtered searches are scored there as one
        batch, filters shipped as bitmaps (:mod:`vqdb.kernels.cuda.index_scan`, through the kernel dispatch; IVF probing stays on the host; a
        quantizer without ``scan_parts``, e.g. PolarQuant, is scored on the host). Not persisted. Raises
        ``BackendUnavailableError`` where no CUDA device is usable.
    threads : int or None
        Threads a search may use (``None``: all cores numba may use). A search's ``threads=`` overrides it.
        Searches never change a process-wide setting: numba's thread count is set for the calling thread
        only, for the duration of the call, and BLAS is left alone. Not persisted.

    Notes
    -----
    Thread safety: every method may be called from any thread. Writes are serialised by a lock; searches
    and other reads take no lock (they work on an immutable snapshot), so they run concurrently with each
    other and with one write. One process (one ``Index`` object) at a time may open a directory for
    writing; others can open it with ``vqdb.open(path, read_only=True)`` (a snapshot as of opening).

    Examples
    --------
    >>> import numpy as np, vqdb
    >>> x = np.random.default_rng(0).normal(size=(1000, 64)).astype(np.float32)
    >>> index = vqdb.Index(64, metric="cos", quantizer="turbo-4")
    >>> ids = index.add(x, metadata=[{"even": i % 2 == 0} for i in range(1000)])
    >>> res = index.search(x[:3], 5, filter={"even": True})
    >>> res.ids.shape
    (3, 5)
    """

    # (snapshot, quantizer, memo) of :meth:`_search_cache`; an instance replaces it on its first search
    _memo: tuple = (None, None, None)

    @property
    def _snap(self) -> _Snapshot:
        """The index state searches read (immutable; every write installs a new one)."""
        return self._snap_now

    @_snap.setter
    def _snap(self, snap: _Snapshot) -> None:
        self._snap_now = snap
        self._memo = Index._memo  # a new state: the memo of the old one (its segments) is let go now

    # ------------------------------------------------------------------ construction / opening
    def __init__(
        self,
        dim,
        *,
        metric="cos",
        quantizer="turbo-4",
        ivf=False,
        graph=False,
        path=None,
        id_type: str | None = None,
        store_vectors=None,
        default_params: SearchParams | None = None,
        flush_rows: int = 65536,
        seed: int = 0,
        device: str = "cpu",
        threads: int | None = None,
    ):
        dim = check_int_range(dim, 1, 1 << 20, name="dim")
        id_type = _ids.check_id_type(id_type)
        check_choice(metric, METRICS, name="metric")
        ivf_on, nlist = _as_ivf(ivf)
        degree = _graph.as_graph(graph)
        if degree is not None and ivf_on:
            raise InvalidInputError("graph and ivf are exclusive: choose one index structure")
        if degree is not None and store_vectors is None:
            store_vectors = "float16"
        if default_params is not None and not isinstance(default_params, SearchParams):
            raise InvalidInputError(
                f"default_params must be a SearchParams; got {type(default_params).__name__}"
            )
        store_vectors = _as_store_vectors(store_vectors)
        if default_params is not None and default_params.rerank_factor() and store_vectors is None:
            raise InvalidInputError("default_params re-rank needs store_vectors=True")
        flush_rows = check_int_range(flush_rows, 1, 1 << 40, name="flush_rows")
        seed = check_int_range(seed, 0, 2**63 - 1, name="seed")
        check_choice(device, ("cpu", "cuda"), name="device")
        threads = None if threads is None else check_int_range(threads, 1, 1 << 16, name="threads")
        quantizer = make_quantizer(quantizer, dim)
        if degree is not None:
            if store_vectors is None:
                raise InvalidInputError("a graph index needs store_vectors (True, 'float16' or 'float32')")
            if not _scanner.FastScanner.supports(quantizer):
                raise InvalidInputError(
                    f"a graph index needs a quantizer with fast-scan codes (TurboQuant, QJL); "
                    f"{type(quantizer).__name__} has none"
                )
            if getattr(quantizer, "rotation_kind", None) == "pca":
                raise InvalidInputError(
                    "a graph index does not support turbo-pca-N quantizers: their bit allocation is fitted "
                    "on the data (up to 8-bit slices), and a graph row holds fixed 4-bit fast-scan slots; "
                    "use turbo-N"
                )
        if device == "cuda":
            from ..kernels import require_device

            require_device("cuda", what="vqdb.Index(device='cuda')")
        self._setup(
            dim=dim,
            metric=metric,
            quantizer=quantizer,
            ivf=ivf_on,
            nlist=nlist,
            store_vectors=store_vectors,
            defaults=default_params or SearchParams(),
            flush_rows=flush_rows,
            seed=seed,
            id_type=id_type,
            graph=degree,
        )
        self._snap = _Snapshot((), None, md.empty_schema())
        self._device = device
        self._threads = threads
        if path is not None:
            self._create_dir(os.fspath(path))

    def _setup(
        self,
        *,
        dim,
        metric,
        quantizer,
        ivf,
        nlist,
        store_vectors,
        defaults,
        flush_rows,
        seed,
        id_type=None,
        graph=None,
    ):
        # No eager warm-up: each kernel compiles (or loads from numba's cache) on its first call, so a new
        # index pays only for what its preset and its searches use; `vqdb warmup` builds them all ahead.
        self.dim = dim
        self._id_type = id_type
        self.metric = metric
        self._quantizer = quantizer
        self._ivf = ivf
        self._nlist = nlist
        self._store_vectors = store_vectors
        self._defaults = defaults
        self._flush_rows = flush_rows
        self._seed = seed
        self._lock = threading.RLock()
        self._next_id = 0
        self._path = None
        self._wal = None
        self._dirlock = None
        self._read_only = False
        self._closed = False
        self._gen = 0
        self._manifest = None
        self._sums = {}
        self._salvage = False
        self._wal_damage = None
        self._salvaged = None
        self._dirty = False
        self._zero = np.zeros(dim, dtype=np.float32)
        self._device = "cpu"
        self._threads = None
        self._device_scorer = None
        self._graph = None
        if graph is not None:
            self._graph = _graph.Graph(
                _scanner.FastScanner(quantizer), dim, graph, "l2sq" if metric == "l2sq" else "ip"
            )

    @classmethod
    def open(cls, path, *, read_only: bool = False, salvage: bool = False) -> Index:
        """Open an index directory written by :class:`Index` (also ``vqdb.open(path)``).

        Checks every file against its checksum, memory-maps the segments and replays the write-ahead
        log, cutting the torn tail of a write that was never acknowledged. A format-1 index opened for
        writing is rewritten as format 2 first.

        Parameters
        ----------
        read_only : bool
            Take no lock and never write (writes raise ``ReadOnlyError``). A damaged log is then
            reported (a warning, and ``stats()["wal_damage"]``) and its intact records are used.
        salvage : bool
            When the log is damaged (not a torn tail), keep its intact records, copy the damaged log
            aside (``wal-*.log.damaged-<UTC time>``, kept in the directory) and start a fresh one; what
            followed the damage is lost (``stats()["salvaged"]`` says how much). Also ``vqdb salvage PATH``.

        Raises
        ------
        IncompatibleFormatError
            ``path`` is not an index, or was written with a format version this vqdb cannot read.
        CorruptIndexError
            A file is damaged (checksum or layout), missing, or named outside the directory; the
            message and ``.file`` name it.
        WalDamagedError
            The write-ahead log is damaged and ``salvage`` is False (opening for writing only).
        LockedError
            Another process (or Index object) has the directory open for writing.
        """
        if salvage and read_only:
            raise InvalidInputError("salvage rewrites the index; it cannot be combined with read_only=True")
        root = os.fspath(path)
        st.read_manifest(root)  # is it an index at all (before creating a LOCK file)?
        dirlock = None if read_only else st.DirLock(root)
        try:
            manifest = st.read_manifest(root)  # (re-)read under the lock
            state_file = manifest["state_file"]
            arrays = st.read_arrays(
                st.resolve(root, state_file, what="state file"), st.checksum_of(manifest, state_file)
            )
            qarrays = {k[len("quantizer/") :]: v for k, v in arrays.items() if k.startswith("quantizer/")}
            if manifest["quantizer"]["config"].get("dim", manifest["dim"]) != manifest["dim"]:
                raise st.CorruptIndexError(
                    f"the manifest of {root!r} gives the quantizer dim "
                    f"{manifest['quantizer']['config'].get('dim')!r} in an index of dim {manifest['dim']}",
                    file=st.MANIFEST,
                )
            dim = manifest["dim"]
            for key, shape in (("index/centre", (dim,)), ("index/centroids", (None, dim))):
                a = arrays.get(key)
                if a is not None and (
                    a.dtype != np.float32 or a.ndim != len(shape) or a.shape[-1] != dim or not a.shape[0]
                ):
                    raise st.CorruptIndexError(
                        f"state file {state_file!r} of {root!r} holds {key} of shape {a.shape} {a.dtype}; "
                        f"expected {shape} float32",
                        file=state_file,
                    )
            quantizer = _state.load_checked(root, state_file, manifest, qarrays, arrays)
            if quantizer.code_size != manifest["code_size"]:
                raise st.CorruptIndexError(
                    f"quantizer rebuilt from {root!r} has code_size {quantizer.code_size}; "
                    f"the manifest says {manifest['code_size']}",
                    file=st.MANIFEST,
                )
            self = cls.__new__(cls)
            ivf = manifest["ivf"]
            self._setup(
                dim=int(manifest["dim"]),
                metric=manifest["metric"],
                quantizer=quantizer,
                ivf=ivf is not None,
                nlist=None if ivf is None else ivf.get("nlist"),
                store_vectors=manifest["store_vectors"],
                defaults=SearchParams.from_json(manifest["default_params"]),
                flush_rows=int(manifest["options"]["flush_rows"]),
                seed=int(manifest["options"]["seed"]),
                id_type=manifest.get("id_type") or (_ids.INT if int(manifest["next_id"]) else None),
                graph=None if not manifest.get("graph") else int(manifest["graph"]["degree"]),
            )
            self._read_only = read_only
            self._salvage = bool(salvage)
            self._dirlock = dirlock
            self._load(root, manifest, arrays)
        except BaseException as exc:
            if dirlock is not None:
                dirlock.release()
            if isinstance(
                exc, (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError)
            ) and not (isinstance(exc, VqdbError)):
                raise st.CorruptIndexError(f"index at {root!r} is damaged or incomplete: {exc!r}") from exc
            raise
        return self

    @classmethod
    def open_or_create(cls, path, dim, **options) -> Index:
        """Open the index at ``path``, or create it there (``Index(dim, path=path, **options)``) when the
        directory holds none. An existing index must match ``dim`` and any ``metric`` / ``id_type`` given.

        Raises
        ------
        InvalidInputError
            The existing index has another dimension, metric or id type.
        """
        root = os.fspath(path)
        if not os.path.exists(os.path.join(root, st.MANIFEST)):
            return cls(dim, path=root, **options)
        index = cls.open(root, read_only=bool(options.get("read_only", False)))
        want = {"dim": dim, "metric": options.get("metric"), "id_type": options.get("id_type")}
        have = {"dim": index.dim, "metric": index.metric, "id_type": index.id_type}
        clash = {
            k: (v, have[k]) for k, v in want.items() if v is not None and have[k] is not None and v != have[k]
        }
        if clash:
            index.close()
            detail = ", ".join(f"{k} {h!r} (asked for {w!r})" for k, (w, h) in clash.items())
            raise InvalidInputError(f"the index at {root!r} has {detail}")
        return index

    def verify(self) -> dict:
        """Check every file of this index's directory (see :func:`vqdb.index.verify`): checksums of all
        files, segment layouts, the write-ahead log. Returns the report (``ok``, ``problems``, ...)."""
        if self._path is None:
            raise InvalidInputError("this index lives in memory; there are no files to verify")
        from ._verify import verify

        return verify(self._path)

    # ------------------------------------------------------------------ properties
    @property
    def quantizer(self):
        """The quantizer (do not modify it: codes on disk depend on its state)."""
        return self._quantizer

    @property
    def path(self) -> str | None:
        return self._path

    @property
    def store_vectors(self) -> str | None:
        return self._store_vectors

    @property
    def id_type(self) -> str | None:
        """``"int"`` or ``"str"``: the kind of this index's ids (None until the first write fixes it)."""
        return self._id_type

    @property
    def default_params(self) -> SearchParams:
        return self._defaults

    @property
    def nlist(self) -> int | None:
        """Number of IVF lists once trained (else the requested number, or None)."""
        coarse = self._snap.coarse
        return coarse.nlist if coarse is not None else self._nlist

    def __len__(self) -> int:
        return int(sum(s.n_live for s in self._snap.segments))

    def contains(self, ids) -> np.ndarray:
        """(n,) bool: which of ``ids`` are in the index (ids of the other kind are not)."""
        kind, ids = _ids.as_user_ids(ids)
        if self._id_type is not None and kind != self._id_type:
            return np.zeros(ids.shape[0], dtype=bool)
        return self._lookup(self._snap, ids)[1] >= 0

    def __contains__(self, id_) -> bool:
        try:
            kind, ids = _ids.as_user_ids(id_)
        except VqdbError:
            return False
        if ids.size != 1 or (self._id_type is not None and kind != self._id_type):
            return False
        return bool(self._lookup(self._snap, ids)[1][0] >= 0)

    def __repr__(self) -> str:
        where = f"path={self._path!r}" if self._path else "in memory"
        ivf = f", ivf={self.nlist or True}" if self._ivf else ""
        ivf += f", graph={self._graph.R}" if self._graph is not None else ""
        return (
            f"Index(dim={self.dim}, metric={self.metric!r}, quantizer={self._quantizer.state_dict()['kind']!r}"
            f"{ivf}, n={len(self)}, {where})"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Close the write-ahead log and release the directory lock. Nothing is lost: every acknowledged
        write is already in the log. The object can still be searched; writes raise ``ReadOnlyError``."""
        with getattr(self, "_lock", threading.RLock()):
            if getattr(self, "_wal", None) is not None:
                self._mark_wal_closed()
                self._wal.close()
                self._wal = None
            if getattr(self, "_dirlock", None) is not None:
                self._dirlock.release()
                self._dirlock = None
            self._closed = True

    # ------------------------------------------------------------------ validation helpers
    def _check_writable(self) -> None:
        if self._read_only:
            raise st.ReadOnlyError(f"index at {self._path!r} was opened read-only")
        if self._closed:
            raise st.ReadOnlyError("index is closed")

    def _vectors(self, vectors, name="vectors") -> np.ndarray:
        x = as_float32_matrix(vectors, self.dim, name=name)
        if self.metric == "cos" and x.shape[0]:
            x, zero = _unit_rows(x)
            if np.any(zero):
                raise InvalidInputError(
                    f"{name} row {int(np.flatnonzero(zero)[0])} is all zeros; metric 'cos' cannot normalise it"
                )
        if self._store_vectors == "float16" and x.size and np.abs(x).max() > _F16_MAX:
            raise InvalidInputError(
                f"{name} has values beyond the float16 range (±{_F16_MAX:g}); "
                "create the index with store_vectors='float32'"
            )
        return x

    def _queries(self, queries) -> np.ndarray:
        q = as_float32_matrix(queries, self.dim, name="queries")
        if self.metric == "cos" and q.shape[0]:
            q, _ = _unit_rows(q)  # an all-zero query stays zero (every score 0)
        return q

    @staticmethod
    def _unique_ids(ids: np.ndarray) -> None:
        dup = _ids.duplicates(ids)
        if dup:
            raise DuplicateIdError(f"ids repeat within one call: {dup}")

    def _user_ids(self, ids, n: int | None = None) -> np.ndarray:
        """Validated ids of this index's kind: int64, or object array of str."""
        kind, arr = _ids.as_user_ids(ids, n)
        _ids.check_kind(kind, self._id_type)
        return arr

    def _lookup(self, snap: _Snapshot, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, segment index, row) of each id; -1, -1 where absent. For string ids, ``keys`` are the
        keys they have (alias) or would have (primary hash); a key held by another string is absent."""
        if ids.dtype != object:
            seg_idx, rows = self._locate(snap.segments, ids)
            return ids, seg_idx, rows
        keys, seg_idx, rows, _ = self._lookup_str(snap, ids)
        return keys, seg_idx, rows

    def _lookup_str(self, snap: _Snapshot, sids: np.ndarray):
        """:meth:`_lookup` of string ids, plus ``clash`` (n,) bool: the key is live with another string."""
        keys = _ids.str_keys(sids)
        if snap.aliases:
            for i, s in enumerate(sids.tolist()):
                alias = snap.aliases.get(s)
                if alias is not None:
                    keys[i] = alias
        seg_idx, rows = self._locate(snap.segments, keys)
        clash = np.zeros(sids.shape, dtype=bool)
        for si in np.unique(seg_idx[seg_idx >= 0]):
            where = np.flatnonzero(seg_idx == si)
            clash[where[~snap.segments[si].sids_equal(rows[where], sids[where])]] = True
        seg_idx[clash], rows[clash] = -1, -1
        return keys, seg_idx, rows, clash

    def _assign_str_keys(self, snap: _Snapshot, sids: np.ndarray, keys, seg_idx, clash) -> dict:
        """Give each new string id (``seg_idx`` < 0) a key no live row and no other id of the call holds,
        in place in ``keys``; return the aliases made (string -> key) for those that could not keep their
        primary key."""
        new = seg_idx < 0
        need = clash & new
        nk = keys[new]
        if nk.size > 1:
            _, first = np.unique(nk, return_index=True)
            repeat = np.ones(nk.size, dtype=bool)
            repeat[first] = False
            need[np.flatnonzero(new)[repeat]] = True
        aliases = {}
        if not need.any():
            return aliases
        taken = set(keys[~need].tolist())
        for i in np.flatnonzero(need):
            s, attempt = sids[i], 1
            while True:
                key = _ids.alternate_key(s, attempt)
                if key not in taken and self._locate(snap.segments, np.array([key], np.int64))[0][0] < 0:
                    break
                attempt += 1
            keys[i] = key
            taken.add(key)
            aliases[s] = key
        return aliases

    @staticmethod
    def _locate(segments, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment index, row) of the live row of each id; -1, -1 where absent."""
        seg_idx = np.full(ids.shape, -1, dtype=np.int64)
        rows = np.full(ids.shape, -1, dtype=np.int64)
        for si, seg in enumerate(segments):
            r = seg.find(ids)
            hit = (r >= 0) & (seg_idx < 0)
            seg_idx[hit] = si
            rows[hit] = r[hit]
        return seg_idx, rows

    # ------------------------------------------------------------------ writes
    def add(self, vectors, ids=None, metadata=None) -> np.ndarray:
        """Add new vectors; durable (write-ahead log fsynced) when it returns.

        Parameters
        ----------
        vectors : array-like of shape (n, d), finite floats
        ids : array-like of shape (n,), int64 >= 0, optional
            Default: consecutive ids after the largest id ever used.
        metadata : list of n dicts, pyarrow Table, dict of columns, or None

        Returns
        -------
        ids : ndarray of shape (n,), int64

        Raises
        ------
        DimensionMismatchError, InvalidInputError (NaN/inf, bad metadata), DuplicateIdError (an id repeats,
        or already exists: use :meth:`upsert`). On any error the index is unchanged.

        Notes
        -----
        All input is validated before anything is written. A call of more than 131,072 vectors is logged
        and applied in chunks of that size: if the process dies during it, a prefix of whole chunks may be
        present after reopening (never a partial vector or a partial chunk).
        """
        return self._write(vectors, ids, metadata, upsert=False)

    def upsert(self, vectors, ids, metadata=None) -> np.ndarray:
        """Insert or replace: an existing id gets the new vector and metadata (old metadata is dropped).

        Same parameters, durability and errors as :meth:`add`, except that ``ids`` are required and may exist.
        """
        if ids is None:
            raise InvalidInputError("upsert needs ids (use add to get new ids)")
        return self._write(vectors, ids, metadata, upsert=True)

    def _write(self, vectors, ids, metadata, *, upsert: bool) -> np.ndarray:
        with self._lock:
            self._check_writable()
            snap = self._snap
            x = self._vectors(vectors)
            n = x.shape[0]
            id_type = self._id_type
            if ids is None:
                id_type = id_type or _ids.INT
                ids = (
                    np.arange(self._next_id, self._next_id + n, dtype=np.int64)
                    if id_type == _ids.INT
                    else _ids.new_str_ids(n)
                )
            else:
                id_type, ids = _ids.as_user_ids(ids, n)
                _ids.check_kind(id_type, self._id_type)
                self._unique_ids(ids)
            meta = md.as_metadata_table(metadata, n)
            _, meta = md.merge_schema(snap.schema, meta)  # type check now, before anything changes
            if n == 0:
                return ids
            keys, sids, aliases = ids, None, None
            if id_type == _ids.STR:
                keys, seg_idx, _, clash = self._lookup_str(snap, ids)
                aliases = {}
            elif not upsert:
                seg_idx, _ = self._locate(snap.segments, ids)
            if not upsert and np.any(seg_idx >= 0):
                raise DuplicateIdError(
                    f"ids already in the index: {ids[seg_idx >= 0][:10].tolist()} (use upsert to replace them)"
                )
            if id_type == _ids.STR:
                aliases = self._assign_str_keys(snap, ids, keys, seg_idx, clash)
                sids = pa.array(ids, pa.string())
            if self._id_type is None:
                self._id_type = id_type
                if self._path is not None and id_type == _ids.STR:  # the manifest names the feature first
                    self._write_manifest(self._manifest_with())
            for c0 in range(0, n, WRITE_CHUNK):  # one WAL record per chunk (bounded record size and memory)
                c1 = min(n, c0 + WRITE_CHUNK)
                xc = x[c0:c1]
                with self._numpy_path(n * self.dim):  # a process's small first add needs no numba
                    coarse = self._prepare_codec(self._snap, xc)
                    lists, codes = self._encode(xc, coarse)
                vecs = None if self._store_vectors is None else xc.astype(self._store_vectors)
                table = build_table(
                    keys[c0:c1],
                    lists,
                    codes,
                    vecs,
                    meta.slice(c0, c1 - c0) if meta.num_columns else meta,
                    sids=None if sids is None else sids.slice(c0, c1 - c0),
                )
                if self._wal is not None:
                    self._wal.append(_wal.OP_UPSERT if upsert else _wal.OP_ADD, st.table_to_ipc_stream(table))
                    self._dirty = True
                self._apply_rows(table, replace_existing=upsert, aliases=aliases)
                self._maybe_flush()
            return ids

    def delete(self, ids, *, missing_ok: bool = False) -> int:
        """Delete vectors by id; durable when it returns. Returns the number deleted.

        ``missing_ok=True`` skips ids that are not in the index instead of raising.

        Raises
        ------
        NotFoundError
            Some ids are not in the index and ``missing_ok`` is False (nothing is deleted then).
        DuplicateIdError
            An id repeats within the call.
        """
        with self._lock:
            self._check_writable()
            ids = self._user_ids(ids)
            self._unique_ids(ids)
            if ids.size == 0:
                return 0
            keys, seg_idx, _ = self._lookup(self._snap, ids)
            if np.any(seg_idx < 0):
                if not missing_ok:
                    missing = ids[seg_idx < 0]
                    raise NotFoundError(
                        f"{missing.size} id(s) not in the index: {missing[:10].tolist()}; nothing deleted"
                    )
                keys = keys[seg_idx >= 0]
                if keys.size == 0:
                    return 0
            if self._wal is not None:
                self._wal.append(_wal.OP_DELETE, keys.astype("<i8").tobytes())
                self._dirty = True
            self._apply_delete(keys)
            self._maybe_flush()
            return int(keys.size)

    def update_metadata(self, ids, metadata, *, merge: bool = True) -> int:
        """Change the metadata of existing vectors without re-sending (or re-encoding) them: the new rows
        keep the codes, IVF list and stored vector of the old ones byte for byte. Durable when it returns.

        Parameters
        ----------
        ids : array-like of shape (n,), int or str
        metadata : dict, or list of n dicts
            One dict for every id, or one per id. ``merge=True``: its fields are set and the other fields
            kept (a field set to None is removed); ``merge=False``: it replaces the whole metadata.

        Returns
        -------
        int
            Number of vectors updated.

        Raises
        ------
        NotFoundError
            Some ids are not in the index (nothing changes).
        InvalidInputError, DuplicateIdError
            Bad metadata, or an id repeats.
        """
        with self._lock:
            self._check_writable()
            ids = self._user_ids(ids)
            self._unique_ids(ids)
            n = ids.size
            if isinstance(metadata, dict):
                metadata = [metadata] * n
            if not isinstance(metadata, (list, tuple)) or len(metadata) != n:
                raise InvalidInputError(f"metadata must be one dict or a list of {n} dicts (one per id)")
            bad = next((i for i, m in enumerate(metadata) if m is not None and not isinstance(m, dict)), None)
            if bad is not None:
                raise InvalidInputError(f"metadata[{bad}] must be a dict; got {type(metadata[bad]).__name__}")
            if n == 0:
                return 0
            snap = self._snap
            keys, seg_idx, rows = self._lookup(snap, ids)
            if np.any(seg_idx < 0):
                missing = ids[seg_idx < 0]
                raise NotFoundError(
                    f"{missing.size} id(s) not in the index: {missing[:10].tolist()}; nothing updated"
                )
            old = self._records(snap, ids, seg_idx, rows, include_vectors=False).metadata
            if merge:
                rows_meta = [{**o, **(u or {})} for o, u in zip(old, metadata)]
                rows_meta = [{k: v for k, v in r.items() if v is not None} for r in rows_meta]
            else:
                rows_meta = [dict(u or {}) for u in metadata]
            meta = md.as_metadata_table(rows_meta, n)
            _, meta = md.merge_schema(snap.schema, meta)
            lists = np.empty(n, np.int32)
            codes = np.empty((n, self._quantizer.code_size), np.uint8)
            vecs = None if self._store_vectors is None else np.empty((n, self.dim), self._store_vectors)
            for si in np.unique(seg_idx):
                where = np.flatnonzero(seg_idx == si)
                seg, r = snap.segments[si], rows[where]
                lists[where], codes[where] = seg.lists[r], seg.codes[r]
                if vecs is not None:
                    vecs[where] = seg.vectors[r]
            sids = pa.array(ids, pa.string()) if ids.dtype == object else None
            for c0 in range(0, n, WRITE_CHUNK):
                c1 = min(n, c0 + WRITE_CHUNK)
                table = build_table(
                    keys[c0:c1],
                    lists[c0:c1],
                    codes[c0:c1],
                    None if vecs is None else vecs[c0:c1],
                    meta.slice(c0, c1 - c0) if meta.num_columns else meta,
                    sids=None if sids is None else sids.slice(c0, c1 - c0),
                )
                if self._wal is not None:
                    self._wal.append(_wal.OP_UPSERT, st.table_to_ipc_stream(table))
                    self._dirty = True
                self._apply_rows(table, replace_existing=True, aliases={})
                self._maybe_flush()
            return int(n)

    def train(self, sample) -> Index:
        """Train the IVF partition now on ``sample`` (n, d) (n >= number of lists), instead of at the first
        large enough ``add``. Vectors already in the index stay outside the lists (always scanned) until
        :meth:`compact` re-files them (possible when vectors are stored). Fits the quantizer centre too if
        nothing was ever added."""
        with self._lock:
            self._check_writable()
            if not self._ivf:
                raise InvalidInputError("this index is flat (ivf=False); there is nothing to train")
            if self._snap.coarse is not None:
                raise InvalidInputError("the IVF partition is already trained; it is never retrained")
            x = self._vectors(sample, name="sample")
            nlist = self._nlist or _ivf.auto_nlist(x.shape[0])
            if x.shape[0] < nlist:
                raise InvalidInputError(
                    f"training {nlist} lists needs at least {nlist} vectors; got {x.shape[0]}"
                )
            self._maybe_fit_centre(x)
            coarse = _ivf.Coarse(_ivf.kmeans(x, nlist, seed=self._seed))
            self._snap = replace(self._snap, coarse=coarse)
            if self._path is not None:
                self._persist_state()
            return self

    def _maybe_fit_centre(self, x: np.ndarray) -> bool:
        q = self._quantizer
        if getattr(q, "centre_", None) is not None or self._next_id > 0 or len(self) > 0:
            return False
        if x.shape[0] >= FIT_MIN or getattr(q, "requires_fit", False):
            q.fit(x)
            return True
        return False

    def _prepare_codec(self, snap: _Snapshot, x: np.ndarray) -> _ivf.Coarse | None:
        """Fit the centre (first add) and train the IVF partition (first large enough add); persist both
        before any code that depends on them is logged."""
        changed = self._maybe_fit_centre(x)
        coarse = snap.coarse
        if self._ivf and coarse is None:
            total = len(self) + x.shape[0]
            if total >= _ivf.train_threshold(self._nlist):
                nlist = self._nlist or _ivf.auto_nlist(total)
                sample = x
                cap = _ivf.SAMPLE_PER_LIST * nlist
                if x.shape[0] < cap and len(self):
                    sample = np.vstack([x, self._decode_some(snap, cap - x.shape[0])])
                coarse = _ivf.Coarse(_ivf.kmeans(sample, nlist, seed=self._seed))
                self._snap = replace(self._snap, coarse=coarse)
                changed = True
        if changed and self._path is not None:
            self._persist_state()
        return coarse

    def _decode_some(self, snap: _Snapshot, limit: int) -> np.ndarray:
        """Up to ``limit`` reconstructed vectors of rows already stored (IVF training sample)."""
        out, left = [], limit
        for seg in snap.segments:
            rows = np.flatnonzero(seg.live_mask()) if seg.deleted is not None else np.arange(seg.n)
            rows = rows[:left]
            if rows.size:
                out.append(
                    seg.vectors[rows].astype(np.float32)
                    if seg.vectors is not None
                    else self._quantizer.decode(seg.codes[rows])
                )
                left -= rows.size
            if left <= 0:
                break
        return np.vstack(out) if out else np.zeros((0, self.dim), np.float32)

    def _encode(self, x: np.ndarray, coarse) -> tuple[np.ndarray, np.ndarray]:
        """(lists (n,) int32, codes (n, code_size) uint8) in the order of ``x``."""
        q = self._quantizer
        if coarse is None:
            return np.full(x.shape[0], -1, dtype=np.int32), q.encode(x)
        lists = coarse.assign(x)
        if hasattr(q, "encode_lists"):  # one pass over every row, each against its own list centroid
            return lists, q.encode_lists(x, coarse.centroids, lists)
        if self._residual_batching_ok(x, lists, coarse):
            return lists, self._encode_residuals(x, lists, coarse)
        codes = np.empty((x.shape[0], q.code_size), dtype=np.uint8)
        order = np.argsort(lists, kind="stable")
        bounds = np.flatnonzero(np.diff(lists[order])) + 1
        for rows in np.split(order, bounds):
            codes[rows] = q.encode(x[rows], centre=coarse.centroids[lists[rows[0]]])
        return lists, codes

    def _encode_residuals(self, x: np.ndarray, lists: np.ndarray, coarse) -> np.ndarray:
        """Codes of every row against its own list centroid in ONE encode call.

        ``encode(x, centre=c)`` codes ``x - c`` and appends the exact ``||x||^2`` as the last side float
        (the quantizer protocol); so encoding the residuals with a zero centre and writing ``||x||^2``
        into the last 4 bytes gives the same bytes without one call per list.
        """
        residuals = np.ascontiguousarray(x - coarse.centroids[lists], dtype=np.float32)
        codes = self._quantizer.encode(residuals, centre=self._zero)
        x64 = x.astype(np.float64)
        sq = np.einsum("ij,ij->i", x64, x64).astype("<f4")
        codes[:, -4:] = sq.view(np.uint8).reshape(-1, 4)
        return codes

    def _residual_batching_ok(self, x, lists, coarse) -> bool:
        """Check once per index, on a few real rows, that batched residual encoding gives the bytes of
        the per-list ``encode(x, centre=c)``; fall back to per-list calls for a quantizer where it does not."""
        ok = getattr(self, "_batching_ok", None)
        if ok is None:
            rows = np.flatnonzero(lists == lists[0])[:4]
            ref = self._quantizer.encode(x[rows], centre=coarse.centroids[lists[rows[0]]])
            ok = self._batching_ok = bool(
                np.array_equal(ref, self._encode_residuals(x[rows], lists[rows], coarse))
            )
            if not ok:
                log.info(
                    "quantizer %s: residual batching differs from encode(centre=); encoding per list",
                    type(self._quantizer).__name__,
                )
        return ok

    def _apply_rows(self, table: pa.Table, *, replace_existing: bool, aliases: dict | None = None) -> None:
        """Append logged rows (and tombstone the rows they replace). Shared by writes and WAL replay.

        ``aliases``: string ids given a key other than their hash by this write; None (replay) finds them."""
        snap = self._snap
        ids = st.int_column(table, st.ID, np.int64)
        has_sid = st.SID in table.column_names
        if aliases is None and has_sid and table.num_rows:
            sids = table.column(st.SID).to_numpy(zero_copy_only=False)
            off = _ids.str_keys(sids) != ids
            aliases = dict(zip(sids[off].tolist(), ids[off].tolist()))
        segments = list(snap.segments)
        if replace_existing:
            self._tombstone(segments, ids)
        meta_names = [c for c in table.column_names if not c.startswith(md.RESERVED_PREFIX)]
        schema, _ = md.merge_schema(snap.schema, table.select(meta_names) if meta_names else pa.table({}))
        segments.append(from_table(table, code_size=self._quantizer.code_size, dim=self.dim))
        segments = self._consolidate(segments)
        if ids.size and not has_sid:
            self._next_id = max(self._next_id, int(ids.max()) + 1)
        if self._id_type is None and table.num_rows:
            self._id_type = _ids.STR if has_sid else _ids.INT
        self._snap = replace(
            self._snap,
            segments=tuple(segments),
            schema=schema,
            aliases={**snap.aliases, **aliases} if aliases else snap.aliases,
        )
        if self._graph is not None:
            self._graph.insert(
                ids,
                st.vectors_from_arrow(table.column(st.VECTOR), self.dim),
                st.codes_from_arrow(table.column(st.CODE), self._quantizer.code_size),
            )

    def _apply_delete(self, keys: np.ndarray) -> None:
        snap = self._snap
        segments = list(snap.segments)
        self._tombstone(segments, keys)
        aliases = snap.aliases
        if aliases:
            gone = set(keys.tolist())
            aliases = {s: k for s, k in aliases.items() if k not in gone}
        self._snap = replace(snap, segments=tuple(segments), aliases=aliases)
        if self._graph is not None:
            self._graph.retire(keys)

    def _tombstone(self, segments: list, ids: np.ndarray) -> None:
        seg_idx, rows = self._locate(segments, ids)
        for si in np.unique(seg_idx[seg_idx >= 0]):
            segments[si] = segments[si].with_deleted(rows[seg_idx == si])

    def _consolidate(self, segments: list) -> list:
        """Merge the newest in-memory chunks while the last is at least half the size of the one before
        (binary-counter merging: O(log n) chunks, each row copied O(log n) times)."""
        disk = [s for s in segments if s.file is not None]
        memory = [s for s in segments if s.file is None]
        merged = False
        while len(memory) >= 2 and (2 * memory[-1].n >= memory[-2].n or len(memory) > MAX_MEMORY_CHUNKS):
            memory[-2:] = [concat(memory[-2:], code_size=self._quantizer.code_size, dim=self.dim)]
            merged = True
        return disk + memory if merged else segments

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries,
        k,
        filter=None,
        nprobe=None,
        rerank=None,
        *,
        ef=None,
        params: SearchParams | None = None,
        include_metadata: bool = False,
        threads: int | None = None,
    ) -> SearchResult:
        """Top-``k`` most similar vectors of each query.

        Parameters
        ----------
        queries : array-like of shape (m, d)
            Always 2-D (a single query is ``q[None, :]``).
        k : int > 0
        filter : dict or pyarrow.compute.Expression, optional
            Only vectors whose metadata match (see ``vqdb.index._filters``). ``k`` results are returned
            whenever at least ``k`` vectors match, however selective the filter.
        nprobe, rerank, ef : optional
            Per-call knobs (see :class:`SearchParams`); override ``params``, which overrides the index's
            persisted ``default_params``.
        include_metadata : bool
            Also return each hit's metadata (``result.metadata``: m lists of k dicts, None where padded).
        threads : int, optional
            Threads this call may use (default: the index's ``threads``, else all cores). Other threads of
            the process are not affected.

        Returns
        -------
        SearchResult
            ``ids`` (m, k) int64, -1 padded; ``scores`` (m, k) float32, -inf padded. Higher is better:
            inner product (``ip``), cosine (``cos``), ``-||q - x||^2`` (``l2sq``). With re-ranking the
            scores are exact (from the stored vectors); otherwise they are the quantizer's estimates.
        """
        k = check_k(k)
        if params is None and nprobe is None and rerank is None and ef is None:
            p = self._defaults  # no per-call knob (the usual call): nothing to merge
        else:
            if params is not None and not isinstance(params, SearchParams):
                raise InvalidInputError(f"params must be a SearchParams; got {type(params).__name__}")
            p = SearchParams(nprobe=nprobe, rerank=rerank, ef=ef).merged_over(
                (params or SearchParams()).merged_over(self._defaults)
            )
        q = self._queries(queries)
        m = q.shape[0]
        _check_result_size(m, k)
        snap = self._snap
        expr = names = None
        if filter is not None:
            expr = _filters.compile_filter(filter, snap.schema)
            names = _filters.field_names(filter, snap.schema)
        factor = p.rerank_factor()
        if factor and self._store_vectors is None:
            raise InvalidInputError("rerank needs the full vectors: create the index with store_vectors=True")
        threads = self._threads if threads is None else check_int_range(threads, 1, 1 << 16, name="threads")
        segments = snap.segments
        if expr is None:
            allow, n_rows, n_allowed = self._unfiltered(snap)
        else:
            allow = [self._allowed(seg, expr, snap.schema, names) for seg in segments]
            n_rows = sum(s.n for s in segments)
            n_allowed = sum(s.n if a is None else int(a.sum()) for s, a in zip(segments, allow))
        # The NumPy path serves indexes below the scanner's MIN_ROWS, where numba's kernels also score with the
        # quantizer's float sums (the same bits); it decodes the codes once per call for the whole batch.
        work = n_rows * self.dim * (1 + m / 32) if n_rows < _scanner.MIN_ROWS else float("inf")
        with self._numpy_path(work) as on_numpy:
            graph = self._graph
            graph_ready = graph is not None and graph.n > 0
            device_ok = self._device == "cuda" and self._gpu_scorer() is not None
            plan_args = dict(
                graph_ready=graph_ready,
                device_ok=device_ok,
                m=m,
                k=k,
                rerank_factor=factor,
                nprobe=p.nprobe,
                filtered=expr is not None,
                n_rows=n_rows,
                n_allowed=n_allowed,
                threads=1 if on_numpy else threads,
            )
            plan, ctx = self._plan_and_context(snap, allow, expr is None, plan_args)
            if graph is not None and (plan.route == "graph" or expr is not None):
                matches = None
                if expr is not None:
                    matches = np.concatenate(
                        [s.ids if a is None else s.ids[a] for s, a in zip(segments, allow)]
                    )
                with _scan.threads(plan.threads):
                    if plan.route == "graph":
                        ok = None if matches is None else graph.ok_for(matches)
                        centre = getattr(self._quantizer, "centre_", None)
                        nodes, scores, _ = graph.search(q, k, p.ef or _graph.DEFAULT_EF, centre=centre, ok=ok)
                    else:  # a filter below the graph threshold: every match scored exactly (float16 vectors)
                        nodes, scores = graph.exact(q, k, graph.nodes_of(matches))
                keys = np.where(nodes >= 0, graph.ids[np.maximum(nodes, 0)], -1)
                if self._id_type != _ids.STR and not include_metadata:
                    return SearchResult(keys, scores, self.metric)
                seg_idx, rows = self._locate(segments, keys)
                refs = np.where(seg_idx >= 0, (seg_idx << _scan.SHIFT) | rows, -1)
                ids = self._sids_of_refs(segments, refs) if self._id_type == _ids.STR else keys
                meta = self._metadata_of_refs(segments, snap.schema, refs) if include_metadata else None
                return SearchResult(ids, scores, self.metric, metadata=meta)
            top = _scan.TopK(m, plan.kk)
            if plan.route != "none":
                _scan.execute(plan, ctx, q, top, self._device_scorer)
            if factor:
                with _scan.threads(plan.threads):
                    scores = _scan.rerank(ctx, q, top.refs)
            else:
                scores = top.scores
            ids, scores, refs = _scan.finish(segments, scores, top.refs, k)
            if self._id_type == _ids.STR:
                ids = self._sids_of_refs(segments, refs)
            meta = self._metadata_of_refs(segments, snap.schema, refs) if include_metadata else None
            return SearchResult(ids, scores, self.metric, metadata=meta)

    @staticmethod
    def _metadata_of_refs(segments, schema, refs: np.ndarray) -> list[list]:
        """m lists of k metadata dicts of ``refs`` (m, k); None where a ref is -1."""
        flat = refs.reshape(-1)
        out: list = [None] * flat.size
        valid = flat >= 0
        seg_of = np.where(valid, flat >> _scan.SHIFT, -1)
        rows = flat & _scan.ROW_MASK
        for si in np.unique(seg_of[valid]):
            where = np.flatnonzero(seg_of == si)
            seg, r = segments[int(si)], rows[where]
            meta = md.align(md.take(seg.meta, r), schema, r.size)
            for j, d in zip(where.tolist(), md.rows_as_dicts(meta, r.size)):
                out[j] = d
        k = refs.shape[1]
        return [out[i * k : (i + 1) * k] for i in range(refs.shape[0])]

    @staticmethod
    def _sids_of_refs(segments, refs: np.ndarray) -> np.ndarray:
        """(m, k) object array of the string ids of ``refs``; None where a ref is -1."""
        out = np.full(refs.shape, None, dtype=object)
        valid = refs >= 0
        seg_of = np.where(valid, refs >> _scan.SHIFT, -1)
        rows = refs & _scan.ROW_MASK
        for si in np.unique(seg_of[valid]):
            hit = seg_of == si
            out[hit] = segments[int(si)].sids_at(rows[hit])
        return out

    def _search_cache(self, snap: _Snapshot) -> dict:
        """Per-snapshot memo of what a search derives from the index alone (the unfiltered rows, plans and
        scan contexts): a new snapshot (any write) or quantizer starts an empty one."""
        cache = self._memo
        if cache[0] is not snap or cache[1] is not self._quantizer:
            cache = self._memo = (snap, self._quantizer, {})
        return cache[2]

    def _unfiltered(self, snap: _Snapshot) -> tuple[list, int, int]:
        """(per-segment live masks or None, rows, live rows) of an unfiltered search of ``snap``."""
        memo = self._search_cache(snap)
        hit = memo.get("unfiltered")
        if hit is None:
            allow = [seg.live_mask() for seg in snap.segments]
            n_rows = sum(s.n for s in snap.segments)
            n_allowed = sum(s.n if a is None else int(a.sum()) for s, a in zip(snap.segments, allow))
            hit = memo["unfiltered"] = (allow, n_rows, n_allowed)
        return hit

    def _plan_and_context(self, snap: _Snapshot, allow: list, unfiltered: bool, plan_args: dict):
        """The search plan (:func:`_plan.plan_search`) and scan context of ``plan_args``; an unfiltered
        search's are memoised per snapshot, keyed by every input of the plan (a one-query search plans once)."""
        key = None
        if unfiltered:
            key = (
                tuple(plan_args.values()),
                _scanner.enabled(),
                _plan.RERANK_MARGIN if plan_args["rerank_factor"] else None,
            )
            memo = self._search_cache(snap)
            hit = memo.get(key)
            if hit is not None:
                return hit
        plan = _plan.plan_search(quantizer=self._quantizer, coarse=snap.coarse, **plan_args)
        ctx = _scan.ScanContext(
            self._quantizer,
            "l2sq" if self.metric == "l2sq" else "ip",
            snap.coarse,
            snap.segments,
            allow,
            self._zero,
            probe_metric=_ivf.PROBE_METRIC[self.metric],
            margin=plan.margin,
        )
        if key is not None:
            if len(memo) > 64:  # many distinct (m, k, knob) calls: start again
                memo.clear()
            memo[key] = (plan, ctx)
        return plan, ctx

    def _numpy_path(self, work: int):
        """The NumPy path for ``work`` elements (``kernels.numpy_path``), or a no-op context (yields False)
        for a graph or device index (their kernels are numba's / the device's)."""
        if self._graph is not None or self._device != "cpu":
            return contextlib.nullcontext(False)
        return numpy_path(work)

    def _gpu_scorer(self):
        """The device scorer of ``device="cuda"`` (created once); None when the quantizer has no device path."""
        if self._device_scorer is None:
            from ..kernels import device_scanner

            self._device_scorer = device_scanner(self._quantizer, device="cuda")
        return self._device_scorer if self._device_scorer.supports else None

    @staticmethod
    def _allowed(seg: Segment, expr, schema, names=None) -> np.ndarray | None:
        """(n,) bool rows of ``seg`` that are live and match ``expr`` (which reads only the fields
        ``names``, when known); None when every row qualifies."""
        mask = seg.live_mask()
        if expr is not None:
            table = md.align(seg.meta, schema, seg.n, names)
            if table.num_columns == 0:  # no metadata at all: give the expression n rows to run on
                table = pa.table({"__rows": pa.nulls(seg.n)})
            fm = _filters.evaluate(expr, table)
            mask = fm if mask is None else (mask & fm)
        return mask

    # ------------------------------------------------------------------ reads
    def get(self, ids, *, include_vectors: bool = True, missing_ok: bool = False) -> Records:
        """Vectors and metadata of ``ids`` (in the order given).

        ``missing_ok=True`` leaves out ids that are not in the index (the records are those found, in
        the order given) instead of raising.

        Raises
        ------
        NotFoundError
            Some ids are not in the index and ``missing_ok`` is False.
        """
        ids = self._user_ids(ids)
        snap = self._snap
        _, seg_idx, rows = self._lookup(snap, ids)
        if np.any(seg_idx < 0):
            missing = ids[seg_idx < 0]
            if not missing_ok:
                raise NotFoundError(f"{missing.size} id(s) not in the index: {missing[:10].tolist()}")
            found = seg_idx >= 0
            ids, seg_idx, rows = ids[found], seg_idx[found], rows[found]
        return self._records(snap, ids, seg_idx, rows, include_vectors)

    def _records(self, snap: _Snapshot, ids, seg_idx, rows, include_vectors: bool) -> Records:
        """Records of the live rows ``(seg_idx, rows)`` (all found), labelled ``ids``."""
        vectors = np.zeros((ids.size, self.dim), np.float32) if include_vectors else None
        metadata: list = [None] * ids.size
        for si in np.unique(seg_idx):
            seg = snap.segments[si]
            where = np.flatnonzero(seg_idx == si)
            r = rows[where]
            meta = md.align(md.take(seg.meta, r), snap.schema, r.size)
            for j, d in zip(where, md.rows_as_dicts(meta, r.size)):
                metadata[j] = d
            if include_vectors:
                vectors[where] = (
                    seg.vectors[r] if seg.vectors is not None else self._decode_rows(seg, r, snap.coarse)
                )
        return Records(ids, vectors, metadata, exact=self._store_vectors is not None)

    def scroll(self, *, limit: int = 100, offset=None, filter=None, include_vectors: bool = False) -> Page:
        """One page of records, in a stable order, for walking through the whole index (or the rows that
        match ``filter``) page by page.

        Parameters
        ----------
        limit : int > 0
            Records per page.
        offset : int or str, optional
            Where to start: the ``next_offset`` of the previous page (``None``: the first page).
        filter : dict or pyarrow.compute.Expression, optional
            As in :meth:`search`.
        include_vectors : bool

        Returns
        -------
        Page
            ``records`` (at most ``limit``) and ``next_offset`` (None on the last page). Integer ids come
            in ascending order; string ids in the order of their internal key (stable, not alphabetical).
            Rows written between two calls appear in a later page when they sort after the offset.
        """
        limit = check_int_range(limit, 1, 1 << 30, name="limit")
        snap = self._snap
        expr = _filters.compile_filter(filter, snap.schema)
        names = _filters.field_names(filter, snap.schema)
        start = None
        if offset is not None:
            start = int(self._lookup(snap, self._user_ids([offset]))[0][0])
        keys, seg_of, row_of = [], [], []
        for si, seg in enumerate(snap.segments):
            mask = self._allowed(seg, expr, snap.schema, names)
            rows = np.arange(seg.n) if mask is None else np.flatnonzero(mask)
            if start is not None:
                rows = rows[seg.ids[rows] >= start]
            keys.append(seg.ids[rows])
            row_of.append(rows)
            seg_of.append(np.full(rows.size, si, np.int64))
        keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        take = min(limit + 1, keys.size)
        pick = np.argpartition(keys, take - 1)[:take] if 0 < take < keys.size else np.arange(keys.size)
        pick = pick[np.argsort(keys[pick], kind="stable")]
        seg_idx = np.concatenate(seg_of)[pick] if seg_of else np.zeros(0, np.int64)
        rows = np.concatenate(row_of)[pick] if row_of else np.zeros(0, np.int64)
        ids = self._ids_at(snap, seg_idx, rows)
        next_offset = None
        if ids.size > limit:
            next_offset = ids[limit].item() if ids.dtype != object else ids[limit]
            ids, seg_idx, rows = ids[:limit], seg_idx[:limit], rows[:limit]
        return Page(self._records(snap, ids, seg_idx, rows, include_vectors), next_offset)

    def _ids_at(self, snap: _Snapshot, seg_idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """User ids of the rows ``(seg_idx, rows)``: int64, or object strings."""
        if self._id_type != _ids.STR:
            out = np.zeros(rows.size, np.int64)
            for si in np.unique(seg_idx):
                where = seg_idx == si
                out[where] = snap.segments[si].ids[rows[where]]
            return out
        out = np.empty(rows.size, object)
        for si in np.unique(seg_idx):
            where = seg_idx == si
            out[where] = snap.segments[si].sids_at(rows[where])
        return out

    def _decode_rows(self, seg: Segment, rows: np.ndarray, coarse) -> np.ndarray:
        out = np.empty((rows.size, self.dim), np.float32)
        lists = seg.lists[rows]
        with self._numpy_path(rows.size * self.dim):  # as add/search: a small get loads no numba
            for j in np.unique(lists):
                hit = lists == j
                centre = None if j < 0 else coarse.centroids[j]
                out[hit] = self._quantizer.decode(seg.codes[rows[hit]], centre=centre)
        return out

    def ids(self, filter=None) -> np.ndarray:
        """(n,) ids of every vector in the index (in storage order), or of those whose metadata match
        ``filter`` (same forms as in :meth:`search`): int64, or an object array of str (string ids)."""
        snap = self._snap
        expr = _filters.compile_filter(filter, snap.schema)
        names = _filters.field_names(filter, snap.schema)
        parts = []
        for seg in snap.segments:
            mask = self._allowed(seg, expr, snap.schema, names)
            if self._id_type == _ids.STR:
                sids = seg.sids.to_numpy(zero_copy_only=False)
                parts.append(sids if mask is None else sids[mask])
            else:
                parts.append(seg.ids if mask is None else seg.ids[mask])
        if parts:
            return np.concatenate(parts)
        return np.zeros(0, object if self._id_type == _ids.STR else np.int64)

    def stats(self) -> dict:
        """Sizes and settings: counts, bytes per vector (codes + id + list + id-index overhead), IVF lists,
        segments, memory and disk use, default search params."""
        snap = self._snap
        segs = snap.segments
        n = len(self)
        n_rows = sum(s.n for s in segs)
        cs = self._quantizer.code_size
        sid_bytes = sum(0 if s.sids is None else s.sids.nbytes for s in segs) / max(n_rows, 1)
        per = {"codes": cs, "id": round(8 + sid_bytes, 2), "list": 4, "id_index": 8}
        if self._store_vectors:
            per["vectors"] = self.dim * (2 if self._store_vectors == "float16" else 4)
        graph = self._graph
        if graph is not None:
            per.update(graph.nbytes_per_node)
        per["metadata"] = round(sum(s.meta.nbytes for s in segs) / max(n_rows, 1), 2)
        per["deleted_mask"] = round(sum(0 if s.deleted is None else s.n for s in segs) / max(n_rows, 1), 2)
        per["total"] = round(sum(per.values()), 2)
        out = {
            "n": n,
            "dim": self.dim,
            "metric": self.metric,
            "id_type": self._id_type,
            "quantizer": {k: v for k, v in quantizer_meta(self._quantizer).items() if k != "class"},
            "code_size": cs,
            "bits_per_dim": round(cs * 8 / self.dim, 3),
            "store_vectors": self._store_vectors,
            "bytes_per_vector": per,
            "rows_stored": n_rows,
            "rows_deleted": n_rows - n,
            "segments": sum(1 for s in segs if s.file is not None),
            "memory_rows": sum(s.n for s in segs if s.file is None),
            "heap_bytes": int(sum(s.heap_bytes() for s in segs)),
            "default_params": self._defaults.to_json(),
            "metadata_fields": {f.name: str(f.type) for f in snap.schema},
            "path": self._path,
            "read_only": self._read_only,
        }
        if self._ivf:
            ivf = {"trained": snap.coarse is not None, "nlist": self.nlist}
            if snap.coarse is not None:
                sizes = np.zeros(snap.coarse.nlist + 1, np.int64)
                for s in segs:
                    live = s.lists if s.deleted is None else s.lists[~s.deleted]
                    sizes += np.bincount(live + 1, minlength=snap.coarse.nlist + 1)
                ivf.update(
                    unassigned=int(sizes[0]),
                    list_size_min=int(sizes[1:].min()),
                    list_size_max=int(sizes[1:].max()),
                    list_size_mean=round(float(sizes[1:].mean()), 2),
                    default_nprobe=_ivf.default_nprobe(snap.coarse.nlist),
                )
            out["ivf"] = ivf
        if graph is not None:
            out["graph"] = {
                "degree": graph.R,
                "nodes": int(graph.n),
                "retired_nodes": int(graph.n - graph.live[: graph.n].sum()),
                "default_ef": self._defaults.ef or _graph.DEFAULT_EF,
            }
        if self._path is not None:
            files = st.referenced_files(self._manifest)
            out["disk_bytes"] = int(
                sum(
                    os.path.getsize(os.path.join(self._path, f))
                    for f in files
                    if os.path.exists(os.path.join(self._path, f))
                )
            )
            out["wal_bytes"] = 0 if self._wal is None else int(self._wal.size)
            out["format_version"] = int(self._manifest["format_version"])
            if self._wal_damage:
                out["wal_damage"] = self._wal_damage
            if self._salvaged:
                out["salvaged"] = dict(self._salvaged)
        return out

    # ------------------------------------------------------------------ defaults
    def set_default_params(self, params: SearchParams) -> None:
        """Replace the default search knobs (persisted in the manifest right away)."""
        if not isinstance(params, SearchParams):
            raise InvalidInputError(f"params must be a SearchParams; got {type(params).__name__}")
        with self._lock:
            self._check_writable()
            if params.rerank_factor() and self._store_vectors is None:
                raise InvalidInputError(
                    "re-ranking needs the full vectors: this index has store_vectors=False"
                )
            self._defaults = params
            if self._path is not None:
                self._write_manifest(self._manifest_with())

    def tune(self, queries, k: int = 10, *, target_recall: float = 0.95, truth=None) -> dict:
        """Choose the default ``nprobe`` and re-rank from measurements, and persist them.

        Sweeps nprobe = 1, 2, 4, ... nlist (IVF) for re-rank off and, with stored vectors, 2x / 4x / 8x;
        keeps the fastest setting whose recall@k on ``queries`` reaches ``target_recall`` (else the most
        accurate) and makes it the index's default (:meth:`set_default_params`).

        Parameters
        ----------
        queries : array-like of shape (m, d)
            Sample queries like the real ones (a few hundred are enough).
        k : int
        target_recall : float in (0, 1]
        truth : array-like of shape (m, >= k), int, optional
            Exact neighbour ids of ``queries``; by default computed by an exact search (every list,
            every candidate re-scored from the stored vectors; without stored vectors, the full scan
            of the codes, so recall is then relative to it).

        Returns
        -------
        dict
            ``chosen`` (nprobe, rerank, recall, qps), ``reached`` (bool), ``settings`` (every row measured).
        """
        from ._tune import tune

        return tune(self, queries, k=check_k(k), target_recall=target_recall, truth=truth)


def open_or_create(path, dim, **options) -> Index:
    """``vqdb.open_or_create``: see :meth:`Index.open_or_create`."""
    return Index.open_or_create(path, dim, **options)


def open_index(path, *, read_only: bool = False, salvage: bool = False) -> Index:
    """Open an index directory (``vqdb.open``). See :meth:`Index.open`."""
    return Index.open(path, read_only=read_only, salvage=salvage)
