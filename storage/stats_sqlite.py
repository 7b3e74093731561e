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
import shutil
import sqlite3
import tempfile
import threading
import time
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
    thumbnail_path TEXT
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_source_ts ON events (source, ts);
"""
TOP_REASONS = 3  # reason codes listed per source in ``per_source``


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def _low_flags(quality: pd.Series, threshold: float) -> pd.Series:
    """1.0 below the threshold, 0.0 at or above, NaN when unscored (so it stays out of the rate)."""
    return (quality < threshold).astype(float).where(quality.notna())


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Event:
    """One processed image (UTC timestamp); ``id`` is filled in by the store."""

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
    """What the service and the UI need from a stats backend (SQLite today, a server DB later)."""

    def record(self, event: Event, thumbnail: np.ndarray | None = None) -> int: ...
    def count_events(self) -> int: ...
    def summary(self, since: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None) -> dict: ...
    def hourly(
        self, since: dt.datetime, until: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> pd.DataFrame: ...
    def day_hour_heatmap(
        self, days: int = 7, now: dt.datetime | None = None, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> pd.DataFrame: ...
    def low_quality_in_hour(
        self, hour_start: dt.datetime, limit: int = 50, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> list[Event]: ...
    def per_source(self, since: dt.datetime, low_quality_threshold: float = 0.4) -> pd.DataFrame: ...
    def sources(self) -> list[str]: ...
    def prune(self, now: dt.datetime | None = None) -> dict: ...
    def start_pruning(self, interval_s: float = 3600.0) -> None: ...
    def stop(self) -> None: ...


def summary_from_row(row: tuple) -> dict:
    """``summary``'s answer from its one SQL row (count, mean quality, low-quality rate, rejected), any backend."""
    return {
        "count": int(row[0]),
        "mean_quality": float(row[1]) if row[1] is not None else None,
        "low_quality_rate": float(row[2]) if row[2] is not None else None,
        "rejected": int(row[3] or 0),
    }


