"""PostgreSQL plumbing shared by the stats store and the webhook outbox: one pool, versioned migrations.

Every replica runs :func:`migrate` at start-up. Migrations are numbered per component and recorded in
``schema_migrations``; a transaction-scoped advisory lock makes replicas that start together apply each
migration exactly once (the others wait, then find it recorded). A migration and its record commit in
one transaction, so a crash mid-migration leaves the schema at the previous version.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

from psycopg_pool import ConnectionPool, PoolTimeout

log = logging.getLogger("frood.postgres")

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""

Migration = tuple[int, str, str]  # (version, name, SQL)


def redact(url: str) -> str:
    """The URL without its password, for log lines."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"


def open_pool(url: str, max_size: int = 8, name: str = "frood", connect_timeout_s: float = 30.0) -> ConnectionPool:
    """A connection pool whose sessions speak UTC; waits (bounded) for the server at start-up.

    An unreachable server or a bad URL becomes one ``ConnectionError`` naming the URL without its password.
    """

    def configure(connection) -> None:
        connection.execute("SET TIME ZONE 'UTC'")
        connection.commit()

    pool = ConnectionPool(url, min_size=1, max_size=max_size, configure=configure, name=name, open=False, timeout=30)
    try:
        pool.open(wait=True, timeout=connect_timeout_s)
    except PoolTimeout as error:
        pool.close()
        raise ConnectionError(
            f"PostgreSQL at {redact(url)} accepted no connection within {connect_timeout_s:g} s: check DATABASE_URL and that the server is up"
        ) from error
    return pool


def migrate(pool: ConnectionPool, component: str, migrations: Sequence[Migration]) -> int:
    """Apply ``migrations`` of ``component`` not yet recorded, in order; returns the schema version reached."""
    versions = [version for version, _, _ in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"{component} migrations must have increasing, unique versions: {versions}")
    lock_key = zlib.crc32(f"frood-migrations-{component}".encode())
    with pool.connection() as connection:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            connection.execute(MIGRATIONS_TABLE)
            applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations WHERE component = %s", (component,))}
            for version, name, sql in migrations:
                if version in applied:
                    continue
                connection.execute(sql)
                connection.execute("INSERT INTO schema_migrations (component, version, name) VALUES (%s, %s, %s)", (component, version, name))
                log.info("Applied %s migration %d (%s)", component, version, name)
    return versions[-1] if versions else 0


def schema_version(pool: ConnectionPool, component: str) -> int:
    """The highest applied migration of ``component`` (0 when none)."""
    with pool.connection() as connection:
        row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = %s", (component,)).fetchone()
    return int(row[0])
