"""What every UI tab shares: the request's source id, and errors turned into one-language messages."""

from __future__ import annotations

import logging

from errors import FroodError
from service.validation import BadSourceError, check_source
from settings import get_settings
from ui.i18n import Locale, error_text, reason_text, tr

log = logging.getLogger("frood.ui")
UI_SOURCE = "ui"  # stored when the operator names no source


def clean_source(text: str | None) -> str:
    """The source to store with an event: the operator's id (validated) or ``ui`` when left empty."""
    return check_source(text) or UI_SOURCE


def error_markdown(error: Exception, locale: Locale) -> str:
    """A readable one-language message for any failure; unexpected ones are logged with their traceback."""
    if isinstance(error, BadSourceError):
        return f"**⚠️ {tr(locale, 'bad_source')}**"
    if isinstance(error, FroodError):
        return f"**⚠️ {error_text(error, locale)}**"
    log.exception("Unexpected error in a UI request")
    return f"**⚠️ {tr(locale, 'internal')}**"


IMAGE_SOURCES = ["upload", "webcam", "clipboard"]
IMAGE_HEIGHT = 360  # input photos are scaled to fit; the page stays one screen tall


def quality_badge(score: float | None, locale: Locale = "en") -> str:
    """The score and its band in words (good ≥ trust, borderline between, low < reject): no colour or emoji font needed."""
    settings = get_settings()
    if score is None:
        return "–"
    if score >= settings.trust_threshold:
        band = "band_good"
    elif score >= settings.reject_threshold:
        band = "band_borderline"
    else:
        band = "band_low"
    return f"{score:.2f} ({tr(locale, band)})"


def reason_lines(codes: list[str], locale: Locale) -> str:
    return "".join(f"\n  - {reason_text(code, locale)}" for code in codes)
