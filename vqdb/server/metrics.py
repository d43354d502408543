"""Prometheus metrics: request counts and latencies per route, vectors and bytes per collection.

Each app owns its own :class:`prometheus_client.CollectorRegistry` (several apps may live in one
process, e.g. in tests). Route labels are path templates (``/collections/{name}/search``), never
raw paths, so label cardinality stays bounded.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class CollectionsCollector:
    """Reads vectors / bytes of every open collection at scrape time."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        vectors = GaugeMetricFamily(
            "vqdb_collection_vectors", "live vectors per collection", labels=["collection"]
        )
        nbytes = GaugeMetricFamily(
            "vqdb_collection_bytes", "bytes held by a collection's index", labels=["collection"]
        )
        count = GaugeMetricFamily("vqdb_collections", "open collections")
        total = 0
        for collection in self.store.all():
            try:
                known = collection.known_size()  # never opens a closed index
            except Exception:  # a collection being deleted right now: skip it this scrape
                continue
            if known is None:
                continue
            n, b = known
            vectors.add_metric([collection.name], n)
            nbytes.add_metric([collection.name], b)
            total += 1
        count.add_metric([], total)
        yield from (vectors, nbytes, count)


class ConnectionsCollector:
    """Open connections and what the connection guards cut (``vqdb serve`` only: set ``stats``)."""

    def __init__(self):
        self.stats = None

    def collect(self):
        if self.stats is None:
            return
        yield GaugeMetricFamily("vqdb_connections_open", "open client connections", value=self.stats.open)
        cut = CounterMetricFamily(
            "vqdb_connections_closed", "connections closed by the server's guards", labels=["reason"]
        )
        for reason in ("head_timeouts", "body_timeouts", "reaped_idle", "refused_busy"):
            cut.add_metric([reason], getattr(self.stats, reason))
        yield cut


class Metrics:
    """The metrics of one app."""

    def __init__(self, store=None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vqdb_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "vqdb_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.vectors_ingested = Counter("vqdb_vectors_ingested", "vectors upserted", registry=self.registry)
        self.queries = Counter("vqdb_queries", "query vectors searched", registry=self.registry)
        self.reader_searches = Counter(
            "vqdb_reader_searches", "search requests answered by a reader process", registry=self.registry
        )
        if store is not None:
            self.registry.register(CollectionsCollector(store))
        self.connections = ConnectionsCollector()
        self.registry.register(self.connections)
        self._children: dict[tuple, tuple] = {}  # (method, route, status) -> (latency, count) children

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency (the labelled children are looked up once per label set)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.latency.labels(method, route), self.requests.labels(method, route, str(status)))
            self._children[key] = children
        children[0].observe(seconds)
        children[1].inc()


class MetricsMiddleware:
    """Counts and times every HTTP request (including 413s answered by inner middleware)."""

    def __init__(self, app, *, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            label = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope.get("method", ""), label, status["code"], time.perf_counter() - start)
