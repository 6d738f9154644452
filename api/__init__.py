"""The HTTP API: forecasts, on-demand anomaly checks, reports and HTTP ingest (FastAPI).

``create_app(settings)`` builds the application; ``python -m api`` or ``sensorpipe api`` serves it.
"""

from __future__ import annotations

from api.app import create_app
from api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
