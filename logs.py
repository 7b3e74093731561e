"""Logging set-up: one line per event, ``[LEVEL] message``, to stdout and a daily-rotated file kept 7 days."""

from __future__ import annotations

import logging
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
        file_handler = TimedRotatingFileHandler(settings.log_dir / LOG_FILE_NAME, when="midnight", backupCount=7, encoding="utf-8", utc=True)
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    except OSError as error:
        logging.getLogger("frood").warning("Log file disabled: %s", error)
    _configured = True
