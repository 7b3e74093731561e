"""Reject webhook through a persistent outbox: enqueue in the request, deliver in a background worker.

- ``enqueue`` writes the event to SQLite (WAL) and returns at once: the user's request never waits
  on the receiver.
- The worker POSTs due events as JSON; a 2xx marks them sent; errors, timeouts and other statuses are
  retried with exponential backoff (the next attempt time is stored, so retries survive a restart);
  after ``max_attempts`` the event is marked failed. Delivery is at least once: receivers de-duplicate
  on the stable ``event_id`` (also sent as ``X-Frood-Event-Id``).
- With a secret, the exact body bytes are signed: ``X-Frood-Signature: sha256=<hex HMAC-SHA256>``.
- Delivered events are pruned after ``WEBHOOK_KEEP_DELIVERED_DAYS`` (each holds a base64 image, so the file
  would otherwise grow without bound); failed events stay until an operator retries or drops them
  (``frood webhook retry|drop``). ``stats()`` gives the counts the Monitor shows.
- With no URL the outbox is disabled and touches no file at all (``manage_only`` opens an existing file for
  the operator commands without delivering).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

import requests

log = logging.getLogger("frood.webhook")
SIGNATURE_HEADER = "X-Frood-Signature"
EVENT_ID_HEADER = "X-Frood-Event-Id"

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    event_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""
SECONDS_PER_DAY = 86_400.0


def sign_body(body: bytes, secret: str) -> str:
    """The ``X-Frood-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """For receivers: constant-time check of ``X-Frood-Signature`` against the raw body."""
    if not header:
        return False
    return hmac.compare_digest(sign_body(body, secret).encode(), header.strip().encode())


def _one_line(text: str, limit: int = 300) -> str:
    """Error text for the log and the DB: one line (a log line per attempt), bounded length."""
    return " ".join(text.split())[:limit]


