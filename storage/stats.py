"""The rolling stats store: one row per processed image, one base for every backend (``stats_sqlite``, ``stats_postgres``).

The base holds what the backends share: the ``Event`` row, the queries (written once; a backend gives its
dialect: parameter markers, how an hour or a date is cut out of a timestamp, how reason codes are
unnested), how their rows become the answers the UI and ``/stats`` read (pandas fills in empty hours and
pivots), the retention policy and the pruning thread, and the ≤128 px JPEG thumbnail. A backend keeps what
really differs: its connections, its schema, where a thumbnail lives and how a prune runs as one transaction.
Aggregations are SQL + pandas, never Python loops over rows.

``failed_components`` (issue 26) holds the names of the main face's ISO/IEC 29794-5 components that fail their
requirement, stored as the reason codes are (a JSON list); NULL where nothing was measured (no face, or a row of
the version before the column existed), so such rows stay out of the failure shares.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

log = logging.getLogger("frood.store")
UTC = dt.UTC
THUMBNAIL_MAX_SIDE = 128
TOP_REASONS = 3  # reason codes listed per source in ``per_source``
PER_SOURCE_COLUMNS = ["source", "count", "mean_quality", "low_quality_rate", "top_reasons"]
COMPONENT_FAILURE_COLUMNS = ["source", "hour", "component", "failed", "images"]
QUARTER_S = 900  # rows are grouped by UTC quarter-hour: every time zone's offset is a whole number of quarters


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def to_utc(moment: dt.datetime) -> dt.datetime:
    """Aware UTC, second precision (what every backend stores); naive input is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


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
    failed_components: list[str] | None = None  # main face's components failing their requirement; None: not measured
    timestamp: dt.datetime = field(default_factory=utcnow)
    thumbnail_path: str | None = None
    id: int | None = None


def encode_thumbnail(rgb: np.ndarray) -> bytes:
    """A ≤128 px JPEG of the image (what a store keeps of a low-quality photo)."""
    image = Image.fromarray(rgb)
    image.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it into place: no half-written file ever shows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def summary_from_row(row: tuple) -> dict:
    """``summary``'s answer from its one SQL row (count, mean quality, low-quality rate, rejected)."""
    return {
        "count": int(row[0]),
        "mean_quality": float(row[1]) if row[1] is not None else None,
        "low_quality_rate": float(row[2]) if row[2] is not None else None,
        "rejected": int(row[3] or 0),
    }


def top_reasons(rows: list[tuple]) -> dict[str, list[str]]:
    """Per source, its ``TOP_REASONS`` most frequent codes (ties by name) from ``(source, code, count)`` rows."""
    ranked: dict[str, list[str]] = {}
    for source, code, _ in sorted(rows, key=lambda row: (row[0], -row[2], row[1])):
        ranked.setdefault(source, []).append(code)
    return {source: codes[:TOP_REASONS] for source, codes in ranked.items()}


