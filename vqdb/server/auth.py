"""API keys with three nested scopes: ``read`` ⊂ ``write`` ⊂ ``admin``.

Keys come from ``VQDB_API_KEY`` (an admin key) and/or a keys file of ``<scope> <key>`` lines
(``#`` starts a comment). A request presents its key as ``Authorization: Bearer <key>`` or as an
``api-key: <key>`` header. No key or an unknown key -> 401; a known key whose scope is too small
-> 403. With no key configured authentication is off and only loopback clients are served (the
server also refuses to bind a non-loopback address in that case: see :func:`check_bind`).
"""

from __future__ import annotations

import enum
import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..errors import AuthenticationError, InvalidInputError, PermissionDeniedError
from .settings import Settings, is_loopback


class Scope(enum.IntEnum):
    """Ordered scopes: a key may do everything its scope and the smaller ones allow."""

    read = 1
    write = 2
    admin = 3


class KeyRing:
    """The configured keys. Thread-safe (read-only after construction)."""

    def __init__(self, keys: dict[str, Scope]):
        self._keys = dict(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys: dict[str, Scope] = {}
        if settings.keys_file is not None:
            keys.update(read_keys_file(settings.keys_file))
        if settings.api_key is not None:
            secret = settings.api_key.get_secret_value().strip()
            if not secret:
                raise InvalidInputError("VQDB_API_KEY is set but empty")
            keys[secret] = Scope.admin
        return cls(keys)

    def scope_of(self, key: str) -> Scope | None:
        """Constant-time lookup of a presented key (compares against every configured key)."""
        found = None
        given = key.encode()
        for known, scope in self._keys.items():
            if hmac.compare_digest(known.encode(), given):
                found = scope
        return found


def read_keys_file(path: Path) -> dict[str, Scope]:
    """Parse ``<scope> <key>`` lines; raise :class:`InvalidInputError` naming the bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read keys file {str(path)!r}: {exc.strerror}") from None
    keys: dict[str, Scope] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in Scope.__members__:
            raise InvalidInputError(
                f"keys file {str(path)!r} line {lineno}: expected '<scope> <key>' with scope one of "
                f"{list(Scope.__members__)}"
            )
        keys[parts[1]] = Scope[parts[0]]
    if not keys:
        raise InvalidInputError(f"keys file {str(path)!r} holds no key")
    return keys


def check_bind(settings: Settings, keyring: KeyRing) -> None:
    """Refuse a non-loopback bind address when no key is configured."""
    if not keyring.enabled and not is_loopback(settings.host):
        raise InvalidInputError(
            f"refusing to listen on {settings.host!r} without an API key: set VQDB_API_KEY (or --api-key / "
            "--keys-file), or bind a loopback address such as 127.0.0.1"
        )


_bearer = HTTPBearer(auto_error=False, description="API key as `Authorization: Bearer <key>`")
_api_key_header = APIKeyHeader(name="api-key", auto_error=False, description="API key as `api-key: <key>`")


async def presented_key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> str | None:
    """The key a request presents (``Authorization: Bearer`` first, then ``api-key``), or None."""
    return bearer.credentials if bearer is not None else header_key


PresentedKey = Annotated[str | None, Depends(presented_key)]


def authorize(request: Request, key: str | None, scope: Scope) -> None:
    """Raise 401/403 unless ``key`` allows ``scope`` (or auth is off and the client is on loopback)."""
    check_access(request.app.state.keyring, request.client.host if request.client else "", key, scope)


def check_access(keyring: KeyRing, host: str, key: str | None, scope: Scope) -> None:
    """Raise 401/403 unless ``key`` allows ``scope`` (with no keys configured: unless ``host`` is loopback)."""
    if not keyring.enabled:
        if not is_loopback(host):
            raise PermissionDeniedError("no API key is configured: this server serves loopback clients only")
        return
    if not key:
        raise AuthenticationError(
            "missing API key: send 'Authorization: Bearer <key>' or an 'api-key' header"
        )
    have = keyring.scope_of(key)
    if have is None:
        raise AuthenticationError("invalid API key")
    if have < scope:
        raise PermissionDeniedError(f"this key has scope '{have.name}'; this operation needs '{scope.name}'")


def require(scope: Scope):
    """A FastAPI dependency that lets a request through only with a key of at least ``scope``."""

    async def check(request: Request, key: PresentedKey) -> None:  # async: no worker-thread hop
        authorize(request, key, scope)

    check.__name__ = f"require_{scope.name}"
    check.vqdb_scope = scope  # read by AuthMiddleware
    return check


ReadAccess = Depends(require(Scope.read))
WriteAccess = Depends(require(Scope.write))
AdminAccess = Depends(require(Scope.admin))


# ---- the key is checked before the body is read ----------------------------------------------------


def key_of_headers(headers) -> str | None:
    """The key in raw ASGI ``headers``, as :func:`presented_key` reads it (Bearer first, then api-key)."""
    bearer = api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                bearer = credentials.strip()
        elif name == b"api-key":
            api_key = value.decode("latin-1")
    return bearer if bearer is not None else api_key


class AuthMiddleware:
    """Check a request's key against its route's scope before the body is read.

    FastAPI reads and parses a JSON body before it runs the route's dependencies, so a request with no
    key and a malformed (or huge) body got a 422 (or was read whole) before its 401. This middleware
    wraps ``receive``: on the app's first read of the body the router has matched the route
    (``scope["route"]``), whose ``require(...)`` dependency declares the scope; a key that does not
    allow it gets its 401/403 at once, with ``connection: close``, and the app sees a disconnect (its
    own answer is dropped). Requests without a body keep the route dependency's check, as do routes of
    another route class (e.g. the Qdrant-compatible subset, which answers in its own error shape).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"checked": False, "refused": False}

        async def checked_receive():
            if state["refused"]:
                return {"type": "http.disconnect"}
            if not state["checked"]:
                state["checked"] = True
                refusal = _refusal(scope)
                if refusal is not None:
                    state["refused"] = True
                    for message in refusal:
                        await send(message)
                    return {"type": "http.disconnect"}
            return await receive()

        async def guarded_send(message):
            if not state["refused"]:
                await send(message)

        await self.app(scope, checked_receive, guarded_send)


def _refusal(scope) -> list[dict] | None:
    """The 401/403 response messages for this request, or None if its key allows its route."""
    from fastapi.routing import APIRoute

    route = scope.get("route")
    if type(route) is not APIRoute:
        return None
    needed = [getattr(d.call, "vqdb_scope", None) for d in route.dependant.dependencies]
    needed = [n for n in needed if n is not None]
    return refusal(scope, max(needed)) if needed else None


def refusal(scope, needed: Scope) -> list[dict] | None:
    """The 401/403 response messages (``connection: close``) for a request whose key does not allow
    ``needed``, or None when it does."""
    client = scope.get("client") or ("", 0)
    try:
        check_access(scope["app"].state.keyring, client[0], key_of_headers(scope["headers"]), needed)
    except (AuthenticationError, PermissionDeniedError) as exc:
        from .errors import error_bytes

        status = 401 if isinstance(exc, AuthenticationError) else 403
        body = error_bytes(status, type(exc).__name__, str(exc))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        return [
            {"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body},
        ]
    return None
