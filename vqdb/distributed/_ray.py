"""Lazy access to Ray, an optional extra (``pip install vqdb[ray]``). ``import vqdb`` never imports it."""

from __future__ import annotations

from ..errors import BackendUnavailableError


def ray():
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray as _ray
    except ImportError as exc:  # pragma: no cover - ray is installed in dev
        raise BackendUnavailableError("vqdb.distributed needs Ray: pip install 'vqdb[ray]'") from exc
    return _ray


def ensure_connected(address: str | None = None) -> None:
    """Connect to Ray if this process is not connected yet.

    ``address`` is passed to ``ray.init`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
    ``None`` joins a cluster named by ``RAY_ADDRESS`` or starts a local one, as ``ray.init()`` does.
    An existing connection is kept as is.
    """
    r = ray()
    if not r.is_initialized():
        r.init(address=address, include_dashboard=False, log_to_driver=False)


def dead_actor_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the actor is gone or unreachable" (as opposed to an error it raised)."""
    exc = ray().exceptions
    return tuple(
        t
        for t in (getattr(exc, "RayActorError", None), getattr(exc, "ActorUnavailableError", None))
        if t is not None
    )


def is_stale_handle_error(exc: BaseException) -> bool:
    """True for the error Ray raises when a call is submitted to an actor it no longer knows, e.g. one
    created before ``ray.shutdown()`` / ``ray.init()`` (a plain ``Exception`` in Ray 2.x)."""
    return type(exc) is Exception and "Failed to submit task to actor" in str(exc)
