"""Gallery metadata in PostgreSQL (``DATABASE_URL``), shared by every replica; see :mod:`storage.gallery_meta`.

With the vectors in Milvus, this is all a replica needs to find, name and change a gallery: nothing is read
from ``DATA_DIR``. ``writing(key)`` holds a session advisory lock, so replicas take turns changing one
gallery (Milvus has no atomic id counter: two replicas adding at the same instant would otherwise collide).
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from storage.gallery_meta import REMEMBERED_REQUESTS, WRITTEN_COLUMNS, SQLGalleryMeta
from storage.postgres import migrate, open_pool

COMPONENT = "galleries"
MIGRATIONS = [
    (
        1,
        "galleries and their request ledger",
        """
        CREATE TABLE galleries (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            index_type TEXT NOT NULL,
            metric TEXT NOT NULL,
            backend TEXT NOT NULL,
            location TEXT NOT NULL DEFAULT '',
            created TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE gallery_requests (
            seq BIGSERIAL PRIMARY KEY,
            key TEXT NOT NULL REFERENCES galleries(key) ON DELETE CASCADE,
            request_id TEXT NOT NULL,
            result JSONB NOT NULL,
            UNIQUE (key, request_id)
        );
        """,
    )
]



class PostgresGalleryMeta(SQLGalleryMeta):
    shared = True
    _columns = f"{WRITTEN_COLUMNS}, to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    _unique_violation = pg_errors.UniqueViolation

    def __init__(self, url: str, pool_size: int = 4):
        self._url = url
        self._pool = open_pool(url, max_size=pool_size, name="frood-galleries")
        migrate(self._pool, COMPONENT, MIGRATIONS)
        self._lock_connection: psycopg.Connection | None = None
        self._lock_guard = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._key_locks_guard = threading.Lock()

    def _param(self, name: str) -> str:
        return f"%({name})s"

    def _one(self, sql: str, params: dict[str, Any] | tuple) -> tuple | None:
        with self._pool.connection() as connection:
            return connection.execute(sql, params).fetchone()

    def _all(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        with self._pool.connection() as connection:
            return connection.execute(sql, params).fetchall()

    def _change(self, sql: str, params: dict[str, Any]) -> int:
        with self._pool.connection() as connection:
            return connection.execute(sql, params).rowcount

    def delete(self, key: str) -> bool:
        with self._pool.connection() as connection:
            return connection.execute("DELETE FROM galleries WHERE key = %s", (key,)).rowcount > 0  # the ledger cascades

    def remember(self, key: str, request_id: str, result: dict[str, Any]) -> None:
        with self._pool.connection() as connection, connection.transaction():
            connection.execute("DELETE FROM gallery_requests WHERE key = %s AND request_id = %s", (key, request_id))
            connection.execute("INSERT INTO gallery_requests (key, request_id, result) VALUES (%s, %s, %s)", (key, request_id, Jsonb(result)))
            connection.execute(
                "DELETE FROM gallery_requests WHERE key = %s AND seq < "
                "(SELECT COALESCE(MIN(seq), 0) FROM (SELECT seq FROM gallery_requests WHERE key = %s ORDER BY seq DESC LIMIT %s) AS newest)",
                (key, key, REMEMBERED_REQUESTS),
            )

    def recall(self, key: str, request_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT result FROM gallery_requests WHERE key = %s AND request_id = %s", (key, request_id))
        return None if row is None else dict(row[0])

    @contextlib.contextmanager
    def writing(self, key: str, timeout_s: float = 60.0) -> Iterator[None]:
        """A session advisory lock on the gallery's key until the change is done: one writer per gallery across replicas.

        Taken with ``pg_try_advisory_lock`` (polled) on one connection of this process, after a thread lock per key, so
        writers waiting for a gallery never hold pool connections (the writer that holds it needs them). ``TimeoutError``
        after ``timeout_s``."""
        with self._key_locks_guard:
            local = self._key_locks.setdefault(key, threading.Lock())
        if not local.acquire(timeout=timeout_s):
            raise TimeoutError(f"gallery {key} is being changed by another request of this process")
        try:
            lock_key = zlib.crc32(f"frood-gallery-{key}".encode())
            deadline = time.monotonic() + timeout_s
            while not self._advisory("SELECT pg_try_advisory_lock(%s)", lock_key):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gallery {key} is being changed by another replica")
                time.sleep(0.02)
            try:
                yield
            finally:
                self._advisory("SELECT pg_advisory_unlock(%s)", lock_key)
        finally:
            local.release()

    def _advisory(self, sql: str, lock_key: int) -> bool:
        """One advisory-lock call on this process's lock connection (reopened if it was lost: its locks went with it)."""
        with self._lock_guard:
            for attempt in (1, 2):
                try:
                    if self._lock_connection is None or self._lock_connection.closed:
                        self._lock_connection = psycopg.connect(self._url, autocommit=True)
                    return bool(self._lock_connection.execute(sql, (lock_key,)).fetchone()[0])
                except psycopg.OperationalError:
                    self._lock_connection = None
                    if attempt == 2:
                        raise
        return False

    def close(self) -> None:
        with self._lock_guard:
            if self._lock_connection is not None:
                self._lock_connection.close()
                self._lock_connection = None
        self._pool.close()
