"""The operator's numbers for a period: counts and qualities from the stats store, every source's numbers, and
the webhook outbox's state (the Monitor tab's summary and table, and ``GET /stats``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
