"""Lazy access to Ray, an optional extra (``pip install vqdb[ray]``). ``import vqdb`` never imports it."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

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
    ``None`` joins the cluster ``ray.init()`` would find (``RAY_ADDRESS``, then the last ``ray start`` of
    this machine) and otherwise starts a private one bound to loopback, as ``"local"`` does
    (:func:`start_local`): a plain ``ray.init()`` would start one listening on every interface.
    An existing connection is kept as is. Returns True if this call connected.
    """
    if address == "local" or (address is None and _no_cluster_to_join()):
        return start_local()
    r = ray()
    if r.is_initialized():
        return False
    r.init(address=address, include_dashboard=False, log_to_driver=False)
    return True


def _no_cluster_to_join() -> bool:
    """True when ``ray.init(address=None)`` would start a new local cluster rather than join one.

    Asks Ray's own lookup (``ray._private.services``, private: if a Ray version moves it, the answer is
    False and ``ray.init()`` decides as before)."""
    r = ray()
    if r.is_initialized():
        return False
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # pragma: no cover - a Ray that moved its lookup
        return False
    try:
        return canonicalize_bootstrap_address(None) is None
    except Exception:  # noqa: BLE001 - an unreadable address file: let ray.init() report it
        return False


# Ray's single-machine mode, the one it runs on macOS and Windows: the node address is 127.0.0.1 and
# then its GCS, raylet, workers, agents and autoscaler monitor bind 127.0.0.1 (on Linux Ray replaces a
# 127.0.0.1 node address by the machine's reachable one, and its gRPC servers bind every interface).
# Ray reads this variable once, when ``ray._private.ray_constants`` is imported; its child processes
# inherit it from the environment. Measured with Ray 2.60: every port of the cluster on loopback.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _single_machine_mode():
    """Within the block, a Ray cluster started by this process binds loopback only (see above)."""
    constants = sys.modules.get("ray._private.ray_constants")  # imported already: its value is fixed
    saved_env = os.environ.get(SINGLE_MACHINE_ENV)
    saved = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[SINGLE_MACHINE_ENV] = "0"
    if saved is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved_env
        constants = sys.modules.get("ray._private.ray_constants")
        if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
            # what Ray would have read without this block (a later ray.init may join a real cluster)
            multi = sys.platform not in ("darwin", "win32")
            if saved_env is not None:
                multi = saved_env.strip().lower() in ("1", "true", "yes", "on")
            constants.ENABLE_RAY_CLUSTER = saved if saved is not None else multi


def start_local() -> bool:
    """Start a private Ray cluster on this machine, bound to loopback, with no dashboard, even when
    ``RAY_ADDRESS`` names another. Returns True if this call started it (False: this process was
    connected already, and nothing is changed).

    Every process of the cluster (GCS, raylet, workers, agents) listens on 127.0.0.1 only; the ports
    are checked once it is up, and any that another host could reach is named in a warning (a Ray
    version that no longer honours the single-machine mode). Ray's token authentication (on by default
    since Ray 2.50) still guards them against other local users; turning it off is warned about."""
    log = logging.getLogger("vqdb.distributed")
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        log.warning("RAY_AUTH_MODE=disabled: any local user can connect to the private Ray cluster")
    before = _own_listeners()
    with _single_machine_mode():
        r = ray()
        if r.is_initialized():
            return False
        r.init(address="local", include_dashboard=False, log_to_driver=False)
    _warn_if_reachable(before, log)
    return True


def _own_listeners() -> set:
    """The sockets this process listens on before Ray starts (its own, e.g. the REST server's)."""
    try:
        from ._ports import listeners, process_tree

        return set(listeners(process_tree()[:1]))
    except ImportError:  # no psutil: the check after start is skipped too
        return set()


def _warn_if_reachable(before: set, log: logging.Logger) -> None:
    try:
        from ._ports import exposed, listeners, process_tree
    except ImportError:  # pragma: no cover - psutil ships with vqdb[ray]
        log.info("psutil is not installed: the ports of the local Ray cluster were not checked")
        return
    reachable = exposed([x for x in listeners(process_tree()) if x not in before])
    if reachable:
        log.warning(
            "the local Ray cluster listens on addresses other hosts can reach: %s",
            ", ".join(f"{x.process} {x.ip}:{x.port}/{x.kind}" for x in reachable),
        )


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
