"""Reject webhook through a persistent outbox: enqueue in the request, deliver in a background worker.

- ``enqueue`` stores the event (``storage.outbox``: SQLite on one machine, PostgreSQL shared by replicas)
  and returns at once: the user's request never waits on the receiver.
- The worker POSTs due events as JSON; a 2xx marks them sent; errors, timeouts and other statuses are
  retried with exponential backoff (the next attempt time is stored, so retries survive a restart);
  after ``max_attempts`` the event is marked failed. Delivery is at least once: receivers de-duplicate
  on the stable ``event_id`` (also sent as ``X-Frood-Event-Id``).
- With a secret, the exact body bytes are signed: ``X-Frood-Signature: sha256=<hex HMAC-SHA256>``.
- Delivered events are pruned after ``WEBHOOK_KEEP_DELIVERED_DAYS`` (each holds a base64 image, so the store
  would otherwise grow without bound); failed events stay until an operator retries or drops them
  (``frood webhook retry|drop``). ``stats()`` gives the counts the Monitor shows.
- With no URL the outbox is disabled and touches no file at all (``manage_only`` opens an existing store for
  the operator commands without delivering).

This module holds the signing, the POST and the delivery policy; the rows live in ``storage``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from settings import get_settings
from storage.outbox import OutboxStore, empty_counts
from storage.outbox_sqlite import SQLiteOutboxStore

log = logging.getLogger("frood.webhook")
SIGNATURE_HEADER = "X-Frood-Signature"
EVENT_ID_HEADER = "X-Frood-Event-Id"
SECONDS_PER_DAY = 86_400.0
BATCH = 50  # events per worker pass at most, so ``stop`` is never far away


def sign_body(body: bytes, secret: str) -> str:
    """The ``X-Frood-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """For receivers: constant-time check of ``X-Frood-Signature`` against the raw body."""
    if not header:
        return False
    return hmac.compare_digest(sign_body(body, secret).encode(), header.strip().encode())


def headers_for(event_id: str, body: bytes, secret: str) -> dict[str, str]:
    """The headers of one event's POST (signed when there is a secret)."""
    headers = {"Content-Type": "application/json", EVENT_ID_HEADER: event_id}
    if secret:
        headers[SIGNATURE_HEADER] = sign_body(body, secret)
    return headers


def _one_line(text: str, limit: int = 300) -> str:
    """Error text for the log and the store: one line (a log line per attempt), bounded length."""
    return " ".join(text.split())[:limit]


