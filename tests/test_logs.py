"""Logs stay bounded (issue 22): the file rolls over by size as well as at midnight, and old files are deleted."""

from __future__ import annotations

import logging
import subprocess
import sys

from logs import LOG_FILE_NAME, BoundedFormatter, SizeAndTimeRotatingFileHandler, client_error
from settings import Settings
from tests.apphelpers import ROOT


def test_defaults_roll_over_at_50_mb_and_keep_7_files():
    settings = Settings()
    assert settings.log_max_bytes == 50 * 1024 * 1024 and settings.log_backup_count == 7


def test_the_file_rolls_over_by_size_within_a_day_and_keeps_backup_count_files(tmp_path):
    handler = SizeAndTimeRotatingFileHandler(tmp_path / LOG_FILE_NAME, max_bytes=4000, when="midnight", backupCount=3, utc=True)
    handler.setFormatter(BoundedFormatter("[%(levelname)s] %(message)s"))
    logger = logging.getLogger("test.logs.size")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for number in range(400):  # about 40 KB: ten times the limit, within one day
            logger.warning("line %04d %s", number, "x" * 80)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 + 3, [path.name for path in files]  # the live file and backupCount rolled-over ones
    assert all(path.stat().st_size <= 4000 for path in files)
    assert "line 0399" in (tmp_path / LOG_FILE_NAME).read_text()


def test_the_app_logging_uses_the_size_limit_from_the_settings(tmp_path):
    code = (
        "import logging\nfrom logs import configure_logging\nconfigure_logging(quiet=True)\n"
        "for i in range(300):\n    logging.getLogger('frood.test').info('event %d %s', i, 'y' * 60)\n"
    )
    env = {"LOG_DIR": str(tmp_path), "LOG_MAX_BYTES": "2048", "LOG_BACKUP_COUNT": "2", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    files = list(tmp_path.glob(f"{LOG_FILE_NAME}*"))
    assert len(files) == 3 and all(path.stat().st_size <= 2048 for path in files)


def test_a_client_error_is_one_warning_line(caplog):
    from errors import ImageDecodeError

    with caplog.at_level(logging.WARNING, logger="frood.test"):
        client_error(logging.getLogger("frood.test"), "POST /extract -> 400", ImageDecodeError("this is not an image\nwe can read" + "k" * 5000))
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    record = caplog.records[0]
    assert record.exc_info is None and "\n" not in record.getMessage() and len(record.getMessage()) < 400
    assert record.getMessage().endswith("(invalid_image)")
