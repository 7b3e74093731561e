"""SQLite plumbing shared by the stats store and the webhook outbox: one connection per thread on one file.

sqlite3 connections are not safe to share between threads; WAL lets readers run beside the one writer.
Every connection is in autocommit mode (each statement its own transaction unless a ``BEGIN`` opens one).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class ThreadConnections:
    """``get()``: this thread's connection to ``path`` (opened on first use with ``pragmas``); ``close()``: all of them."""

    def __init__(self, path: Path, *pragmas: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.pragmas = ("journal_mode=WAL", "busy_timeout=30000", *pragmas)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            for pragma in self.pragmas:
                connection.execute(f"PRAGMA {pragma}")
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()
        self._local = threading.local()
