"""``ShardedIndex``: one logical ``vqdb.Index`` split over N Ray actors.

How it works
------------
* **Shards.** Shard ``s`` is a ``vqdb.Index`` held by a Ray actor (:mod:`._actor`), with its own
  directory ``path/shard-0000s`` when the set is persistent. Ray places and runs the actors; vqdb
  adds no RPC and no cluster manager.
* **One quantizer state.** The quantizer is built once, here (rotation, codebooks: everything drawn
  from the seed), and its centre is fitted here, on the set's first write, exactly as a single
  ``vqdb.Index`` fits it on its first ``add`` (the mean of that batch, when it has >= 256 rows). The
  shards' indexes are created only then, all with that same quantizer, which is also stored once in
  the top-level directory. Every shard therefore encodes with exactly the state of a single index
  over the same data: a flat search returns the same ids, and scores bit for bit equal to those of a
  single index holding the same codes. (The quantizer's encode rounds its rotation GEMM differently
  for other batch compositions and BLAS thread counts, so a single index fed everything in one batch
  holds a few codes one rounding step apart: same ids, scores within ~1e-7.)
* **Routing.** A write goes to shard ``splitmix64(id) mod n_shards`` (:mod:`._routing`): stable
  across processes and machines, unlike Python's salted ``hash``. ``add`` without ids draws them
  from a counter kept here, so ids stay unique over the whole set.
* **Search.** The query batch is put once in Ray's object store, every shard searches it in
  parallel (filters and exact re-rank run *inside* each shard, on its own vectors), and the per-shard
  top-k lists are merged into the global top-k (:mod:`._merge`).
* **Failures.** A shard whose actor died is restarted from its directory and the call is retried
  (``max_retries`` times) when that is safe: reads, ``upsert``, ``save``, ``compact``. ``add`` and
  ``delete`` are not retried (they are not idempotent); the dead shard is restarted for the next call
  and a :class:`~vqdb.errors.ShardUnavailableError` says what may not have been applied. A search
  never returns a silently partial result: a shard that cannot answer raises
  ``ShardUnavailableError`` unless the caller passes ``allow_partial=True``, and then the result
  lists the shards that answered and those that did not. In-memory shards (``path=None``) cannot be
  restarted: their data died with them.
* **Shard count** is fixed at creation (routing depends on it). To change it, :meth:`reshard`
  streams every row into a new set with another shard count (see its docstring).

Thread safety: searches may run from many threads at once; writes from one coordinator are
serialised by a lock. Two coordinators must not write to the same set at the same time.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from .. import __version__
from .._validation import as_float32_matrix, check_choice, check_int_range, check_k
from ..errors import InvalidInputError, NotFoundError, VqdbError
from ..index import _ids
from . import _checks, _manifest, _ray
from ._codec import quantizer_state
from ._merge import merge_topk
from ._pool import ShardPool, unavailable
from ._result import ShardedSearchResult
from ._routing import ROUTING, split_by_shard

METRICS = _manifest.METRICS
MAX_SHARDS = _manifest.MAX_SHARDS
FIT_MIN = 256  # as vqdb.Index: the first write of at least this many rows fits the quantizer centre
DEFAULT_ACTOR_OPTIONS = {"num_cpus": 0, "scheduling_strategy": "SPREAD"}


class ShardedIndex:
    """A vector index sharded over Ray actors, with the method names and result types of ``vqdb.Index``.

    Parameters
    ----------
    dim : int
        Dimension ``d`` of every vector.
    n_shards : int
        Number of shards (actors), fixed at creation; see :meth:`reshard`.
    metric : {"cos", "ip", "l2sq"}
        As for ``vqdb.Index``; scores are higher-is-better for every metric.
    quantizer : str or Quantizer
        A preset name (``"turbo-4"``, ``"turbo-2"``, ...) or a quantizer object (copied; a fitted
        ``centre_`` is kept). The same quantizer state goes to every shard.
    path : str or None
        Directory of the set (created; must be new or empty). ``None`` keeps every shard in its
        actor's memory only (lost if the actor dies). On a multi-node cluster the directory must be
        on storage every node can reach (NFS, a mounted volume), or the actors pinned to the nodes
        that hold their shards with ``actor_options``.
    ray_address : str or None
        Passed to ``ray.init`` when this process is not connected to Ray yet (``"auto"``,
        ``"ray://head:10001"``); ``None`` joins ``RAY_ADDRESS`` or starts a local cluster.
    actor_options : dict or None
        Ray ``.options(...)`` of each shard actor (``num_cpus``, ``memory``, ``resources``,
        ``scheduling_strategy``, ...). Default: ``{"num_cpus": 0, "scheduling_strategy": "SPREAD"}``.
    max_retries : int
        How many times one call restarts a dead shard from its directory and retries.
    **index_kwargs
        Other ``vqdb.Index`` options (``ivf``, ``store_vectors``, ``flush_rows``, ...), JSON values,
        passed to every shard. With ``ivf`` each shard trains its own coarse partition on its own
        rows, so IVF results are close to, not identical with, a single index's.

    Notes
    -----
    Memory: each shard holds ``len/n_shards`` rows of ``stats()["bytes_per_vector"]["total"]`` bytes
    (codes + id + list number + id index). Search cost per shard is a scan of its own rows, so with
    shards on separate cores or nodes a flat search takes about ``1/n_shards`` of the time, plus one
    Ray round trip (about a millisecond) and the merge.

    Examples
    --------
    >>> from vqdb.distributed import ShardedIndex                              # doctest: +SKIP
    >>> index = ShardedIndex(384, n_shards=4, path="wordnet-sharded")         # doctest: +SKIP
    >>> ids = index.add(vectors)                                               # doctest: +SKIP
    >>> res = index.search(queries, 10)                                        # doctest: +SKIP
    >>> res.ids.shape, res.complete                                            # doctest: +SKIP
    ((400, 10), True)
    """

    def __init__(
        self,
        dim: int,
        n_shards: int = 4,
        *,
        metric: str = "cos",
        quantizer="turbo-4",
        path: str | os.PathLike | None = None,
        ray_address: str | None = None,
        actor_options: dict[str, Any] | None = None,
        max_retries: int = 1,
        **index_kwargs,
    ):
        dim = check_int_range(dim, 1, 1 << 20, name="dim")
        n_shards = check_int_range(n_shards, 1, MAX_SHARDS, name="n_shards")
        check_choice(metric, METRICS, name="metric")
        _checks.check_json(index_kwargs)
        path = None if path is None else os.fspath(path)
        if path is not None:
            _checks.check_new_dir(path)
        q = _checks.resolve_quantizer(dim, metric, quantizer, index_kwargs)
        if path is not None:
            os.makedirs(path, exist_ok=True)
        self._setup(
            dim=dim,
            n_shards=n_shards,
            metric=metric,
            quantizer=q,
            path=path,
            index_kwargs=dict(index_kwargs),
            next_id=0,
            centre_decided=q.centre_ is not None,
            shards_created=False,
            actor_options=actor_options,
            max_retries=max_retries,
        )
        if path is not None:
            self._quantizer_files = _manifest.write_quantizer(path, q)
            self._write_manifest()
        _ray.ensure_connected(ray_address)
        self._pool.start("create" if self._centre_decided else "pending")
        if self._centre_decided:
            self._shards_created = True
            if path is not None:
                self._write_manifest()

    # ---- construction helpers ---------------------------------------------------------------
    def _setup(
        self,
        *,
        dim,
        n_shards,
        metric,
        quantizer,
        path,
        index_kwargs,
        next_id,
        centre_decided,
        shards_created,
        actor_options,
        max_retries,
        id_type=None,
        quantizer_files=None,
    ) -> None:
        self.dim = int(dim)
        self.n_shards = int(n_shards)
        self.metric = metric
        self.path = path
        self._quantizer = quantizer
        self._index_kwargs = index_kwargs
        self._id_type = _ids.check_id_type(index_kwargs.get("id_type")) or id_type
        self._next_id = int(next_id)
        self._centre_decided = bool(centre_decided)
        self._shards_created = bool(shards_created)
        opts = dict(DEFAULT_ACTOR_OPTIONS if actor_options is None else actor_options)
        opts.setdefault("max_restarts", 0)  # restarts are ours: from the shard's directory, counted
        self._pool = ShardPool(
            self.n_shards, self._spec, opts, check_int_range(max_retries, 0, 100, name="max_retries"), path
        )
        self._quantizer_files = quantizer_files  # names + checksums of the current quantizer files
        self._write_lock = threading.RLock()  # one write at a time from this coordinator
        self._closed = False

    @classmethod
    def _open(cls, path: str, *, ray_address=None, actor_options=None, max_retries: int = 1) -> ShardedIndex:
        m = _manifest.read_manifest(path)
        if m.get("routing") != ROUTING:
            raise InvalidInputError(
                f"{path!r} routes ids with {m.get('routing')!r}; this vqdb knows {ROUTING!r}"
            )
        self = cls.__new__(cls)
        self._setup(
            dim=m["dim"],
            n_shards=m["n_shards"],
            metric=m["metric"],
            quantizer=_manifest.read_quantizer(path, m),
            path=path,
            index_kwargs=m.get("index_kwargs", {}),
            next_id=m.get("next_id", 0),
            centre_decided=m.get("centre_decided", False),
            shards_created=m.get("shards_created", False),
            actor_options=actor_options,
            max_retries=max_retries,
            id_type=m.get("id_type"),
            quantizer_files=(
                {"quantizer_files": m["quantizer_files"], "checksums": m["checksums"]}
                if m["format_version"] >= 2
                else None
            ),
        )
        _ray.ensure_connected(ray_address)
        self._pool.start("open")
        if (
            self._centre_decided and not self._shards_created
        ):  # crashed between the two steps of the first write
            self._shards_created = True
            self._write_manifest()
        # auto ids continue after the largest id any shard holds, even if the manifest lagged behind
        top = self._all("max_id", retry=True)
        self._next_id = max([self._next_id] + [int(v) + 1 for v in top.values() if v is not None])
        return self

    def _shard_path(self, shard: int) -> str | None:
        return None if self.path is None else os.path.join(self.path, _manifest.shard_dirname(shard))

    def _on_missing(self, mode: str) -> str:
        if mode in ("create", "pending"):
            return mode
        if not self._centre_decided:
            return "pending"
        return "error" if self._shards_created else "create"

    def _spec(self, shard: int, mode: str) -> dict[str, Any]:
        return {
            "shard": shard,
            "path": self._shard_path(shard),
            "dim": self.dim,
            "metric": self.metric,
            "quantizer": quantizer_state(self._quantizer),
            "index_kwargs": self._index_kwargs,
            "on_missing": self._on_missing(mode),
        }

    def actor(self, shard: int):
        """The Ray actor handle of shard ``shard`` (for monitoring and tests; calls on it bypass routing)."""
        return self._pool.actor(shard)

    def _run(
        self,
        calls: dict[int, tuple[str, tuple]],
        *,
        retry: bool,
        timeout: float | None = None,
        errors: dict[int, BaseException] | None = None,
    ):
        """``ShardPool.run``; an error raised by a shard's index is re-raised (after every shard answered)
        unless an ``errors`` dict is given to collect them. Returns ``(results, failed)``."""
        self._check_open()
        results, raised, failed = self._pool.run(calls, retry=retry, timeout=timeout)
        if raised:
            if errors is None:
                raise raised[min(raised)]
            errors.update(raised)
        return results, failed

    def _all(self, method: str, *args, retry: bool) -> dict[int, Any]:
        """``method(*args)`` on every shard; raise ShardUnavailableError if any shard failed."""
        results, failed = self._run({s: (method, args) for s in range(self.n_shards)}, retry=retry)
        if failed:
            raise unavailable(failed, method, self.path)
        return results

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError("this ShardedIndex is closed; reopen it with vqdb.distributed.open(path)")

    # ---- writes -----------------------------------------------------------------------------
    def add(self, vectors, ids=None, metadata=None) -> np.ndarray:
        """Add new vectors; each row goes to the shard that owns its id. Durable when it returns.

        Parameters
        ----------
        vectors : array-like of shape (n, d), finite floats
        ids : array-like of shape (n,), int64 >= 0 or str (one kind per set, as ``vqdb.Index``), or None
            ``None`` draws consecutive ids after the largest id ever used in the set (UUID4 strings in a
            string-id set).
        metadata : list of n dicts, a pyarrow Table of n rows, or None

        Returns
        -------
        ids : ndarray of shape (n,), int64 (or object of str)

        Raises
        ------
        DuplicateIdError
            An id repeats in ``ids`` or is already in the set (nothing is added).
        ShardUnavailableError
            A shard died during the call: the rows routed to it may not have been added (check with
            :meth:`get`, or re-send them with :meth:`upsert`); other shards' rows were added.
        """
        return self._write(vectors, ids, metadata, upsert=False)

    def upsert(self, vectors, ids, metadata=None) -> np.ndarray:
        """Insert or replace rows by id (each on its own shard; retried after a shard restart).

        Same parameters, durability and errors as :meth:`add`, except that ``ids`` are required and
        may exist. A shard that rejects its part (e.g. a metadata type clash) raises after the other
        shards applied theirs; re-send the corrected upsert.
        """
        if ids is None:
            raise InvalidInputError("upsert needs ids (use add to get new ids)")
        return self._write(vectors, ids, metadata, upsert=True)

    def _write(self, vectors, ids, metadata, *, upsert: bool) -> np.ndarray:
        x = as_float32_matrix(vectors, self.dim, name="vectors")
        n = x.shape[0]
        _checks.check_metadata(metadata, n)
        with self._write_lock:
            self._check_open()
            if ids is None:
                kind = self._id_type or _ids.INT
                ids = (
                    np.arange(self._next_id, self._next_id + n, dtype=np.int64)
                    if kind == _ids.INT
                    else _ids.new_str_ids(n)
                )
            else:
                kind, ids = self._user_ids(ids, n)
                dup = _ids.duplicates(ids)
                if dup:
                    from ..errors import DuplicateIdError

                    raise DuplicateIdError(f"ids repeat within one call: {dup}")
            if n == 0:
                return ids
            self._fix_id_type(kind)
            if not self._centre_decided:
                self._decide_centre(x, metadata)
            parts = self._parts(ids)
            method = "upsert" if upsert else "add"
            calls = {
                s: (method, (x[rows], ids[rows], _checks.take_metadata(metadata, rows)))
                for s, rows in parts.items()
            }
            rejected: dict[int, BaseException] = {}
            done, failed = self._run(calls, retry=upsert, errors=rejected)
            if rejected:
                if not upsert:
                    self._rollback_add(ids, parts, done)
                raise rejected[min(rejected)]
            if kind == _ids.INT:
                self._advance_next_id(int(ids.max()) + 1)
            if failed:
                hint = (
                    "re-send the same upsert"
                    if upsert
                    else "rows routed to these shards may not have been added; check with get() or re-send them with upsert()"
                )
                raise unavailable(failed, method, self.path, hint=hint)
        return ids

    def _decide_centre(self, x: np.ndarray, metadata) -> None:
        """First write of the set: fix the quantizer centre as ``vqdb.Index`` would, then create the shards.

        ``vqdb.Index`` fits the centre (the mean of the first write's rows, normalised for ``cos``) when
        that write has at least 256 rows, and never later. A write too small to fit sets a zero centre,
        which scores and encodes exactly like no centre and stops each shard from fitting its own later.
        The write is validated first as ``vqdb.Index`` validates it, so a rejected write fixes nothing.
        """
        _checks.precheck_first_write(x, metadata, self.metric, self._index_kwargs.get("store_vectors"))
        q = self._quantizer
        if x.shape[0] >= FIT_MIN or getattr(q, "requires_fit", False):
            q.fit(_checks.normalised(x) if self.metric == "cos" else x)
        else:
            q.centre_ = np.zeros(self.dim, dtype=np.float32)
        self._centre_decided = True
        if self.path is not None:
            self._quantizer_files = _manifest.write_quantizer(self.path, q)
            self._write_manifest()
        self._all("init_index", quantizer_state(q), retry=True)
        self._shards_created = True
        if self.path is not None:
            self._write_manifest()

    def _user_ids(self, ids, n: int | None = None) -> tuple[str, np.ndarray]:
        kind, arr = _ids.as_user_ids(ids, n)
        _ids.check_kind(kind, self._id_type)
        return kind, arr

    def _fix_id_type(self, kind: str) -> None:
        """The first write fixes the set's id kind (persisted in the top-level manifest)."""
        if self._id_type is None:
            self._id_type = kind
            if self.path is not None:
                self._write_manifest()

    @property
    def id_type(self) -> str | None:
        """``"int"`` or ``"str"`` (None until the first write fixes it), as ``vqdb.Index.id_type``."""
        return self._id_type

    def _advance_next_id(self, candidate: int) -> None:
        if candidate > self._next_id:
            self._next_id = candidate
            if self.path is not None:
                self._write_manifest()

    def delete(self, ids, *, missing_ok: bool = False) -> int:
        """Delete rows by id; durable when it returns.

        Parameters
        ----------
        ids : array-like of shape (n,), int64 or str
        missing_ok : bool
            Skip ids that are not in the set instead of raising.

        Returns
        -------
        n_deleted : int

        Raises
        ------
        NotFoundError
            Some ids are not in the index and ``missing_ok`` is False (nothing is deleted).
        DuplicateIdError
            An id repeats within the call.
        """
        _, ids = self._user_ids(ids)
        dup = _ids.duplicates(ids)
        if dup:
            from ..errors import DuplicateIdError

            raise DuplicateIdError(f"ids repeat within one call: {dup}")
        with self._write_lock:
            if ids.size == 0:
                return 0
            parts = self._parts(ids)
            present = self._contains(ids, parts)
            if not present.all():
                if not missing_ok:
                    missing = ids[~present]
                    raise NotFoundError(
                        f"{missing.size} id(s) not in the index: {missing[:10].tolist()}; nothing deleted"
                    )
                ids = ids[present]
                if ids.size == 0:
                    return 0
                parts = self._parts(ids)
            _, failed = self._run({s: ("delete", (ids[rows],)) for s, rows in parts.items()}, retry=False)
            if failed:
                raise unavailable(
                    failed,
                    "delete",
                    self.path,
                    hint="ids routed to these shards may not have "
                    "been deleted; check with get() and delete them again",
                )
        return int(ids.size)

    def update_metadata(self, ids, metadata, *, merge: bool = True) -> int:
        """Set the metadata of existing rows without re-sending their vectors (each on its shard; codes
        and stored vectors kept byte for byte). As ``vqdb.Index.update_metadata``.

        Raises
        ------
        NotFoundError
            Some ids are not in the set (nothing changes).
        """
        _, ids = self._user_ids(ids)
        dup = _ids.duplicates(ids)
        if dup:
            from ..errors import DuplicateIdError

            raise DuplicateIdError(f"ids repeat within one call: {dup}")
        if isinstance(metadata, dict):
            metadata = [metadata] * ids.size
        if not isinstance(metadata, (list, tuple)) or len(metadata) != ids.size:
            raise InvalidInputError(f"metadata must be one dict or a list of {ids.size} dicts (one per id)")
        if ids.size == 0:
            return 0
        with self._write_lock:
            parts = self._parts(ids)
            present = self._contains(ids, parts)
            if not present.all():
                missing = ids[~present]
                raise NotFoundError(
                    f"{missing.size} id(s) not in the index: {missing[:10].tolist()}; nothing updated"
                )
            calls = {
                s: ("update_metadata", (ids[rows], [metadata[i] for i in rows.tolist()], bool(merge)))
                for s, rows in parts.items()
            }
            results, failed = self._run(calls, retry=True)
            if failed:
                raise unavailable(failed, "update_metadata", self.path, hint="re-send the same update")
        return int(sum(results.values()))

    def scroll(self, *, limit: int = 100, offset=None, filter=None, include_vectors: bool = False):
        """One page of records over all shards, in the order of the routing key (integer ids: ascending;
        string ids: their BLAKE2b key). As ``vqdb.Index.scroll``: returns a ``Page``."""
        from ..index import Page, Records
        from ._routing import route_keys

        limit = check_int_range(limit, 1, 1 << 30, name="limit")
        if offset is not None:
            self._user_ids([offset])
        per = self._all("scroll", limit, offset, filter, bool(include_vectors), retry=True)
        pages = [per[s].records for s in range(self.n_shards)]
        strings = self._id_type == _ids.STR
        ids = np.concatenate([np.asarray(p.ids, dtype=object if strings else np.int64) for p in pages])
        order = np.argsort(route_keys(ids), kind="stable")
        metadata = [m for p in pages for m in p.metadata]
        vectors = None
        if include_vectors:
            vectors = (
                np.concatenate([p.vectors for p in pages]) if pages else np.zeros((0, self.dim), np.float32)
            )
        next_offset = None
        if order.size > limit:
            nxt = ids[order[limit]]
            next_offset = nxt if strings else int(nxt)
            order = order[:limit]
        exact = self._index_kwargs.get("store_vectors") not in (None, False)
        rec = Records(
            ids[order],
            None if vectors is None else vectors[order],
            [metadata[i] for i in order.tolist()],
            exact=bool(exact),
        )
        return Page(rec, next_offset)

    def _parts(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Row positions per shard, only for shards that own at least one of ``ids``."""
        return {s: rows for s, rows in enumerate(split_by_shard(ids, self.n_shards)) if rows.size}

    def _contains(self, ids: np.ndarray, parts: dict[int, np.ndarray]) -> np.ndarray:
        """(n,) bool: which ``ids`` are in the set."""
        results, failed = self._run({s: ("contains", (ids[rows],)) for s, rows in parts.items()}, retry=True)
        if failed:
            raise unavailable(failed, "contains", self.path)
        out = np.zeros(ids.shape[0], dtype=bool)
        for s, rows in parts.items():
            out[rows] = np.asarray(results[s], dtype=bool)
        return out

    def _rollback_add(self, ids: np.ndarray, parts: dict[int, np.ndarray], done: dict[int, Any]) -> None:
        """A shard rejected its part of an add: delete what the other shards added, so the set is unchanged."""
        calls = {s: ("delete", (ids[parts[s]],)) for s in done if s in parts}
        if calls:
            try:
                self._run(calls, retry=False)
            except Exception:  # pragma: no cover - best effort; the caller needs the original error
                pass

    # ---- reads ------------------------------------------------------------------------------
    def search(
        self,
        queries,
        k: int,
        filter=None,
        nprobe=None,
        rerank=None,
        *,
        ef=None,
        params=None,
        allow_partial: bool = False,
        timeout: float | None = None,
        include_metadata: bool = False,
    ) -> ShardedSearchResult:
        """Global top-``k`` over all shards.

        Parameters
        ----------
        queries : array-like of shape (m, d)
            Always 2-D (a single query is ``q[None, :]``).
        k : int > 0
        filter, nprobe, rerank, ef, params
            As for ``vqdb.Index.search``, applied inside each shard: a filtered search is filtered,
            and a re-ranked search re-ranked from stored vectors, on each shard's own rows; then the
            per-shard top-k lists are merged.
        allow_partial : bool
            When a shard cannot answer (dead and not restartable, or past ``timeout``): ``False``
            raises ``ShardUnavailableError``; ``True`` merges the shards that answered and lists the
            others in ``result.shards_missing``.
        timeout : float or None
            Seconds to wait for the shards (``None``: no limit).

        Returns
        -------
        ShardedSearchResult
            ``ids`` (m, k) int64 best first, -1 padded; ``scores`` (m, k) float32, higher is better
            (inner product, cosine, or ``-||q - x||^2`` for ``l2sq``), -inf padded; ``metric``;
            ``shards_answered``; ``shards_missing``.

        Raises
        ------
        ShardUnavailableError
            A shard did not answer and ``allow_partial`` is False.
        """
        q = as_float32_matrix(queries, self.dim, name="queries")
        k = check_k(k)
        kwargs: dict[str, Any] = {}
        for name, value in (
            ("filter", filter),
            ("nprobe", nprobe),
            ("rerank", rerank),
            ("ef", ef),
            ("params", params),
        ):
            if value is not None:
                kwargs[name] = value
        qref = _ray.ray().put(q)
        results, failed = self._run(
            {s: ("search", (qref, k, kwargs)) for s in range(self.n_shards)}, retry=True, timeout=timeout
        )
        if failed and not allow_partial:
            raise unavailable(
                failed,
                "search",
                self.path,
                hint="pass allow_partial=True to get the results of the shards that answered",
            )
        answered = tuple(sorted(results))
        if answered:
            ids, scores = merge_topk(
                [results[s].ids for s in answered], [results[s].scores for s in answered], k, -np.inf
            )
        else:
            ids = np.full((q.shape[0], k), -1, dtype=np.int64)
            scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        meta = self._metadata_of(ids) if include_metadata else None
        return ShardedSearchResult(
            ids=ids,
            scores=scores,
            metric=self.metric,
            metadata=meta,
            shards_answered=answered,
            shards_missing=tuple(sorted(failed)),
        )

    def _metadata_of(self, ids: np.ndarray) -> list[list]:
        """m lists of k metadata dicts of the hits ``ids`` (m, k); None where padded (or deleted since)."""
        valid = (ids != None) if ids.dtype == object else (ids >= 0)  # noqa: E711
        wanted = list(dict.fromkeys(ids[valid].tolist()))
        found = {}
        if wanted:
            rec = self.get(wanted, include_vectors=False, missing_ok=True)
            found = dict(zip(rec.ids.tolist(), rec.metadata))
        return [
            [found.get(i) if ok else None for i, ok in zip(r, v)]
            for r, v in zip(ids.tolist(), valid.tolist())
        ]

    def get(self, ids, *, include_vectors: bool = True, missing_ok: bool = False):
        """Vectors and metadata of ``ids``, in the order given (each row fetched from its shard).

        ``missing_ok=True`` leaves out ids that are not in the set instead of raising.

        Returns
        -------
        vqdb.index.Records
            ``ids`` (n,) int64 or str; ``vectors`` (n, d) float32 or None; ``metadata`` list of n dicts;
            ``exact`` (True when the vectors are stored ones, not reconstructions).

        Raises
        ------
        NotFoundError
            Some ids are not in the index and ``missing_ok`` is False.
        """
        from ..index import Records

        _, ids = self._user_ids(ids)
        if missing_ok and ids.size:
            ids = ids[self._contains(ids, self._parts(ids))]
        parts = self._parts(ids)
        results, failed = self._run(
            {s: ("get", (ids[rows], bool(include_vectors))) for s, rows in parts.items()}, retry=True
        )
        if failed:
            raise unavailable(failed, "get", self.path)
        vectors = np.zeros((ids.size, self.dim), np.float32) if include_vectors else None
        metadata: list = [None] * ids.size
        exact = True
        for s, rows in parts.items():
            rec = results[s]
            exact = exact and rec.exact
            if include_vectors:
                vectors[rows] = rec.vectors
            for j, d in zip(rows.tolist(), rec.metadata):
                metadata[j] = d
        if not parts:
            exact = self._index_kwargs.get("store_vectors") not in (None, False)
        return Records(ids, vectors, metadata, exact=bool(exact))

    def ids(self, filter=None) -> np.ndarray:
        """(n,) int64 ids of every vector in the set (shard by shard), or of those whose metadata match
        ``filter`` (as in :meth:`search`)."""
        per = self._all("ids", filter, retry=True)
        dtype = object if self._id_type == _ids.STR else np.int64
        parts = [np.asarray(per[s], dtype=dtype) for s in range(self.n_shards)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    def __len__(self) -> int:
        return int(sum(self._all("size", retry=True).values()))

    def contains(self, ids) -> np.ndarray:
        """(n,) bool: which of ``ids`` are in the set (ids of the other kind are not)."""
        kind, ids = _ids.as_user_ids(ids)
        if self._id_type is not None and kind != self._id_type:
            return np.zeros(ids.shape[0], dtype=bool)
        return self._contains(ids, self._parts(ids)) if ids.size else np.zeros(0, bool)

    def __contains__(self, id_) -> bool:
        try:
            hit = self.contains(id_)
        except VqdbError:
            return False
        return hit.size == 1 and bool(hit[0])

    def shard_sizes(self) -> list[int]:
        """Rows held by each shard, in shard order."""
        sizes = self._all("size", retry=True)
        return [int(sizes[s]) for s in range(self.n_shards)]

    def stats(self) -> dict[str, Any]:
        """Totals over the set, and every shard's own ``Index.stats()`` under ``"shards"``.

        ``bytes_per_vector`` is the row-weighted mean over shards; counts and byte sizes are sums.
        """
        per = self._all("stats", retry=True)
        shards = [per[s] for s in range(self.n_shards)]
        q = self._quantizer
        out: dict[str, Any] = {
            "kind": "sharded",
            "n_shards": self.n_shards,
            "dim": self.dim,
            "metric": self.metric,
            "routing": ROUTING,
            "path": self.path,
            "code_size": int(q.code_size),
            "bits_per_dim": round(q.code_size * 8 / self.dim, 3),
            "quantizer": {"kind": q.state_dict()["kind"], "config": q.state_dict()["config"]},
        }
        for key in (
            "n",
            "rows_stored",
            "rows_deleted",
            "segments",
            "memory_rows",
            "heap_bytes",
            "disk_bytes",
            "wal_bytes",
        ):
            values = [st.get(key) for st in shards if isinstance(st.get(key), (int, np.integer))]
            if values:
                out[key] = int(sum(values))
        weights = np.array([st.get("rows_stored", 0) for st in shards], dtype=np.float64)
        per_vec = [st.get("bytes_per_vector") for st in shards]
        if weights.sum() and all(isinstance(p, dict) for p in per_vec if p is not None):
            keys = sorted({k for p in per_vec if p for k in p})
            out["bytes_per_vector"] = {
                k: round(
                    float(sum(w * (p or {}).get(k, 0) for w, p in zip(weights, per_vec)) / weights.sum()), 2
                )
                for k in keys
            }
        out["shard_sizes"] = [int(st.get("n", 0)) for st in shards]
        out["shards"] = [{k: v for k, v in st.items() if k != "path"} for st in shards]  # path/shard-NNNNN
        return out

    @property
    def quantizer(self):
        """The quantizer every shard uses (do not modify it: codes depend on its state)."""
        return self._quantizer

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path=None) -> None:
        """Flush every shard into segments (``Index.save``, in parallel) and rewrite the top-level manifest.

        Writes are already durable when they return (each shard's write-ahead log); ``save`` makes
        reopening fast. An in-memory set cannot be saved in place: use :meth:`export`.
        """
        if self.path is None:
            if path is not None:
                raise InvalidInputError(
                    "an in-memory ShardedIndex cannot move to a directory; use export(path)"
                )
            raise InvalidInputError(
                "this ShardedIndex has no path; create it with path=... or use export(path)"
            )
        if path is not None and os.path.abspath(os.fspath(path)) != os.path.abspath(self.path):
            raise InvalidInputError(
                f"this index is stored at {self.path!r}; use export(path) to copy it elsewhere"
            )
        with self._write_lock:
            self._all("save", retry=True)
            self._write_manifest()

    def export(self, path) -> None:
        """Write a compacted, self-contained copy of the set to the new directory ``path``, shard by shard
        (``Index.export`` on each, in parallel); the copy opens with ``vqdb.distributed.open(path)``.

        ``path`` must be reachable from every shard's node (shared storage on a multi-node cluster).
        """
        root = os.fspath(path)
        _checks.prepare_new_dir(root)
        with self._write_lock:
            quantizer_files = _manifest.write_quantizer(root, self._quantizer)
            calls = {
                s: ("export", (os.path.join(root, _manifest.shard_dirname(s)),)) for s in range(self.n_shards)
            }
            results, failed = self._run(calls, retry=True)
            if failed:
                raise unavailable(failed, "export", self.path)
            body = self._manifest_body(shards_created=all(results.values()), **quantizer_files)
            _manifest.write_manifest(root, body)

    def compact(self) -> None:
        """``Index.compact()`` on every shard, in parallel."""
        with self._write_lock:
            self._all("compact", retry=True)

    def close(self) -> None:
        """Save (when stored), close the shards' indexes and stop their actors. Nothing acknowledged is lost.

        Dead shards are skipped (an in-memory shard that died has nothing left to close).
        """
        if self._closed:
            return
        ray = _ray.ray()
        try:
            if ray.is_initialized():
                if self.path is not None:
                    self.save()
                self._run({s: ("close", ()) for s in range(self.n_shards)}, retry=False)
        finally:
            self._closed = True
            self._pool.stop()

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _manifest_body(self, **changes) -> dict[str, Any]:
        body = {
            "dim": self.dim,
            "metric": self.metric,
            "n_shards": self.n_shards,
            "routing": ROUTING,
            "quantizer_kind": self._quantizer.state_dict()["kind"],
            "quantizer_seed": self._quantizer.state_dict()["config"].get(
                "seed"
            ),  # state itself: quantizer.npz
            "index_kwargs": self._index_kwargs,
            "next_id": self._next_id,
            "id_type": self._id_type,
            "centre_decided": self._centre_decided,
            "shards_created": self._shards_created,
            "shards": [_manifest.shard_dirname(s) for s in range(self.n_shards)],
            "vqdb_version": __version__,
            **(self._quantizer_files or {}),
        }
        body.update(changes)
        return body

    def _write_manifest(self) -> None:
        if self._quantizer_files is None:  # opened from format 1: its quantizer is rewritten checksummed
            self._quantizer_files = _manifest.write_quantizer(self.path, self._quantizer)
        _manifest.write_manifest(self.path, self._manifest_body())

    # ---- re-sharding ------------------------------------------------------------------------
    def reshard(self, path, n_shards: int, *, batch_size: int = 50_000, **options) -> ShardedIndex:
        """Copy the set into a new set with ``n_shards`` shards at ``path``; this set is left unchanged.

        The shard count is fixed at creation because routing depends on it. To change it, stream every
        row out of the old shards into a new set (same dimension, metric, quantizer state *including
        the fitted centre*, and index options), then switch readers to the new directory::

            new = old.reshard("data-8", 8)          # old keeps serving reads meanwhile
            old.close(); shutil.rmtree("data-4")     # after the switch

        Rows move in batches of ``batch_size`` per shard, as (ids, vectors, metadata) from
        ``Index.get``; they are re-encoded by the new shards with the same quantizer. The codes are
        identical to the old ones when the vectors were stored (``store_vectors="float32"``) and the
        metric is ``ip`` or ``l2sq``; with float16 vectors, ``cos`` (vectors normalised once more) or no
        stored vectors (the codes' reconstruction is re-encoded), codes and scores may differ
        slightly. Writes to the old set during the copy are not carried over: stop writers first.

        Parameters
        ----------
        path : str or PathLike or None
            Directory of the new set (``None``: in memory).
        n_shards : int
        batch_size : int
            Rows per shard per transfer.
        **options
            ``ray_address``, ``actor_options``, ``max_retries`` of the new set.

        Returns
        -------
        ShardedIndex
            The new set, open.
        """
        batch_size = check_int_range(batch_size, 1, 1 << 30, name="batch_size")
        new = ShardedIndex(
            self.dim,
            n_shards,
            metric=self.metric,
            quantizer=self._quantizer_for_copy(),
            path=path,
            **options,
            **self._index_kwargs,
        )
        with self._write_lock:
            per = self._all("ids", retry=True)
            for s in range(self.n_shards):
                shard_ids = np.asarray(per[s], dtype=object if self._id_type == _ids.STR else np.int64)
                for b0 in range(0, shard_ids.size, batch_size):
                    batch = shard_ids[b0 : b0 + batch_size]
                    rec = self._run({s: ("get", (batch, True))}, retry=True)[0][s]
                    meta = rec.metadata if any(rec.metadata) else None
                    new.add(rec.vectors, ids=rec.ids, metadata=meta)
            new._advance_next_id(self._next_id)
        return new

    def _quantizer_for_copy(self):
        """The quantizer with its centre decided (a zero centre if nothing was ever written)."""
        q = self._quantizer
        if q.centre_ is None:
            import copy

            q = copy.deepcopy(q)
            q.centre_ = np.zeros(self.dim, dtype=np.float32)
        return q

    def __repr__(self) -> str:
        where = f"path={self.path!r}" if self.path else "in memory"
        return (
            f"ShardedIndex(dim={self.dim}, n_shards={self.n_shards}, metric={self.metric!r}, "
            f"quantizer={self._quantizer.state_dict()['kind']!r}, {where})"
        )


def open_sharded(
    path, *, ray_address: str | None = None, actor_options: dict[str, Any] | None = None, max_retries: int = 1
) -> ShardedIndex:
    """Open a sharded index directory: one actor per shard, each opening its own ``vqdb.Index``.

    Parameters
    ----------
    path : str or PathLike
        A directory written by ``ShardedIndex(..., path=...)`` (or :meth:`ShardedIndex.export`).
    ray_address, actor_options, max_retries
        As for :class:`ShardedIndex`.

    Raises
    ------
    NotFoundError
        ``path`` holds no sharded index.
    CorruptIndexError
        Its manifest or quantizer files are damaged (checksums), checked before any actor starts.
    IncompatibleFormatError
        It was written by an incompatible format version.
    """
    return ShardedIndex._open(
        os.fspath(path), ray_address=ray_address, actor_options=actor_options, max_retries=max_retries
    )
