"""``GET /health`` and ``GET /stats``: what a load balancer and an operator's dashboard read, and the sentence that says
which component fails most where and when (issue 26), in English and Simplified Chinese."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.component_messages import component_label


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


class ComponentFailureJSON(BaseModel):
    """One source's failing ISO/IEC 29794-5 component in one hour of day, over every day of the window."""

    model_config = ConfigDict(extra="forbid")

    source: str
    hour: int  # 0–23 in ``time_zone``: images taken from hour:00 to hour+1:00
    component: str  # the measure's name (OFIQ's spelling; schemas/component_messages.py names it in both languages)
    failed: int  # images whose main face failed the component's requirement
    images: int  # images whose main face was measured in that source and hour (at least service.monitor.MIN_IMAGES)
    share: float  # failed / images


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
    time_zone: str  # DISPLAY_TIMEZONE (IANA name), the zone of ``failing_components``' hours
    failing_components: list[ComponentFailureJSON]  # most failing first


def hour_span(hour: int) -> str:
    """An hour of day as the span it covers, ``18:00–19:00``."""
    return f"{hour:02d}:00–{hour + 1:02d}:00"


# "gate-2 fails Face brightness 60 % of the time at 18:00–19:00 (3 of 5 images)"
COMPONENT_FAILURE_TEXTS: tuple[str, str] = (
    "{source} fails {component} {percent} % of the time at {hours} ({failed} of {images} images)",
    "{source} 在 {hours} 有 {percent}% 的图像未达到“{component}”要求（{images} 张中 {failed} 张）",
)


def component_failure_sentence(row: dict, language: str = "en") -> str:
    """One row of ``failing_components`` as the operator reads it, in ``en`` or ``zh`` (the component's label in
    the same language)."""
    template = COMPONENT_FAILURE_TEXTS[1 if language == "zh" else 0]
    return template.format(
        source=row["source"],
        component=component_label(row["component"], language),
        percent=round(100 * row["share"]),
        hours=hour_span(int(row["hour"])),
        failed=row["failed"],
        images=row["images"],
    )
