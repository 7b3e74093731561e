"""What every UI tab shares: the request's source id, errors turned into one-language messages, the quality badge,
the punctuation of each language, and the path of an uploaded file."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from errors import FroodError
from service.validation import BadSourceError, check_source
from settings import get_settings
from ui.i18n import Locale, error_text, reason_text, tr

log = logging.getLogger("frood.ui")
UI_SOURCE = "ui"  # stored when the operator names no source
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+|!~])")


def clean_source(text: str | None) -> str:
    """The source to store with an event: the operator's id (validated) or ``ui`` when left empty."""
    return check_source(text) or UI_SOURCE


def escape_markdown(text: str) -> str:
    """Text shown as is in a Markdown component (a ``\\`` or ``*`` in a message is not markup)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def sentence(text: str) -> str:
    """A message as a sentence: its first letter capitalised ('no face found' -> 'No face found')."""
    return text[:1].upper() + text[1:] if text else text


def warning(text: str) -> str:
    """A warning line (⚠ is a text glyph every font has; the emoji form needs an emoji font)."""
    return f'<span class="frood-warning">⚠ {html.escape(sentence(text))}</span>'


def done(text: str) -> str:
    """A success line (as written: it may start with a person's name)."""
    return f'<span class="frood-done">✓ {html.escape(text)}</span>'


def colon(locale: Locale) -> str:
    """The label separator of the language: a full-width colon in Chinese."""
    return "：" if locale == "zh" else ": "


def paren(locale: Locale, text: str) -> str:
    return f"（{text}）" if locale == "zh" else f" ({text})"


def error_markdown(error: Exception, locale: Locale) -> str:
    """A readable one-language message for any failure; unexpected ones are logged with their traceback."""
    if isinstance(error, BadSourceError):
        return warning(tr(locale, "bad_source"))
    if isinstance(error, FroodError):
        return warning(error_text(error, locale))
    log.exception("Unexpected error in a UI request")
    return warning(tr(locale, "internal"))


def upload_path(value: Any) -> str | None:
    """The local path of an image input: a path (``type="filepath"``), or Gradio's file data when the event does
    not preprocess (so a file that is not an image reaches our decoder and its readable error, not Gradio's)."""
    if value is None or isinstance(value, str):
        return value or None
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", None)
    if not path:
        return None
    from gradio.utils import get_upload_folder, is_in_or_equal

    # The door already refuses a path that is not this caller's upload; a path outside Gradio's uploads is not read.
    return str(path) if is_in_or_equal(str(path), get_upload_folder()) else None


IMAGE_SOURCES = ["upload", "webcam", "clipboard"]
IMAGE_HEIGHT = 360  # input photos are scaled to fit; the page stays one screen tall


def quality_band(score: float | None) -> str | None:
    """good ≥ trust threshold, borderline between, low < reject threshold."""
    settings = get_settings()
    if score is None:
        return None
    if score >= settings.trust_threshold:
        return "good"
    if score >= settings.reject_threshold:
        return "borderline"
    return "low"


def quality_text(score: float | None, locale: Locale = "en") -> str:
    """The score and its band in words (for captions and tables: no colour needed)."""
    band = quality_band(score)
    if band is None:
        return "–"
    return f"{score:.2f}{paren(locale, tr(locale, 'band_' + band))}"


def quality_badge(score: float | None, locale: Locale = "en") -> str:
    """The score and its band on the band's colour (green, orange, red: white text >= 4.5:1), words included."""
    band = quality_band(score)
    if band is None:
        return "–"
    return f'<span class="frood-badge frood-badge-{band}">{score:.2f} {html.escape(tr(locale, "band_" + band))}</span>'


def reason_lines(codes: list[str], locale: Locale) -> str:
    return "".join(f"\n  - {escape_markdown(reason_text(code, locale))}" for code in codes)
