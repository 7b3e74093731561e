"""The reject-webhook outbox's contract, run on every backend (SQLite; PostgreSQL on a real throw-away server)
against a real local receiver: one signed POST per event, retries with a stored backoff that survives a
restart, enqueue never waiting on the receiver, pruning of delivered events, the operator's retry and drop.
What only one backend does stays in tests/test_webhook_outbox.py (SQLite: no URL touches no file, the
``frood webhook`` CLI, an older file) and tests/test_postgres_outbox.py (replicas sharing the work, a worker
killed mid-POST)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from service.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookDelivery, verify_signature
from tests.apphelpers import WebhookReceiver
from tests.test_contract_stats import postgres_url  # noqa: F401 (the contract suites' one fixture for a throw-away server)

BACKENDS = ("sqlite", "postgres")
CLOSED_PORT = "http://127.0.0.1:9/hook"


@pytest.fixture(params=BACKENDS)
def open_outbox(request, tmp_path: Path):
    """``open_outbox(url, **options)`` → the delivery over a new handle on this test's outbox (empty at first); another
    call is a restarted app, another replica, or the operator's ``frood webhook`` (``url=""``)."""
    made: list[WebhookDelivery] = []

    def make(url: str, **options) -> WebhookDelivery:
        if request.param == "sqlite":
            from storage.outbox_sqlite import SQLiteOutboxStore

            store = SQLiteOutboxStore(tmp_path / "outbox.sqlite3")
        else:
            from storage.outbox_postgres import PostgresOutboxStore

            store = PostgresOutboxStore(request.getfixturevalue("postgres_url"))
            if not made:
                with store._pool.connection() as connection:
                    connection.execute("TRUNCATE webhook_outbox")
        made.append(WebhookDelivery(store, url, **{"base_backoff_s": 0.01, "poll_interval_s": 0.05, **options}))
        return made[-1]

    yield make
    for outbox in made:
        outbox.close()


@pytest.fixture
def receiver():
    servers: list[WebhookReceiver] = []

    def make(failures: int = 0) -> WebhookReceiver:
        servers.append(WebhookReceiver(failures))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def drain(outbox: WebhookDelivery, want: int, seconds: float = 10.0) -> int:
    delivered, deadline = 0, time.time() + seconds
    while delivered < want and time.time() < deadline:
        delivered += outbox.deliver_due()
        time.sleep(0.02)
    return delivered


def wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_rejected_image_is_one_signed_post(open_outbox, receiver):
    server = receiver()
    outbox = open_outbox(server.url, secret="s3cret")
    event_id = outbox.enqueue({"quality_score": 0.21, "reasons": ["too_dark"], "source": "api", "model": "m", "image": "aGk="})
    assert outbox.stats() == {"sent": 0, "pending": 1, "failed": 0}
    assert drain(outbox, 1) == 1
    assert len(server.requests) == 1
    headers, body = server.requests[0]
    payload = json.loads(body)
    assert payload["event_id"] == event_id and headers[EVENT_ID_HEADER] == event_id
    assert payload["quality_score"] == 0.21 and payload["reasons"] == ["too_dark"] and payload["timestamp"].endswith("+00:00")
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["Content-Type"] == "application/json"
    assert verify_signature(body, "s3cret", headers[SIGNATURE_HEADER])
    assert not verify_signature(body, "wrong", headers[SIGNATURE_HEADER])
    assert outbox.stats() == {"sent": 1, "pending": 0, "failed": 0}
    assert outbox.enqueue({"event_id": event_id, "quality_score": 0.5}) == event_id  # the same id again: stored once
    assert outbox.deliver_due() == 0 and len(server.requests) == 1 and outbox.stats() == {"sent": 1, "pending": 0, "failed": 0}


def test_a_receiver_failing_twice_gets_the_event_on_the_third_try(open_outbox, receiver, caplog):
    server = receiver(failures=2)
    outbox = open_outbox(server.url)
    event_id = outbox.enqueue({"quality_score": 0.1})
    with caplog.at_level(logging.INFO, logger="frood.webhook"):
        assert drain(outbox, 1) == 1
    assert len(server.requests) == 3
    assert {json.loads(body)["event_id"] for _, body in server.requests} == {event_id}
    attempts = [record.getMessage() for record in caplog.records if record.name == "frood.webhook"]
    assert len(attempts) == 3 and all("\n" not in line and event_id in line for line in attempts)  # one line per attempt
    assert "HTTP 500" in attempts[0] and "attempt 3" in attempts[2]
    assert outbox.stats() == {"sent": 1, "pending": 0, "failed": 0}


def test_the_backoff_time_is_stored_and_honoured_after_a_restart(open_outbox, receiver):
    server = receiver(failures=1)
    first = open_outbox(server.url, base_backoff_s=100.0)
    first.enqueue({"quality_score": 0.1})
    start = time.time()
    assert first.deliver_due(now=start) == 0 and len(server.requests) == 1  # 500: next try in 100 s
    first.close()
    second = open_outbox(server.url, base_backoff_s=100.0)
    assert second.deliver_due(now=start + 50) == 0 and len(server.requests) == 1  # not due yet
    assert second.deliver_due(now=start + 101) == 1 and len(server.requests) == 2


