"""``ShardedIndex``: one logical ``vqdb.Index`` split over N Ray actors.

How it works
------------
* **Shards.** Shard ``s`` is a ``vqdb.Index`` held by a Ray actor (:mod:`._actor`), with its own
  directory ``path/shard-0000s`` when the set is persistent. Ray places and runs the actors; vqdb
  adds no RPC and no cluster manager.
* **One quantizer state.** The quantizer is built once, here, and its ``state_dict()`` (rotation,
  codebooks, everything drawn from the seed) is handed to every shard and stored once in the
  top-level directory. Every shard therefore writes exactly the codes a single index would write,
  and a flat search returns the same ids and scores as a single index over the same data.
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
import time
from typing import Any

import numpy as np

from .. import __version__
from .._validation import as_float32_matrix, as_ids, check_choice, check_int_range, check_k
from ..errors import (DuplicateIdError, InvalidInputError, NotFoundError, ShardUnavailableError,
                      VqdbError)
from . import _manifest, _ray
from ._actor import remote_class
from ._merge import merge_topk
from ._result import ShardedSearchResult
from ._routing import ROUTING, split_by_shard

METRICS = ("cos", "ip", "l2sq")
MAX_SHARDS = 4096
DEFAULT_ACTOR_OPTIONS = {"num_cpus": 0, "scheduling_strategy": "SPREAD"}

_INDEX_KWARGS_JSON_HINT = "index options of a sharded index are stored in its manifest and must be JSON values"


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
        A preset name (``"turbo-4"``, ``"turbo-2"``, ...) or a quantizer object; its state is copied
        to every shard.
    path : str or None
        Directory of the set (created; must not hold an index yet). ``None`` keeps every shard in
        its actor's memory only. On a multi-node cluster the directory must be on storage every
        node can reach (NFS, a mounted volume), or the actors pinned with ``actor_options``.
    ray_address : str or None
        Passed to ``ray.init`` when this process is not connected to Ray yet (``"auto"``,
        ``"ray://head:10001"``); ``None`` joins ``RAY_ADDRESS`` or starts a local cluster.
    actor_options : dict or None
        Ray ``.options(...)`` of each shard actor (``num_cpus``, ``memory``, ``resources``,
        ``scheduling_strategy``, ...). Default: ``{"num_cpus": 0, "scheduling_strategy": "SPREAD"}``.
    max_retries : int
        How many times one call restarts a dead shard from its directory and retries.
    **index_kwargs
        Other ``vqdb.Index`` options (``ivf``, ``store_vectors``, ...), passed to every shard.
        With ``ivf`` each shard trains its own coarse partition on its own rows, so IVF results are
        close to, not identical with, a single index; flat search is identical.

    Examples
    --------
    >>> from vqdb.distributed import ShardedIndex            # doctest: +SKIP
    >>> index = ShardedIndex(384, n_shards=4, path="wordnet-sharded")   # doctest: +SKIP
    >>> ids = index.add(vectors)                               # doctest: +SKIP
    >>> res = index.search(queries, 10)                        # doctest: +SKIP
    >>> res.ids.shape, res.complete                            # doctest: +SKIP
    ((400, 10), True)
    """

    def __init__(self, dim: int, n_shards: int = 4, *, metric: str = "cos", quantizer="turbo-4",
                 path: str | os.PathLike | None = None, ray_address: str | None = None,
                 actor_options: dict[str, Any] | None = None, max_retries: int = 1, **index_kwargs):
        from ..presets import make_quantizer

        dim = check_int_range(dim, 1, 1 << 20, name="dim")
        n_shards = check_int_range(n_shards, 1, MAX_SHARDS, name="n_shards")
        check_choice(metric, METRICS, name="metric")
        q = make_quantizer(quantizer, dim)
        state = q.state_dict()
        path = None if path is None else os.fspath(path)
        _check_json(index_kwargs)
        if path is not None:
            _prepare_new_dir(path)
        self._setup(dim=dim, n_shards=n_shards, metric=metric, quantizer_state=state, path=path,
                    index_kwargs=dict(index_kwargs), next_id=0, actor_options=actor_options,
                    max_retries=max_retries)
        if path is not None:
            _manifest.write_quantizer_state(path, state)
            self._write_manifest()
        _ray.ensure_connected(ray_address)
        self._actors = self._start_all("create")

    # ---- construction helpers ---------------------------------------------------------------
    def _setup(self, *, dim, n_shards, metric, quantizer_state, path, index_kwargs, next_id,
               actor_options, max_retries) -> None:
        self.dim = int(dim)
        self.n_shards = int(n_shards)
        self.metric = metric
        self.path = path
        self._quantizer_state = quantizer_state
        self._quantizer = None
        self._index_kwargs = index_kwargs
        self._next_id = int(next_id)
        opts = dict(DEFAULT_ACTOR_OPTIONS if actor_options is None else actor_options)
        opts.setdefault("max_restarts", 0)  # restarts are ours: from the shard's directory, counted
        self._actor_options = opts
        self._max_retries = check_int_range(max_retries, 0, 100, name="max_retries")
        self._lock = threading.RLock()        # guards self._actors
        self._write_lock = threading.Lock()   # one write at a time from this coordinator
        self._actors: list = []
        self._closed = False

    @classmethod
    def _open(cls, path: str, *, ray_address=None, actor_options=None, max_retries: int = 1) -> "ShardedIndex":
        m = _manifest.read_manifest(path)
        if m.get("routing") != ROUTING:
            raise InvalidInputError(f"{path!r} routes ids with {m.get('routing')!r}; this vqdb knows {ROUTING!r}")
        self = cls.__new__(cls)
        self._setup(dim=m["dim"], n_shards=m["n_shards"], metric=m["metric"],
                    quantizer_state=_manifest.read_quantizer_state(path), path=path,
                    index_kwargs=m.get("index_kwargs", {}), next_id=m.get("next_id", 0),
                    actor_options=actor_options, max_retries=max_retries)
        _ray.ensure_connected(ray_address)
        self._actors = self._start_all("open")
        # auto ids continue after the largest id any shard holds, even if the manifest lagged
        top = self._all("max_id", retry=True)
        self._next_id = max([self._next_id] + [int(v) + 1 for v in top.values() if v is not None])
        return self

    def _shard_path(self, shard: int) -> str | None:
        return None if self.path is None else os.path.join(self.path, _manifest.shard_dirname(shard))

    def _spec(self, shard: int, mode: str) -> dict[str, Any]:
        return {"shard": shard, "mode": mode, "path": self._shard_path(shard), "dim": self.dim,
                "metric": self.metric, "quantizer_state": self._quantizer_state,
                "index_kwargs": self._index_kwargs}

    def _start_all(self, mode: str) -> list:
        ray = _ray.ray()
        actors = [remote_class().options(**self._actor_options).remote(self._spec(s, mode))
                  for s in range(self.n_shards)]
        try:
            ray.get([a.ping.remote() for a in actors])
        except Exception as exc:
            for a in actors:
                ray.kill(a)
            raise _unwrap(exc) from None
        return actors

    def _restart(self, shard: int, seen) -> None:
        """Replace dead actor ``seen`` of ``shard`` by a new one opened from the shard's directory."""
        ray = _ray.ray()
        with self._lock:
            if self._actors[shard] is not seen:  # another thread already restarted it
                return
            if self.path is None:
                raise ShardUnavailableError(
                    f"shard {shard} died and cannot be restarted: the index has no path, so that shard's "
                    "rows lived only in the dead actor's memory and are lost", [shard])
            actor = remote_class().options(**self._actor_options).remote(self._spec(shard, "open"))
            try:
                ray.get(actor.ping.remote())
            except Exception as exc:
                ray.kill(actor)
                raise ShardUnavailableError(
                    f"shard {shard} died and restarting it from {self._shard_path(shard)!r} failed: {exc}",
                    [shard]) from None
            self._actors[shard] = actor

    # ---- scatter / gather -------------------------------------------------------------------
    def _run(self, calls: dict[int, tuple[str, tuple]], *, retry: bool, timeout: float | None = None):
        """Run ``method(*args)`` on the shards named by ``calls``, in parallel.

        Returns ``(results, failed)``: ``results[shard]`` the return value of every shard that
        answered; ``failed[shard]`` the exception of every shard that died, did not answer within
        ``timeout`` seconds, or could not be restarted. An error *raised by* a shard's index (bad
        input, unknown id) is re-raised as is, after every shard has finished.
        """
        self._check_open()
        ray = _ray.ray()
        dead = _ray.dead_actor_errors()
        results: dict[int, Any] = {}
        failed: dict[int, BaseException] = {}
        raised: list[BaseException] = []
        pending = dict(calls)
        deadline = None if timeout is None else time.monotonic() + timeout
        for attempt in range(self._max_retries + 1):
            with self._lock:
                handles = {s: self._actors[s] for s in pending}
            refs = {s: getattr(handles[s], method).remote(*args) for s, (method, args) in pending.items()}
            died: dict[int, BaseException] = {}
            for s, ref in refs.items():
                try:
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    results[s] = ray.get(ref, timeout=wait)
                except dead as exc:
                    died[s] = exc
                except ray.exceptions.GetTimeoutError as exc:
                    try:
                        ray.cancel(ref)
                    except Exception:  # pragma: no cover - cancellation is best effort
                        pass
                    failed[s] = exc
                except ray.exceptions.RayTaskError as exc:
                    raised.append(_unwrap(exc))
            pending = {}
            for s, exc in died.items():
                try:
                    self._restart(s, handles[s])  # restore the shard for later calls in any case
                except ShardUnavailableError as rexc:
                    failed[s] = rexc
                    continue
                if retry and attempt < self._max_retries:
                    pending[s] = calls[s]
                else:
                    failed[s] = exc
            if not pending:
                break
        if raised:
            raise raised[0]
        return results, failed

    def _all(self, method: str, *args, retry: bool) -> dict[int, Any]:
        """``method(*args)`` on every shard; raise ShardUnavailableError if any shard failed."""
        results, failed = self._run({s: (method, args) for s in range(self.n_shards)}, retry=retry)
        if failed:
            raise _unavailable(failed, method, self.path)
        return results

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError("this ShardedIndex is closed; reopen it with vqdb.distributed.open(path)")

    # ---- writes -----------------------------------------------------------------------------
    def add(self, vectors, ids=None, metadata=None) -> np.ndarray:
        """Add new vectors; each row goes to the shard that owns its id.

        Parameters
        ----------
        vectors : array-like of shape (n, d), float32
        ids : array-like of shape (n,), int64, or None
            ``None`` draws new ids from the set's counter (one past the largest id ever added).
        metadata : list of n dicts, a pyarrow Table of n rows, or None

        Returns
        -------
        ids : ndarray of shape (n,), int64

        Raises
        ------
        DuplicateIdError
            An id appears twice in ``ids`` or is already in the set (nothing is added).
        ShardUnavailableError
            A shard died during the call; rows routed to it may not have been added (check with
            :meth:`get`, or re-send them with :meth:`upsert`). Other shards' rows were added.
        """
        x = as_float32_matrix(vectors, self.dim, name="vectors")
        n = x.shape[0]
        _check_metadata(metadata, n)
        with self._write_lock:
            if ids is None:
                ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                ids = as_ids(ids, n)
                _check_unique(ids)
            parts = self._parts(ids)
            present = self._contains(ids, parts)
            if present.any():
                dup = ids[present][:10].tolist()
                raise DuplicateIdError(f"{int(present.sum())} id(s) already in the index, e.g. {dup}; "
                                       "use upsert to replace them")
            calls = {s: ("add", (x[rows], ids[rows], _take_metadata(metadata, rows))) for s, rows in parts.items()}
            try:
                _, failed = self._run(calls, retry=False)
            except VqdbError:
                self._rollback_add(ids, parts)
                raise
            if n:
                self._next_id = max(self._next_id, int(ids.max()) + 1)
            if failed:
                raise _unavailable(failed, "add", self.path, hint="rows routed to these shards may not have "
                                   "been added; check with get() or re-send them with upsert()")
        return ids

    def upsert(self, vectors, ids, metadata=None) -> np.ndarray:
        """Insert or replace rows by id (routed to their shards; retried after a shard restart).

        Parameters
        ----------
        vectors : array-like of shape (n, d), float32
        ids : array-like of shape (n,), int64
        metadata : list of n dicts, a pyarrow Table of n rows, or None

        Returns
        -------
        ids : ndarray of shape (n,), int64
        """
        x = as_float32_matrix(vectors, self.dim, name="vectors")
        n = x.shape[0]
        ids = as_ids(ids, n)
        _check_unique(ids)
        _check_metadata(metadata, n)
        with self._write_lock:
            parts = self._parts(ids)
            calls = {s: ("upsert", (x[rows], ids[rows], _take_metadata(metadata, rows))) for s, rows in parts.items()}
            _, failed = self._run(calls, retry=True)
            if n:
                self._next_id = max(self._next_id, int(ids.max()) + 1)
            if failed:
                raise _unavailable(failed, "upsert", self.path, hint="re-send the same upsert once the shard is back")
        return ids

    def delete(self, ids) -> int:
        """Delete rows by id.

        Parameters
        ----------
        ids : array-like of shape (n,), int64

        Returns
        -------
        n_deleted : int

        Raises
        ------
        NotFoundError
            Some ids are not in the index (nothing is deleted).
        """
        ids = as_ids(ids)
        _check_unique(ids)
        with self._write_lock:
            parts = self._parts(ids)
            present = self._contains(ids, parts)
            if not present.all():
                missing = ids[~present][:10].tolist()
                raise NotFoundError(f"{int((~present).sum())} id(s) not in the index, e.g. {missing}; nothing deleted")
            _, failed = self._run({s: ("delete", (ids[rows],)) for s, rows in parts.items()}, retry=False)
            if failed:
                raise _unavailable(failed, "delete", self.path, hint="ids routed to these shards may not have "
                                   "been deleted; check with get() and delete them again")
        return int(ids.size)

    def _parts(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Row positions per shard, only for shards that own at least one of ``ids``."""
        return {s: rows for s, rows in enumerate(split_by_shard(ids, self.n_shards)) if rows.size}

    def _contains(self, ids: np.ndarray, parts: dict[int, np.ndarray]) -> np.ndarray:
        """(n,) bool: which ``ids`` are in the set."""
        results, failed = self._run({s: ("contains", (ids[rows],)) for s, rows in parts.items()}, retry=True)
        if failed:
            raise _unavailable(failed, "contains", self.path)
        out = np.zeros(ids.shape[0], dtype=bool)
        for s, rows in parts.items():
            out[rows] = np.asarray(results[s], dtype=bool)
        return out

    def _rollback_add(self, ids: np.ndarray, parts: dict[int, np.ndarray]) -> None:
        """After a shard rejected its part of an add: remove what other shards added."""
        try:
            present = self._contains(ids, parts)
            if present.any():
                undo = ids[present]
                self._run({s: ("delete", (undo[rows],)) for s, rows in self._parts(undo).items()}, retry=False)
        except Exception:  # best effort; the original error is what the caller needs
            pass

    # ---- reads ------------------------------------------------------------------------------
    def search(self, queries, k: int, filter=None, nprobe=None, rerank=None, *, params=None,
               allow_partial: bool = False, timeout: float | None = None) -> ShardedSearchResult:
        """Global top-k over all shards.

        Parameters
        ----------
        queries : array-like of shape (m, d), float32
        k : int, > 0
        filter, nprobe, rerank, params
            As for ``vqdb.Index.search``; applied inside each shard (a filtered or re-ranked
            search is filtered / re-ranked on each shard's own rows before the merge).
        allow_partial : bool
            If a shard cannot answer (dead and not restartable, or past ``timeout``): ``False``
            raises ``ShardUnavailableError``; ``True`` merges the shards that answered and lists
            the others in ``result.shards_missing``.
        timeout : float or None
            Seconds to wait for the shards (``None``: no limit).

        Returns
        -------
        ShardedSearchResult
            ``ids`` (m, k) int64 best first, ``-1`` padded; ``scores`` (m, k) float32, higher is
            better (``l2sq``: negated squared distance), ``-inf`` where ``ids`` is -1;
            ``shards_answered``, ``shards_missing``.

        Raises
        ------
        ShardUnavailableError
            A shard did not answer and ``allow_partial`` is False.
        """
        q = as_float32_matrix(queries, self.dim, name="queries")
        k = check_k(k)
        kwargs: dict[str, Any] = {}
        for name, value in (("filter", filter), ("nprobe", nprobe), ("rerank", rerank), ("params", params)):
            if value is not None:
                kwargs[name] = value
        qref = _ray.ray().put(q)
        results, failed = self._run({s: ("search", (qref, k, kwargs)) for s in range(self.n_shards)},
                                    retry=True, timeout=timeout)
        if failed and not allow_partial:
            raise _unavailable(failed, "search", self.path,
                               hint="pass allow_partial=True to get the results of the shards that answered")
        answered = tuple(sorted(results))
        if answered:
            ids, scores = merge_topk([results[s].ids for s in answered], [results[s].scores for s in answered],
                                     k, -np.inf)
        else:
            ids = np.full((q.shape[0], k), -1, dtype=np.int64)
            scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        return ShardedSearchResult(ids=ids, scores=scores, metric=self.metric, shards_answered=answered,
                                   shards_missing=tuple(sorted(failed)))

    def get(self, ids, **kwargs):
        """Stored rows by id, in the order asked (as ``vqdb.Index.get``; rows fetched from their shards)."""
        ids = as_ids(ids)
        parts = self._parts(ids)
        results, failed = self._run({s: ("get", (ids[rows], kwargs)) for s, rows in parts.items()}, retry=True)
        if failed:
            raise _unavailable(failed, "get", self.path)
        from ._gather import reassemble

        return reassemble(results, parts, ids.shape[0])

    def __len__(self) -> int:
        return int(sum(self._all("size", retry=True).values()))

    def shard_sizes(self) -> list[int]:
        """Rows held by each shard, in shard order."""
        sizes = self._all("size", retry=True)
        return [int(sizes[s]) for s in range(self.n_shards)]

    def stats(self) -> dict[str, Any]:
        """Totals over the set plus every shard's own ``stats()`` under ``"shards"``."""
        per = self._all("stats", retry=True)
        shards = [per[s] for s in range(self.n_shards)]
        out: dict[str, Any] = {"kind": "sharded", "n_shards": self.n_shards, "dim": self.dim,
                               "metric": self.metric, "path": self.path, "routing": ROUTING}
        for key in shards[0] if shards else ():
            values = [st.get(key) for st in shards]
            if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values) and \
                    key not in ("dim", "code_size", "format_version"):
                out[key] = int(sum(values))
            elif all(v == values[0] for v in values) and key not in out:
                out[key] = values[0]
        out["shards"] = shards
        return out

    @property
    def quantizer(self):
        """The quantizer every shard uses (rebuilt here from the shared state)."""
        if self._quantizer is None:
            from ..quantizers import load_quantizer

            self._quantizer = load_quantizer(self._quantizer_state)
        return self._quantizer

    # ---- persistence ------------------------------------------------------------------------
    def save(self) -> None:
        """Make every shard durable (``Index.save`` on each) and rewrite the top-level manifest."""
        if self.path is None:
            raise InvalidInputError("this ShardedIndex has no path; create it with path=... to save it")
        with self._write_lock:
            self._all("save", retry=True)
            self._write_manifest()

    def compact(self) -> None:
        """``Index.compact()`` on every shard, in parallel."""
        with self._write_lock:
            self._all("compact", retry=True)

    def close(self) -> None:
        """Save (when persistent), then stop the shard actors. The object cannot be used afterwards."""
        if self._closed:
            return
        ray = _ray.ray()
        try:
            if self.path is not None and ray.is_initialized():
                self.save()
                self._all("close", retry=False)
        finally:
            self._closed = True
            if ray.is_initialized():
                for a in self._actors:
                    try:
                        ray.kill(a)
                    except Exception:  # pragma: no cover - already gone
                        pass

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write_manifest(self) -> None:
        _manifest.write_manifest(self.path, {
            "dim": self.dim, "metric": self.metric, "n_shards": self.n_shards, "routing": ROUTING,
            "quantizer_kind": self._quantizer_state["kind"], "index_kwargs": self._index_kwargs,
            "next_id": self._next_id, "shards": [_manifest.shard_dirname(s) for s in range(self.n_shards)],
            "vqdb_version": __version__,
        })

    def __repr__(self) -> str:
        return (f"ShardedIndex(dim={self.dim}, n_shards={self.n_shards}, metric={self.metric!r}, "
                f"quantizer={self._quantizer_state['kind']!r}, path={self.path!r})")


def open_sharded(path, *, ray_address: str | None = None, actor_options: dict[str, Any] | None = None,
                 max_retries: int = 1) -> ShardedIndex:
    """Open a sharded index directory: one actor per shard, each opening its own ``vqdb.Index``.

    Parameters
    ----------
    path : str or PathLike
        A directory written by ``ShardedIndex(..., path=...)``.
    ray_address, actor_options, max_retries
        As for :class:`ShardedIndex`.

    Raises
    ------
    NotFoundError
        ``path`` holds no sharded index.
    IncompatibleFormatError
        It was written by an incompatible format version.
    """
    return ShardedIndex._open(os.fspath(path), ray_address=ray_address, actor_options=actor_options,
                              max_retries=max_retries)


# ---- helpers --------------------------------------------------------------------------------------
def _unwrap(exc: BaseException) -> BaseException:
    """The original exception behind a Ray task error, when it is one of ours."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, VqdbError):
        return cause
    return exc


def _unavailable(failed: dict[int, BaseException], what: str, path, hint: str = "") -> ShardUnavailableError:
    shards = sorted(failed)
    reasons = "; ".join(f"shard {s}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        for s, e in sorted(failed.items()))
    where = f" of the sharded index at {path!r}" if path else ""
    msg = f"{what} failed: shard(s) {shards}{where} did not answer ({reasons})"
    if hint:
        msg += f". {hint}"
    return ShardUnavailableError(msg, shards)


def _check_unique(ids: np.ndarray) -> None:
    if ids.size > 1:
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise DuplicateIdError(f"ids repeat within one call, e.g. {uniq[counts > 1][:10].tolist()}")


def _check_metadata(metadata, n: int) -> None:
    if metadata is None:
        return
    rows = getattr(metadata, "num_rows", None)
    if rows is None:
        if not isinstance(metadata, (list, tuple)):
            raise InvalidInputError(f"metadata must be a list of dicts, a pyarrow Table or None; got {type(metadata).__name__}")
        rows = len(metadata)
    if rows != n:
        raise InvalidInputError(f"metadata has {rows} rows; expected {n} (one per vector)")


def _take_metadata(metadata, rows: np.ndarray):
    if metadata is None:
        return None
    if hasattr(metadata, "take") and hasattr(metadata, "num_rows"):
        return metadata.take(rows)
    return [metadata[int(i)] for i in rows]


def _prepare_new_dir(path: str) -> None:
    if _manifest.is_sharded_dir(path):
        from ..errors import AlreadyExistsError

        raise AlreadyExistsError(f"{path!r} already holds a sharded index; open it with vqdb.distributed.open(path)")
    if os.path.isdir(path) and os.listdir(path):
        raise InvalidInputError(f"{path!r} exists and is not empty; a new sharded index needs an empty or new directory")
    os.makedirs(path, exist_ok=True)


def _check_json(obj) -> None:
    import json

    try:
        json.dumps(obj)
    except TypeError as exc:
        raise InvalidInputError(f"{_INDEX_KWARGS_JSON_HINT}: {exc}") from None
