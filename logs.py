"""Logging set-up: one line per event, ``[LEVEL] message``, to stdout and a file that rolls over at midnight (UTC)
and whenever it reaches ``LOG_MAX_BYTES``, ``LOG_BACKUP_COUNT`` files kept.

A client's bad input is one ``[WARNING]`` line (:func:`client_error`); a traceback is only for the server's own faults.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import TimedRotatingFileHandler

from settings import get_settings

LOG_FORMAT = "[%(levelname)s] %(message)s"
LOG_FILE_NAME = "face-recognition-ood.log"
LOG_LINE_MAX = 2000  # characters per written line: caller input echoed into a message can never flood the log
_configured = False


class BoundedFormatter(logging.Formatter):
    """``[LEVEL] message`` with every line (tracebacks included) cut to ``LOG_LINE_MAX`` characters."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if len(text) <= LOG_LINE_MAX:
            return text
        return "\n".join(line if len(line) <= LOG_LINE_MAX else line[: LOG_LINE_MAX - 20] + f"… [{len(line)} chars]" for line in text.split("\n"))


class SizeAndTimeRotatingFileHandler(TimedRotatingFileHandler):
    """Rolls over at the timed boundary (midnight) and also as soon as the file would exceed ``max_bytes``.

    Several roll-overs in one day get distinct names (``.2026-12-06``, ``.2026-12-06.1``, ...); the oldest beyond
    ``backupCount`` are deleted, so the disk used is bounded by about ``(backupCount + 1) × max_bytes``.
    """

    def __init__(self, filename, max_bytes: int, **kwargs):
        super().__init__(filename, **kwargs)
        self.max_bytes = max_bytes

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (logging's naming)
        if super().shouldRollover(record):
            return True
        if self.max_bytes <= 0 or self.stream is None or not os.path.isfile(self.baseFilename):
            return False
        message = f"{self.format(record)}\n"
        self.stream.seek(0, 2)
        encoding = self.encoding if self.encoding not in (None, "locale") else "utf-8"
        return self.stream.tell() + len(message.encode(encoding, "replace")) > self.max_bytes

    def rotation_filename(self, default_name: str) -> str:
        """The timed name, or that name with ``.1``, ``.2``... when the day already rolled over (by size)."""
        name, number = default_name, 0
        while os.path.exists(name):
            number += 1
            name = f"{default_name}.{number}"
        return name

    def getFilesToDelete(self) -> list[str]:  # noqa: N802 (logging's naming)
        directory, base = os.path.split(self.baseFilename)
        prefix = base + "."
        found = [os.path.join(directory, name) for name in os.listdir(directory or ".") if name.startswith(prefix)]
        if len(found) <= self.backupCount:
            return []
        found.sort(key=lambda path: (os.path.getmtime(path), path))
        return found[: len(found) - self.backupCount]


def client_error(logger: logging.Logger, what: str, error: BaseException) -> None:
    """A caller's bad request or input: one warning line, no traceback (those are for the server's own faults)."""
    code = getattr(error, "code", type(error).__name__)
    logger.warning("%s: %s (%s)", what, str(error)[:300].replace("\n", " "), code)


def configure_logging(quiet: bool = False) -> None:
    """Idempotent. ``quiet`` sends console lines to stderr (keeps ``--json`` output on stdout clean)."""
    global _configured
    if _configured:
        return
    settings = get_settings()
    root = logging.getLogger()
    root.setLevel(settings.log_level.upper())
    formatter = BoundedFormatter(LOG_FORMAT)
    console = logging.StreamHandler(sys.stderr if quiet else sys.stdout)
    console.setFormatter(formatter)
    if quiet:
        console.setLevel(logging.WARNING)
    root.addHandler(console)
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = SizeAndTimeRotatingFileHandler(
            settings.log_dir / LOG_FILE_NAME,
            max_bytes=settings.log_max_bytes,
            when="midnight",
            backupCount=settings.log_backup_count,
            encoding="utf-8",
            utc=True,
        )
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    except OSError as error:
        logging.getLogger("frood").warning("Log file disabled: %s", error)
    _configured = True
