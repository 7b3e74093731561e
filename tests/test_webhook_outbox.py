"""What only the SQLite outbox (``service.webhook.WebhookOutbox``, one machine) does: no URL touches no file, an
outbox file written before pruning existed keeps working, and the ``frood webhook`` operator CLI. The contract
every backend keeps (signing, retries, restarts, pruning, retry and drop) is tests/test_contract_outbox.py."""

from __future__ import annotations

import json
import sqlite3

import pytest

from service.webhook import WebhookOutbox
from tests.apphelpers import WebhookReceiver


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def test_no_url_means_disabled(tmp_path):
    outbox = WebhookOutbox(tmp_path / "outbox.sqlite3", "")
    assert outbox.enqueue({"quality_score": 0.1}) is None
    assert outbox.deliver_due() == 0
    assert outbox.stats() == {"sent": 0, "pending": 0, "failed": 0}
    assert not list(tmp_path.iterdir())  # stores nothing, not even an empty database


def test_an_outbox_file_from_before_pruning_keeps_working(tmp_path, receiver):
    """The table as it was before ``delivered_at`` existed: its events are delivered, old sent ones pruned by creation time."""
    db = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(db) as connection:
        connection.executescript(
            """
            CREATE TABLE outbox (event_id TEXT PRIMARY KEY, body TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT, created_at REAL NOT NULL);
            INSERT INTO outbox VALUES ('old-sent', '{"event_id":"old-sent"}', 'sent', 1, 0, NULL, 1000);
            INSERT INTO outbox VALUES ('old-pending', '{"event_id":"old-pending"}', 'pending', 0, 0, NULL, 2000);
            """
        )
    outbox = WebhookOutbox(db, receiver.url, keep_delivered_days=7)
    assert outbox.stats() == {"sent": 1, "pending": 1, "failed": 0}
    assert outbox.deliver_due() == 1 and [json.loads(body)["event_id"] for _, body in receiver.requests] == ["old-pending"]
    assert outbox.prune() == 1  # the old sent row, delivered at an unknown time, created long ago
    assert outbox.stats() == {"sent": 1, "pending": 0, "failed": 0}


def test_frood_webhook_cli_lists_retries_and_drops(tmp_path):
    import os
    import subprocess
    import sys

    from tests.apphelpers import ROOT

    db = tmp_path / "webhook-outbox.sqlite3"
    dead = WebhookOutbox(db, "http://127.0.0.1:9/hook", timeout_s=1, max_attempts=1)
    ids = [dead.enqueue({"quality_score": 0.1, "n": n}) for n in range(2)]
    dead.deliver_due()
    env = {**os.environ, "DATA_DIR": str(tmp_path), "LOG_DIR": str(tmp_path / "logs"), "WEBHOOK_URL": ""}

    def frood(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.frood", "webhook", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    listed = frood("stats")
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    assert payload["failed"] == 2 and sorted(e["event_id"] for e in payload["failed_events"]) == sorted(ids)
    assert "Connection" in payload["failed_events"][0]["last_error"]
    assert payload["failed_events"][0]["created_at"].endswith("+00:00")  # ISO-8601, as every time the service gives
    assert json.loads(frood("retry", ids[0]).stdout) == {"retried": 1, "sent": 0, "pending": 1, "failed": 1}
    refused = frood("drop")
    assert refused.returncode == 2 and "--all" in refused.stderr
    assert json.loads(frood("drop", "--all").stdout) == {"dropped": 1, "sent": 0, "pending": 1, "failed": 0}
    missing = subprocess.run([sys.executable, "-m", "cli.frood", "webhook", "stats"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**env, "DATA_DIR": str(tmp_path / "nowhere")})
    assert missing.returncode == 2 and "no webhook outbox" in missing.stderr
