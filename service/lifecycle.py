"""Start-up of the server's state: the stats store (with background pruning) and the reject webhook worker."""

from __future__ import annotations

from service import faces as service
from service.backends import open_outbox, open_store
from settings import get_settings


def start_store_and_webhook() -> None:
    """The stats store (with background pruning) and the reject webhook worker."""
    settings = get_settings()
    store = open_store(settings)  # SQLite files, or PostgreSQL shared by replicas (DATABASE_URL)
    store.start_pruning(settings.prune_interval_s)
    outbox = open_outbox(settings)
    outbox.start()
    service.attach(store, outbox)
