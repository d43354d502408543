"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..auth import PresentedKey, Scope, authorize
from ..deps import MetricsDep, SettingsDep, StoreDep
from ..schemas import Health
from ._responses import errors

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "not ready"}},
    summary="Readiness: collections are open and the data directory is writable",
)
def readyz(request: Request, store: StoreDep, settings: SettingsDep):
    ready = getattr(request.app.state, "ready", False) and os.access(settings.data, os.W_OK)
    if not ready:
        return JSONResponse({"status": "starting"}, status_code=503)
    return Health(status="ready", collections=len(store.names()))


@router.get(
    "/metrics",
    summary="Prometheus metrics (read scope unless VQDB_METRICS_PUBLIC)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(401, 403)},
)
def metrics(request: Request, metrics: MetricsDep, settings: SettingsDep, key: PresentedKey) -> Response:
    if not settings.metrics_public:
        authorize(request, key, Scope.read)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
