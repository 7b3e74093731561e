"""Reject webhook outbox against a real local receiver: signature, retries, survival across restarts."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import pytest

from service.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookOutbox, verify_signature
from tests.apphelpers import WebhookReceiver


@pytest.fixture
def receiver():
    servers: list[WebhookReceiver] = []

    def make(failures: int = 0) -> WebhookReceiver:
        servers.append(WebhookReceiver(failures))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def drain(outbox: WebhookOutbox, want: int, seconds: float = 10.0) -> int:
    delivered, deadline = 0, time.time() + seconds
    while delivered < want and time.time() < deadline:
        delivered += outbox.deliver_due()
        time.sleep(0.02)
    return delivered


def test_rejected_image_triggers_one_signed_post(tmp_path, receiver):
    server = receiver()
    outbox = WebhookOutbox(tmp_path / "outbox.sqlite3", server.url, secret="s3cret", base_backoff_s=0.01)
    event_id = outbox.enqueue({"quality_score": 0.21, "reasons": ["too_dark"], "source": "api", "model": "m", "image": "aGk="})
    assert drain(outbox, 1) == 1
    assert len(server.requests) == 1
    headers, body = server.requests[0]
    payload = json.loads(body)
    assert payload["event_id"] == event_id and headers[EVENT_ID_HEADER] == event_id
    assert payload["quality_score"] == 0.21 and payload["timestamp"].endswith("+00:00")
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["Content-Type"] == "application/json"
    assert verify_signature(body, "s3cret", headers[SIGNATURE_HEADER])
    assert not verify_signature(body, "wrong", headers[SIGNATURE_HEADER])
    assert outbox.stats() == {"sent": 1, "pending": 0, "failed": 0}


def test_receiver_failing_twice_gets_the_event_on_the_third_try(tmp_path, receiver, caplog):
    server = receiver(failures=2)
    outbox = WebhookOutbox(tmp_path / "outbox.sqlite3", server.url, base_backoff_s=0.01)
    event_id = outbox.enqueue({"quality_score": 0.1})
    with caplog.at_level(logging.INFO, logger="frood.webhook"):
        assert drain(outbox, 1) == 1
    assert len(server.requests) == 3
    assert {json.loads(body)["event_id"] for _, body in server.requests} == {event_id}
    attempts = [record.getMessage() for record in caplog.records if record.name == "frood.webhook"]
    assert len(attempts) == 3 and all("\n" not in line and event_id in line for line in attempts)
    assert "HTTP 500" in attempts[0] and "attempt 3" in attempts[2]
    assert outbox.stats() == {"sent": 1, "pending": 0, "failed": 0}


def test_backoff_time_is_stored_and_honoured_after_a_restart(tmp_path, receiver):
    server = receiver(failures=1)
    db = tmp_path / "outbox.sqlite3"
    first = WebhookOutbox(db, server.url, base_backoff_s=100.0)
    first.enqueue({"quality_score": 0.1})
    start = time.time()
    assert first.deliver_due(now=start) == 0 and len(server.requests) == 1  # 500: next try in 100 s
    del first
    second = WebhookOutbox(db, server.url, base_backoff_s=100.0)
    assert second.deliver_due(now=start + 50) == 0 and len(server.requests) == 1  # not due yet
    assert second.deliver_due(now=start + 101) == 1 and len(server.requests) == 2


def test_pending_events_are_delivered_after_a_restart(tmp_path, receiver):
    server = receiver()
    first = WebhookOutbox(tmp_path / "outbox.sqlite3", server.url)
    event_id = first.enqueue({"quality_score": 0.3})
    del first  # the app dies before its worker ran
    second = WebhookOutbox(tmp_path / "outbox.sqlite3", server.url)
    assert second.stats()["pending"] == 1
    assert drain(second, 1) == 1
    assert json.loads(server.requests[0][1])["event_id"] == event_id


def test_closed_port_is_a_failed_attempt_not_a_crash(tmp_path):
    outbox = WebhookOutbox(tmp_path / "outbox.sqlite3", "http://127.0.0.1:9/hook", timeout_s=1, max_attempts=2, base_backoff_s=0.01)
    outbox.enqueue({"quality_score": 0.3})
    deadline = time.time() + 10
    while outbox.stats()["failed"] == 0 and time.time() < deadline:
        outbox.deliver_due()
        time.sleep(0.02)
    assert outbox.stats() == {"sent": 0, "pending": 0, "failed": 1}


def test_background_worker_delivers_without_blocking_enqueue(tmp_path, receiver):
    server = receiver()
    outbox = WebhookOutbox(tmp_path / "outbox.sqlite3", server.url, poll_interval_s=0.05)
    outbox.start()
    try:
        start = time.perf_counter()
        outbox.enqueue({"quality_score": 0.2})
        assert time.perf_counter() - start < 0.5
        deadline = time.time() + 10
        while not server.requests and time.time() < deadline:
            time.sleep(0.02)
        assert len(server.requests) == 1
    finally:
        outbox.stop()


def test_no_url_means_disabled(tmp_path):
    outbox = WebhookOutbox(tmp_path / "outbox.sqlite3", "")
    assert outbox.enqueue({"quality_score": 0.1}) is None
    assert outbox.deliver_due() == 0
    assert outbox.stats() == {"sent": 0, "pending": 0, "failed": 0}
    assert not list(tmp_path.iterdir())  # stores nothing, not even an empty database


def test_delivered_events_are_pruned_after_the_kept_days_failed_ones_stay(tmp_path, receiver):
    server = receiver()
    outbox = WebhookOutbox(tmp_path / "outbox.sqlite3", server.url, keep_delivered_days=7, max_attempts=1, base_backoff_s=0.01)
    start = time.time()
    delivered = outbox.enqueue({"quality_score": 0.1, "image": "x" * 10_000})
    assert outbox.deliver_due(now=start + 1) == 1
    dead = WebhookOutbox(tmp_path / "outbox.sqlite3", "http://127.0.0.1:9/hook", timeout_s=1, max_attempts=1, keep_delivered_days=7)
    failed = dead.enqueue({"quality_score": 0.2})
    dead.deliver_due(now=start + 1)
    assert outbox.stats() == {"sent": 1, "pending": 0, "failed": 1}
    assert outbox.prune(now=start + 6 * 86_400) == 0  # within the kept days
    assert outbox.prune(now=start + 8 * 86_400) == 1
    assert outbox.stats() == {"sent": 0, "pending": 0, "failed": 1}  # a failed event waits for the operator, however old
    assert outbox.prune(now=start + 800 * 86_400) == 0
    assert [event["event_id"] for event in outbox.failed_events()] == [failed] and delivered != failed


def test_operator_retries_or_drops_failed_events(tmp_path, receiver):
    db = tmp_path / "outbox.sqlite3"
    dead = WebhookOutbox(db, "http://127.0.0.1:9/hook", timeout_s=1, max_attempts=1)
    ids = [dead.enqueue({"quality_score": 0.1, "n": n}) for n in range(3)]
    dead.deliver_due()
    assert dead.stats() == {"sent": 0, "pending": 0, "failed": 3}
    server = receiver()
    alive = WebhookOutbox(db, server.url, max_attempts=1)
    assert alive.retry_failed([ids[0], "no-such-event"]) == 1
    assert alive.stats() == {"sent": 0, "pending": 1, "failed": 2}
    assert alive.deliver_due() == 1 and json.loads(server.requests[0][1])["event_id"] == ids[0]
    assert alive.drop_failed([ids[1]]) == 1
    assert alive.retry_failed() == 1 and alive.deliver_due() == 1
    assert alive.stats() == {"sent": 2, "pending": 0, "failed": 0}
    assert alive.drop_failed() == 0 and alive.retry_failed([]) == 0


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
    assert json.loads(frood("retry", ids[0]).stdout) == {"retried": 1, "sent": 0, "pending": 1, "failed": 1}
    refused = frood("drop")
    assert refused.returncode == 2 and "--all" in refused.stderr
    assert json.loads(frood("drop", "--all").stdout) == {"dropped": 1, "sent": 0, "pending": 1, "failed": 0}
    missing = subprocess.run([sys.executable, "-m", "cli.frood", "webhook", "stats"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**env, "DATA_DIR": str(tmp_path / "nowhere")})
    assert missing.returncode == 2 and "no webhook outbox" in missing.stderr
