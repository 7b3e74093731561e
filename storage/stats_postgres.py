"""The stats ``Store`` on PostgreSQL, for several replicas sharing one database (``DATABASE_URL``).

Same protocol and return shapes as :class:`storage.stats_sqlite.SQLiteStore`. Differences that follow from
being shared:

* Aggregates (totals, hourly buckets, day × hour, per source) are computed by the server in SQL; pandas
  only fills in empty hours and pivots, so a replica never pulls raw rows for a chart.
* Thumbnails live in the row (a ≤128 px JPEG, a few kB, ``bytea``) rather than on one machine's disk, so
  every replica can show every thumbnail; reading one writes it to a local cache file (the UI shows
  files) under ``thumbnails_dir/pg-cache``, swept by ``prune``.
* Pruning is one transaction in SQL; replicas pruning at the same time only delete the same rows twice.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from psycopg.types.json import Jsonb

from storage.postgres import migrate, open_pool
from storage.stats_sqlite import THUMBNAIL_MAX_SIDE, BackgroundPruning, Event, summary_from_row, utcnow

log = logging.getLogger("frood.store")
UTC = dt.UTC
TOP_REASONS = 3
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
]
LOW_FLAG = "CASE WHEN quality IS NULL THEN NULL WHEN quality < %(threshold)s THEN 1.0 ELSE 0.0 END"


def _utc(moment: dt.datetime) -> dt.datetime:
    """Aware UTC, second precision (as the SQLite store keeps it); naive input is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def _source_clause(source: str | None) -> str:
    return "" if source is None else " AND source = %(source)s"


