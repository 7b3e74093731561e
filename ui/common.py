"""What every UI tab shares: the request's source id, and errors turned into one-language messages."""

from __future__ import annotations

import logging
import re

from errors import FroodError
from ui.i18n import Locale, error_text, tr

log = logging.getLogger("frood.ui")
UI_SOURCE = "ui"  # stored when the operator names no source
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class BadSourceError(FroodError):
    """A source id that is too long or has characters a filter or a log line should not carry."""

    code = "bad_source"


def clean_source(text: str | None) -> str:
    """The source to store with an event: the operator's id (validated) or ``ui`` when left empty."""
    text = (text or "").strip()
    if not text:
        return UI_SOURCE
    if not SOURCE_PATTERN.fullmatch(text):
        raise BadSourceError("the source must be at most 64 letters, digits or . _ : - characters")
    return text


def error_markdown(error: Exception, locale: Locale) -> str:
    """A readable one-language message for any failure; unexpected ones are logged with their traceback."""
    if isinstance(error, BadSourceError):
        return f"**⚠️ {tr(locale, 'bad_source')}**"
    if isinstance(error, FroodError):
        return f"**⚠️ {error_text(error, locale)}**"
    log.exception("Unexpected error in a UI request")
    return f"**⚠️ {tr(locale, 'internal')}**"
