"""The reject-webhook outbox's persistence: one base, one file per backend (``outbox_sqlite``, ``outbox_postgres``).

A row per event: its id, the exact JSON body to send, ``status`` (pending | sent | failed), the attempts made,
when it is next due and the last error. The store knows no HTTP, no signature and no retry policy: the
delivery worker (``service.webhook``) claims one due event (``claim_due``), POSTs it, and records the
outcome on the claim (``Claim.sent`` / ``Claim.failed``) before the claim ends. While a claim is held no
other worker of the same store (PostgreSQL: of any replica) can claim that event.

The SQL is written once here; a backend says its table, its parameter marker, the column a delivery time
goes to, and how it opens a connection and holds a claim.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

STATUSES = ("sent", "pending", "failed")


def empty_counts() -> dict[str, int]:
    """Event counts by status when nothing is stored."""
    return dict.fromkeys(STATUSES, 0)


class Claim:
    """One due event held by a worker until the ``claim_due`` block ends; record its outcome once, inside that block."""

    def __init__(self, store: OutboxStore, connection: Any, event_id: str, body: str, attempts: int):
        self._store = store
        self._connection = connection
        self.event_id = event_id
        self.body = body
        self.attempts = int(attempts)  # attempts made before this one

    def sent(self, at: float) -> None:
        """Delivered at ``at`` (epoch seconds): status sent, this attempt counted, the last error cleared."""
        store, p = self._store, self._store.PARAM
        columns = store.sent_columns(at)
        assignments = "".join(f", {name} = {p}" for name in columns)
        self._connection.execute(
            f"UPDATE {store.TABLE} SET status = 'sent', attempts = {p}, last_error = NULL{assignments} WHERE event_id = {p}",
            (self.attempts + 1, *columns.values(), self.event_id),
        )

    def failed(self, error: str, retry_at: float | None) -> None:
        """This attempt failed with ``error``: pending again from ``retry_at`` (epoch seconds), or failed for good when None."""
        store, p = self._store, self._store.PARAM
        if retry_at is None:
            sql, params = f"status = 'failed', attempts = {p}, last_error = {p}", (self.attempts + 1, error)
        else:
            sql, params = f"attempts = {p}, last_error = {p}, next_attempt_at = {p}", (self.attempts + 1, error, retry_at)
        self._connection.execute(f"UPDATE {store.TABLE} SET {sql} WHERE event_id = {p}", (*params, self.event_id))


class OutboxStore(ABC):
    """Stored webhook events; every method is safe to call from several threads."""

    TABLE: ClassVar[str]  # the table's name (each backend keeps the one its existing databases have)
    PARAM: ClassVar[str]  # the driver's parameter marker
    DELIVERED_AT: ClassVar[str]  # the SQL expression of when a sent event was delivered (prune compares it)
    CLAIM_LOCK: ClassVar[str] = ""  # appended to the claiming SELECT (PostgreSQL: lock the row, skip locked ones)

    @abstractmethod
    def _session(self) -> AbstractContextManager[Any]:
        """A connection (``execute(sql, params)`` → cursor) whose statements are committed when the block ends."""

    @abstractmethod
    def _claiming(self) -> AbstractContextManager[Any]:
        """A connection on which a claimed row stays claimed (and its outcome written) until the block ends."""

    @abstractmethod
    def sent_columns(self, at: float) -> dict[str, Any]:
        """The columns a delivery writes besides status and attempts (its time, and who delivered it)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections (the store is unusable afterwards)."""

    # -- the worker's side ------------------------------------------------------------------------

    def add(self, event_id: str, body: str, now: float) -> None:
        """Store one pending event, due at ``now``; an id already stored is left as it is (enqueue is idempotent)."""
        p = self.PARAM
        with self._session() as connection:
            connection.execute(
                f"INSERT INTO {self.TABLE} (event_id, body, next_attempt_at, created_at) VALUES ({p}, {p}, {p}, {p})"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, body, now, now),
            )

    @contextmanager
    def claim_due(self, now: float) -> Iterator[Claim | None]:
        """The oldest pending event due at ``now`` that no one else holds, held until the block ends; None when none."""
        with self._claiming() as connection:
            row = connection.execute(
                f"SELECT event_id, body, attempts FROM {self.TABLE} WHERE status = 'pending' AND next_attempt_at <= {self.PARAM}"
                f" ORDER BY created_at LIMIT 1{self.CLAIM_LOCK}",
                (now,),
            ).fetchone()
            yield None if row is None else Claim(self, connection, *row)

    def prune_delivered(self, before: float) -> int:
        """Delete sent events delivered before ``before`` (epoch seconds); failed ones stay. Returns how many."""
        with self._session() as connection:
            return int(connection.execute(f"DELETE FROM {self.TABLE} WHERE status = 'sent' AND {self.DELIVERED_AT} < {self.PARAM}", (before,)).rowcount)

    # -- the operator's side ----------------------------------------------------------------------

    def _failed_clause(self, event_ids: list[str] | None) -> tuple[str, list[str]]:
        if event_ids is None:
            return "status = 'failed'", []
        return f"status = 'failed' AND event_id IN ({', '.join([self.PARAM] * len(event_ids))})", list(event_ids)

    def retry_failed(self, event_ids: Iterable[str] | None, now: float) -> int:
        """Failed events (these ids, or all) pending again from ``now`` with a fresh attempt budget; returns how many."""
        event_ids = None if event_ids is None else list(event_ids)
        if event_ids == []:
            return 0
        clause, params = self._failed_clause(event_ids)
        with self._session() as connection:
            sql = f"UPDATE {self.TABLE} SET status = 'pending', attempts = 0, last_error = NULL, next_attempt_at = {self.PARAM} WHERE {clause}"
            return int(connection.execute(sql, (now, *params)).rowcount)

    def drop_failed(self, event_ids: Iterable[str] | None) -> int:
        """Delete failed events (these ids, or all); returns how many."""
        event_ids = None if event_ids is None else list(event_ids)
        if event_ids == []:
            return 0
        clause, params = self._failed_clause(event_ids)
        with self._session() as connection:
            return int(connection.execute(f"DELETE FROM {self.TABLE} WHERE {clause}", params).rowcount)

    def failed_events(self, limit: int = 100) -> list[dict]:
        """The oldest failed events (id, attempts, last error, created), for the operator."""
        with self._session() as connection:
            rows = connection.execute(
                f"SELECT event_id, attempts, last_error, created_at FROM {self.TABLE} WHERE status = 'failed' ORDER BY created_at LIMIT {self.PARAM}",
                (limit,),
            ).fetchall()
        return [{"event_id": row[0], "attempts": row[1], "last_error": row[2], "created_at": row[3]} for row in rows]

    def counts(self) -> dict[str, int]:
        """Event counts by status: sent, pending, failed."""
        with self._session() as connection:
            rows = connection.execute(f"SELECT status, COUNT(*) FROM {self.TABLE} GROUP BY status").fetchall()
        return {**empty_counts(), **{status: int(count) for status, count in rows}}
