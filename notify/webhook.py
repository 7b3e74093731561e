"""Reject webhook through a persistent outbox: enqueue in the request, deliver in a background worker.

- ``enqueue`` writes the event to SQLite (WAL) and returns at once: the user's request never waits
  on the receiver.
- The worker POSTs due events as JSON; a 2xx marks them sent; errors, timeouts and other statuses are
  retried with exponential backoff (the next attempt time is stored, so retries survive a restart);
  after ``max_attempts`` the event is marked failed. Delivery is at least once: receivers de-duplicate
  on the stable ``event_id`` (also sent as ``X-Frood-Event-Id``).
- With a secret, the exact body bytes are signed: ``X-Frood-Signature: sha256=<hex HMAC-SHA256>``.
- With no URL the outbox is disabled and touches no file at all.
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
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""


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


class WebhookOutbox:
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
    ):
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._deliver_lock = threading.Lock()  # one pass at a time: the worker and a manual call never send the same event twice
        self._session = requests.Session()
        if self.enabled:
            self._connection().executescript(SCHEMA)

    @property
    def enabled(self) -> bool:
        """False when no URL is configured: nothing is stored or sent."""
        return bool(self.url)

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
        event_id = payload.get("event_id") or uuid.uuid4().hex
        payload = {"timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **payload, "event_id": event_id}
        now = time.time()
        self._connection().execute(
            "INSERT OR IGNORE INTO outbox (event_id, body, next_attempt_at, created_at) VALUES (?, ?, ?, ?)",
            (event_id, json.dumps(payload, separators=(",", ":"), default=str), now, now),
        )
        self._wake.set()
        return event_id

    def _attempt(self, event_id: str, body: str) -> tuple[bool, str]:
        """One POST; any network error, timeout or non-2xx is a failed attempt, never an exception."""
        data = body.encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: event_id}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign_body(data, self.secret)
        try:
            with self._session.post(self.url, data=data, headers=headers, timeout=self.timeout_s) as response:
                status = response.status_code
        except requests.RequestException as error:
            return False, _one_line(f"{type(error).__name__}: {error}")
        if 200 <= status < 300:
            return True, ""
        return False, f"HTTP {status}"

    def deliver_due(self, now: float | None = None) -> int:
        """One pass over events due at ``now`` (epoch seconds, default: the clock); returns how many were delivered."""
        return self._deliver(now, interruptible=False)

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
                connection.execute("UPDATE outbox SET status = 'sent', attempts = ?, last_error = NULL WHERE event_id = ?", (attempts, event_id))
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

    def stats(self) -> dict[str, int]:
        """Event counts by status: sent, pending, failed."""
        if not self.enabled:
            return {"sent": 0, "pending": 0, "failed": 0}
        rows = self._connection().execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        counts = {"sent": 0, "pending": 0, "failed": 0}
        counts.update({status: int(count) for status, count in rows})
        return counts

    def start(self) -> None:
        """Deliver in a daemon thread until ``stop``; a new enqueue wakes it at once."""
        if not self.enabled or self._worker is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self._deliver(None, interruptible=True)
                except Exception:
                    log.exception("Webhook worker pass failed")
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()

        self._worker = threading.Thread(target=loop, name="webhook-outbox", daemon=True)
        self._worker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker; events still pending stay in the DB for the next start."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout_s)
            self._worker = None
