"""The operator's numbers for a period: counts and qualities from the stats store, every source's numbers, and
the webhook outbox's state (the Monitor tab's summary and table, and ``GET /stats``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from errors import ApiError
from service import faces as service
from settings import get_settings

WINDOWS = ("today", "24h", "7d")


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
    }


# --- CSV export of a period (the Monitor's "Export as CSV") ---------------------------------------------------------

EVENT_COLUMNS = ["id", "time_utc", "local_time", "source", "operation", "model", "quality", "similarity", "decision", "reasons", "latency_ms", "rejected"]
ALL_SCORED = 1e9  # a quality threshold every scored event is under: the store's per-hour listing gives them all
EVENTS_PER_HOUR_MAX = 100_000


def per_source_csv(since: datetime, source: str | None = None) -> str:
    """The per-source table of the period as CSV (reason codes joined by ``;``)."""
    rows = per_source_rows(since, source)
    frame = pd.DataFrame(rows, columns=["source", "count", "mean_quality", "low_quality_rate", "top_reasons"])
    frame["top_reasons"] = [";".join(codes) for codes in frame["top_reasons"]]
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
            ]
            for event in events
        ],
        columns=EVENT_COLUMNS,
    )
    return frame.to_csv(index=False), len(events)
