"""One router per resource; ``ROUTERS`` is what ``create_app`` includes, in this order."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import anomalies, detect, health, ingest, models, predict, reports, sensors

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    ingest.router,
    predict.router,
    detect.router,
    sensors.router,
    anomalies.router,
    reports.router,
    models.router,
)
