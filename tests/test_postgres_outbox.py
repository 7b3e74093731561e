"""What only the PostgreSQL outbox does, on a real server: N replicas deliver each event once, sharing the work; a worker
killed mid-POST loses nothing. The contract every backend keeps is tests/test_contract_outbox.py."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from service.webhook import EVENT_ID_HEADER
from tests.apphelpers import ROOT, WebhookReceiver
from tests.postgres_server import TemporaryPostgres, unavailable_reason
from tests.test_contract_outbox import wait_for

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture(scope="module")
def server():
    postgres = TemporaryPostgres().start()
    yield postgres
    postgres.stop()


@pytest.fixture
def make_outbox(server):
    from service.webhook import WebhookDelivery
    from storage.outbox_postgres import PostgresOutboxStore

    made: list[WebhookDelivery] = []

    def make(url: str, **options) -> WebhookDelivery:
        made.append(WebhookDelivery(PostgresOutboxStore(server.url), url, **{"base_backoff_s": 0.01, "poll_interval_s": 0.05, **options}))
        return made[-1]

    first = make("http://127.0.0.1:9/unused")
    with first.store._pool.connection() as connection:
        connection.execute("TRUNCATE webhook_outbox")
    yield make
    for outbox in made:
        outbox.close()


@pytest.fixture
def hook():
    server = WebhookReceiver()
    yield server
    server.close()


def test_four_replicas_deliver_three_hundred_events_exactly_once(make_outbox, hook):
    replicas = [make_outbox(hook.url) for _ in range(4)]
    for replica in replicas:
        replica.start()
    expected = [replicas[index % 4].enqueue({"quality_score": 0.1, "n": index}) for index in range(300)]
    assert wait_for(lambda: len(hook.requests) >= 300 and replicas[0].stats()["sent"] == 300, 30)
    time.sleep(0.5)  # any duplicate would arrive now
    counts = collections.Counter(headers[EVENT_ID_HEADER] for headers, _ in hook.requests)
    assert sorted(counts) == sorted(expected) and set(counts.values()) == {1}
    with replicas[0].store._pool.connection() as connection:
        workers = {row[0] for row in connection.execute("SELECT DISTINCT delivered_by FROM webhook_outbox")}
    assert len(workers) >= 2  # the work was shared, not done by one replica while the others idled


WORKER = textwrap.dedent(
    """
    import sys, time
    from service.webhook import WebhookDelivery
    from storage.outbox_postgres import PostgresOutboxStore
    outbox = WebhookDelivery(PostgresOutboxStore(sys.argv[1]), sys.argv[2], timeout_s=30, poll_interval_s=0.05)
    print("ready", flush=True)
    outbox.start()
    time.sleep(600)
    """
)


def test_a_worker_killed_mid_post_loses_nothing(make_outbox, hook, server, tmp_path):
    """The receiver stalls the first POST; the worker process holding it is SIGKILLed; a survivor delivers it."""
    stalled = []
    handler = hook.server.RequestHandlerClass
    original = handler.do_POST

    def slow_first(self) -> None:
        if not stalled:
            stalled.append(self.headers[EVENT_ID_HEADER])
            time.sleep(3)  # the worker is killed while waiting on this answer
        original(self)

    handler.do_POST = slow_first
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    doomed = subprocess.Popen([sys.executable, str(script), server.url, hook.url], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert doomed.stdout.readline().strip() == "ready"
    producer = make_outbox(hook.url)
    expected = [producer.enqueue({"n": index}) for index in range(20)]
    assert wait_for(lambda: bool(stalled), 20)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    survivor = make_outbox(hook.url)
    survivor.start()
    assert wait_for(lambda: survivor.stats() == {"pending": 0, "sent": 20, "failed": 0}, 30)
    assert wait_for(lambda: len(hook.requests) >= 21, 10)  # the stalled POST is recorded once its handler wakes
    received = collections.Counter(headers[EVENT_ID_HEADER] for headers, _ in hook.requests)
    assert sorted(received) == sorted(expected)  # nothing lost
    assert received[stalled[0]] == 2  # the killed worker's POST arrived, then the survivor's (at least once)
    assert all(received[event_id] == 1 for event_id in expected if event_id != stalled[0])
