"""The HTTP side of the server: the routes, ``/health``, ``/stats`` and the API docs served from local files
(``app.py`` mounts the UI beside them and puts the door in front of everything)."""

from __future__ import annotations

import time
from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api import galleries as galleries_api
from api import keypoints as keypoints_api
from api import routes as api_routes
from api import verify as verify_api
from api.door import ScopeTable
from api.security import BodySizeLimit
from schemas.monitor import HealthJSON, StatsJSON
from service import faces as service
from service.access import OPEN
from service.monitor import monitor_snapshot
from service.validation import check_source
from settings import get_settings

VERSION = "0.1.0"
ROUTE_SCOPES = ScopeTable({  # finds the scope of a templated path (/galleries/{name}) too, per method where it differs
    "/health": OPEN,
    "/stats": "monitor",
    # The API's description and its model list run nothing and read no data: integrators and load balancers
    # read them without a key.
    "/docs": OPEN,
    "/openapi.json": OPEN,
    **api_routes.ROUTE_SCOPES,
    **keypoints_api.ROUTE_SCOPES,
    **verify_api.ROUTE_SCOPES,
    **galleries_api.ROUTE_SCOPES,
})
MODEL_CHOSEN_BY_CALLER = set(api_routes.MODEL_CHOSEN_BY_CALLER) | verify_api.MODEL_CHOSEN_BY_CALLER


def create_api() -> FastAPI:
    """FastAPI server: the routes, ``/health`` and ``/stats``, and ``/docs`` with no outside request."""
    started = time.time()
    api = FastAPI(
        title="face-recognition-ood",
        version=VERSION,
        description="Face features with an OOD quality score. See the README.",
        docs_url=None,
        redoc_url=None,
    )
    api.mount("/docs-assets", StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="face-recognition-ood · API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would otherwise ask validator.swagger.io
        )

    @api.get("/health", response_model=HealthJSON)
    async def health() -> JSONResponse:
        """Open (load balancers need it), and it says nothing secret: whether the models are loaded, the uptime, and how
        many images each model's queue holds. ``async`` and lock-free: it runs in the event loop, never behind busy
        worker threads, a lock the inference worker holds, or a model call."""
        snapshot = service.health_snapshot()
        if snapshot is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {"status": "ok", **snapshot, "version": VERSION, "uptime_s": round(time.time() - started, 1), "queue": service.queue_depths()}
        )

    api_routes.install(api)
    keypoints_api.install(api)
    verify_api.install(api)
    galleries_api.install(api)
    api.add_middleware(BodySizeLimit, limit=get_settings().max_request_bytes)

    @api.get("/stats", response_model=StatsJSON)
    def stats(source: str | None = None, window: str = "today") -> JSONResponse:
        """The Monitor's numbers for ``window`` (today, 24h, 7d; UTC), of one ``source`` or all, with every source's row."""
        return JSONResponse(monitor_snapshot(check_source(source), window))

    return api