def test_pending_events_are_delivered_after_a_restart(open_outbox, receiver):
    server = receiver()
    first = open_outbox(server.url)
    event_id = first.enqueue({"quality_score": 0.3})
    first.close()  # the app dies before its worker ran
    second = open_outbox(server.url)
    assert second.stats()["pending"] == 1
    assert drain(second, 1) == 1
    assert json.loads(server.requests[0][1])["event_id"] == event_id


def test_a_closed_port_is_a_failed_attempt_not_a_crash(open_outbox):
    outbox = open_outbox(CLOSED_PORT, timeout_s=1, max_attempts=2)
    event_id = outbox.enqueue({"quality_score": 0.3})
    assert wait_for(lambda: outbox.deliver_due() == 0 and outbox.stats()["failed"] == 1, 10)
    assert outbox.stats() == {"sent": 0, "pending": 0, "failed": 1}
    [failed] = outbox.failed_events()
    assert failed["event_id"] == event_id and failed["attempts"] == 2 and "Connection" in failed["last_error"]


class GatedReceiver(WebhookReceiver):
    """A receiver that holds every POST until ``release`` is set; ``held`` counts the POSTs it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.held = 0
        handler = self.server.RequestHandlerClass
        original = handler.do_POST
        outer = self

        def do_post(request) -> None:
            outer.held += 1
            outer.release.wait(60)
            original(request)

        handler.do_POST = do_post

    def close(self) -> None:
        self.release.set()
        super().close()


def test_enqueue_does_not_wait_for_the_receiver(open_outbox):
    """The receiver answers nothing until both enqueues have returned: were enqueue to wait on it, this would hang."""
    gated = GatedReceiver()
    try:
        outbox = open_outbox(gated.url)
        outbox.start()

        def enqueue_in_a_thread(n: int) -> None:
            caller = threading.Thread(target=outbox.enqueue, args=({"quality_score": 0.2, "n": n},))
            caller.start()
            caller.join(30)
            assert not caller.is_alive(), "enqueue waited on the receiver"

        enqueue_in_a_thread(1)
        assert wait_for(lambda: gated.held == 1)  # the worker's POST of the first event is held by the receiver
        enqueue_in_a_thread(2)  # while that POST is in flight
        assert outbox.stats() == {"sent": 0, "pending": 2, "failed": 0} and not gated.requests
        gated.release.set()
        assert wait_for(lambda: outbox.stats() == {"sent": 2, "pending": 0, "failed": 0})
        assert sorted(json.loads(body)["n"] for _, body in gated.requests) == [1, 2]
    finally:
        gated.close()


def test_delivered_events_are_pruned_after_the_kept_days_failed_ones_stay(open_outbox, receiver):
    server = receiver()
    outbox = open_outbox(server.url, keep_delivered_days=7, max_attempts=1)
    start = time.time()
    delivered = outbox.enqueue({"quality_score": 0.1, "image": "x" * 10_000})
    assert outbox.deliver_due(now=start + 1) == 1
    dead = open_outbox(CLOSED_PORT, timeout_s=1, max_attempts=1, keep_delivered_days=7)
    failed = dead.enqueue({"quality_score": 0.2})
    dead.deliver_due(now=start + 1)
    assert outbox.stats() == {"sent": 1, "pending": 0, "failed": 1}
    assert outbox.prune(now=start + 6 * 86_400) == 0  # within the kept days
    assert outbox.prune(now=start + 8 * 86_400) == 1
    assert outbox.stats() == {"sent": 0, "pending": 0, "failed": 1}  # a failed event waits for the operator, however old
    assert outbox.prune(now=start + 800 * 86_400) == 0
    assert [event["event_id"] for event in outbox.failed_events()] == [failed] and delivered != failed


def test_the_operator_retries_or_drops_failed_events(open_outbox, receiver):
    dead = open_outbox(CLOSED_PORT, timeout_s=1, max_attempts=1)
    ids = [dead.enqueue({"quality_score": 0.1, "n": n}) for n in range(3)]
    dead.deliver_due()
    operator = open_outbox("")  # `frood webhook`: no URL, the same events
    assert not operator.enabled and operator.enqueue({"n": 9}) is None and operator.deliver_due() == 0
    assert operator.stats() == {"sent": 0, "pending": 0, "failed": 3}
    assert [event["event_id"] for event in operator.failed_events()] == ids  # oldest first
    server = receiver()
    alive = open_outbox(server.url, max_attempts=1)
    assert operator.retry_failed([ids[0], "no-such-event"]) == 1
    assert alive.stats() == {"sent": 0, "pending": 1, "failed": 2}
    assert alive.deliver_due() == 1 and json.loads(server.requests[0][1])["event_id"] == ids[0]
    assert operator.drop_failed([ids[1]]) == 1
    assert operator.retry_failed([ids[1]]) == 0  # gone
    assert operator.retry_failed() == 1 and alive.deliver_due() == 1
    assert alive.stats() == {"sent": 2, "pending": 0, "failed": 0}
    assert operator.drop_failed() == 0 and operator.retry_failed([]) == 0 and operator.drop_failed([]) == 0
