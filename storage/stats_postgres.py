"""The stats ``Store`` on PostgreSQL, for several replicas sharing one database (``DATABASE_URL``).

The queries and answers are :class:`storage.stats.StatsStore`'s, as for SQLite. What differs follows from being shared:

* Thumbnails live in the row (a ≤128 px JPEG, a few kB, ``bytea``) rather than on one machine's disk, so
  every replica can show every thumbnail; reading one writes it to a local cache file (the UI shows
  files) under ``thumbnails_dir/pg-cache``, swept by ``prune``.
* Pruning is one transaction in SQL; replicas pruning at the same time only delete the same rows twice.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from storage.postgres import migrate, open_pool
from storage.stats import QUARTER_S, UTC, Event, StatsStore, to_utc, write_atomically

COMPONENT = "stats"
MIGRATIONS = [
    (
        1,
        "events table",
        """
        CREATE TABLE events (
            id BIGSERIAL PRIMARY KEY,
            ts TIMESTAMPTZ NOT NULL,
            source TEXT NOT NULL,
            operation TEXT NOT NULL,
            model TEXT NOT NULL,
            quality DOUBLE PRECISION,
            similarity DOUBLE PRECISION,
            decision TEXT,
            reason_codes JSONB NOT NULL DEFAULT '[]',
            latency_ms DOUBLE PRECISION NOT NULL,
            rejected BOOLEAN NOT NULL DEFAULT FALSE,
            thumbnail BYTEA
        );
        CREATE INDEX events_ts ON events (ts);
        """,
    ),
    (2, "per-source index", "CREATE INDEX events_source_ts ON events (source, ts)"),
    (3, "failing components", "ALTER TABLE events ADD COLUMN failed_components JSONB"),  # NULL: not measured (older rows too)
]


class PostgresStore(StatsStore):
    """The stats store over a PostgreSQL connection pool; safe to share between threads and replicas."""

    MARKER = "%({})s"
    REJECTED = "rejected::int"
    HOUR_OF_TS = "date_trunc('hour', ts)"
    DAY_AND_HOUR_OF_TS = "(ts AT TIME ZONE 'UTC')::date, EXTRACT(HOUR FROM ts AT TIME ZONE 'UTC')::int"
    REASONS_FROM = "jsonb_array_elements_text(events.reason_codes) AS code"
    REASON_CODE = "code"
    QUARTER_OF_TS = f"(floor(EXTRACT(EPOCH FROM ts) / {QUARTER_S}) * {QUARTER_S})::bigint"
    COMPONENTS_FROM = "jsonb_array_elements_text(events.failed_components) AS failed_name"
    COMPONENT_NAME = "failed_name"
    THUMBNAIL = "thumbnail"

    def __init__(
        self,
        url: str,
        thumbnails_dir: Path,
        store_thumbnails: bool = True,
        events_retention_days: int = 30,
        thumbnails_retention_days: int = 7,
        pool_size: int = 8,
        connect_timeout_s: float = 30.0,
    ):
        super().__init__(store_thumbnails, events_retention_days, thumbnails_retention_days)
        self.thumbnails_cache = Path(thumbnails_dir) / "pg-cache"
        self._pool = open_pool(url, max_size=pool_size, name="frood-stats", connect_timeout_s=connect_timeout_s)
        self.schema_version = migrate(self._pool, COMPONENT, MIGRATIONS)

    def close(self) -> None:
        super().close()
        self._pool.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._pool.connection() as connection, connection.transaction():
            yield connection

    def _rows(self, query: str, params: dict[str, Any]) -> list[tuple]:
        with self._pool.connection() as connection:
            return connection.execute(query, params).fetchall()

    def _stamp(self, moment: dt.datetime) -> dt.datetime:
        return to_utc(moment)

    def _timestamp(self, stored: dt.datetime) -> dt.datetime:
        return stored.astimezone(UTC)

    def _reason_codes(self, stored: list) -> list[str]:
        return list(stored)

    def _store_reason_codes(self, codes: list[str]) -> Jsonb:
        return Jsonb(codes)

    def _thumbnail_path(self, event_id: int, stored: bytes | None) -> str | None:
        """The row's JPEG as a local cache file (written once, atomically; touched when read), for UIs that show files."""
        if stored is None:
            return None
        path = self.thumbnails_cache / f"{event_id}.jpg"
        if path.is_file():
            os.utime(path, (time.time(), time.time()))
        else:
            write_atomically(path, bytes(stored))
        return str(path)

    # -- writes -----------------------------------------------------------------------------------

    def _insert(self, event: Event, jpeg: bytes | None) -> int:
        with self._transaction() as connection:
            return int(connection.execute(*self._insert_statement(event, jpeg)).fetchone()[0])

    def _prune_rows(self, thumbnails_before: dt.datetime, events_before: dt.datetime) -> tuple[int, int]:
        with self._transaction() as connection:
            thumbnails = connection.execute(
                "SELECT COUNT(*) FROM events WHERE thumbnail IS NOT NULL AND ts < %s", (max(thumbnails_before, events_before),)
            ).fetchone()[0]
            connection.execute("UPDATE events SET thumbnail = NULL WHERE thumbnail IS NOT NULL AND ts < %s", (thumbnails_before,))
            deleted = connection.execute("DELETE FROM events WHERE ts < %s", (events_before,)).rowcount
        return int(deleted), int(thumbnails)

    def _sweep_files(self, thumbnails_before: dt.datetime) -> None:
        """Cached thumbnail files not read since the thumbnail retention (their rows no longer hold an image)."""
        if not self.thumbnails_cache.is_dir():
            return
        for path in self.thumbnails_cache.iterdir():
            try:
                if path.stat().st_mtime < thumbnails_before.timestamp():
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