def stamped_body(payload: dict) -> tuple[str, str]:
    """The event id (the payload's, else a new one) and the JSON body sent for it, with its timestamp."""
    event_id = payload.get("event_id") or uuid.uuid4().hex
    stamped = {"timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **payload, "event_id": event_id}
    return event_id, json.dumps(stamped, separators=(",", ":"), default=str)


def post_event(session: requests.Session, url: str, secret: str, timeout_s: float, event_id: str, body: str) -> tuple[bool, str]:
    """One signed POST of an event; a network error, timeout or non-2xx is a failed attempt with a one-line
    reason, never an exception."""
    data = body.encode()
    try:
        with session.post(url, data=data, headers=headers_for(event_id, data, secret), timeout=timeout_s) as response:
            status = response.status_code
    except requests.RequestException as error:
        return False, _one_line(f"{type(error).__name__}: {error}")
    if 200 <= status < 300:
        return True, ""
    return False, f"HTTP {status}"


class WebhookDelivery:
    """The outbox as the service sees it: any :class:`storage.outbox.OutboxStore` (None: nothing stored) plus
    the signed POST, the retry policy and a daemon worker that delivers due events and prunes old ones."""

    def __init__(
        self,
        store: OutboxStore | None,
        url: str,
        secret: str = "",
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        poll_interval_s: float = 0.5,
        keep_delivered_days: float | None = None,
        prune_interval_s: float | None = None,
    ):
        settings = get_settings()
        self.store = store
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.keep_delivered_days = settings.webhook_keep_delivered_days if keep_delivered_days is None else keep_delivered_days
        self.prune_interval_s = settings.prune_interval_s if prune_interval_s is None else prune_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._session = requests.Session()

    @property
    def enabled(self) -> bool:
        """False when no URL is configured: nothing is stored or sent."""
        return bool(self.url) and self.store is not None

    # -- the request's side -----------------------------------------------------------------------

    def enqueue(self, payload: dict) -> str | None:
        """Store one event for delivery; returns its ``event_id`` (None when no URL is configured)."""
        if not self.enabled:
            return None
        event_id, body = stamped_body(payload)
        self.store.add(event_id, body, time.time())
        self._wake.set()
        return event_id

    # -- the worker's side ------------------------------------------------------------------------

    def deliver_due(self, now: float | None = None) -> int:
        """One pass over events due at ``now`` (epoch seconds, default: the clock); returns how many were delivered."""
        return self._deliver(now, interruptible=False)

    def _deliver(self, now: float | None, interruptible: bool) -> int:
        """Up to ``BATCH`` events, one claim at a time; the worker's pass (``interruptible``) ends early on ``stop``."""
        if not self.enabled:
            return 0
        delivered = 0
        for _ in range(BATCH):
            if interruptible and self._stop.is_set():
                break
            with self.store.claim_due(time.time() if now is None else now) as claim:
                if claim is None:
                    break
                ok, error = post_event(self._session, self.url, self.secret, self.timeout_s, claim.event_id, claim.body)
                moment, attempt = time.time() if now is None else now, claim.attempts + 1
                if ok:
                    claim.sent(moment)
                    log.info("Webhook delivered event %s (attempt %d)", claim.event_id, attempt)
                    delivered += 1
                elif attempt >= self.max_attempts:
                    claim.failed(error, None)
                    log.error("Webhook gave up on event %s after %d attempts: %s", claim.event_id, attempt, error)
                else:
                    delay = min(self.base_backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
                    claim.failed(error, moment + delay)
                    log.warning("Webhook attempt %d for event %s failed (%s); retry in %.1f s", attempt, claim.event_id, error, delay)
        return delivered

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

    def close(self) -> None:
        """Stop the worker and release the store's connections."""
        self.stop()
        if self.store is not None:
            self.store.close()

    # -- the operator's side ----------------------------------------------------------------------

    def prune(self, now: float | dt.datetime | None = None) -> int:
        """Delete delivered events older than ``keep_delivered_days`` (by delivery time); failed ones stay. Returns how many."""
        if self.store is None:
            return 0
        moment = time.time() if now is None else now.timestamp() if isinstance(now, dt.datetime) else float(now)
        pruned = self.store.prune_delivered(moment - self.keep_delivered_days * SECONDS_PER_DAY)
        if pruned:
            log.info("Webhook outbox pruned %d delivered events older than %g days", pruned, self.keep_delivered_days)
        return pruned

    def retry_failed(self, event_ids: Iterable[str] | None = None) -> int:
        """Put failed events (all, or these ids) back to pending with a fresh attempt budget; returns how many."""
        if self.store is None:
            return 0
        count = self.store.retry_failed(event_ids, time.time())
        if count:
            log.info("Webhook outbox: %d failed events queued again by the operator", count)
            self._wake.set()
        return count

    def drop_failed(self, event_ids: Iterable[str] | None = None) -> int:
        """Delete failed events (all, or these ids); returns how many."""
        if self.store is None:
            return 0
        count = self.store.drop_failed(event_ids)
        if count:
            log.info("Webhook outbox: %d failed events dropped by the operator", count)
        return count

    def failed_events(self, limit: int = 100) -> list[dict]:
        """The oldest failed events (id, attempts, last error, created as ISO-8601 UTC, as every time the API gives)."""
        events = [] if self.store is None else self.store.failed_events(limit)
        return [{**event, "created_at": dt.datetime.fromtimestamp(float(event["created_at"]), dt.UTC).isoformat()} for event in events]

    def stats(self) -> dict[str, int]:
        """Event counts by status: sent, pending, failed (over every replica on PostgreSQL)."""
        return empty_counts() if self.store is None else self.store.counts()


class WebhookOutbox(WebhookDelivery):
    """The delivery over the SQLite outbox at ``db_path`` (created only when a URL is set; ``manage_only``
    opens an existing file for the operator commands). The other arguments are :class:`WebhookDelivery`'s."""

    def __init__(self, db_path: Path, url: str, secret: str = "", *options: Any, manage_only: bool = False, **named: Any):
        self.db_path = Path(db_path)
        self.manage_only = manage_only
        store = SQLiteOutboxStore(self.db_path) if url or (manage_only and self.db_path.is_file()) else None
        super().__init__(store, url, secret, *options, **named)


def send_test_event(delivery: WebhookDelivery | None) -> tuple[bool, str]:
    """One signed POST of a test event to the configured URL, now, outside the outbox (nothing is stored or
    retried): the Monitor's "send a test event" button. Returns (delivered, the HTTP status or the failure).

    The body has the reject event's fields with ``"test": true`` and no image, so a receiver can check its
    signature check and ignore it."""
    if delivery is None or not delivery.url:
        return False, "WEBHOOK_URL is not set"
    payload = {
        "test": True,
        "quality_score": 0.0,
        "reasons": [],
        "source": "test",
        "channel": "test",
        "operation": "test",
        "model": "",
        "image": None,
        "event_id": "test-" + uuid.uuid4().hex,
    }
    event_id, body = stamped_body(payload)
    data = body.encode()
    try:
        with delivery._session.post(delivery.url, data=data, headers=headers_for(event_id, data, delivery.secret), timeout=delivery.timeout_s) as response:
            status = response.status_code
    except requests.RequestException as error:
        log.warning("Webhook test event to %s failed: %s", delivery.url, _one_line(str(error)))
        return False, _one_line(f"{type(error).__name__}: {error}")
    log.info("Webhook test event %s answered HTTP %d", event_id, status)
    return 200 <= status < 300, f"HTTP {status}"
