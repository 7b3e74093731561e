"""Rolling stats store: one row per processed image, behind a narrow ``Store`` protocol.

SQLite in WAL mode by default (a server database can replace it behind the same protocol). Each
thread gets its own connection; every write is one transaction, so a process killed mid-write loses
at most the event in flight and never corrupts the file. Thumbnails (low-quality images only) are
written to a temp file and renamed into place, so no half-written image stays on disk.
Aggregations for the charts are SQL + pandas, never Python loops over rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from PIL import Image

log = logging.getLogger("frood.store")
UTC = dt.UTC
THUMBNAIL_MAX_SIDE = 128

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
    thumbnail_path TEXT
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Event:
    source: str
    operation: str
    model: str
    quality: float | None = None
    similarity: float | None = None
    decision: str | None = None
    reason_codes: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    rejected: bool = False
    timestamp: dt.datetime = field(default_factory=utcnow)
    thumbnail_path: str | None = None
    id: int | None = None


class Store(Protocol):
    def record(self, event: Event, thumbnail: np.ndarray | None = None) -> int: ...
    def count_events(self) -> int: ...
    def summary(self, since: dt.datetime, low_quality_threshold: float = 0.4) -> dict: ...
    def hourly(self, since: dt.datetime, until: dt.datetime, low_quality_threshold: float = 0.4) -> pd.DataFrame: ...
    def day_hour_heatmap(self, days: int = 7, now: dt.datetime | None = None, low_quality_threshold: float = 0.4) -> pd.DataFrame: ...
    def low_quality_in_hour(self, hour_start: dt.datetime, limit: int = 50, low_quality_threshold: float = 0.4) -> list[Event]: ...
    def prune(self, now: dt.datetime | None = None) -> dict: ...


class SQLiteStore:
    """The default ``Store``: SQLite (WAL) + a folder of JPEG thumbnails."""

    def __init__(
        self,
        path: Path,
        thumbnails_dir: Path,
        store_thumbnails: bool = True,
        events_retention_days: int = 30,
        thumbnails_retention_days: int = 7,
    ):
        self.path = Path(path)
        self.thumbnails_dir = Path(thumbnails_dir)
        self.store_thumbnails = store_thumbnails
        self.events_retention = dt.timedelta(days=events_retention_days)
        self.thumbnails_retention = dt.timedelta(days=thumbnails_retention_days)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None
        with self._connection() as connection:
            connection.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
        return connection

    # -- writes -----------------------------------------------------------------------------------

    def _write_thumbnail(self, thumbnail: np.ndarray, moment: dt.datetime) -> str:
        folder = self.thumbnails_dir / moment.strftime("%Y%m%d")
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(thumbnail)
        image.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE))
        final = folder / f"{moment.strftime('%H%M%S')}-{uuid.uuid4().hex[:12]}.jpg"
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as stream:
                image.convert("RGB").save(stream, format="JPEG", quality=85)
            os.replace(temporary, final)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return str(final)

    def record(self, event: Event, thumbnail: np.ndarray | None = None) -> int:
        """Insert one event (one transaction); keeps a thumbnail only if given and allowed."""
        if thumbnail is not None and self.store_thumbnails:
            event.thumbnail_path = self._write_thumbnail(thumbnail, event.timestamp)
        try:
            cursor = self._connection().execute(
                "INSERT INTO events (ts, source, operation, model, quality, similarity, decision, reason_codes, latency_ms, rejected,"
                " thumbnail_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _iso(event.timestamp),
                    event.source,
                    event.operation,
                    event.model,
                    event.quality,
                    event.similarity,
                    event.decision,
                    json.dumps(event.reason_codes),
                    event.latency_ms,
                    int(event.rejected),
                    event.thumbnail_path,
                ),
            )
        except BaseException:
            if event.thumbnail_path:
                Path(event.thumbnail_path).unlink(missing_ok=True)
            raise
        event.id = int(cursor.lastrowid)
        return event.id

    def prune(self, now: dt.datetime | None = None) -> dict:
        """Drop events past their retention and thumbnails past theirs (files and row paths)."""
        now = now or utcnow()
        connection = self._connection()
        old_thumbs = connection.execute(
            "SELECT id, thumbnail_path FROM events WHERE thumbnail_path IS NOT NULL AND ts < ?", (_iso(now - self.thumbnails_retention),)
        ).fetchall()
        for _, path in old_thumbs:
            Path(path).unlink(missing_ok=True)
        connection.execute("UPDATE events SET thumbnail_path = NULL WHERE thumbnail_path IS NOT NULL AND ts < ?", (_iso(now - self.thumbnails_retention),))
        expired = connection.execute("SELECT thumbnail_path FROM events WHERE ts < ? AND thumbnail_path IS NOT NULL", (_iso(now - self.events_retention),))
        for (path,) in expired.fetchall():
            Path(path).unlink(missing_ok=True)
        deleted = connection.execute("DELETE FROM events WHERE ts < ?", (_iso(now - self.events_retention),)).rowcount
        if self.thumbnails_dir.is_dir():  # day folders emptied by pruning
            for folder in self.thumbnails_dir.iterdir():
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        result = {"events_deleted": int(deleted), "thumbnails_deleted": len(old_thumbs)}
        if deleted or old_thumbs:
            log.info("Pruned %d events and %d thumbnails", deleted, len(old_thumbs))
        return result

    def start_pruning(self, interval_s: float = 3600.0) -> None:
        """Prune now and then every ``interval_s`` in a daemon thread."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.prune()
                except Exception:
                    log.exception("Pruning the stats store failed")
                self._stop.wait(interval_s)

        self._pruner = threading.Thread(target=loop, name="stats-pruner", daemon=True)
        self._pruner.start()

    def stop(self) -> None:
        self._stop.set()

    # -- reads ------------------------------------------------------------------------------------

    def count_events(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def _frame(self, since: dt.datetime, until: dt.datetime | None = None) -> pd.DataFrame:
        query = "SELECT ts, quality, rejected FROM events WHERE ts >= ?"
        params: list[str] = [_iso(since)]
        if until is not None:
            query += " AND ts < ?"
            params.append(_iso(until))
        frame = pd.read_sql_query(query, self._connection(), params=params)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        return frame

    def summary(self, since: dt.datetime, low_quality_threshold: float = 0.4) -> dict:
        row = self._connection().execute(
            "SELECT COUNT(*), AVG(quality), AVG(CASE WHEN quality < ? THEN 1.0 ELSE 0.0 END), SUM(rejected) FROM events WHERE ts >= ?",
            (low_quality_threshold, _iso(since)),
        ).fetchone()
        count = int(row[0])
        return {
            "count": count,
            "mean_quality": float(row[1]) if row[1] is not None else None,
            "low_quality_rate": float(row[2]) if count else None,
            "rejected": int(row[3] or 0),
        }

    def hourly(self, since: dt.datetime, until: dt.datetime, low_quality_threshold: float = 0.4) -> pd.DataFrame:
        """One row per UTC hour in ``[since, until)``, empty hours included (count 0, NaN means)."""
        start = pd.Timestamp(_iso(since), tz="UTC").floor("h")
        end = pd.Timestamp(_iso(until), tz="UTC")
        hours = pd.date_range(start, end, freq="h", inclusive="left")
        frame = self._frame(start.to_pydatetime(), until)
        frame["hour"] = frame["ts"].dt.floor("h")
        frame["low"] = (frame["quality"] < low_quality_threshold).astype(float)
        grouped = frame.groupby("hour").agg(count=("ts", "size"), mean_quality=("quality", "mean"), low_quality_rate=("low", "mean"))
        grouped = grouped.reindex(hours)
        grouped["count"] = grouped["count"].fillna(0).astype(int)
        return grouped.rename_axis("hour").reset_index()

    def day_hour_heatmap(self, days: int = 7, now: dt.datetime | None = None, low_quality_threshold: float = 0.4) -> pd.DataFrame:
        """Rows: the last ``days`` UTC dates; columns 0–23; values: low-quality rate (NaN: no traffic)."""
        now = now or utcnow()
        first_day = (pd.Timestamp(_iso(now), tz="UTC").normalize() - pd.Timedelta(days=days - 1))
        frame = self._frame(first_day.to_pydatetime())
        frame["date"] = frame["ts"].dt.date
        frame["hour"] = frame["ts"].dt.hour
        frame["low"] = (frame["quality"] < low_quality_threshold).astype(float)
        table = frame.pivot_table(index="date", columns="hour", values="low", aggfunc="mean")
        dates = [(first_day + pd.Timedelta(days=offset)).date() for offset in range(days)]
        return table.reindex(index=dates, columns=range(24))

    def low_quality_in_hour(self, hour_start: dt.datetime, limit: int = 50, low_quality_threshold: float = 0.4) -> list[Event]:
        """That hour's low-quality events, newest first (with thumbnails when kept)."""
        rows = self._connection().execute(
            "SELECT id, ts, source, operation, model, quality, similarity, decision, reason_codes, latency_ms, rejected, thumbnail_path"
            " FROM events WHERE ts >= ? AND ts < ? AND quality < ? ORDER BY ts DESC LIMIT ?",
            (_iso(hour_start), _iso(hour_start + dt.timedelta(hours=1)), low_quality_threshold, limit),
        ).fetchall()
        return [
            Event(
                id=row[0],
                timestamp=dt.datetime.fromisoformat(row[1]).replace(tzinfo=UTC),
                source=row[2],
                operation=row[3],
                model=row[4],
                quality=row[5],
                similarity=row[6],
                decision=row[7],
                reason_codes=json.loads(row[8]),
                latency_ms=row[9],
                rejected=bool(row[10]),
                thumbnail_path=row[11],
            )
            for row in rows
        ]
