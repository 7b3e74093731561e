"""The operator's numbers: today's counts and qualities from the stats store and the webhook outbox's state
(the Monitor tab's summary and ``GET /stats``)."""

from __future__ import annotations

from datetime import UTC, datetime

from service import faces as service
from settings import get_settings


def monitor_snapshot(source: str | None = None) -> dict:
    """Today's numbers (UTC) from the store (of one source, or all) and the webhook outbox; also served at ``/stats``."""
    settings = get_settings()
    store, outbox = service.store(), service.outbox()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    empty = {"count": 0, "mean_quality": None, "low_quality_rate": None, "rejected": 0}
    summary = store.summary(today, settings.reject_threshold, source=source) if store else empty
    webhook = outbox.stats() if outbox and outbox.enabled else {"sent": 0, "pending": 0, "failed": 0}
    return {
        "since": today.isoformat(),
        "source": source,
        **summary,
        "reject_threshold": settings.reject_threshold,
        "auto_reject_threshold": settings.auto_reject_threshold,
        "webhook": webhook,
        "webhook_enabled": bool(outbox and outbox.enabled),
    }
