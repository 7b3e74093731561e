"""The operator's numbers for a period: counts and qualities from the stats store, every source's numbers, which
components fail most per source and hour of day, and the webhook outbox's state (the Monitor tab's summary and
tables, and ``GET /stats``). Hours of day are in ``DISPLAY_TIMEZONE`` (UTC when unset or unknown)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from errors import ApiError
from schemas.monitor import hour_span
from service import faces as service
from settings import get_settings

log = logging.getLogger("frood.monitor")
WINDOWS = ("today", "24h", "7d")
# A (source, hour of day) needs this many measured images before its failure shares are shown: below it one
# dark photo would read "gate-2 fails 100 % of the time". 5 makes one image worth at most 20 points of share.
MIN_IMAGES = 5


@lru_cache(maxsize=4)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("DISPLAY_TIMEZONE %r is not a known time zone: times are shown in UTC", name)
        return UTC


def display_zone() -> tzinfo:
    """``DISPLAY_TIMEZONE`` (UTC when unset or unknown): the zone of the Monitor's hours, in the UI and ``/stats``."""
    return _zone(get_settings().display_timezone or "UTC")


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or "UTC"


def window_start(window: str, now: datetime | None = None) -> datetime:
    """``today``: since UTC midnight; ``24h`` / ``7d``: the last 24 or 168 hours, from the start of the oldest hour."""
    now = now or datetime.now(UTC)
    if window == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    hours = 24 * 7 if window == "7d" else 24
    return (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)


def _number(value: float | None) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 4)


def per_source_rows(since: datetime, source: str | None = None) -> list[dict]:
    """Every source's count, mean quality, low-quality rate and top reasons since ``since`` (as the Monitor's table)."""
    store = service.store()
    if store is None:
        return []
    frame = store.per_source(since, get_settings().reject_threshold, source=source)
    return [
        {
            "source": row.source,
            "count": int(row.count),
            "mean_quality": _number(row.mean_quality),
            "low_quality_rate": _number(row.low_quality_rate),
            "top_reasons": list(row.top_reasons),
        }
        for row in frame.itertuples(index=False)
    ]


def monitor_snapshot(source: str | None = None, window: str = "today") -> dict:
    """The period's numbers (of one source, or all) from the store, every source's row, and the webhook outbox."""
    if window not in WINDOWS:
        raise ApiError(422, f"window must be one of {', '.join(WINDOWS)}, got {str(window)[:20]!r}")
    settings = get_settings()
    store, outbox = service.store(), service.outbox()
    since = window_start(window)
    empty = {"count": 0, "mean_quality": None, "low_quality_rate": None, "rejected": 0}
    summary = store.summary(since, settings.reject_threshold, source=source) if store else empty
    webhook = outbox.stats() if outbox and outbox.enabled else {"sent": 0, "pending": 0, "failed": 0}
    return {
        "window": window,
        "since": since.isoformat(),
        "source": source,
        **summary,
        "reject_threshold": settings.reject_threshold,
        "auto_reject_threshold": settings.auto_reject_threshold,
        "webhook": webhook,
        "webhook_enabled": bool(outbox and outbox.enabled),
        "sources": per_source_rows(since, source),
        "time_zone": zone_name(display_zone()),
        "failing_components": component_failure_rows(since, source=source),
    }


