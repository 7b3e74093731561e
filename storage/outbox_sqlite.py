"""The reject-webhook outbox in one SQLite file (WAL), for a single machine: see :mod:`storage.outbox`.

Each thread gets its own connection (enqueue runs in request threads, delivery in the worker); every
statement commits on its own. A claim is held by a lock of this process, not by a transaction, so a POST in
flight never blocks an enqueue; two workers of one process never hold the same event.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storage.outbox import OutboxStore
from storage.sqlite import ThreadConnections

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


class SQLiteOutboxStore(OutboxStore):
    """The outbox table of one SQLite file (created, or brought up to date, on open)."""

    TABLE = "outbox"
    PARAM = "?"
    DELIVERED_AT = "COALESCE(delivered_at, created_at)"  # rows written before delivered_at existed have none

    def __init__(self, path: Path):
        self.path = Path(path)
        self._connections = ThreadConnections(self.path)
        self._claim_lock = threading.Lock()
        connection = self._connections.get()
        connection.executescript(SCHEMA)
        columns = {row[1] for row in connection.execute("PRAGMA table_info(outbox)")}
        if "delivered_at" not in columns:  # a file written before pruning existed
            connection.execute("ALTER TABLE outbox ADD COLUMN delivered_at REAL")

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        yield self._connections.get()  # autocommit: each statement is its own transaction

    @contextmanager
    def _claiming(self) -> Iterator[sqlite3.Connection]:
        with self._claim_lock:
            yield self._connections.get()

    def sent_columns(self, at: float) -> dict[str, Any]:
        return {"delivered_at": at}

    def close(self) -> None:
        self._connections.close()
