"""The default stats store: SQLite in WAL mode + a folder of JPEG thumbnails (see :mod:`storage.stats`).

Each thread gets its own connection; every write is one transaction, so a process killed mid-write loses
at most the event in flight and never corrupts the file. Thumbnails (low-quality images only) are
written to a temp file and renamed into place, so no half-written image stays on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from storage.sqlite import ThreadConnections
from storage.stats import QUARTER_S, UTC, Event, StatsStore, Store, to_utc, utcnow, write_atomically

__all__ = ["Event", "SQLiteStore", "Store", "utcnow"]  # Event and Store: the names callers import from here
STALE_PART_S = 3600  # a temp thumbnail this old was left by a killed writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,               -- ISO-8601 UTC, second precision (sorts as text)
    source TEXT NOT NULL,
    operation TEXT NOT NULL,
    model TEXT NOT NULL,
    quality REAL,
    similarity REAL,
    decision TEXT,
    reason_codes TEXT NOT NULL,     -- JSON list
    latency_ms REAL NOT NULL,
    rejected INTEGER NOT NULL DEFAULT 0,
    thumbnail_path TEXT,
    failed_components TEXT          -- JSON list; NULL: not measured
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_source_ts ON events (source, ts);
"""
# Columns added after the first release: a database the previous version created gets them on open.
ADDED_COLUMNS = {"failed_components": "TEXT"}


class SQLiteStore(StatsStore):
    """The default store: SQLite (WAL) + a folder of JPEG thumbnails, one day folder each."""

    MARKER = ":{}"
    REJECTED = "rejected"
    HOUR_OF_TS = "substr(ts, 1, 13) || ':00:00'"
    DAY_AND_HOUR_OF_TS = "substr(ts, 1, 10), CAST(substr(ts, 12, 2) AS INTEGER)"
    REASONS_FROM = "json_each(events.reason_codes) AS item"
    REASON_CODE = "item.value"
    QUARTER_OF_TS = f"CAST(strftime('%s', ts) AS INTEGER) / {QUARTER_S} * {QUARTER_S}"
    COMPONENTS_FROM = "json_each(events.failed_components) AS failed_item"
    COMPONENT_NAME = "failed_item.value"
    THUMBNAIL = "thumbnail_path"

    def __init__(
        self,
        path: Path,
        thumbnails_dir: Path,
        store_thumbnails: bool = True,
        events_retention_days: int = 30,
        thumbnails_retention_days: int = 7,
    ):
        super().__init__(store_thumbnails, events_retention_days, thumbnails_retention_days)
        self.path = Path(path)
        self.thumbnails_dir = Path(thumbnails_dir)
        self._connections = ThreadConnections(self.path, "synchronous=NORMAL")
        self._connection().executescript(SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a database of an earlier version up to ``SCHEMA`` (its rows keep NULL in the new columns).

        Two processes opening the same old file may both try; the loser's "duplicate column" is the winner's work."""
        connection = self._connection()
        for name, kind in ADDED_COLUMNS.items():
            present = {row[1] for row in connection.execute("PRAGMA table_info(events)")}
            if name in present:
                continue
            try:
                connection.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as error:
                if "duplicate column" not in str(error).lower():
                    raise

    def _connection(self) -> sqlite3.Connection:
        return self._connections.get()

    def close(self) -> None:
        super().close()
        self._connections.close()

    def _rows(self, query: str, params: dict[str, Any]) -> list[tuple]:
        return self._connection().execute(query, params).fetchall()

    def _stamp(self, moment: dt.datetime) -> str:
        return to_utc(moment).strftime("%Y-%m-%dT%H:%M:%S")

    def _timestamp(self, stored: str) -> dt.datetime:
        return dt.datetime.fromisoformat(stored).replace(tzinfo=UTC)

    def _reason_codes(self, stored: str) -> list[str]:
        return json.loads(stored)

    def _store_reason_codes(self, codes: list[str]) -> str:
        return json.dumps(codes)

    def _thumbnail_path(self, event_id: int, stored: str | None) -> str | None:
        return stored

    # -- writes -----------------------------------------------------------------------------------

    def _insert(self, event: Event, jpeg: bytes | None) -> int:
        if jpeg is not None:
            moment = to_utc(event.timestamp)
            path = self.thumbnails_dir / moment.strftime("%Y%m%d") / f"{moment.strftime('%H%M%S')}-{uuid.uuid4().hex[:12]}.jpg"
            write_atomically(path, jpeg)
            event.thumbnail_path = str(path)
        try:
            rows = self._connection().execute(*self._insert_statement(event, event.thumbnail_path)).fetchall()  # all: the statement (and commit) ends
            return int(rows[0][0])
        except BaseException:
            if event.thumbnail_path:
                Path(event.thumbnail_path).unlink(missing_ok=True)
            raise

    def _prune_rows(self, thumbnails_before: dt.datetime, events_before: dt.datetime) -> tuple[int, int]:
        """The rows in one transaction; the files of the thumbnails it dropped go after the commit."""
        thumbs_cutoff, events_cutoff = self._stamp(thumbnails_before), self._stamp(events_before)
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            paths = [
                row[0]
                for row in connection.execute(
                    "SELECT thumbnail_path FROM events WHERE thumbnail_path IS NOT NULL AND ts < ?", (max(thumbs_cutoff, events_cutoff),)
                )
            ]
            connection.execute("UPDATE events SET thumbnail_path = NULL WHERE thumbnail_path IS NOT NULL AND ts < ?", (thumbs_cutoff,))
            deleted = connection.execute("DELETE FROM events WHERE ts < ?", (events_cutoff,)).rowcount
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        for path in paths:
            Path(path).unlink(missing_ok=True)
        return int(deleted), len(paths)

    def _sweep_files(self, thumbnails_before: dt.datetime) -> None:
        """Remove day folders wholly past retention (orphans included) and temp files left by killed writers."""
        if not self.thumbnails_dir.is_dir():
            return
        oldest_kept = thumbnails_before.astimezone(UTC).strftime("%Y%m%d")
        for folder in self.thumbnails_dir.iterdir():
            if not folder.is_dir():
                continue
            if folder.name < oldest_kept:  # YYYYMMDD sorts as text; every event of that day is past retention
                shutil.rmtree(folder, ignore_errors=True)
                continue
            for part in folder.glob("*.part"):
                try:
                    if time.time() - part.stat().st_mtime > STALE_PART_S:
                        part.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