def component_failure_rows(
    since: datetime, until: datetime | None = None, source: str | None = None, zone: tzinfo | None = None, min_images: int = MIN_IMAGES
) -> list[dict]:
    """Which components fail most, per source and hour of day (in ``zone``, the display zone by default) from ``since``
    to ``until`` (now): one row per (source, hour, component) that failed, ``share`` = failed / measured images,
    most failing first (then more failures, then source, hour, component). A (source, hour) with fewer than
    ``min_images`` measured images (``MIN_IMAGES``) is left out: too few to call a habit."""
    store = service.store()
    if store is None:
        return []
    until = until or datetime.now(UTC) + timedelta(seconds=1)
    frame = store.component_failures(since, until, zone or display_zone(), source=source)
    frame = frame[frame["images"] >= max(1, min_images)]
    rows = [
        {
            "source": row.source,
            "hour": int(row.hour),
            "component": row.component,
            "failed": int(row.failed),
            "images": int(row.images),
            "share": round(int(row.failed) / int(row.images), 4),
        }
        for row in frame.itertuples(index=False)
    ]
    return sorted(rows, key=lambda row: (-row["share"], -row["failed"], row["source"], row["hour"], row["component"]))


# --- CSV export of a period (the Monitor's "Export as CSV") ---------------------------------------------------------

EVENT_COLUMNS = [
    "id",
    "time_utc",
    "local_time",
    "source",
    "operation",
    "model",
    "quality",
    "similarity",
    "decision",
    "reasons",
    "latency_ms",
    "rejected",
    "failed_components",
]
ALL_SCORED = 1e9  # a quality threshold every scored event is under: the store's per-hour listing gives them all
EVENTS_PER_HOUR_MAX = 100_000


def per_source_csv(since: datetime, source: str | None = None) -> str:
    """The per-source table of the period as CSV (reason codes joined by ``;``)."""
    rows = per_source_rows(since, source)
    frame = pd.DataFrame(rows, columns=["source", "count", "mean_quality", "low_quality_rate", "top_reasons"])
    frame["top_reasons"] = [";".join(codes) for codes in frame["top_reasons"]]
    return frame.to_csv(index=False)


COMPONENT_FAILURE_CSV_COLUMNS = ["source", "hour", "hours", "time_zone", "component", "failed", "images", "share"]


def component_failures_csv(since: datetime, until: datetime | None = None, source: str | None = None, zone: tzinfo | None = None) -> str:
    """The "components that fail most" table of the period as CSV (hours of day in ``zone``, named in each row)."""
    zone = zone or display_zone()
    rows = component_failure_rows(since, until, source, zone)
    frame = pd.DataFrame(
        [[row["source"], row["hour"], hour_span(row["hour"]), zone_name(zone), row["component"], row["failed"], row["images"], row["share"]] for row in rows],
        columns=COMPONENT_FAILURE_CSV_COLUMNS,
    )
    return frame.to_csv(index=False)


def period_events(since: datetime, until: datetime, source: str | None = None) -> list:
    """Every scored event from ``since`` to ``until`` (of one source, or all), oldest first, hour by hour."""
    store = service.store()
    if store is None:
        return []
    events = []
    hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < until:
        found = store.low_quality_in_hour(hour, limit=EVENTS_PER_HOUR_MAX, low_quality_threshold=ALL_SCORED, source=source)
        events.extend(event for event in reversed(found) if since <= event.timestamp < until)
        hour += timedelta(hours=1)
    return events


def events_csv(since: datetime, until: datetime, source: str | None = None, zone: Any = UTC) -> tuple[str, int]:
    """The period's events as CSV: UTC time (as stored) and the time in ``zone`` (the UI's display zone)."""
    events = period_events(since, until, source)
    frame = pd.DataFrame(
        [
            [
                event.id,
                event.timestamp.astimezone(UTC).isoformat(timespec="seconds"),
                event.timestamp.astimezone(zone).isoformat(timespec="seconds"),
                event.source,
                event.operation,
                event.model,
                None if event.quality is None else round(float(event.quality), 4),
                None if event.similarity is None else round(float(event.similarity), 4),
                event.decision,
                ";".join(event.reason_codes),
                None if event.latency_ms is None else round(float(event.latency_ms), 1),
                int(bool(event.rejected)),
                ";".join(event.failed_components or []),
            ]
            for event in events
        ],
        columns=EVENT_COLUMNS,
    )
    return frame.to_csv(index=False), len(events)
