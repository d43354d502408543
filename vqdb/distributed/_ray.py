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


def ensure_connected(address: str | None = None) -> bool:
    """Connect to Ray if this process is not connected yet.

    ``address`` is passed to ``ray.init`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
    ``None`` joins a cluster named by ``RAY_ADDRESS`` or starts a local one, as ``ray.init()`` does.
    An existing connection is kept as is. Returns True if this call connected.
    """
    r = ray()
    if r.is_initialized():
        return False
    r.init(address=address, include_dashboard=False, log_to_driver=False)
    return True


def start_local() -> bool:
    """Start a private Ray cluster on this machine (no dashboard), even when ``RAY_ADDRESS`` names
    another. Returns True if this call started it (False: this process was connected already).

    Ray >= 2.x cannot be confined to loopback: its GCS and raylet listen on every interface and Ray
    replaces a 127.0.0.1 node address by the machine's reachable one. What guards those ports is Ray's
    token authentication, on by default since Ray 2.50: a warning is logged when it is turned off."""
    import logging
    import os

    r = ray()
    if r.is_initialized():
        return False
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        logging.getLogger("vqdb.distributed").warning(
            "RAY_AUTH_MODE=disabled: the local Ray cluster's ports (all interfaces) accept any client"
        )
    r.init(address="local", include_dashboard=False, log_to_driver=False)
    return True


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
