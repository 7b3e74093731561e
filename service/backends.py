"""Chooses the backends from the settings: SQLite/FAISS files on one machine, shared servers for many replicas."""

from __future__ import annotations

import logging
from pathlib import Path
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
        from storage.stats_postgres import PostgresStore

        log.info("Stats store: PostgreSQL at %s", redact(settings.database_url))
        return PostgresStore(settings.database_url, settings.thumbnails_dir, pool_size=settings.database_pool_size, **options)
    from storage.stats_sqlite import SQLiteStore

    return SQLiteStore(settings.stats_db_path, settings.thumbnails_dir, **options)


def open_outbox(settings: Settings | None = None, manage_only: bool = False) -> Any:
    """The reject-webhook outbox: in PostgreSQL when ``DATABASE_URL`` is set (shared by replicas), else SQLite.

    ``manage_only``: for operator commands (``frood webhook``), usable without a webhook URL.
    """
    from service.webhook import WebhookDelivery, WebhookOutbox

    settings = settings or get_settings()
    options: dict[str, Any] = {"timeout_s": settings.webhook_timeout_s, "max_attempts": settings.webhook_max_attempts}
    if not settings.database_url:
        return WebhookOutbox(settings.outbox_db_path, settings.webhook_url, settings.webhook_secret, manage_only=manage_only, **options)
    from storage.outbox_postgres import PostgresOutboxStore

    store = PostgresOutboxStore(settings.database_url) if settings.webhook_url or manage_only else None
    return WebhookDelivery(store, settings.webhook_url, settings.webhook_secret, **options)


def milvus_uri(settings: Settings | None = None) -> str:
    """Where Milvus galleries live: ``MILVUS_URI`` (a server or cluster), else an embedded Milvus Lite file."""
    settings = settings or get_settings()
    return settings.milvus_uri or str(settings.milvus_lite_path)


def create_gallery(dim: int, model_name: str, index_type: str = "Flat", metric: str = "IP", settings: Settings | None = None) -> Any:
    """An empty gallery of the configured backend (``GALLERY_BACKEND``: ``faiss`` files or ``milvus``)."""
    settings = settings or get_settings()
    if settings.gallery_backend == "milvus":
        from storage.gallery_milvus import MilvusGallery

        return MilvusGallery.create(dim, model_name, index_type, metric, uri=milvus_uri(settings), token=settings.milvus_token)
    from storage.gallery_faiss import GalleryIndex

    return GalleryIndex.create(dim, model_name, index_type, metric)


def load_gallery(directory: Path, expected_model: str | None = None, expected_dim: int | None = None, settings: Settings | None = None) -> Any:
    """The gallery saved in ``directory``, whichever backend wrote it (its ``index_info.yaml`` says which).

    A Milvus gallery's directory holds only that pointer file; the collection is opened at ``MILVUS_URI``
    when set (so a moved or clustered deployment finds it), else at the URI recorded when it was saved.
    """
    from storage.gallery_faiss import INFO_FILE, GalleryIndex

    settings = settings or get_settings()
    info_path = Path(directory) / INFO_FILE
    if info_path.is_file() and _backend_of(info_path) == "milvus":
        from storage.gallery_milvus import MilvusGallery

        return MilvusGallery.load(directory, expected_model, expected_dim, uri=settings.milvus_uri or None, token=settings.milvus_token)
    return GalleryIndex.load(directory, expected_model=expected_model, expected_dim=expected_dim)


def _backend_of(info_path: Path) -> str:
    """The ``backend`` line of an info file, read without parsing a possibly huge FAISS label map."""
    with open(info_path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("backend:"):
                return line.split(":", 1)[1].strip()
            if line.startswith("labels:"):
                break
    return "faiss"


def open_gallery_meta(settings: Settings | None = None) -> Any:
    """Where gallery metadata lives: with it, the vectors' backend decides.

    PostgreSQL when ``DATABASE_URL`` is set and the vectors are in Milvus (every replica then shares names, keys and
    the requestId ledger, and reads nothing from ``DATA_DIR``); else a SQLite file beside the FAISS folders
    (``DATA_DIR/galleries.sqlite3``): FAISS galleries are files of one machine, so their names are that machine's too.
    """
    settings = settings or get_settings()
    if settings.database_url and settings.gallery_backend == "milvus":
        from storage.gallery_meta_postgres import PostgresGalleryMeta

        log.info("Gallery metadata: PostgreSQL at %s", redact(settings.database_url))
        return PostgresGalleryMeta(settings.database_url)
    from storage.gallery_meta_sqlite import SQLiteGalleryMeta

    return SQLiteGalleryMeta(settings.data_dir / "galleries.sqlite3")


def gallery_location(gallery: Any) -> tuple[str, str]:
    """(backend, location) of a gallery object: ("milvus", its collection) or ("faiss", "")."""
    collection = getattr(gallery, "collection", None)
    return ("milvus", str(collection)) if collection else ("faiss", "")


def open_gallery(backend: str, location: str, directory: Path, expected_model: str | None = None, expected_dim: int | None = None,
                 settings: Settings | None = None) -> Any:
    """The gallery a metadata record names: its Milvus collection (at ``MILVUS_URI``, or this machine's Lite file), or
    its FAISS folder. ``KeyError`` / ``FileNotFoundError`` when it is gone."""
    settings = settings or get_settings()
    if backend == "milvus":
        from storage.gallery_milvus import MilvusGallery

        return MilvusGallery.open(location, uri=milvus_uri(settings), token=settings.milvus_token, expected_model=expected_model,
                                  expected_dim=expected_dim)
    return load_gallery(directory, expected_model=expected_model, expected_dim=expected_dim, settings=settings)
