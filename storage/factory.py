"""Chooses the backends from the settings: SQLite/FAISS files on one machine, shared servers for many replicas."""

from __future__ import annotations

import logging
from typing import Any

from settings import Settings, get_settings
from storage.postgres import redact

log = logging.getLogger("frood.storage")


def open_store(settings: Settings | None = None) -> Any:
    """The stats ``Store``: PostgreSQL when ``DATABASE_URL`` is set, else SQLite under ``DATA_DIR``."""
    settings = settings or get_settings()
    options = {
        "store_thumbnails": settings.store_thumbnails,
        "events_retention_days": settings.events_retention_days,
        "thumbnails_retention_days": settings.thumbnails_retention_days,
    }
    if settings.database_url:
        from dashboard.store_postgres import PostgresStore

        log.info("Stats store: PostgreSQL at %s", redact(settings.database_url))
        return PostgresStore(settings.database_url, settings.thumbnails_dir, pool_size=settings.database_pool_size, **options)
    from dashboard.store import SQLiteStore

    return SQLiteStore(settings.stats_db_path, settings.thumbnails_dir, **options)


def open_outbox(settings: Settings | None = None) -> Any:
    """The reject-webhook outbox: in PostgreSQL when ``DATABASE_URL`` is set (shared by replicas), else SQLite."""
    settings = settings or get_settings()
    options = {"timeout_s": settings.webhook_timeout_s, "max_attempts": settings.webhook_max_attempts}
    keep_days = getattr(settings, "webhook_keep_delivered_days", None)  # the outbox-retention setting, where present
    if settings.database_url:
        from notify.outbox_postgres import PostgresOutbox

        extra = {} if keep_days is None else {"keep_delivered_days": keep_days}
        return PostgresOutbox(settings.database_url, settings.webhook_url, settings.webhook_secret, **options, **extra)
    from notify.webhook import WebhookOutbox

    return WebhookOutbox(settings.outbox_db_path, settings.webhook_url, settings.webhook_secret, **options)
