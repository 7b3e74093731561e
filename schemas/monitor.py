"""``GET /health`` and ``GET /stats``: what a load balancer and an operator's dashboard read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class HealthJSON(BaseModel):
    """200 once the models are loaded (503 ``{"status": "loading"}`` before); nothing secret."""

    model_config = ConfigDict(extra="forbid")

    status: str
    model: str
    device: str
    version: str
    uptime_s: float


class WebhookCountsJSON(BaseModel):
    sent: int
    pending: int
    failed: int


class SourceRowJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    count: int
    mean_quality: float | None
    low_quality_rate: float | None
    top_reasons: list[str]  # reason codes, most frequent first, among the source's low-quality images


class StatsJSON(BaseModel):
    """The Monitor's numbers for a period (``today``, ``24h``, ``7d``; UTC; ``since`` is ISO-8601)."""

    model_config = ConfigDict(extra="forbid")

    window: str
    since: str
    source: str | None
    count: int
    mean_quality: float | None
    low_quality_rate: float | None
    rejected: int
    reject_threshold: float
    auto_reject_threshold: float
    webhook: WebhookCountsJSON
    webhook_enabled: bool
    sources: list[SourceRowJSON]
