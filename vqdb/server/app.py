"""The app factory: ``create_app(settings) -> FastAPI``.

Collections open in the lifespan (and the demo collection is built there on a first start);
they are saved and closed on shutdown. Middleware, outermost first: metrics, the last-resort error guard,
the key check (before any body is read), body limit. Searches (``POST /collections/{name}/search``)
take a lane ahead of all of it (:func:`vqdb.server.routes.search.serve_search`), which does the same
checks itself.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI

from .. import __version__
from . import errors
from .auth import AuthMiddleware, KeyRing, check_bind
from .collections import CollectionStore, UnpackLimits
from .limits import BodyLimitMiddleware
from .metrics import Metrics, MetricsMiddleware
from .readers import ReaderPool
from .routes import CORE, OPTIONAL
from .routes.search import search_target, serve_search
from .settings import Settings
from .snapshots import SnapshotStore

log = logging.getLogger("vqdb.server")

MARKER = ".vqdb-server"
# bodies on these path suffixes may be as large as settings.max_bulk_bytes
BULK_SUFFIXES = ("/points/arrow", "/points/b64", "/snapshots/upload")

DESCRIPTION = """\
Vector search over vqdb indexes (TurboQuant / QJL / PolarQuant codes).

Keys go in `Authorization: Bearer <key>` (or an `api-key` header). Scopes: **read** (list,
describe, get, search), **write** (+ upsert, delete points, compact), **admin** (+ create /
delete collections, snapshots). With no key configured the server only serves loopback clients.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service app. Raises ``InvalidInputError`` for an unsafe configuration."""
    settings = settings or Settings()
    keyring = KeyRing.from_settings(settings)
    check_bind(settings, keyring)
    store = CollectionStore(
        settings.collections_dir,
        unpack_limits=UnpackLimits(
            ratio=settings.max_inflate_ratio,
            floor=settings.max_body_bytes,
            cap=settings.max_snapshot_bytes,
            max_members=settings.max_snapshot_members,
        ),
        max_open=settings.max_open_collections,
    )
    snapshots = SnapshotStore(settings.snapshots_dir, store)
    metrics = Metrics(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await anyio.to_thread.run_sync(_open, settings, store)
        if settings.readers:
            app.state.readers = ReaderPool(settings.readers, settings.collections_dir, settings)
            await app.state.readers.start()
        if keyring.enabled:
            log.info("authentication on (%d key(s))", len(keyring._keys))
        else:
            log.warning(
                "no API key configured: authentication is OFF and only loopback clients are served "
                "(set VQDB_API_KEY or --api-key to serve other hosts)"
            )
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            try:
                if app.state.readers is not None:
                    await app.state.readers.close()
                await anyio.to_thread.run_sync(store.close)
            finally:
                if settings.ray_address:  # stops the processes of a cluster started here ('local')
                    from ..distributed import service

                    await anyio.to_thread.run_sync(service.shutdown)

    app = ServiceApp(title="vqdb", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.keyring = keyring
    app.state.store = store
    app.state.snapshots = snapshots
    app.state.metrics = metrics
    app.state.ready = False
    app.state.readers = None
    app.state.limit_for = _limits(settings)
    errors.install(app)
    errors.add_scrubbed_root(settings.data, "<data>")
    for router in load_routers():
        app.include_router(router)
    if not keyring.enabled:
        _document_open_access(app)
    app.add_middleware(BodyLimitMiddleware, limit_for=app.state.limit_for)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(errors.GuardMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


class ServiceApp(FastAPI):
    """The FastAPI app, with searches served ahead of its middleware stack and router."""

    async def __call__(self, scope, receive, send):
        name = search_target(scope)
        if name is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await serve_search(scope, receive, send, name)


def load_routers(core=CORE, optional=OPTIONAL) -> list:
    """The ``router`` (or ``routers``) of each module in ``routes.CORE`` and of each importable optional one."""
    out = []
    for name in [*core, *optional]:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if name in core:
                raise
            log.warning("optional router %s not mounted: %s", name, exc)
            continue
        out.extend(getattr(module, "routers", None) or [module.router])
    return out


def _document_open_access(app: FastAPI) -> None:
    """With no key configured, the OpenAPI schema must not claim that operations need one."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation.pop("security", None)
            schema.get("components", {}).pop("securitySchemes", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _limits(settings: Settings):
    def limit_for(path: str) -> int:
        bulk = path.endswith(BULK_SUFFIXES) or (path.startswith("/qdrant/") and path.endswith("/points"))
        return (
            settings.max_bulk_bytes if bulk else settings.max_body_bytes
        )  # Qdrant clients upsert in one call

    return limit_for


def _open(settings: Settings, store: CollectionStore) -> None:
    data = Path(settings.data)
    first_start = not (data / MARKER).exists()
    data.mkdir(parents=True, exist_ok=True)
    if settings.ray_address:  # collections with shards > 1 live on this Ray cluster
        from ..distributed import service

        service.configure(settings.ray_address)
        log.info("distributed engine: Ray at %s", settings.ray_address)
    names = store.load()
    shown = names if len(names) <= 20 else [*names[:20], "..."]
    log.info("data directory %s: %d collection(s) %s", data.resolve(), len(names), shown)
    if first_start and not names and settings.demo:
        from .demo import create_demo

        create_demo(store)
    (data / MARKER).write_text("vqdb server data directory\n", encoding="utf-8")
