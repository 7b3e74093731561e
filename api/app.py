"""The HTTP side of the server: the routes, ``/health`` and ``/stats`` (``app.py`` mounts the UI beside them)."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api import keypoints as keypoints_api
from api import routes as api_routes
from api.security import BodySizeLimit
from service import faces as service
from service.monitor import monitor_snapshot
from service.validation import check_source
from settings import get_settings

VERSION = "0.1.0"


def create_api() -> FastAPI:
    """FastAPI server: the routes, ``/health`` and ``/stats``."""
    started = time.time()
    api = FastAPI(title="face-recognition-ood", version=VERSION, description="Face features with an OOD quality score. See the README.")

    @api.get("/health")
    def health() -> JSONResponse:
        if not service.is_ready():
            return JSONResponse({"status": "loading"}, status_code=503)
        pipeline = service.get_pipeline()
        return JSONResponse(
            {"status": "ok", "model": pipeline.model, "device": pipeline.device, "version": VERSION, "uptime_s": round(time.time() - started, 1)}
        )

    api_routes.install(api)
    keypoints_api.install(api)
    api.add_middleware(BodySizeLimit, limit=get_settings().max_request_bytes)

    @api.get("/stats")
    def stats(source: str | None = None) -> JSONResponse:
        return JSONResponse(monitor_snapshot(check_source(source)))
    return api
