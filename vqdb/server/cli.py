"""``vqdb serve``: run the REST service with uvicorn.

Flags override ``VQDB_*`` environment variables, which override the defaults
(``./vqdb-data``, ``127.0.0.1:8000``, no key => loopback only).
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data directory (default: $VQDB_DATA or ./vqdb-data)")
    parser.add_argument("--host", help="bind address (default: $VQDB_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $VQDB_PORT or 8000)")
    parser.add_argument("--api-key", help="admin API key (default: $VQDB_API_KEY); turns authentication on")
    parser.add_argument("--keys-file", help="file of '<scope> <key>' lines, scope read|write|admin")
    parser.add_argument(
        "--no-demo", action="store_true", help="do not create the demo collection on first start"
    )
    parser.add_argument(
        "--ray-address",
        help="Ray cluster address, or 'local' (collections with shards > 1 become sharded indexes on it)",
    )
    parser.add_argument(
        "--readers",
        type=int,
        help="search reader processes (default: $VQDB_READERS or 0; see vqdb.server.readers)",
    )
    parser.add_argument("--log-level", help="uvicorn / vqdb log level (default: info)")


def settings_from_args(args: argparse.Namespace):
    from .settings import Settings

    overrides = {
        "data": args.data,
        "host": args.host,
        "port": args.port,
        "api_key": args.api_key,
        "keys_file": args.keys_file,
        "ray_address": args.ray_address,
        "readers": getattr(args, "readers", None),
        "log_level": args.log_level,
    }
    if getattr(args, "no_demo", False):
        overrides["demo"] = False
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from ..errors import VqdbError
    from .app import create_app
    from .connections import protocol_class
    from .logs import RateLimitFilter, rate_limit_handlers

    try:
        settings = settings_from_args(args)
        app = create_app(settings)
    except ValidationError as exc:
        print(f"vqdb serve: invalid setting: {exc}", file=sys.stderr)
        return 2
    except VqdbError as exc:
        print(f"vqdb serve: {exc}", file=sys.stderr)
        return 2
    limit_blas(settings.blas_threads)
    from ..kernels.warmup import warmup

    warmup()  # every kernel loaded (or compiled) before the first request, not during it
    level = settings.log_level.lower()
    logging.basicConfig(level=level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    guards = connection_guards(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=level,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive_timeout,
        http=protocol_class(guards, settings.http),
        loop=settings.loop,
        backlog=guards.backlog,
    )
    app.state.metrics.connections.stats = guards.stats
    rate_limit_handlers(RateLimitFilter())  # after uvicorn.Config: it installs its own handlers
    print(
        f"vqdb serve: data {settings.data.resolve()}  ->  http://{_url_host(settings.host)}:{settings.port}"
        f"  (docs at /docs; at most {guards.max_connections} connections)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.Server(config).run()
    return 0


def connection_guards(settings):
    """The connection deadlines and cap of ``settings`` (:mod:`vqdb.server.connections`)."""
    from .connections import ConnectionGuards, accept_backlog, default_max_connections

    backlog = accept_backlog()
    cap = settings.max_connections or default_max_connections(settings.max_open_collections, backlog)
    return ConnectionGuards(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        body_min_rate=settings.body_min_rate,
        max_connections=cap,
        backlog=backlog,
    )


def limit_blas(threads: int) -> None:
    """Requests run in parallel threads; multi-threaded BLAS inside each one oversubscribes the cores
    (a 384 x 384 QR goes from 0.03 s to seconds on a busy machine)."""
    if threads <= 0:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
