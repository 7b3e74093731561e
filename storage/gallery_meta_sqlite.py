"""Gallery metadata in one SQLite file under ``DATA_DIR`` (one machine); see :mod:`storage.gallery_meta`."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storage.gallery_meta import REMEMBERED_REQUESTS, WRITTEN_COLUMNS, SQLGalleryMeta
from storage.sqlite import ThreadConnections

SCHEMA = """
CREATE TABLE IF NOT EXISTS galleries (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    index_type TEXT NOT NULL,
    metric TEXT NOT NULL,
    backend TEXT NOT NULL,
    location TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS gallery_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL REFERENCES galleries(key) ON DELETE CASCADE,
    request_id TEXT NOT NULL,
    result TEXT NOT NULL,
    UNIQUE (key, request_id)
);
"""
_LOCKS: dict[tuple[str, str], threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()



class SQLiteGalleryMeta(SQLGalleryMeta):
    shared = False
    _columns = f"{WRITTEN_COLUMNS}, created"
    _unique_violation = sqlite3.IntegrityError

    def __init__(self, path: Path):
        self.path = Path(path)
        self._connections = ThreadConnections(self.path, "foreign_keys=ON")
        self._connections.get().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def _param(self, name: str) -> str:
        return f":{name}"

    def _one(self, sql: str, params: dict[str, Any]) -> tuple | None:
        return self._db().execute(sql, params).fetchone()

    def _all(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        return self._db().execute(sql, params).fetchall()

    def _change(self, sql: str, params: dict[str, Any]) -> int:
        return self._db().execute(sql, params).rowcount

    def delete(self, key: str) -> bool:
        db = self._db()
        db.execute("DELETE FROM gallery_requests WHERE key = ?", (key,))
        return db.execute("DELETE FROM galleries WHERE key = ?", (key,)).rowcount > 0

    def remember(self, key: str, request_id: str, result: dict[str, Any]) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM gallery_requests WHERE key = ? AND request_id = ?", (key, request_id))
            db.execute("INSERT INTO gallery_requests (key, request_id, result) VALUES (?, ?, ?)", (key, request_id, json.dumps(result)))
            db.execute(
                "DELETE FROM gallery_requests WHERE key = ? AND seq NOT IN "
                "(SELECT seq FROM gallery_requests WHERE key = ? ORDER BY seq DESC LIMIT ?)",
                (key, key, REMEMBERED_REQUESTS),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def recall(self, key: str, request_id: str) -> dict[str, Any] | None:
        row = self._db().execute("SELECT result FROM gallery_requests WHERE key = ? AND request_id = ?", (key, request_id)).fetchone()
        return None if row is None else json.loads(row[0])

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[None]:
        """A lock per gallery shared by every store on this file in this process (FAISS galleries are one process's
        objects anyway: processes sharing ``DATA_DIR`` do not see each other's cached galleries)."""
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault((str(self.path.resolve()), key), threading.RLock())
        with lock:
            yield

    def close(self) -> None:
        self._connections.close()
