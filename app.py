"""Entry point (``python app.py``, ``make run``, supervisord): settings -> services -> API + UI -> serve on port 7860."""

from __future__ import annotations

import logging
import threading

import gradio as gr
import uvicorn
from fastapi import FastAPI

from api.app import create_api
from logs import configure_logging
from service import faces as service
from service.lifecycle import start_store_and_webhook
from settings import get_settings
from ui.app import build_ui
from ui.i18n import I18N

log = logging.getLogger("frood.app")


def create_app() -> FastAPI:
    """The HTTP API with the Gradio UI mounted at ``/``: one port for both."""
    api = create_api()
    demo = build_ui()
    demo.queue(default_concurrency_limit=2)
    return gr.mount_gradio_app(api, demo, path="/", i18n=I18N, show_error=False)


def main() -> None:
    configure_logging()
    settings = get_settings()
    start_store_and_webhook()
    app = create_app()
    threading.Thread(target=service.get_pipeline, name="model-loader", daemon=True).start()
    log.info("Serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
