"""The reject-webhook outbox on PostgreSQL, shared by every replica (``DATABASE_URL``).

Same interface as :class:`service.webhook.WebhookOutbox`; what changes is how an event is claimed. Each
replica's worker takes one due event at a time with ``SELECT … FOR UPDATE SKIP LOCKED`` and keeps the row
locked while it POSTs, then records the outcome and commits:

* two workers never hold the same event, so with N replicas each event is delivered once;
* a worker killed mid-POST drops its connection, the server rolls its transaction back and the row is
  free again at once: another replica delivers it (at least once across crashes; receivers de-duplicate
  on ``event_id``, sent in the body and as ``X-Frood-Event-Id``);
* backoff times and attempt counts are rows, so retries survive restarts of any replica.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable

from service.webhook import OutboxDelivery, stamped_body
from storage.postgres import migrate, open_pool

log = logging.getLogger("frood.webhook")
COMPONENT = "webhook_outbox"
PRUNE_INTERVAL_S = 3600.0
BATCH = 50  # events per worker pass at most, so ``stop`` is never far away
MIGRATIONS = [
    (
        1,
        "outbox table",
        """
        CREATE TABLE webhook_outbox (
            event_id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            last_error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            sent_at DOUBLE PRECISION,
            delivered_by TEXT
        );
        CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';
        CREATE INDEX webhook_outbox_sent ON webhook_outbox (sent_at) WHERE status = 'sent';
        """,
    ),
]


class PostgresOutbox(OutboxDelivery):
    """Persistent outbox in PostgreSQL plus a daemon worker per replica; see the module docstring."""

    def __init__(
        self,
        url: str,
        webhook_url: str,
        secret: str = "",
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        poll_interval_s: float = 0.5,
        keep_delivered_days: float = 7.0,
        pool_size: int = 4,
        manage_only: bool = False,
    ):
        """``manage_only``: open the table without a webhook URL, for operator commands (stats, retry, drop, prune)."""
        self._init_delivery(webhook_url, secret, timeout_s, max_attempts, base_backoff_s, max_backoff_s, poll_interval_s, PRUNE_INTERVAL_S)
        self.keep_delivered = dt.timedelta(days=keep_delivered_days)
        self.worker_name = f"{uuid.uuid4().hex[:8]}"
        self._pool = None
        self._has_store = self.enabled or manage_only
        if self._has_store:
            self._pool = open_pool(url, max_size=pool_size, name="frood-outbox")
            self.schema_version = migrate(self._pool, COMPONENT, MIGRATIONS)

    def enqueue(self, payload: dict) -> str | None:
        """Store one event for delivery; returns its ``event_id`` (None when no URL is configured)."""
        if not self.enabled:
            return None
        event_id, body = stamped_body(payload)
        now = time.time()
        with self._pool.connection() as connection:
            connection.execute(
                "INSERT INTO webhook_outbox (event_id, body, next_attempt_at, created_at) VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                (event_id, body, now, now),
            )
        self._wake.set()
        return event_id

    def _deliver(self, now: float | None, interruptible: bool) -> int:
        if not self.enabled:
            return 0
        delivered = 0
        for _ in range(BATCH):
            if interruptible and self._stop.is_set():
                break
            outcome = self._deliver_one(now)
            if outcome is None:
                break
            delivered += outcome
        return delivered

    def _deliver_one(self, now: float | None) -> int | None:
        """Claim one due event (row lock held through the POST), attempt it, record the outcome; None when none is due."""
        with self._pool.connection() as connection, connection.transaction():
            row = connection.execute(
                "SELECT event_id, body, attempts FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= %s"
                " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                (time.time() if now is None else now,),
            ).fetchone()
            if row is None:
                return None
            event_id, body, attempts = row
            ok, error = self._attempt(event_id, body)
            attempts += 1
            if ok:
                connection.execute(
                    "UPDATE webhook_outbox SET status = 'sent', attempts = %s, last_error = NULL, sent_at = %s, delivered_by = %s WHERE event_id = %s",
                    (attempts, time.time(), self.worker_name, event_id),
                )
                log.info("Webhook delivered event %s (attempt %d)", event_id, attempts)
                return 1
            if attempts >= self.max_attempts:
                connection.execute(
                    "UPDATE webhook_outbox SET status = 'failed', attempts = %s, last_error = %s WHERE event_id = %s", (attempts, error, event_id)
                )
                log.error("Webhook gave up on event %s after %d attempts: %s", event_id, attempts, error)
                return 0
            delay = min(self.base_backoff_s * 2 ** (attempts - 1), self.max_backoff_s)
            connection.execute(
                "UPDATE webhook_outbox SET attempts = %s, last_error = %s, next_attempt_at = %s WHERE event_id = %s",
                (attempts, error, (time.time() if now is None else now) + delay, event_id),
            )
            log.warning("Webhook attempt %d for event %s failed (%s); retry in %.1f s", attempts, event_id, error, delay)
            return 0

    def stats(self) -> dict[str, int]:
        """Event counts by status, over every replica: pending, sent, failed."""
        counts = {"pending": 0, "sent": 0, "failed": 0}
        if not self._has_store:
            return counts
        with self._pool.connection() as connection:
            counts.update({status: int(count) for status, count in connection.execute("SELECT status, COUNT(*) FROM webhook_outbox GROUP BY status")})
        return counts

    def prune(self, now: float | dt.datetime | None = None) -> int:
        """Delete delivered events older than the keep period; failed ones stay until retried or dropped."""
        if not self._has_store:
            return 0
        moment = time.time() if now is None else now.timestamp() if isinstance(now, dt.datetime) else float(now)
        with self._pool.connection() as connection:
            deleted = connection.execute(
                "DELETE FROM webhook_outbox WHERE status = 'sent' AND sent_at < %s", (moment - self.keep_delivered.total_seconds(),)
            ).rowcount
        if deleted:
            log.info("Pruned %d delivered webhook events", deleted)
        return int(deleted)

    def failed_events(self, limit: int = 100) -> list[dict]:
        """The oldest failed events (id, attempts, last error, created), for the operator."""
        if not self._has_store:
            return []
        with self._pool.connection() as connection:
            rows = connection.execute(
                "SELECT event_id, attempts, last_error, created_at FROM webhook_outbox WHERE status = 'failed' ORDER BY created_at LIMIT %s", (limit,)
            ).fetchall()
        return [{"event_id": row[0], "attempts": row[1], "last_error": row[2], "created_at": row[3]} for row in rows]

    @staticmethod
    def _failed_clause(event_ids: list[str] | None) -> tuple[str, list]:
        if event_ids is None:
            return "status = 'failed'", []
        return "status = 'failed' AND event_id = ANY(%s)", [list(event_ids)]

    def retry_failed(self, event_ids: Iterable[str] | None = None) -> int:
        """Put failed events (these, or all) back in the queue with a fresh attempt budget; returns how many."""
        event_ids = None if event_ids is None else list(event_ids)
        if not self._has_store or event_ids == []:
            return 0
        clause, params = self._failed_clause(event_ids)
        with self._pool.connection() as connection:
            count = connection.execute(
                f"UPDATE webhook_outbox SET status = 'pending', attempts = 0, last_error = NULL, next_attempt_at = %s WHERE {clause}",
                [time.time(), *params],
            ).rowcount
        if count:
            log.info("Re-queued %d failed webhook events", count)
            self._wake.set()
        return int(count)

    def drop_failed(self, event_ids: Iterable[str] | None = None) -> int:
        """Delete failed events (these, or all); returns how many."""
        event_ids = None if event_ids is None else list(event_ids)
        if not self._has_store or event_ids == []:
            return 0
        clause, params = self._failed_clause(event_ids)
        with self._pool.connection() as connection:
            count = connection.execute(f"DELETE FROM webhook_outbox WHERE {clause}", params).rowcount
        if count:
            log.info("Dropped %d failed webhook events", count)
        return int(count)

    def close(self) -> None:
        """Stop the worker and close the connection pool."""
        self.stop()
        if self._pool is not None:
            self._pool.close()
