"""The shard actors of one sharded index: start them, call them in parallel, restart the dead ones.

This is the only module that talks to Ray actors. :class:`ShardPool` knows nothing of vectors or
ids: it runs ``method(*args)`` on some shards at once and reports, per shard, a result, an error the
shard's index raised, or a failure (the actor died, or missed the deadline). A dead actor of a
persistent shard is replaced by a new one that reopens the shard's directory (its write-ahead log
holds every acknowledged write); a dead in-memory shard is lost, and says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ShardUnavailableError, VqdbError
from . import _ray
from ._actor import remote_class

START_TIMEOUT_S = 300.0  # shard actors not placed and ready by then: the cluster lacks what actor_options ask


class ShardPool:
    """``n_shards`` ShardActor handles.

    Parameters
    ----------
    n_shards : int
    spec : callable (shard, mode) -> dict
        The ``ShardActor`` spec of a shard; ``mode`` is ``"create"``, ``"pending"`` or ``"open"``.
    actor_options : dict
        Ray ``.options(...)`` of every actor.
    max_retries : int
        How many times one call restarts a dead shard and sends the call again (when asked to retry).
    where : str or None
        The set's directory, or None when shards live in memory only (and cannot be restarted).
    """

    def __init__(
        self,
        n_shards: int,
        spec: Callable[[int, str], dict],
        actor_options: dict,
        max_retries: int,
        where: str | None,
    ):
        self.n_shards = n_shards
        self._spec = spec
        self._options = actor_options
        self._max_retries = max_retries
        self._where = where
        self._lock = threading.RLock()  # guards self._actors
        self._actors: list = []

    # ---- lifecycle ----------------------------------------------------------------------------
    def _new(self, shard: int, mode: str):
        return remote_class().options(**self._options).remote(self._spec(shard, mode))

    def start(self, mode: str) -> None:
        """Start every shard's actor and wait until each has opened (or created) its index."""
        ray = _ray.ray()
        actors = [self._new(s, mode) for s in range(self.n_shards)]
        try:
            ray.get([a.ping.remote() for a in actors], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self._kill(actors)
            raise ShardUnavailableError(
                f"the {self.n_shards} shard actors were not all running after {START_TIMEOUT_S:.0f} s: the Ray "
                f"cluster cannot place actors with options {self._options} (too few CPUs or resources?)",
                range(self.n_shards),
            ) from None
        except Exception as exc:
            self._kill(actors)
            raise unwrap(exc) from None
        self._actors = actors

    def actor(self, shard: int):
        with self._lock:
            return self._actors[shard]

    def stop(self) -> None:
        """Kill every actor (nothing is lost: persistent shards log every write before acknowledging it)."""
        self._kill(self._actors)

    @staticmethod
    def _kill(actors) -> None:
        ray = _ray.ray()
        if not ray.is_initialized():
            return
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # already gone, or of a cluster shut down since
                pass

    def restart(self, shard: int, seen) -> None:
        """Replace the dead actor ``seen`` of ``shard`` by a new one that reopens the shard's directory."""
        ray = _ray.ray()
        with self._lock:
            if self._actors[shard] is not seen:  # another thread restarted it already
                return
            if self._where is None:
                raise ShardUnavailableError(
                    f"shard {shard} died and cannot be restarted: the index has no path, so that shard's "
                    "rows lived only in the dead actor's memory and are lost",
                    [shard],
                )
            actor = self._new(shard, "open")
            try:
                ray.get(actor.ping.remote(), timeout=START_TIMEOUT_S)
            except Exception as exc:
                self._kill([actor])
                raise ShardUnavailableError(
                    f"shard {shard} died and restarting it from {self._where!r} failed: {unwrap(exc)}",
                    [shard],
                ) from None
            self._actors[shard] = actor

    # ---- scatter / gather -----------------------------------------------------------------------
    def run(self, calls: dict[int, tuple[str, tuple]], *, retry: bool, timeout: float | None = None):
        """Run ``method(*args)`` on the shards named by ``calls``, in parallel.

        Returns
        -------
        results : dict shard -> return value, for every shard that answered
        raised : dict shard -> VqdbError (or other exception) its index raised (bad input, unknown id)
        failed : dict shard -> exception, for every shard that died (and could not be restarted, or
            was not retried) or did not answer within ``timeout`` seconds

        A dead shard is restarted in any case, so that later calls find it alive; with ``retry`` its
        call is sent again, ``max_retries`` times at most.
        """
        ray = _ray.ray()
        dead = _ray.dead_actor_errors()
        results: dict[int, Any] = {}
        raised: dict[int, BaseException] = {}
        failed: dict[int, BaseException] = {}
        pending = dict(calls)
        deadline = None if timeout is None else time.monotonic() + timeout
        for attempt in range(self._max_retries + 1):
            with self._lock:
                handles = {s: self._actors[s] for s in pending}
            refs, died = {}, {}
            for s, (method, args) in pending.items():
                try:
                    refs[s] = getattr(handles[s], method).remote(*args)
                except Exception as exc:  # an actor of a cluster that was shut down since
                    if not _ray.is_stale_handle_error(exc):
                        raise
                    died[s] = exc
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
                    raised[s] = unwrap(exc)
            pending = {}
            for s, exc in died.items():
                try:
                    self.restart(s, handles[s])
                except ShardUnavailableError as rexc:
                    failed[s] = rexc
                    continue
                if retry and attempt < self._max_retries:
                    pending[s] = calls[s]
                else:
                    failed[s] = exc
            if not pending:
                break
        return results, raised, failed


def unwrap(exc: BaseException) -> BaseException:
    """The original exception behind a Ray task error, when it is one of ours."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, VqdbError):
        return cause
    return exc


def unavailable(failed: dict[int, BaseException], what: str, path, hint: str = "") -> ShardUnavailableError:
    """One ShardUnavailableError naming every failed shard and why."""
    shards = sorted(failed)
    reasons = "; ".join(
        f"shard {s}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        for s, e in sorted(failed.items())
    )
    where = f" of the sharded index at {path!r}" if path else ""
    msg = f"{what} failed: shard(s) {shards}{where} did not answer ({reasons})"
    if hint:
        msg += f". {hint[0].upper()}{hint[1:]}"
    return ShardUnavailableError(msg, shards)
