"""Entry point (``python app.py``, ``make run``, supervisord): settings -> services -> API + UI -> serve on port 7860."""

from __future__ import annotations

import logging
import threading

import gradio as gr
import uvicorn
from fastapi import FastAPI

from api.app import MODEL_CHOSEN_BY_CALLER, ROUTE_SCOPES, create_api
from api.door import AccessDoor
from logs import configure_logging
from service import faces as service
from service.access import door
from service.lifecycle import start_store_and_webhook
from settings import get_settings
from ui.app import build_ui
from ui.i18n import I18N
from ui.login import install_login
from ui.page import CSS, PAGE_JS

log = logging.getLogger("frood.app")


def create_app() -> FastAPI:
    """The HTTP API with the Gradio UI mounted at ``/`` (one port for both), behind one door."""
    api = create_api()
    install_login(api)  # before the mount: the UI at "/" would shadow routes added after it
    demo = build_ui()
    demo.queue(default_concurrency_limit=2)
    # No run history (it can connect to a Hugging Face bucket), no MCP server, no server-side rendering: nothing
    # of the UI talks to the outside or runs beside the app.
    app = gr.mount_gradio_app(
        api, demo, path="/", i18n=I18N, css=CSS, js=PAGE_JS, show_error=False, run_history=False, mcp_server=False, ssr_mode=False
    )
    app.add_middleware(AccessDoor, door=door(), route_scopes=ROUTE_SCOPES, functions=lambda: demo.fns, model_chosen_by_caller=MODEL_CHOSEN_BY_CALLER)
    return app


def main() -> None:
    configure_logging()
    settings = get_settings()
    if door().open:
        log.warning("API_KEYS is not set: the API and the UI are open to anyone who can reach port %d", settings.port)
    start_store_and_webhook()
    app = create_app()
    threading.Thread(target=service.get_pipeline, name="model-loader", daemon=True).start()
    log.info("Serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