def encode_thumbnail(rgb: np.ndarray) -> bytes:
    """A ≤128 px JPEG of the image, as stored in the row."""
    image = Image.fromarray(rgb)
    image.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class PostgresStore(BackgroundPruning):
    """``Store`` over a PostgreSQL connection pool; safe to share between threads and replicas."""

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
        self.thumbnails_cache = Path(thumbnails_dir) / "pg-cache"
        self.store_thumbnails = store_thumbnails
        self.events_retention = dt.timedelta(days=events_retention_days)
        self.thumbnails_retention = dt.timedelta(days=thumbnails_retention_days)
        self._pool = open_pool(url, max_size=pool_size, name="frood-stats", connect_timeout_s=connect_timeout_s)
        self.schema_version = migrate(self._pool, COMPONENT, MIGRATIONS)
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None

    def _rows(self, query: str, params: dict) -> list[tuple]:
        with self._pool.connection() as connection:
            return connection.execute(query, params).fetchall()

    # -- writes -----------------------------------------------------------------------------------

    def record(self, event: Event, thumbnail: np.ndarray | None = None) -> int:
        """Insert one event (one transaction); keeps a thumbnail only if given and allowed."""
        jpeg = encode_thumbnail(thumbnail) if thumbnail is not None and self.store_thumbnails else None
        with self._pool.connection() as connection:
            row = connection.execute(
                "INSERT INTO events (ts, source, operation, model, quality, similarity, decision, reason_codes, latency_ms, rejected, thumbnail)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    _utc(event.timestamp),
                    event.source,
                    event.operation,
                    event.model,
                    event.quality,
                    event.similarity,
                    event.decision,
                    Jsonb(list(event.reason_codes)),
                    event.latency_ms,
                    bool(event.rejected),
                    jpeg,
                ),
            ).fetchone()
        event.id = int(row[0])
        return event.id

    def prune(self, now: dt.datetime | None = None) -> dict:
        """Drop events past their retention and thumbnails past theirs, in one transaction; sweep the local cache."""
        now = _utc(now or utcnow())
        thumbs_cutoff, events_cutoff = now - self.thumbnails_retention, now - self.events_retention
        with self._pool.connection() as connection, connection.transaction():
            thumbs = connection.execute(
                "SELECT COUNT(*) FROM events WHERE thumbnail IS NOT NULL AND ts < %s", (max(thumbs_cutoff, events_cutoff),)
            ).fetchone()[0]
            connection.execute("UPDATE events SET thumbnail = NULL WHERE thumbnail IS NOT NULL AND ts < %s", (thumbs_cutoff,))
            deleted = connection.execute("DELETE FROM events WHERE ts < %s", (events_cutoff,)).rowcount
        self._sweep_cache(now - self.thumbnails_retention)
        if deleted or thumbs:
            log.info("Pruned %d events and %d thumbnails", deleted, thumbs)
        return {"events_deleted": int(deleted), "thumbnails_deleted": int(thumbs)}

    def _sweep_cache(self, cutoff: dt.datetime) -> None:
        """Cached thumbnail files older than the thumbnail retention (their rows no longer hold an image)."""
        if not self.thumbnails_cache.is_dir():
            return
        for path in self.thumbnails_cache.iterdir():
            try:
                if path.stat().st_mtime < cutoff.timestamp():
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Stop pruning and close the connection pool (the store is unusable afterwards)."""
        self.stop()
        self._pool.close()

    # -- reads ------------------------------------------------------------------------------------

    def count_events(self) -> int:
        """All rows, whatever their age."""
        return int(self._rows("SELECT COUNT(*) FROM events", {})[0][0])

    def sources(self) -> list[str]:
        """Every source with at least one stored event, sorted."""
        return [row[0] for row in self._rows("SELECT DISTINCT source FROM events ORDER BY source", {})]

    def summary(self, since: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None) -> dict:
        """Totals since ``since`` (of one source, or all); the low-quality rate counts only scored events (None if none)."""
        row = self._rows(
            f"SELECT COUNT(*), AVG(quality), AVG({LOW_FLAG}), SUM(rejected::int) FROM events WHERE ts >= %(since)s{_source_clause(source)}",
            {"threshold": low_quality_threshold, "since": _utc(since), "source": source},
        )[0]
        return summary_from_row(row)

    def hourly(
        self, since: dt.datetime, until: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> pd.DataFrame:
        """One row per UTC hour in ``[since, until)``, empty hours included (count 0, NaN means); buckets by SQL."""
        start = pd.Timestamp(_utc(since)).floor("h")
        end = pd.Timestamp(_utc(until))
        hours = pd.date_range(start, end, freq="h", inclusive="left")
        rows = self._rows(
            f"SELECT date_trunc('hour', ts) AS hour, COUNT(*), AVG(quality), AVG({LOW_FLAG}) FROM events"
            f" WHERE ts >= %(since)s AND ts < %(until)s{_source_clause(source)} GROUP BY 1",
            {"threshold": low_quality_threshold, "since": start.to_pydatetime(), "until": _utc(until), "source": source},
        )
        grouped = pd.DataFrame(rows, columns=["hour", "count", "mean_quality", "low_quality_rate"])
        grouped["hour"] = pd.to_datetime(grouped["hour"], utc=True)
        grouped = grouped.set_index("hour").reindex(hours)
        grouped["count"] = grouped["count"].fillna(0).astype(int)
        grouped[["mean_quality", "low_quality_rate"]] = grouped[["mean_quality", "low_quality_rate"]].astype(float)
        return grouped.rename_axis("hour").reset_index()

    def day_hour_heatmap(
        self, days: int = 7, now: dt.datetime | None = None, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> pd.DataFrame:
        """Rows: the last ``days`` UTC dates; columns 0–23; values: low-quality rate (NaN: no traffic)."""
        now = _utc(now or utcnow())
        first_day = pd.Timestamp(now).normalize() - pd.Timedelta(days=days - 1)
        rows = self._rows(
            f"SELECT (ts AT TIME ZONE 'UTC')::date, EXTRACT(HOUR FROM ts AT TIME ZONE 'UTC')::int, AVG({LOW_FLAG}) FROM events"
            f" WHERE ts >= %(since)s{_source_clause(source)} GROUP BY 1, 2",
            {"threshold": low_quality_threshold, "since": first_day.to_pydatetime(), "source": source},
        )
        frame = pd.DataFrame(rows, columns=["date", "hour", "low"])
        frame["low"] = frame["low"].astype(float)
        table = frame.pivot_table(index="date", columns="hour", values="low", aggfunc="mean", dropna=False)
        dates = [(first_day + pd.Timedelta(days=offset)).date() for offset in range(days)]
        return table.reindex(index=dates, columns=range(24))

    def low_quality_in_hour(
        self, hour_start: dt.datetime, limit: int = 50, low_quality_threshold: float = 0.4, *, source: str | None = None
    ) -> list[Event]:
        """That hour's low-quality events (of one source, or all), newest first, thumbnails as local cache files."""
        start = _utc(hour_start)
        rows = self._rows(
            "SELECT id, ts, source, operation, model, quality, similarity, decision, reason_codes, latency_ms, rejected, thumbnail"
            f" FROM events WHERE ts >= %(start)s AND ts < %(end)s AND quality < %(threshold)s{_source_clause(source)}"
            " ORDER BY ts DESC, id DESC LIMIT %(limit)s",
            {"start": start, "end": start + dt.timedelta(hours=1), "threshold": low_quality_threshold, "source": source, "limit": limit},
        )
        return [
            Event(
                id=row[0],
                timestamp=row[1].astimezone(UTC),
                source=row[2],
                operation=row[3],
                model=row[4],
                quality=row[5],
                similarity=row[6],
                decision=row[7],
                reason_codes=list(row[8]),
                latency_ms=row[9],
                rejected=bool(row[10]),
                thumbnail_path=self._cached_thumbnail(row[0], row[11]),
            )
            for row in rows
        ]

    def _cached_thumbnail(self, event_id: int, jpeg: bytes | None) -> str | None:
        """The row's JPEG as a local file (written once, atomically), for UIs that show files."""
        if jpeg is None:
            return None
        path = self.thumbnails_cache / f"{event_id}.jpg"
        if not path.is_file():
            self.thumbnails_cache.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.thumbnails_cache, suffix=".part")
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(bytes(jpeg))
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        else:
            os.utime(path, (time.time(), time.time()))
        return str(path)

    def per_source(self, since: dt.datetime, low_quality_threshold: float = 0.4) -> pd.DataFrame:
        """One row per source seen since ``since``, busiest first (columns as the SQLite store's); all in SQL."""
        params = {"threshold": low_quality_threshold, "since": _utc(since), "top": TOP_REASONS}
        rows = self._rows(
            f"SELECT source, COUNT(*), AVG(quality), AVG({LOW_FLAG}) FROM events WHERE ts >= %(since)s GROUP BY source",
            params,
        )
        reasons = self._rows(
            """
            SELECT source, array_agg(code ORDER BY n DESC, code) FILTER (WHERE rank <= %(top)s)
            FROM (
                SELECT source, code, COUNT(*) AS n, ROW_NUMBER() OVER (PARTITION BY source ORDER BY COUNT(*) DESC, code) AS rank
                FROM events, jsonb_array_elements_text(reason_codes) AS code
                WHERE ts >= %(since)s AND quality < %(threshold)s
                GROUP BY source, code
            ) counted
            GROUP BY source
            """,
            params,
        )
        top = {source: list(codes or []) for source, codes in reasons}
        columns = ["source", "count", "mean_quality", "low_quality_rate", "top_reasons"]
        if not rows:
            return pd.DataFrame(columns=columns)
        table = pd.DataFrame(rows, columns=columns[:4])
        table["count"] = table["count"].astype(int)
        table[["mean_quality", "low_quality_rate"]] = table[["mean_quality", "low_quality_rate"]].astype(float)
        table["top_reasons"] = [top.get(source, []) for source in table["source"]]
        table = table.sort_values(["count", "source"], ascending=[False, True], kind="stable")
        return table[columns].reset_index(drop=True)