class BackgroundPruning:
    """``start_pruning``/``stop`` for a store that defines ``prune()``: one daemon thread (SQLite and PostgreSQL alike).

    The store's ``__init__`` sets ``self._stop = threading.Event()`` and ``self._pruner = None``.
    """

    _stop: threading.Event
    _pruner: threading.Thread | None

    def start_pruning(self, interval_s: float = 3600.0) -> None:
        """Prune now and then every ``interval_s`` in a daemon thread."""
        if self._pruner is not None and self._pruner.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.prune()
                except Exception:
                    log.exception("Pruning the stats store failed")
                self._stop.wait(interval_s)

        self._pruner = threading.Thread(target=loop, name="stats-pruner", daemon=True)
        self._pruner.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the pruning thread (an in-flight prune finishes its transaction first)."""
        self._stop.set()
        if self._pruner is not None:
            self._pruner.join(timeout_s)
            self._pruner = None


class SQLiteStore(BackgroundPruning):
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
        """One connection per thread (sqlite3 connections are not safe to share); WAL lets readers run beside the writer."""
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
        """Drop events past their retention and thumbnails past theirs (files and row paths).

        The rows change in one transaction; files go after the commit, so a crash leaves at worst
        a row whose thumbnail is missing (the UI skips those), never a half-applied table.
        """
        now = now or utcnow()
        thumbs_cutoff, events_cutoff = _iso(now - self.thumbnails_retention), _iso(now - self.events_retention)
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
        self._sweep_thumbnail_folders(now - self.thumbnails_retention)
        result = {"events_deleted": int(deleted), "thumbnails_deleted": len(paths)}
        if deleted or paths:
            log.info("Pruned %d events and %d thumbnails", deleted, len(paths))
        return result

    def _sweep_thumbnail_folders(self, cutoff: dt.datetime) -> None:
        """Remove day folders wholly past retention (orphans included) and temp files left by killed writers."""
        if not self.thumbnails_dir.is_dir():
            return
        oldest_kept = cutoff.astimezone(UTC).strftime("%Y%m%d")
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

    # -- reads ------------------------------------------------------------------------------------

    def count_events(self) -> int:
        """All rows, whatever their age (tests and the health check use it)."""
        return int(self._connection().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def _frame(self, since: dt.datetime, until: dt.datetime | None = None, source: str | None = None) -> pd.DataFrame:
        query = "SELECT ts, quality, rejected FROM events WHERE ts >= ?"
        params: list[str] = [_iso(since)]
        if until is not None:
            query += " AND ts < ?"
            params.append(_iso(until))
        if source is not None:
            query += " AND source = ?"
            params.append(source)
        frame = pd.read_sql_query(query, self._connection(), params=params)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame["quality"] = pd.to_numeric(frame["quality"], errors="coerce").astype(float)  # all-NULL reads back as object
        return frame

    def summary(self, since: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None) -> dict:
        """Totals since ``since`` (of one source, or all); the low-quality rate counts only scored events (None if none)."""
        query = (
            "SELECT COUNT(*), AVG(quality), AVG(CASE WHEN quality IS NULL THEN NULL WHEN quality < ? THEN 1.0 ELSE 0.0 END), SUM(rejected)"
            " FROM events WHERE ts >= ?"
        )
        params: list[object] = [low_quality_threshold, _iso(since)]
        if source is not None:
            query += " AND source = ?"
            params.append(source)
        row = self._connection().execute(query, params).fetchone()
        return summary_from_row(row)

    def hourly(
        self, since: dt.datetime, until: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> pd.DataFrame:
        """One row per UTC hour in ``[since, until)``, empty hours included (count 0, NaN means)."""
        start = pd.Timestamp(_iso(since), tz="UTC").floor("h")
        end = pd.Timestamp(_iso(until), tz="UTC")
        hours = pd.date_range(start, end, freq="h", inclusive="left")
        frame = self._frame(start.to_pydatetime(), until, source)
        frame["hour"] = frame["ts"].dt.floor("h")
        frame["low"] = _low_flags(frame["quality"], low_quality_threshold)
        grouped = frame.groupby("hour").agg(count=("ts", "size"), mean_quality=("quality", "mean"), low_quality_rate=("low", "mean"))
        grouped = grouped.reindex(hours)
        grouped["count"] = grouped["count"].fillna(0).astype(int)
        grouped[["mean_quality", "low_quality_rate"]] = grouped[["mean_quality", "low_quality_rate"]].astype(float)
        return grouped.rename_axis("hour").reset_index()

    def day_hour_heatmap(
        self, days: int = 7, now: dt.datetime | None = None, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> pd.DataFrame:
        """Rows: the last ``days`` UTC dates; columns 0–23; values: low-quality rate (NaN: no traffic)."""
        now = now or utcnow()
        first_day = (pd.Timestamp(_iso(now), tz="UTC").normalize() - pd.Timedelta(days=days - 1))
        frame = self._frame(first_day.to_pydatetime(), source=source)
        frame["date"] = frame["ts"].dt.date
        frame["hour"] = frame["ts"].dt.hour
        frame["low"] = _low_flags(frame["quality"], low_quality_threshold)
        table = frame.pivot_table(index="date", columns="hour", values="low", aggfunc="mean")
        dates = [(first_day + pd.Timedelta(days=offset)).date() for offset in range(days)]
        return table.reindex(index=dates, columns=range(24))

    def low_quality_in_hour(
        self, hour_start: dt.datetime, limit: int = 50, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> list[Event]:
        """That hour's low-quality events (of one source, or all), newest first (with thumbnails when kept)."""
        query = (
            "SELECT id, ts, source, operation, model, quality, similarity, decision, reason_codes, latency_ms, rejected, thumbnail_path"
            " FROM events WHERE ts >= ? AND ts < ? AND quality < ?"
        )
        params: list[object] = [_iso(hour_start), _iso(hour_start + dt.timedelta(hours=1)), low_quality_threshold]
        if source is not None:
            query += " AND source = ?"
            params.append(source)
        rows = self._connection().execute(query + " ORDER BY ts DESC LIMIT ?", [*params, limit]).fetchall()
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

    def per_source(self, since: dt.datetime, low_quality_threshold: float = 0.4) -> pd.DataFrame:
        """One row per source seen since ``since``, busiest first: which gate or device is dropping quality.

        Columns: ``source, count, mean_quality, low_quality_rate`` (scored events only; NaN when none)
        and ``top_reasons``: up to three reason codes, most frequent first, among that source's low-quality events.
        """
        frame = pd.read_sql_query(
            "SELECT source, quality, reason_codes FROM events WHERE ts >= ?", self._connection(), params=[_iso(since)]
        )
        columns = ["source", "count", "mean_quality", "low_quality_rate", "top_reasons"]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        frame["quality"] = pd.to_numeric(frame["quality"], errors="coerce").astype(float)
        frame["low"] = _low_flags(frame["quality"], low_quality_threshold)
        table = frame.groupby("source").agg(count=("quality", "size"), mean_quality=("quality", "mean"), low_quality_rate=("low", "mean"))
        low = frame[frame["low"] == 1.0]
        reasons = low.assign(code=low["reason_codes"].map(json.loads)).explode("code").dropna(subset=["code"])
        counted = reasons.groupby(["source", "code"]).size().reset_index(name="n").sort_values(["source", "n", "code"], ascending=[True, False, True])
        top = counted.groupby("source")["code"].apply(lambda codes: list(codes)[:TOP_REASONS])
        table["top_reasons"] = [top.get(source, []) for source in table.index]
        table = table.reset_index().sort_values(["count", "source"], ascending=[False, True], kind="stable")
        table["count"] = table["count"].astype(int)
        return table[columns].reset_index(drop=True)

    def sources(self) -> list[str]:
        """Every source with at least one stored event, sorted (the Monitor's filter choices)."""
        return [row[0] for row in self._connection().execute("SELECT DISTINCT source FROM events ORDER BY source")]