class StatsStore(ABC):
    """What the service and the UI need from a stats backend; see the module docstring for who does what."""

    MARKER: ClassVar[str]  # a named parameter, ``{}`` standing for its name
    REJECTED: ClassVar[str]  # the ``rejected`` column as a number
    HOUR_OF_TS: ClassVar[str]  # the UTC hour a row falls in, as something pandas reads as a UTC timestamp
    DAY_AND_HOUR_OF_TS: ClassVar[str]  # the UTC date and the hour of day (0-23), two columns
    REASONS_FROM: ClassVar[str]  # a FROM item unnesting ``events.reason_codes``
    REASON_CODE: ClassVar[str]  # the code column of that item
    QUARTER_OF_TS: ClassVar[str]  # the UTC quarter-hour a row falls in, as whole seconds since the epoch
    COMPONENTS_FROM: ClassVar[str]  # a FROM item unnesting ``events.failed_components`` (no rows when NULL)
    COMPONENT_NAME: ClassVar[str]  # the name column of that item
    THUMBNAIL: ClassVar[str]  # the column holding the thumbnail (a path or the image)

    def __init__(self, store_thumbnails: bool, events_retention_days: int, thumbnails_retention_days: int):
        self.store_thumbnails = store_thumbnails
        self.events_retention = dt.timedelta(days=events_retention_days)
        self.thumbnails_retention = dt.timedelta(days=thumbnails_retention_days)
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None

    # -- what a backend implements ----------------------------------------------------------------

    @abstractmethod
    def _rows(self, query: str, params: dict[str, Any]) -> list[tuple]:
        """The rows of one read-only query (named parameters written with ``MARKER``)."""

    @abstractmethod
    def _stamp(self, moment: dt.datetime) -> Any:
        """A moment as the ``ts`` column holds it."""

    @abstractmethod
    def _timestamp(self, stored: Any) -> dt.datetime:
        """A stored ``ts`` as aware UTC."""

    @abstractmethod
    def _reason_codes(self, stored: Any) -> list[str]:
        """A stored ``reason_codes`` as a list."""

    @abstractmethod
    def _store_reason_codes(self, codes: list[str]) -> Any:
        """A list of reason codes as the ``reason_codes`` column holds it."""

    @abstractmethod
    def _thumbnail_path(self, event_id: int, stored: Any) -> str | None:
        """A stored thumbnail as a local file path (None when there is none)."""

    @abstractmethod
    def _insert(self, event: Event, jpeg: bytes | None) -> int:
        """Store one event and its thumbnail (if any) in one transaction; returns its id."""

    @abstractmethod
    def _prune_rows(self, thumbnails_before: dt.datetime, events_before: dt.datetime) -> tuple[int, int]:
        """In one transaction, drop the thumbnails of rows before ``thumbnails_before`` and the rows before
        ``events_before``; returns (events deleted, thumbnails deleted)."""

    @abstractmethod
    def _sweep_files(self, thumbnails_before: dt.datetime) -> None:
        """Local thumbnail files past their retention that no row needs any more."""

    # -- shared SQL ---------------------------------------------------------------------------------

    def _param(self, name: str) -> str:
        return self.MARKER.format(name)

    def _source_clause(self, source: str | None) -> str:
        return "" if source is None else f" AND source = {self._param('source')}"

    def _low_flag(self) -> str:
        """1.0 below the threshold, 0.0 at or above, NULL when unscored (so it stays out of the rate)."""
        return f"CASE WHEN quality IS NULL THEN NULL WHEN quality < {self._param('threshold')} THEN 1.0 ELSE 0.0 END"

    # -- writes -----------------------------------------------------------------------------------

    def _insert_statement(self, event: Event, thumbnail: Any) -> tuple[str, dict[str, Any]]:
        """The INSERT of one event (``thumbnail``: what the backend's thumbnail column holds), returning its id."""
        columns = ["ts", "source", "operation", "model", "quality", "similarity", "decision", "reason_codes", "latency_ms", "rejected", "failed_components"]
        failed = None if event.failed_components is None else self._store_reason_codes(list(event.failed_components))
        params = {name: getattr(event, name) for name in columns[1:7]} | {
            "ts": self._stamp(event.timestamp),
            "reason_codes": self._store_reason_codes(list(event.reason_codes)),
            "latency_ms": event.latency_ms,
            "rejected": bool(event.rejected),
            "failed_components": failed,
            "thumbnail": thumbnail,
        }
        markers = ", ".join(self._param(name) for name in [*columns, "thumbnail"])
        return f"INSERT INTO events ({', '.join(columns)}, {self.THUMBNAIL}) VALUES ({markers}) RETURNING id", params

    def record(self, event: Event, thumbnail: np.ndarray | None = None) -> int:
        """Insert one event (one transaction); keeps a thumbnail only if given and allowed."""
        jpeg = encode_thumbnail(thumbnail) if thumbnail is not None and self.store_thumbnails else None
        event.id = int(self._insert(event, jpeg))
        return event.id

    def prune(self, now: dt.datetime | None = None) -> dict:
        """Drop events past their retention and thumbnails past theirs (rows in one transaction, then files).

        A crash between the two leaves at worst a row whose thumbnail is missing (the UI skips those)."""
        now = to_utc(now or utcnow())
        thumbnails_before = now - self.thumbnails_retention
        deleted, thumbnails = self._prune_rows(thumbnails_before, now - self.events_retention)
        self._sweep_files(thumbnails_before)
        if deleted or thumbnails:
            log.info("Pruned %d events and %d thumbnails", deleted, thumbnails)
        return {"events_deleted": int(deleted), "thumbnails_deleted": int(thumbnails)}

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

    def close(self) -> None:
        """Stop pruning and release the connections (the store is unusable afterwards)."""
        self.stop()

    # -- reads ------------------------------------------------------------------------------------

    def count_events(self) -> int:
        """All rows, whatever their age (tests and the health check use it)."""
        return int(self._rows("SELECT COUNT(*) FROM events", {})[0][0])

    def sources(self) -> list[str]:
        """Every source with at least one stored event, sorted (the Monitor's filter choices)."""
        return [row[0] for row in self._rows("SELECT DISTINCT source FROM events ORDER BY source", {})]

    def summary(self, since: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None) -> dict:
        """Totals since ``since`` (of one source, or all); the low-quality rate counts only scored events (None if none)."""
        row = self._rows(
            f"SELECT COUNT(*), AVG(quality), AVG({self._low_flag()}), SUM({self.REJECTED}) FROM events"
            f" WHERE ts >= {self._param('since')}{self._source_clause(source)}",
            {"threshold": low_quality_threshold, "since": self._stamp(since), "source": source},
        )[0]
        return summary_from_row(row)

    def hourly(self, since: dt.datetime, until: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None) -> pd.DataFrame:
        """One row per UTC hour in ``[since, until)``, empty hours included (count 0, NaN means)."""
        start = pd.Timestamp(to_utc(since)).floor("h")
        hours = pd.date_range(start, pd.Timestamp(to_utc(until)), freq="h", inclusive="left")
        rows = self._rows(
            f"SELECT {self.HOUR_OF_TS}, COUNT(*), AVG(quality), AVG({self._low_flag()}) FROM events"
            f" WHERE ts >= {self._param('since')} AND ts < {self._param('until')}{self._source_clause(source)} GROUP BY 1",
            {"threshold": low_quality_threshold, "since": self._stamp(start.to_pydatetime()), "until": self._stamp(until), "source": source},
        )
        grouped = pd.DataFrame(rows, columns=["hour", "count", "mean_quality", "low_quality_rate"])
        grouped["hour"] = pd.to_datetime(grouped["hour"], utc=True)
        grouped = grouped.set_index("hour").reindex(hours)
        grouped["count"] = grouped["count"].fillna(0).astype(int)
        grouped[["mean_quality", "low_quality_rate"]] = grouped[["mean_quality", "low_quality_rate"]].astype(float)
        return grouped.rename_axis("hour").reset_index()

    def day_hour_heatmap(self, days: int = 7, now: dt.datetime | None = None, low_quality_threshold: float = 0.4, *, source: str | None = None) -> pd.DataFrame:
        """Rows: the last ``days`` UTC dates; columns 0–23; values: low-quality rate (NaN: no traffic)."""
        first_day = pd.Timestamp(to_utc(now or utcnow())).normalize() - pd.Timedelta(days=days - 1)
        rows = self._rows(
            f"SELECT {self.DAY_AND_HOUR_OF_TS}, AVG({self._low_flag()}) FROM events"
            f" WHERE ts >= {self._param('since')}{self._source_clause(source)} GROUP BY 1, 2",
            {"threshold": low_quality_threshold, "since": self._stamp(first_day.to_pydatetime()), "source": source},
        )
        frame = pd.DataFrame(rows, columns=["date", "hour", "low"])
        frame["date"] = pd.to_datetime(frame["date"]).dt.date
        frame["hour"] = frame["hour"].astype(int)
        frame["low"] = frame["low"].astype(float)
        table = frame.pivot_table(index="date", columns="hour", values="low", aggfunc="mean", dropna=False)
        dates = [(first_day + pd.Timedelta(days=offset)).date() for offset in range(days)]
        return table.reindex(index=dates, columns=range(24))

    def low_quality_in_hour(self, hour_start: dt.datetime, limit: int = 50, low_quality_threshold: float = 0.4, *, source: str | None = None) -> list[Event]:
        """That hour's low-quality events (of one source, or all), newest first, with their thumbnails as files when kept."""
        start = to_utc(hour_start)
        p = self._param
        rows = self._rows(
            f"SELECT id, ts, source, operation, model, quality, similarity, decision, reason_codes, latency_ms, rejected, {self.THUMBNAIL},"
            " failed_components"
            f" FROM events WHERE ts >= {p('start')} AND ts < {p('end')} AND quality < {p('threshold')}{self._source_clause(source)}"
            f" ORDER BY ts DESC, id DESC LIMIT {p('limit')}",
            {
                "start": self._stamp(start),
                "end": self._stamp(start + dt.timedelta(hours=1)),
                "threshold": low_quality_threshold,
                "source": source,
                "limit": limit,
            },
        )
        return [
            Event(
                id=row[0],
                timestamp=self._timestamp(row[1]),
                source=row[2],
                operation=row[3],
                model=row[4],
                quality=row[5],
                similarity=row[6],
                decision=row[7],
                reason_codes=self._reason_codes(row[8]),
                latency_ms=row[9],
                rejected=bool(row[10]),
                thumbnail_path=self._thumbnail_path(row[0], row[11]),
                failed_components=None if row[12] is None else self._reason_codes(row[12]),
            )
            for row in rows
        ]

    def per_source(self, since: dt.datetime, low_quality_threshold: float = 0.4, *, source: str | None = None) -> pd.DataFrame:
        """One row per source seen since ``since`` (or only ``source``'s), busiest first: which gate or device is
        dropping quality.

        Columns: ``source, count, mean_quality, low_quality_rate`` (scored events only; NaN when none)
        and ``top_reasons``: up to three reason codes, most frequent first, among that source's low-quality events.
        """
        params = {"threshold": low_quality_threshold, "since": self._stamp(since), "source": source}
        p = self._param
        where = f"ts >= {p('since')}{self._source_clause(source)}"
        rows = self._rows(f"SELECT source, COUNT(*), AVG(quality), AVG({self._low_flag()}) FROM events WHERE {where} GROUP BY source", params)
        if not rows:
            return pd.DataFrame(columns=PER_SOURCE_COLUMNS)
        reasons = self._rows(
            f"SELECT source, {self.REASON_CODE}, COUNT(*) FROM events, {self.REASONS_FROM} WHERE {where} AND quality < {p('threshold')} GROUP BY 1, 2",
            params,
        )
        top = top_reasons(reasons)
        table = pd.DataFrame(rows, columns=PER_SOURCE_COLUMNS[:4])
        table["count"] = table["count"].astype(int)
        table[["mean_quality", "low_quality_rate"]] = table[["mean_quality", "low_quality_rate"]].astype(float)
        table["top_reasons"] = [top.get(source, []) for source in table["source"]]
        table = table.sort_values(["count", "source"], ascending=[False, True], kind="stable")
        return table[PER_SOURCE_COLUMNS].reset_index(drop=True)

    def component_failures(self, since: dt.datetime, until: dt.datetime, zone: dt.tzinfo = UTC, *, source: str | None = None) -> pd.DataFrame:
        """Which components fail, per source and hour of day in ``zone`` (the Monitor's display zone), in ``[since, until)``.

        One row per (source, hour 0–23, component) that failed at least once. ``failed``: that hour's images whose
        main face failed the component; ``images``: that hour's images whose components were measured (rows with
        ``failed_components`` NULL, no face or recorded by the previous version, are left out of both). Hours of
        different days add up: "gate-2 fails at 18:00" is a habit of the place, not one evening. SQL counts per UTC
        quarter-hour (exact for zones offset by 30 or 45 minutes, and across a DST change); pandas moves the
        quarters to the zone's hours.
        """
        params = {"since": self._stamp(since), "until": self._stamp(until), "source": source}
        p = self._param
        where = f"ts >= {p('since')} AND ts < {p('until')}{self._source_clause(source)} AND failed_components IS NOT NULL"
        measured = self._rows(f"SELECT source, {self.QUARTER_OF_TS}, COUNT(*) FROM events WHERE {where} GROUP BY 1, 2", params)
        failing = self._rows(
            f"SELECT source, {self.QUARTER_OF_TS}, {self.COMPONENT_NAME}, COUNT(*) FROM events, {self.COMPONENTS_FROM} WHERE {where} GROUP BY 1, 2, 3",
            params,
        )
        if not failing:
            return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in zip(COMPONENT_FAILURE_COLUMNS, (object, int, object, int, int))})

        def local_hours(frame: pd.DataFrame) -> pd.DataFrame:
            quarters = pd.to_datetime(frame.pop("quarter").astype("int64"), unit="s", utc=True)
            return frame.assign(hour=quarters.dt.tz_convert(zone).dt.hour)

        images = local_hours(pd.DataFrame(measured, columns=["source", "quarter", "images"]))
        images = images.groupby(["source", "hour"], as_index=False)["images"].sum()
        failed = local_hours(pd.DataFrame(failing, columns=["source", "quarter", "component", "failed"]))
        failed = failed.groupby(["source", "hour", "component"], as_index=False)["failed"].sum()
        table = failed.merge(images, on=["source", "hour"], how="left")
        table[["hour", "failed", "images"]] = table[["hour", "failed", "images"]].astype(int)
        table = table.sort_values(["source", "hour", "component"], kind="stable")
        return table[COMPONENT_FAILURE_COLUMNS].reset_index(drop=True)


Store = StatsStore  # the name the service and the UI know the protocol by
