"""The reject-webhook outbox in PostgreSQL, shared by every replica (``DATABASE_URL``): see :mod:`storage.outbox`.

What changes from SQLite is how an event is claimed: ``SELECT … FOR UPDATE SKIP LOCKED`` inside a
transaction that stays open while the worker POSTs, and commits with the outcome:

* two workers (of any replicas) never hold the same event, so with N replicas each event is delivered once;
* a worker killed mid-POST drops its connection, the server rolls its transaction back and the row is
  free again at once: another replica delivers it (at least once across crashes; receivers de-duplicate
  on ``event_id``);
* backoff times and attempt counts are rows, so retries survive restarts of any replica.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from storage.outbox import OutboxStore
from storage.postgres import migrate, open_pool

COMPONENT = "webhook_outbox"
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


class PostgresOutboxStore(OutboxStore):
    """The ``webhook_outbox`` table over a connection pool (migrated on open); ``worker_name`` marks what this replica delivered."""

    TABLE = "webhook_outbox"
    PARAM = "%s"
    DELIVERED_AT = "sent_at"
    CLAIM_LOCK = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, pool_size: int = 4, connect_timeout_s: float = 30.0):
        self.worker_name = uuid.uuid4().hex[:8]
        self._pool = open_pool(url, max_size=pool_size, name="frood-outbox", connect_timeout_s=connect_timeout_s)
        self.schema_version = migrate(self._pool, COMPONENT, MIGRATIONS)

    @contextmanager
    def _session(self) -> Iterator[Any]:
        with self._pool.connection() as connection:  # commits when the block ends
            yield connection

    @contextmanager
    def _claiming(self) -> Iterator[Any]:
        with self._pool.connection() as connection, connection.transaction():  # the row lock lasts until the commit
            yield connection

    def sent_columns(self, at: float) -> dict[str, Any]:
        return {"sent_at": at, "delivered_by": self.worker_name}

    def close(self) -> None:
        self._pool.close()
