"""Checks on what a caller sends (identifiers, labels, ids) with messages that say what to change.

Every shell validates through these, so the HTTP API, the UI and the CLI refuse the same inputs in the same words.
"""

from __future__ import annotations

import re
import unicodedata

from errors import ApiError, FroodError

IDENTIFIER_MAX = 64
LABEL_MAX = 128
MAX_IDS = 10_000
_IDENTIFIER = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{IDENTIFIER_MAX - 1}}}")


def shorten(value: object, limit: int = 40) -> str:
    """A bounded ``repr`` of caller input for messages and logs (never echo unbounded input)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def check_identifier(value: object, what: str) -> str:
    """indexKey, source, requestId, model names: 1–64 of ``A-Z a-z 0-9 . _ : -``, starting alphanumeric; else 400."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ApiError(400, f"{what} {shorten(value)} is not valid: use 1–{IDENTIFIER_MAX} characters of A-Z a-z 0-9 . _ : - (starting with a letter or digit)")
    return value


def check_label(value: object, what: str = "label") -> str:
    """A person's label: 1–128 characters, any script, no control characters, not blank; else 400."""
    if not isinstance(value, str) or not value.strip() or len(value) > LABEL_MAX:
        raise ApiError(400, f"{what} {shorten(value)} is not valid: use 1–{LABEL_MAX} characters, not only spaces")
    if any(unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp") for char in value):
        raise ApiError(400, f"{what} {shorten(value)} contains control, line-break or unassigned characters")
    return value


def check_ids(values: list[int]) -> list[int]:
    """Gallery ids to remove: at most 10,000, each in [0, 2**63)."""
    if len(values) > MAX_IDS:
        raise ApiError(400, f"at most {MAX_IDS} ids per request, got {len(values)}")
    bad = [value for value in values if not 0 <= value < 2**63]
    if bad:
        raise ApiError(400, f"ids must be in [0, 2**63): {shorten(bad)}")
    return values


SOURCE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class BadSourceError(FroodError):
    """A source id that is too long or has characters a filter or a log line should not carry."""

    code = "bad_source"


def check_source(text: str | None) -> str | None:
    """A camera / device / site id: None when empty, else 1–64 of ``A-Z a-z 0-9 . _ : -`` (400 otherwise)."""
    text = (text or "").strip()
    if not text:
        return None
    if not SOURCE_PATTERN.fullmatch(text):
        raise BadSourceError("the source must be at most 64 letters, digits or . _ : - characters")
    return text