def stamped_body(payload: dict) -> tuple[str, str]:
    """The event id (the payload's, else a new one) and the JSON body sent for it, with its timestamp."""
    event_id = payload.get("event_id") or uuid.uuid4().hex
    stamped = {"timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **payload, "event_id": event_id}
    return event_id, json.dumps(stamped, separators=(",", ":"), default=str)


def post_event(session: requests.Session, url: str, secret: str, timeout_s: float, event_id: str, body: str) -> tuple[bool, str]:
    """One signed POST of an event (every outbox backend); a network error, timeout or non-2xx is a failed
    attempt with a one-line reason, never an exception."""
    data = body.encode()
    headers = {"Content-Type": "application/json", EVENT_ID_HEADER: event_id}
    if secret:
        headers[SIGNATURE_HEADER] = sign_body(data, secret)
    try:
        with session.post(url, data=data, headers=headers, timeout=timeout_s) as response:
            status = response.status_code
    except requests.RequestException as error:
        return False, _one_line(f"{type(error).__name__}: {error}")
    if 200 <= status < 300:
        return True, ""
    return False, f"HTTP {status}"


class OutboxDelivery(ABC):
    """What every outbox backend shares: the delivery settings, the signed POST of one event, and the daemon
    worker that delivers due events and prunes old ones until ``stop``. A backend stores the events and
    implements ``enqueue``, ``_deliver(now, interruptible)`` and ``prune``."""

    def _init_delivery(
        self,
        url: str,
        secret: str,
        timeout_s: float,
        max_attempts: int,
        base_backoff_s: float,
        max_backoff_s: float,
        poll_interval_s: float,
        prune_interval_s: float,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.prune_interval_s = prune_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._session = requests.Session()

    @property
    def enabled(self) -> bool:
        """False when no URL is configured: nothing is stored or sent."""
        return bool(self.url)

    def _attempt(self, event_id: str, body: str) -> tuple[bool, str]:
        return post_event(self._session, self.url, self.secret, self.timeout_s, event_id, body)

    @abstractmethod
    def _deliver(self, now: float | None, interruptible: bool) -> int:
        """Delivers the events due at ``now``; ``interruptible`` lets ``stop`` end a long pass early."""

    @abstractmethod
    def prune(self, now: float | None = None) -> int:
        """Deletes delivered events older than the keep period (failed ones stay); returns how many."""

    def deliver_due(self, now: float | None = None) -> int:
        """One pass over events due at ``now`` (epoch seconds, default: the clock); returns how many were delivered."""
        return self._deliver(now, interruptible=False)

    def start(self) -> None:
        """Deliver in a daemon thread until ``stop``; a local enqueue wakes it at once, other processes' within a poll."""
        if not self.enabled or self._worker is not None:
            return
        self._stop.clear()

        def loop() -> None:
            next_prune = 0.0
            while not self._stop.is_set():
                try:
                    self._deliver(None, interruptible=True)
                    if time.monotonic() >= next_prune:  # with replicas every one may prune: deleting twice is harmless
                        self.prune()
                        next_prune = time.monotonic() + self.prune_interval_s
                except Exception:
                    log.exception("Webhook worker pass failed")
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()

        self._worker = threading.Thread(target=loop, name="webhook-outbox", daemon=True)
        self._worker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker; events still pending stay stored for the next start (or another replica)."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout_s)
            self._worker = None


class WebhookOutbox(OutboxDelivery):
    """Persistent outbox (SQLite, WAL) plus a daemon worker that POSTs due events with backoff."""

    def __init__(
        self,
        db_path: Path,
        url: str,
        secret: str = "",
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        poll_interval_s: float = 0.5,
        keep_delivered_days: float | None = None,
        prune_interval_s: float | None = None,
        manage_only: bool = False,
    ):
        from settings import get_settings

        settings = get_settings()
        self.keep_delivered_days = settings.webhook_keep_delivered_days if keep_delivered_days is None else keep_delivered_days
        prune_interval_s = settings.prune_interval_s if prune_interval_s is None else prune_interval_s
        self._init_delivery(url, secret, timeout_s, max_attempts, base_backoff_s, max_backoff_s, poll_interval_s, prune_interval_s)
        self.manage_only = manage_only
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._deliver_lock = threading.Lock()  # one pass at a time: the worker and a manual call never send the same event twice
        if self.enabled or (manage_only and self.db_path.is_file()):
            connection = self._connection()
            connection.executescript(SCHEMA)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(outbox)")}
            if "delivered_at" not in columns:  # a file written before pruning existed
                connection.execute("ALTER TABLE outbox ADD COLUMN delivered_at REAL")

    @property
    def _has_store(self) -> bool:
        return self.enabled or (self.manage_only and self.db_path.is_file())

    def _connection(self) -> sqlite3.Connection:
        """One connection per thread: enqueue runs in request threads, delivery in the worker."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
        return connection

    def enqueue(self, payload: dict) -> str | None:
        """Store one event for delivery; returns its ``event_id`` (None when no URL is configured)."""
        if not self.enabled:
            return None
        event_id, body = stamped_body(payload)
        now = time.time()
        self._connection().execute(
            "INSERT OR IGNORE INTO outbox (event_id, body, next_attempt_at, created_at) VALUES (?, ?, ?, ?)",
            (event_id, body, now, now),
        )
        self._wake.set()
        return event_id

    def _deliver(self, now: float | None, interruptible: bool) -> int:
        """The pass itself; the worker's pass (``interruptible``) ends early on ``stop``, leaving the rest pending."""
        if not self.enabled:
            return 0
        with self._deliver_lock:
            return self._deliver_pass(now, interruptible)

    def _deliver_pass(self, now: float | None, interruptible: bool) -> int:
        connection = self._connection()
        due = connection.execute(
            "SELECT event_id, body, attempts FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY created_at LIMIT 50",
            (time.time() if now is None else now,),
        ).fetchall()
        delivered = 0
        for event_id, body, attempts in due:
            if interruptible and self._stop.is_set():
                break
            ok, error = self._attempt(event_id, body)
            attempts += 1
            if ok:
                connection.execute(
                    "UPDATE outbox SET status = 'sent', attempts = ?, last_error = NULL, delivered_at = ? WHERE event_id = ?",
                    (attempts, time.time() if now is None else now, event_id),
                )
                log.info("Webhook delivered event %s (attempt %d)", event_id, attempts)
                delivered += 1
            elif attempts >= self.max_attempts:
                connection.execute("UPDATE outbox SET status = 'failed', attempts = ?, last_error = ? WHERE event_id = ?", (attempts, error, event_id))
                log.error("Webhook gave up on event %s after %d attempts: %s", event_id, attempts, error)
            else:
                delay = min(self.base_backoff_s * 2 ** (attempts - 1), self.max_backoff_s)
                connection.execute(
                    "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE event_id = ?",
                    (attempts, error, (time.time() if now is None else now) + delay, event_id),
                )
                log.warning("Webhook attempt %d for event %s failed (%s); retry in %.1f s", attempts, event_id, error, delay)
        return delivered

    def prune(self, now: float | None = None) -> int:
        """Delete delivered events older than ``keep_delivered_days`` (by delivery time); returns how many."""
        if not self._has_store:
            return 0
        cutoff = (time.time() if now is None else now) - self.keep_delivered_days * SECONDS_PER_DAY
        cursor = self._connection().execute("DELETE FROM outbox WHERE status = 'sent' AND COALESCE(delivered_at, created_at) < ?", (cutoff,))
        if cursor.rowcount:
            log.info("Webhook outbox pruned %d delivered events older than %g days", cursor.rowcount, self.keep_delivered_days)
        return int(cursor.rowcount)

    def _failed_where(self, event_ids: list[str] | None) -> tuple[str, list[str]]:
        if event_ids is None:
            return "status = 'failed'", []
        return f"status = 'failed' AND event_id IN ({','.join('?' * len(event_ids))})", list(event_ids)

    def retry_failed(self, event_ids: list[str] | None = None) -> int:
        """Put failed events (all, or these ids) back to pending with a fresh attempt budget; returns how many."""
        if not self._has_store or event_ids == []:
            return 0
        where, params = self._failed_where(event_ids)
        cursor = self._connection().execute(
            f"UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? WHERE {where}", (time.time(), *params)
        )
        self._wake.set()
        log.info("Webhook outbox: %d failed events queued again by the operator", cursor.rowcount)
        return int(cursor.rowcount)

    def drop_failed(self, event_ids: list[str] | None = None) -> int:
        """Delete failed events (all, or these ids); returns how many."""
        if not self._has_store or event_ids == []:
            return 0
        where, params = self._failed_where(event_ids)
        cursor = self._connection().execute(f"DELETE FROM outbox WHERE {where}", params)
        log.info("Webhook outbox: %d failed events dropped by the operator", cursor.rowcount)
        return int(cursor.rowcount)

    def failed_events(self, limit: int = 100) -> list[dict]:
        """The oldest failed events (id, attempts, last error, created), for the operator."""
        if not self._has_store:
            return []
        rows = self._connection().execute(
            "SELECT event_id, attempts, last_error, created_at FROM outbox WHERE status = 'failed' ORDER BY created_at LIMIT ?", (limit,)
        ).fetchall()
        return [{"event_id": row[0], "attempts": row[1], "last_error": row[2], "created_at": row[3]} for row in rows]

    def stats(self) -> dict[str, int]:
        """Event counts by status: sent, pending, failed."""
        if not self._has_store:
            return {"sent": 0, "pending": 0, "failed": 0}
        rows = self._connection().execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        counts = {"sent": 0, "pending": 0, "failed": 0}
        counts.update({status: int(count) for status, count in rows})
        return counts
