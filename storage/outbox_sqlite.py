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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._claim_lock = threading.Lock()
        connection = self._connection()
        connection.executescript(SCHEMA)
        columns = {row[1] for row in connection.execute("PRAGMA table_info(outbox)")}
        if "delivered_at" not in columns:  # a file written before pruning existed
            connection.execute("ALTER TABLE outbox ADD COLUMN delivered_at REAL")

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()  # autocommit: each statement is its own transaction

    @contextmanager
    def _claiming(self) -> Iterator[sqlite3.Connection]:
        with self._claim_lock:
            yield self._connection()

    def sent_columns(self, at: float) -> dict[str, Any]:
        return {"delivered_at": at}

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()
        self._local = threading.local()
